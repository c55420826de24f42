"""Semaphore: weighted, FIFO-fair, sync and async, errors."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from datetime import timedelta

import pytest

from nova import errors
from nova.pool import Semaphore


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0)


def test_weighted_acquire_release():
    s = Semaphore(5)
    s.acquire(3)
    assert s.available == 2
    assert not s.try_acquire(3)
    assert s.try_acquire(2)
    s.release(5)
    assert s.available == 5
    with s:
        assert s.available == 4
    assert s.available == 5


def test_errors():
    s = Semaphore(2)
    with pytest.raises(ValueError, match="Expected to release at most the 0 units taken, got 1"):
        s.release()
    with pytest.raises(ValueError, match="never be granted"):
        s.acquire(3)
    with pytest.raises(ValueError, match="Expected n > 0"):
        s.try_acquire(0)
    with pytest.raises(TypeError, match="Expected an int n"):
        s.acquire(1.0)
    with pytest.raises(ValueError, match="Expected capacity > 0"):
        Semaphore(0)
    s.acquire(2)
    with pytest.raises(errors.Timeout):
        s.acquire(1, timeout=0.01)
    with pytest.raises(errors.Timeout):
        s.acquire(1, timeout=0)
    assert s.waiting == 0


def test_fifo_large_request_not_starved():
    s = Semaphore(4)
    s.acquire(3)
    order = []
    big = threading.Thread(target=lambda: (s.acquire(4, timeout=10), order.append("big"), s.release(4)))
    big.start()
    wait_until(lambda: s.waiting == 1)
    # A small request now must queue behind the big one, even though 1 unit is free.
    assert not s.try_acquire(1)
    small = threading.Thread(target=lambda: (s.acquire(1, timeout=10), order.append("small"), s.release(1)))
    small.start()
    wait_until(lambda: s.waiting == 2)
    s.release(3)
    big.join(10)
    small.join(10)
    assert order == ["big", "small"]
    assert s.available == 4


def test_timed_out_head_lets_others_through():
    s = Semaphore(2)
    s.acquire(1)
    with pytest.raises(errors.Timeout):
        s.acquire(2, timeout=0.01)
    assert s.try_acquire(1)


def test_async_acquire_and_cancel():
    s = Semaphore(2)

    async def main():
        async with s:
            assert s.available == 1
        await s.acquire_async(2)
        waiter = asyncio.ensure_future(s.acquire_async(1))
        await asyncio.sleep(0)
        assert s.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert s.waiting == 0
        with pytest.raises(errors.Timeout):
            await s.acquire_async(1, timeout=0.01)
        got = asyncio.ensure_future(s.acquire_async(2))
        await asyncio.sleep(0)
        threading.Thread(target=s.release, args=(2,)).start()
        await asyncio.wait_for(got, 10)
        s.release(2)

    asyncio.run(main())
    assert s.available == 2


def test_stress_threads_never_exceed_capacity():
    s = Semaphore(3)
    inside = [0]
    peak = [0]
    lock = threading.Lock()
    total = [0]

    def worker(w):
        for _ in range(300):
            s.acquire(w, timeout=30)
            with lock:
                inside[0] += w
                peak[0] = max(peak[0], inside[0])
                total[0] += 1
            with lock:
                inside[0] -= w
            s.release(w)

    threads = [threading.Thread(target=worker, args=(1 + i % 3,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert total[0] == 1800
    assert peak[0] <= 3
    assert s.available == 3


def test_fifo_across_async_and_threads():
    s = Semaphore(2)
    s.acquire(2)
    order = []

    async def main():
        task = asyncio.ensure_future(s.acquire_async(2))
        await asyncio.sleep(0)
        assert s.waiting == 1

        def thread_waiter():
            s.acquire(1, timeout=10)
            order.append("thread")
            s.release(1)

        t = threading.Thread(target=thread_waiter)
        t.start()
        await asyncio.to_thread(wait_until, lambda: s.waiting == 2)
        s.release(2)
        await asyncio.wait_for(task, 10)
        order.append("async")
        assert s.waiting == 1  # the thread still waits: the async task holds both units
        s.release(2)
        await asyncio.to_thread(t.join, 10)

    asyncio.run(main())
    assert order == ["async", "thread"]
    assert s.available == 2


def test_repr():
    s = Semaphore(3)
    s.acquire(1)
    assert repr(s) == "<Semaphore 2/3 free, 0 waiting>"
    assert s.capacity == 3


def test_interrupted_waiter_leaves_the_line():
    assert threading.current_thread() is threading.main_thread()
    s = Semaphore(2)
    s.acquire(2)
    main_ident = threading.main_thread().ident

    def interrupter():
        wait_until(lambda: s.waiting == 1)
        signal.pthread_kill(main_ident, signal.SIGINT)

    t = threading.Thread(target=interrupter)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            s.acquire(2, timeout=30)
    finally:
        t.join(10)
    assert s.waiting == 0
    s.release(2)
    assert s.try_acquire(2)  # nothing was left taken or queued


@pytest.mark.parametrize("huge", [float("inf"), 1e12, timedelta.max], ids=["inf", "1e12", "tdmax"])
def test_huge_timeout_waits_without_limit(huge):
    # A timeout too long for a lock wait (inf included) used to raise OverflowError.
    sem = Semaphore(1)
    sem.acquire()
    result = {}

    def waiter():
        try:
            sem.acquire(timeout=huge)
            result["ok"] = True
        except BaseException as exc:  # recorded, asserted below
            result["error"] = exc

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while "1 waiting" not in repr(sem) and t.is_alive():  # it waits (or failed)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    sem.release()
    t.join(10)
    assert result == {"ok": True}

    async def main():
        s = Semaphore(1)
        await s.acquire_async()
        asyncio.get_running_loop().call_soon(s.release)
        await s.acquire_async(timeout=huge)

    asyncio.run(main())
