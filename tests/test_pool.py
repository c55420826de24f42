"""WorkerPool and RateLimiter: futures, backpressure, drain, close, metrics, hooks."""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import subprocess
import sys
import threading
import time
import weakref
from datetime import timedelta
from concurrent.futures import CancelledError, Future, as_completed, wait

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


@pytest.mark.parametrize("call", ["drain", "close", "close_cancel"])
def test_refused_drain_or_close_from_a_worker_leaves_the_pool_open(call):
    # The refusal used to come after the side effect: the pool was closed (and with
    # cancel_pending its queued tasks cancelled) although the call raised.
    release = threading.Event()
    with WorkerPool(1, 8) as pool:
        def task():
            release.wait(10)
            if call == "drain":
                return pool.drain(1)
            return pool.close(1, cancel_pending=(call == "close_cancel"))

        f = pool.submit(task)
        queued = pool.submit(lambda: "queued")
        release.set()
        with pytest.raises(RuntimeError, match="outside pool"):
            f.result(timeout=10)
        assert not pool.closed
        assert queued.result(timeout=10) == "queued"
        assert pool.submit(lambda: "after").result(timeout=10) == "after"


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


def test_future_protocol_waiters_callbacks_wait_as_completed():
    gate = threading.Event()
    pool = WorkerPool(2, 64)
    try:
        slow = pool.submit(gate.wait, 10)
        fast = [pool.submit(lambda i=i: i) for i in range(20)]
        called = []
        slow.add_done_callback(lambda f: called.append(f.result()))
        waiter_result = []
        waiter = threading.Thread(target=lambda: waiter_result.append(slow.result(timeout=10)))
        waiter.start()
        done, not_done = wait(fast, timeout=10)
        assert len(done) == 20 and not not_done
        assert sorted(f.result() for f in as_completed(fast, timeout=10)) == list(range(20))
        assert not slow.done()
        gate.set()
        waiter.join(10)
        assert waiter_result == [True] and called == [True]
        assert slow.done() and not slow.running() and not slow.cancelled()
        late = []
        slow.add_done_callback(late.append)  # already done: called at once
        assert late == [slow]
        err = pool.submit(operator.truediv, 1, 0)
        assert isinstance(err.exception(timeout=10), ZeroDivisionError)
        assert "finished raised ZeroDivisionError" in repr(err)
    finally:
        gate.set()
        assert pool.drain(10)


def test_cancel_a_queued_future_skips_it():
    gate = threading.Event()
    started = threading.Event()
    ran = []
    pool = WorkerPool(1, 8)
    try:
        pool.submit(lambda: (started.set(), gate.wait(10)))
        assert started.wait(10)
        victim = pool.submit(ran.append, "victim")
        other = pool.submit(ran.append, "other")
        assert victim.cancel() and victim.cancelled()
        waited = []
        t = threading.Thread(target=lambda: waited.append(wait([victim], timeout=10)))
        t.start()
        gate.set()
        assert other.result(timeout=10) is None
        t.join(10)
        assert len(waited[0].done) == 1
    finally:
        gate.set()
        assert pool.drain(10)
    assert ran == ["other"]
    assert pool.metrics().cancelled == 1
    with pytest.raises(CancelledError):
        victim.result()


def test_running_future_cannot_be_cancelled():
    gate = threading.Event()
    started = threading.Event()
    with WorkerPool(1, 4) as pool:
        f = pool.submit(lambda: (started.set(), gate.wait(10)))
        assert started.wait(10)
        assert f.running()
        assert not f.cancel()
        gate.set()
        assert f.result(timeout=10)[1] is True


def test_hook_that_raises_is_logged_and_worker_lives(caplog):
    def hook(exc, fn):
        raise RuntimeError("hook broke")

    with WorkerPool(1, 4, on_error=hook) as pool:
        with caplog.at_level(logging.ERROR, logger="nova.pool"):
            f = pool.submit(operator.truediv, 1, 0)
            with pytest.raises(ZeroDivisionError):
                f.result(timeout=10)
            assert pool.submit(lambda: "alive").result(timeout=10) == "alive"
    assert any("on_error hook" in r.message for r in caplog.records)


