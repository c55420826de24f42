"""The ring queue kernel (both twins): FIFO, bounds, timeouts, close, get_many, stats."""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
import weakref
from datetime import timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from nova import _core, errors


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


@pytest.mark.parametrize("huge", [2**63, 2**70, sys.maxsize // 8 + 1])
def test_capacity_beyond_a_list_is_a_value_error(core, huge):
    # The compiled twin raised OverflowError ("cannot fit 'int' into an index-sized
    # integer") where the pure one accepted it.
    with pytest.raises(ValueError, match=rf"Expected capacity <= {sys.maxsize // 8}, got {huge}"):
        core.RingQueue(huge)


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


def test_get_many_wakes_on_first_put_and_returns_what_is_there(core):
    q = core.RingQueue(8)
    out = []
    t = threading.Thread(target=lambda: out.append(q.get_many(8, timeout=10)))
    t.start()
    wait_until(lambda: q.stats().getters == 1)
    q.put("a")
    t.join(10)
    assert out and out[0][0] == "a" and len(out[0]) >= 1


def test_references_are_kept_and_released(core):
    class Item:
        pass

    q = core.RingQueue(4)
    item = Item()
    before = sys.getrefcount(item)
    for _ in range(10):
        q.put(item)
        assert sys.getrefcount(item) == before + 1
        assert q.get() is item
    for _ in range(3):
        q.put_nowait(item)
    assert sys.getrefcount(item) == before + 3
    got = q.get_many(2)
    del got
    assert sys.getrefcount(item) == before + 1
    dead = []
    other = Item()
    ref = weakref.ref(other, dead.append)
    q.put(other)
    del other
    assert ref() is not None  # the queue keeps it alive
    del q  # dropping the queue releases what it holds
    assert ref() is None
    assert sys.getrefcount(item) == before


def test_idle_blocked_consumer_uses_no_cpu(core):
    q = core.RingQueue(4)
    result = {}

    def consumer():
        c0 = time.thread_time()
        w0 = time.monotonic()
        with pytest.raises(errors.Timeout):
            q.get(timeout=0.3)
        result["cpu"] = time.thread_time() - c0
        result["wall"] = time.monotonic() - w0

    t = threading.Thread(target=consumer)
    t.start()
    t.join(10)
    assert result["wall"] >= 0.29
    # A polling wait would burn a large share of the 0.3 s; a real sleep costs ~nothing.
    assert result["cpu"] < 0.02, result



@pytest.mark.parametrize("huge", [float("inf"), 1e300, 1e12, timedelta.max], ids=["inf", "1e300", "1e12", "tdmax"])
@pytest.mark.parametrize("op", ["put", "get", "get_many"])
def test_huge_timeout_waits_without_limit(core, op, huge):
    # A timeout too long for a lock wait (inf included) means "no limit", as None does:
    # it used to raise OverflowError (pure), time out at once or spin (compiled).
    q = core.RingQueue(1)
    if op == "put":
        q.put(0)
    result = {}

    def waiter():
        c0 = time.thread_time()
        w0 = time.monotonic()
        try:
            if op == "put":
                result["value"] = q.put(1, timeout=huge)
            elif op == "get":
                result["value"] = q.get(timeout=huge)
            else:
                result["value"] = q.get_many(4, timeout=huge)
        except BaseException as exc:  # recorded, asserted below
            result["error"] = exc
        result["cpu"] = time.thread_time() - c0
        result["wall"] = time.monotonic() - w0

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while (q.stats().putters if op == "put" else q.stats().getters) == 0 and t.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.1)  # let it wait a while: a spinning wait would burn this in CPU
    assert t.is_alive() and "error" not in result, result
    if op == "put":
        assert q.get() == 0
    else:
        q.put("x")
    t.join(10)
    assert "error" not in result, result
    assert result["value"] == {"put": None, "get": "x", "get_many": ["x"]}[op]
    assert result["cpu"] < 0.5 * result["wall"], result
    if op == "put":
        assert q.get_nowait() == 1


# ---------------------------------------------------------------------------------------
# Stress: many producers and consumers, exact accounting.
# ---------------------------------------------------------------------------------------


def _stress(q, producers, consumers, per_producer, batch):
    """Each producer puts (producer, seq) for seq in range(per_producer); consumers
    drain with get_many (or get when batch == 1) until the queue is closed."""
    received = [[] for _ in range(consumers)]
    errors_seen = []
    barrier = threading.Barrier(producers + consumers)

    def produce(p):
        barrier.wait()
        put = q.put
        for i in range(per_producer):
            put((p, i), timeout=60)

    def consume(c):
        barrier.wait()
        out = received[c]
        try:
            if batch == 1:
                while True:
                    out.append(q.get(timeout=60))
            else:
                while True:
                    out.extend(q.get_many(batch, timeout=60))
        except errors.QueueClosed:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors_seen.append(exc)

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    cs = [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(120)
        assert not t.is_alive()
    q.close()
    for t in cs:
        t.join(120)
        assert not t.is_alive()
    assert errors_seen == []
    return received


def _check_exact(received, producers, per_producer, capacity, stats):
    total = sum(len(r) for r in received)
    assert total == producers * per_producer  # nothing lost, nothing doubled...
    last = {}
    for r in received:
        # ...per-producer order holds within what each consumer saw...
        seen = {}
        for p, i in r:
            assert seen.get(p, -1) < i
            seen[p] = i
        for p, i in seen.items():
            last[p] = max(last.get(p, -1), i)
    # ...and every (producer, seq) pair arrived exactly once.
    merged = sorted(x for r in received for x in r)
    assert merged == [(p, i) for p in range(producers) for i in range(per_producer)]
    assert stats.peak <= capacity
    assert stats.puts == stats.gets == total and stats.size == 0


@pytest.mark.stress
@pytest.mark.parametrize("batch", [1, 256])
def test_stress_4x4_exact(core, batch):
    # The full 4 x 4 x 200,000 on the compiled queue; a lighter load on the pure twin
    # (same checks) keeps the suite's time budget.
    per = 200_000 if core.name == "c" and batch > 1 else 20_000
    cap = 1024
    q = core.RingQueue(cap)
    received = _stress(q, 4, 4, per, batch)
    _check_exact(received, 4, per, cap, q.stats())


@pytest.mark.stress
def test_stress_tiny_capacity_blocks_both_sides(core):
    q = core.RingQueue(2)
    received = _stress(q, 3, 3, 3000, 2)
    _check_exact(received, 3, 3000, 2, q.stats())


@pytest.mark.stress
def test_stress_close_while_producers_block(core):
    q = core.RingQueue(16)
    accepted = [0] * 4
    closed_seen = [0] * 4
    got = []

    def produce(p):
        try:
            for i in range(100_000):
                q.put((p, i), timeout=60)
                accepted[p] += 1
        except errors.QueueClosed:
            closed_seen[p] = 1

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
    for t in ps:
        t.start()
    while len(got) < 2000:
        got.extend(q.get_many(64, timeout=60))
    q.close()
    for t in ps:
        t.join(60)
        assert not t.is_alive()
    while True:
        try:
            got.extend(q.get_many(64))
        except errors.QueueClosed:
            break
    assert closed_seen == [1, 1, 1, 1]
    assert len(got) == sum(accepted)  # every accepted item came out, exactly once
    assert len(set(got)) == len(got)


# ---------------------------------------------------------------------------------------
# Differential: the compiled queue against the pure twin (the specification).
# ---------------------------------------------------------------------------------------


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the type and message are compared
        return (type(exc).__name__, str(exc))


class RingDifferential(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        c, py = _core.implementation("c"), _core.implementation("py")
        self.c = self.py = None
        self.impls = (c, py)

    @initialize(cap=st.integers(1, 6))
    def make(self, cap):
        c, py = self.impls
        self.c, self.py = c.RingQueue(cap), py.RingQueue(cap)

    def both(self, name, *args):
        a = _outcome(getattr(self.c, name), *args)
        b = _outcome(getattr(self.py, name), *args)
        assert a == b, (name, args, a, b)

    @rule(x=st.integers())
    def put_nowait(self, x):
        self.both("put_nowait", x)

    @rule(x=st.integers())
    def put_zero_timeout(self, x):
        self.both("put", x, 0)

    @rule()
    def get_nowait(self):
        self.both("get_nowait")

    @rule()
    def get_zero_timeout(self):
        self.both("get", 0.0)

    @rule(m=st.integers(-1, 8))
    def get_many(self, m):
        self.both("get_many", m, 0)

    @rule()
    def close(self):
        self.both("close")

    @invariant()
    def same_state(self):
        if self.c is not None:
            assert self.c.qsize() == self.py.qsize()
            assert self.c.stats() == self.py.stats()
            assert self.c.closed == self.py.closed
            assert len(self.c) == len(self.py)


def test_differential_stateful(core_pair):
    run_state_machine_as_test(
        RingDifferential, settings=settings(max_examples=150, stateful_step_count=40, deadline=None)
    )


def test_blocked_main_thread_get_is_interruptible(core):
    # A get() blocked in the main thread still runs signal handlers (Ctrl-C works).
    assert threading.current_thread() is threading.main_thread()
    q = core.RingQueue(1)
    main_ident = threading.main_thread().ident

    def interrupter():
        wait_until(lambda: q.stats().getters == 1)
        signal.pthread_kill(main_ident, signal.SIGINT)

    t = threading.Thread(target=interrupter)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            q.get(timeout=30)
    finally:
        t.join(10)
    assert q.stats().getters == 0


def test_garbage_collector_frees_cycles_through_queued_items(core):
    class Node:
        pass

    dead = []
    q = core.RingQueue(4)
    node = Node()
    node.queue = q  # item -> queue -> item: a cycle only the collector can free
    q.put(node)
    ref = weakref.ref(node, dead.append)
    del q, node
    gc.collect()
    assert ref() is None and len(dead) == 1
