"""The listener package after the split (issue 11): what it re-exports, and that the
ListenerManager runs on the shared pieces (core TokenBucket, LoopThread, ThreadRunner,
the retry driver and the dead-letter path), with the behaviour those pieces define."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import nova
import nova.listener as listener_pkg
from nova import _core
from nova._util.loop import LoopThread
from nova._util.runner import ThreadRunner
from nova.errors import PoolClosed
from nova.events import Event
from nova.listener import (
    DeadLetter,
    DeadLetterConfig,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.resilience import circuit, deadletter, policy
from nova.testing import ManualClock

WAIT = 10.0  # real seconds: a bound for waits that should end at once


def test_listener_reexports_the_resilience_objects_themselves() -> None:
    assert listener_pkg.RetryPolicy is policy.RetryPolicy is nova.RetryPolicy
    assert listener_pkg.Backoff is policy.Backoff
    assert listener_pkg.CircuitConfig is policy.CircuitConfig
    assert listener_pkg.DeadLetterConfig is policy.DeadLetterConfig
    assert listener_pkg.DeadLetter is policy.DeadLetter
    assert listener_pkg.CircuitBreaker is circuit.CircuitBreaker
    assert listener_pkg.CircuitState is circuit.CircuitState
    assert listener_pkg.DEAD_LETTER_STREAM == deadletter.DEAD_LETTER_STREAM == "nova.deadletter"
    assert listener_pkg.dead_letter_event is deadletter.dead_letter_event
    for name in listener_pkg.__all__:
        assert getattr(listener_pkg, name) is not None


@pytest.mark.parametrize("rate_limit", [5.0, (5.0, 2)])
def test_rate_limit_uses_the_core_token_bucket_on_the_managers_clock(rate_limit: Any) -> None:
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    try:
        seen: list[float] = []
        m = lm.register(lambda ev: seen.append(clock.monotonic()), ListenerConfig(rate_limit=rate_limit), id="rl")
        assert isinstance(m._bucket, _core.TokenBucket)
        burst = 5 if not isinstance(rate_limit, tuple) else 2
        for i in range(burst):
            m.handle(Event("t", i))
        assert seen == [0.0] * burst
        done = threading.Event()
        t = threading.Thread(target=lambda: (m.handle(Event("t", "late")), done.set()))
        t.start()
        assert not done.wait(0.05)  # waits for a token on the manual clock
        clock.advance(0.2)  # 1 token at 5/s
        assert done.wait(WAIT)
        t.join(WAIT)
        assert seen[-1] == pytest.approx(0.2) and len(seen) == burst + 1
    finally:
        lm.stop(timeout=0)


def test_async_rate_limit_waits_on_the_managers_clock_without_blocking_the_loop() -> None:
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    try:
        calls: list[float] = []

        async def lis(ev: Event) -> None:
            calls.append(clock.monotonic())

        m = lm.register(lis, ListenerConfig(rate_limit=(1.0, 1)), id="arl")

        async def main() -> None:
            await m.ahandle(Event("t", 1))
            waiter = asyncio.ensure_future(m.ahandle(Event("t", 2)))
            for _ in range(50):
                await asyncio.sleep(0.001)  # the loop keeps running meanwhile
            assert not waiter.done()
            clock.advance(1.0)
            await asyncio.wait_for(waiter, WAIT)

        asyncio.run(main())
        assert calls == [0.0, 1.0]
    finally:
        lm.stop(timeout=0)


def test_the_managers_loop_is_a_loop_thread_replaced_after_stop() -> None:
    lm = ListenerManager()

    async def lis(ev: Event) -> None:
        return None

    m = lm.register(lis, ListenerConfig(), id="a")
    assert m.run_inline(Event("t"))
    first = lm._loops
    assert isinstance(first, LoopThread) and first.started
    lm.stop(timeout=WAIT)
    assert first.closed and lm._loops is None and lm._loop is None
    assert m.run_inline(Event("t"))  # a fresh loop thread on the next use
    assert isinstance(lm._loops, LoopThread) and lm._loops is not first
    lm.stop(timeout=WAIT)


def test_thread_runner_grows_on_demand_up_to_its_bound_and_refuses_once_closed() -> None:
    runner = ThreadRunner("test-runner", 2)
    gate = threading.Event()
    started = threading.Semaphore(0)
    done: list[int] = []
    lock = threading.Lock()

    def task(i: int) -> None:
        started.release()
        gate.wait(WAIT)
        with lock:
            done.append(i)

    try:
        for i in range(5):
            runner.submit(lambda i=i: task(i))
        assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
        assert not started.acquire(timeout=0.05)  # two threads at most: the rest queue
        assert runner._threads == 2
        gate.set()
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            with lock:
                if len(done) == 5:
                    break
            time.sleep(0.005)
        assert sorted(done) == [0, 1, 2, 3, 4]
    finally:
        gate.set()
        runner.close()
    assert runner.closed
    with pytest.raises(PoolClosed, match="Expected an open runner"):
        runner.submit(lambda: None)


def _failing(ev: Event) -> None:
    raise ConnectionError("down")


@pytest.mark.parametrize("path", ["handle", "run_inline"])
def test_a_dead_letter_handler_raising_a_base_exception_is_counted_and_logged(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    """Through deadletter.send (the Bus's path too): a sink never kills the caller."""

    def handler(dl: DeadLetter) -> None:
        raise KeyboardInterrupt

    lm = ListenerManager(clock=ManualClock())
    try:
        m = lm.register(_failing, ListenerConfig(retry=RetryPolicy(max_attempts=1),
                                                 dead_letter=DeadLetterConfig(handler=handler)), id="dl")
        with caplog.at_level(logging.ERROR, logger="nova.listener"):
            if path == "handle":
                m.handle(Event("t"))
            else:
                assert m.run_inline(Event("t")) is False
        st = m.stats()
        assert (st.dead_lettered, st.dead_letter_errors) == (1, 1)
        assert any("dead-letter handler of listener 'dl' raised" in r.getMessage() for r in caplog.records)
    finally:
        lm.stop(timeout=0)


def test_inline_retries_go_through_the_retry_driver(caplog: pytest.LogCaptureFixture) -> None:
    """run_inline: delays from the policy on the manager's clock, retry_if errors logged
    and chained, the attempts counted."""
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    try:
        letters: list[DeadLetter] = []
        calls: list[float] = []

        def lis(ev: Event) -> None:
            calls.append(clock.monotonic())
            raise ValueError("no")

        def pred(exc: BaseException) -> bool:
            if len(calls) >= 2:
                raise RuntimeError("predicate bug")
            return True

        m = lm.register(lis, ListenerConfig(retry=RetryPolicy(max_attempts=5, initial_delay=0.0, retry_if=pred),
                                            dead_letter=DeadLetterConfig(handler=letters.append)), id="drv")
        with caplog.at_level(logging.ERROR, logger="nova.listener"):
            assert m.run_inline(Event("t")) is False
        assert len(calls) == 2
        assert len(letters) == 1 and letters[0].attempts == 2
        assert isinstance(letters[0].error.__context__, RuntimeError)
        assert m.stats().retried == 1
        assert any("retry_if of listener 'drv' raised" in r.getMessage() for r in caplog.records)
    finally:
        lm.stop(timeout=0)