@pytest.mark.stress
@pytest.mark.parametrize("mode", ["drain", "cancel"])
def test_stress_shutdown_mid_load_loses_and_doubles_nothing(mode):
    n_producers, per_producer = 4, 5000
    runs = collections.Counter()
    lock = threading.Lock()

    def task(key):
        with lock:
            runs[key] += 1
        return key

    pool = WorkerPool(4, 256, name=f"stress-{mode}")
    accepted: list[list] = [[] for _ in range(n_producers)]
    rejected = [0] * n_producers
    halfway = threading.Event()

    def produce(p):
        for i in range(per_producer):
            try:
                accepted[p].append(pool.submit(task, (p, i), timeout=60))
            except errors.PoolClosed:
                rejected[p] += 1
            if p == 0 and i == per_producer // 2:
                halfway.set()

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(n_producers)]
    for t in ps:
        t.start()
    assert halfway.wait(60)
    if mode == "drain":
        assert pool.drain(60)
        cancelled = []
    else:
        cancelled = pool.close(timeout=60, cancel_pending=True)
    for t in ps:
        t.join(60)
        assert not t.is_alive()
    futures = [f for fs in accepted for f in fs]
    assert len(futures) + sum(rejected) == n_producers * per_producer
    assert sum(rejected) > 0  # the shutdown really happened mid-load
    cancelled_ids = {id(f) for f in cancelled}
    assert len(cancelled_ids) == len(cancelled)
    for f in futures:
        assert f.done()  # nothing left pending
        if id(f) in cancelled_ids:
            assert f.cancelled()
        else:
            key = f.result(timeout=0)
            assert runs[key] == 1  # ran exactly once
    assert sum(runs.values()) == len(futures) - len(cancelled)
    assert all(v == 1 for v in runs.values())
    m = pool.metrics()
    assert m.completed == sum(runs.values()) and m.queued == 0 and m.running == 0
    assert m.cancelled == len(cancelled)
    if mode == "drain":
        assert cancelled == []


@pytest.mark.stress
def test_stress_many_submitters_exact_counts():
    total = collections.Counter()
    lock = threading.Lock()

    def task(p):
        with lock:
            total[p] += 1

    with WorkerPool(3, 128) as pool:
        def produce(p):
            for _ in range(5000):
                if pool.try_submit(task, p) is None:
                    pool.submit(task, p, timeout=60)

        ps = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
        for t in ps:
            t.start()
        for t in ps:
            t.join(60)
    assert total == {0: 5000, 1: 5000, 2: 5000, 3: 5000}
    assert pool.metrics().completed == 20000


def test_no_task_waits_behind_a_slow_one_while_a_worker_is_free():
    # Task A blocks until task B (submitted after it) has run.  With two workers this
    # must finish even when one worker took both A and B in one batch.
    for _ in range(20):
        b_ran = threading.Event()
        with WorkerPool(2, 64) as pool:
            a = pool.submit(b_ran.wait, 10)
            fillers = [pool.submit(int, i) for i in range(10)]
            b = pool.submit(b_ran.set)
            assert a.result(timeout=20) is True
            b.result(timeout=10)
            assert [f.result(timeout=10) for f in fillers] == list(range(10))


def test_rate_limiter_context_managers_and_defaults():
    clock = ManualClock(auto_advance=True)
    rl = RateLimiter(10, clock=clock)
    assert rl.burst == 10 and rl.available == 10
    for _ in range(10):
        with rl:
            pass
    t0 = clock.monotonic()
    with rl:  # waits 0.1 s of manual time for one token
        pass
    assert clock.monotonic() - t0 == pytest.approx(0.1)

    async def main():
        async with rl:
            pass
        await rl.acquire_async(1, timeout=1)

    asyncio.run(main())
    assert "RateLimiter 10 per 1 s" in repr(rl)
    assert RateLimiter(0.5).burst == 1.0
    assert RateLimiter(0, burst=3).try_acquire(3)


def test_public_names():
    import nova.pool as pool_mod
    from nova._core import bucket_py, ring_py

    for mod in (pool_mod, ring_py, bucket_py):
        assert isinstance(mod.__all__, tuple)
        for name in mod.__all__:
            assert getattr(mod, name).__doc__


def test_cancel_twice_calls_callbacks_once():
    gate = threading.Event()
    started = threading.Event()
    calls = []
    with WorkerPool(1, 4) as pool:
        pool.submit(lambda: (started.set(), gate.wait(10)))
        assert started.wait(10)
        f = pool.submit(int)
        f.add_done_callback(calls.append)
        assert f.cancel() and f.cancel()
        gate.set()
    assert calls == [f]


