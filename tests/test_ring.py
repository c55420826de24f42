"""The ring queue kernel (both twins): FIFO, bounds, timeouts, close, get_many, stats."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from nova import errors


def wait_until(predicate, timeout=10.0):
    """Spin (yielding the GIL, never sleeping a fixed time) until *predicate* holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0)


def test_fifo_and_sizes(core):
    q = core.RingQueue(4)
    assert q.capacity == 4 and q.qsize() == 0 and not q.closed
    for i in range(4):
        q.put_nowait(i)
    assert q.qsize() == 4 and len(q) == 4
    assert [q.get_nowait() for _ in range(4)] == [0, 1, 2, 3]
    assert q.qsize() == 0


def test_wraps_around_many_times(core):
    q = core.RingQueue(3)
    out = []
    for i in range(100):
        q.put(i)
        if i % 2:
            out.append(q.get())
            out.append(q.get())
    assert out == list(range(100))


@pytest.mark.parametrize("bad", [0, -1])
def test_capacity_must_be_positive(core, bad):
    with pytest.raises(ValueError, match=f"Expected capacity > 0, got {bad}"):
        core.RingQueue(bad)


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_capacity_must_be_int(core, bad):
    with pytest.raises(TypeError, match="Expected an int capacity"):
        core.RingQueue(bad)


def test_put_nowait_full_raises_buffer_full(core):
    q = core.RingQueue(2)
    q.put_nowait("a")
    q.put_nowait("b")
    with pytest.raises(errors.BufferFull, match=r"capacity 2"):
        q.put_nowait("c")
    assert q.qsize() == 2


def test_get_nowait_empty_raises_queue_empty(core):
    q = core.RingQueue(2)
    with pytest.raises(errors.QueueEmpty, match="Expected an item, got an empty queue"):
        q.get_nowait()


def test_timeouts(core):
    q = core.RingQueue(1)
    with pytest.raises(errors.Timeout, match="within 0.01 s"):
        q.get(timeout=0.01)
    with pytest.raises(errors.Timeout):
        q.get(timeout=0)
    q.put(1)
    with pytest.raises(errors.Timeout, match=r"full queue \(capacity 1\)"):
        q.put(2, timeout=timedelta(milliseconds=10))
    with pytest.raises(errors.Timeout):
        q.put(2, timeout=0)
    assert q.get(timeout=0) == 1
    assert q.get_many(5, timeout=0.01) == []
    assert q.get_many(5, timeout=0) == []


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError)])
def test_bad_timeouts(core, bad, exc):
    q = core.RingQueue(1)
    with pytest.raises(exc, match="Expected timeout"):
        q.get(timeout=bad)
    with pytest.raises(exc, match="Expected timeout"):
        q.put(1, timeout=bad)
    with pytest.raises(exc, match="Expected timeout"):
        q.get_many(1, timeout=bad)


def test_get_many(core):
    q = core.RingQueue(10)
    for i in range(7):
        q.put(i)
    assert q.get_many(3) == [0, 1, 2]
    assert q.get_many(100) == [3, 4, 5, 6]
    assert q.qsize() == 0
    with pytest.raises(ValueError, match="Expected max_items > 0, got 0"):
        q.get_many(0)
    with pytest.raises(TypeError, match="Expected an int max_items"):
        q.get_many(2.0)


def test_close_drains_then_raises(core):
    q = core.RingQueue(4)
    q.put(1)
    q.put(2)
    q.close()
    q.close()  # idempotent
    assert q.closed
    with pytest.raises(errors.QueueClosed):
        q.put(3)
    with pytest.raises(errors.QueueClosed):
        q.put_nowait(3)
    assert q.get() == 1
    assert q.get_many(10) == [2]
    for call in (q.get, q.get_nowait, lambda: q.get_many(3), lambda: q.get(timeout=1)):
        with pytest.raises(errors.QueueClosed, match="closed and drained"):
            call()
    assert isinstance(errors.QueueClosed("x"), errors.ClosedError)


def test_stats(core):
    q = core.RingQueue(3)
    q.put(1)
    q.put(2)
    q.get()
    s = q.stats()
    assert s == (3, 1, 2, 2, 1, 0, 0, False)
    assert (s.capacity, s.size, s.peak, s.puts, s.gets, s.closed) == (3, 1, 2, 2, 1, False)
    assert (s.getters, s.putters) == (0, 0)
    q.close()
    assert q.stats().closed is True


def test_blocked_getter_wakes_on_put(core):
    q = core.RingQueue(2)
    got = []
    started = threading.Event()

    def consumer():
        started.set()
        got.append(q.get(timeout=10))

    t = threading.Thread(target=consumer)
    t.start()
    started.wait(10)
    q.put("x")
    t.join(10)
    assert got == ["x"]


def test_blocked_putter_wakes_on_get(core):
    q = core.RingQueue(1)
    q.put(0)
    done = threading.Event()

    def producer():
        q.put(1, timeout=10)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert q.get(timeout=10) == 0
    assert done.wait(10)
    t.join(10)
    assert q.get_nowait() == 1


def test_close_wakes_every_waiter(core):
    empty = core.RingQueue(2)
    full = core.RingQueue(1)
    full.put(0)
    results = []
    lock = threading.Lock()

    def wait_get():
        try:
            empty.get()
        except errors.QueueClosed:
            with lock:
                results.append("get")

    def wait_many():
        try:
            empty.get_many(10)
        except errors.QueueClosed:
            with lock:
                results.append("many")

    def wait_put():
        try:
            full.put(1)
        except errors.QueueClosed:
            with lock:
                results.append("put")

    threads = [threading.Thread(target=f) for f in (wait_get, wait_get, wait_many, wait_put, wait_put)]
    for t in threads:
        t.start()
    # Wait until every thread is blocked inside the queue (stats count the waiters).
    wait_until(lambda: empty.stats().getters == 3 and full.stats().putters == 2)
    empty.close()
    full.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert sorted(results) == ["get", "get", "many", "put", "put"]
