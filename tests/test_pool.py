"""WorkerPool and RateLimiter: futures, backpressure, drain, close, metrics, hooks."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future

import pytest

from nova import errors
from nova.pool import PoolMetrics, RateLimiter, WorkerPool
from nova.testing import ManualClock


def test_submit_returns_future_with_result():
    with WorkerPool(2, 16, name="t") as pool:
        fut = pool.submit(lambda a, b=0: a + b, 1, b=2)
        assert isinstance(fut, Future)
        assert fut.result(timeout=10) == 3
        futs = [pool.submit(pow, i, 2) for i in range(100)]
        assert [f.result(timeout=10) for f in futs] == [i * i for i in range(100)]
    assert pool.closed


def test_task_exception_goes_to_future_and_hook_and_worker_survives():
    seen = []

    def hook(exc, fn):
        seen.append((type(exc), fn))

    def boom():
        raise KeyError("x")

    pool = WorkerPool(1, 8, on_error=hook)
    try:
        f = pool.submit(boom)
        with pytest.raises(KeyError):
            f.result(timeout=10)
        assert pool.submit(lambda: 7).result(timeout=10) == 7
        assert seen == [(KeyError, boom)]
    finally:
        assert pool.drain(10)
    m = pool.metrics()
    assert isinstance(m, PoolMetrics)
    assert (m.size, m.queued, m.running, m.completed, m.failed) == (1, 0, 0, 1, 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Expected size > 0, got 0"):
        WorkerPool(0, 1)
    with pytest.raises(TypeError, match="Expected an int queue_size"):
        WorkerPool(1, "2")
    with pytest.raises(TypeError, match="on_error"):
        WorkerPool(1, 1, on_error=3)
    with WorkerPool(1, 1) as pool:
        with pytest.raises(TypeError, match="Expected a callable task, got int"):
            pool.submit(3)


def test_submit_blocks_when_full_then_timeout_and_try_submit_none():
    gate = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        gate.wait(10)

    pool = WorkerPool(1, 2)
    try:
        pool.submit(blocker)
        assert started.wait(10)
        pool.submit(int)
        pool.submit(int)
        assert pool.try_submit(int) is None
        with pytest.raises(errors.Timeout, match="full queue"):
            pool.submit(int, timeout=0.01)
        assert pool.metrics().queued == 2
        assert pool.metrics().running == 1
    finally:
        gate.set()
        assert pool.drain(10)


def test_closed_pool_rejects():
    pool = WorkerPool(1, 4)
    assert pool.drain(10)
    with pytest.raises(errors.PoolClosed):
        pool.submit(int)
    with pytest.raises(errors.PoolClosed):
        pool.try_submit(int)


def test_close_cancel_pending_reports_queued_tasks():
    gate = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        gate.wait(10)
        return "ran"

    pool = WorkerPool(1, 100)
    first = pool.submit(blocker)
    assert started.wait(10)
    queued = [pool.submit(int, i) for i in range(50)]
    closer = threading.Thread(target=lambda: out.extend(pool.close(timeout=10, cancel_pending=True)))
    out: list = []
    closer.start()
    # the running task finishes; close must not wait for queued ones
    gate.set()
    closer.join(10)
    assert first.result(timeout=10) == "ran"
    assert len(out) == 50 and set(map(id, out)) == set(map(id, queued))
    for f in queued:
        assert f.cancelled()
        with pytest.raises(CancelledError):
            f.result(timeout=0)
    assert pool.metrics().cancelled == 50


def test_drain_waits_for_everything():
    done = []
    pool = WorkerPool(3, 1000)
    for i in range(500):
        pool.submit(done.append, i)
    assert pool.drain(30)
    assert sorted(done) == list(range(500))
    assert pool.metrics().completed == 500


def test_drain_from_a_worker_is_an_error():
    with WorkerPool(1, 4) as pool:
        f = pool.submit(lambda: pool.drain(1))
        with pytest.raises(RuntimeError, match="outside pool"):
            f.result(timeout=10)


def test_many_pools_coexist():
    pools = [WorkerPool(1, 8, name=f"p{i}") for i in range(5)]
    futs = [p.submit(lambda i=i: i * 10) for i, p in enumerate(pools)]
    assert [f.result(timeout=10) for f in futs] == [0, 10, 20, 30, 40]
    for p in pools:
        assert p.close(timeout=10) == []


def test_rate_limiter_facade():
    clock = ManualClock()
    rl = RateLimiter(60, per=60, burst=2, clock=clock)
    assert rl.rate == 60 and rl.per == 60 and rl.burst == 2
    assert rl.try_acquire() and rl.try_acquire() and not rl.try_acquire()
    clock.advance(1)
    assert rl.try_acquire()
    with pytest.raises(errors.Timeout):
        rl.acquire(timeout=0.5)
    with pytest.raises(ValueError, match="per > 0"):
        RateLimiter(1, per=0)
    with pytest.raises(TypeError, match="Expected rate"):
        RateLimiter("1")