def test_idle_worker_keeps_no_reference_to_finished_tasks():
    class Payload:
        pass

    payload = Payload()
    ref = weakref.ref(payload)
    with WorkerPool(1, 4) as pool:
        f = pool.submit(id, payload)
        f.result(timeout=10)
        del f, payload
        # The worker went back to waiting on the queue: nothing pins the argument.
        deadline = time.monotonic() + 10
        while ref() is not None:
            assert time.monotonic() < deadline
            time.sleep(0)


def test_open_pool_is_drained_at_interpreter_exit():
    # atexit runs callbacks last-in first-out: the report registered before nova.pool
    # is imported runs after the pool's drain, and the gate (registered last) opens
    # before it, so every task is still pending when the interpreter starts exiting.
    code = (
        "import atexit, threading\n"
        "done = []\n"
        "atexit.register(lambda: print(sorted(done) == list(range(50))))\n"
        "from nova.pool import WorkerPool\n"
        "gate = threading.Event()\n"
        "pool = WorkerPool(2, 100)\n"
        "pool.submit(gate.wait, 30)\n"
        "pool.submit(gate.wait, 30)\n"
        "for i in range(50):\n"
        "    pool.submit(done.append, i)\n"
        "atexit.register(gate.set)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_pool_futures_work_with_asyncio_wrap_future():
    async def main(pool):
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(asyncio.wrap_future(pool.submit(pow, i, 2)) for i in range(50)))
        assert results == [i * i for i in range(50)]
        with pytest.raises(ZeroDivisionError):
            await asyncio.wrap_future(pool.submit(operator.truediv, 1, 0))
        assert await loop.run_in_executor(None, lambda: pool.submit(abs, -3).result(10)) == 3

    with WorkerPool(2, 64) as pool:
        asyncio.run(main(pool))


@pytest.mark.parametrize("huge", [float("inf"), 1e12, timedelta.max], ids=["inf", "1e12", "tdmax"])
def test_huge_timeouts_wait_without_limit(huge):
    # drain/close/submit with a timeout too long for a lock wait (inf included) used to
    # raise OverflowError ("timestamp out of range for platform time_t").
    release = threading.Event()
    pool = WorkerPool(1, 1)
    pool.submit(release.wait, 10)
    pool.submit(lambda: None)  # the queue is full now (or the worker took both)
    results = {}

    def waiter():
        try:
            results["submit"] = pool.submit(lambda: 7, timeout=huge)
            results["drain"] = pool.drain(timeout=huge)
        except BaseException as exc:  # recorded, asserted below
            results["error"] = exc

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    release.set()
    t.join(10)
    assert "error" not in results, results
    assert results["submit"].result(10) == 7
    assert results["drain"] is True
    assert pool.close(timeout=huge) == []
    assert WorkerPool(1, 1).close(timeout=huge) == []


_WAIT_RACE = """
import faulthandler, sys, threading, time
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, wait
from nova.pool import WorkerPool
faulthandler.dump_traceback_later(25, exit=True)  # a hang fails the test with a traceback
sys.setswitchinterval(1e-6)  # a thread switch between any two bytecodes
pool = WorkerPool(1, 4)
modes = (None, FIRST_COMPLETED, FIRST_EXCEPTION)
end = time.monotonic() + 5  # ~20,000 rounds; the old code hung within a few thousand
i = 0
while time.monotonic() < end:
    i += 1
    started = threading.Event()
    release = threading.Event()
    def task(i=i):
        started.set()
        release.wait()
        if i % 2:
            raise ValueError(i)
        return i
    fut = pool.submit(task)
    started.wait()
    release.set()  # the task finishes while wait() below reads the states
    mode = modes[i % 3]
    done, not_done = wait([fut]) if mode is None else wait([fut], return_when=mode)
    assert fut in done and not not_done, (i, fut)
    assert (fut.exception() is not None) == bool(i % 2)
pool.close(5)
print("ok")
"""


def test_concurrent_futures_wait_never_hangs_on_a_task_finishing_meanwhile():
    # concurrent.futures.wait reads each future's state twice under its condition; the
    # worker wrote FINISHED without holding a condition a waiter had made, so a task
    # ending between the two reads was counted finished twice and wait() hung for ever
    # (found by the emitter's shutdown, which waits for its drain loops' futures).
    out = subprocess.run([sys.executable, "-c", _WAIT_RACE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
