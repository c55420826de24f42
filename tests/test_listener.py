"""ListenerManager: retries on the scheduler, run_inline, dead letters, timeouts, health,
stats, metrics, limits, stop/restart and redrive.  Time is a ManualClock throughout."""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections import Counter
from typing import Any

import pytest

from nova import errors
from nova.events import Event
from nova.listener import (
    DEAD_LETTER_STREAM,
    Backoff,
    CircuitConfig,
    DeadLetter,
    DeadLetterConfig,
    Health,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.observability.metrics import SimpleMetricsCollector
from nova.testing import ManualClock

WAIT = 10.0  # real seconds: an upper bound for waits that should end at once


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def lm(clock: ManualClock) -> Any:
    m = ListenerManager(clock=clock)
    yield m
    m.stop(timeout=0)
    clock.advance(1e9)  # lets a scheduler thread parked in clock.sleep exit


class Flaky:
    """Fails the first *fail* calls per event, records call times on the clock."""

    def __init__(self, clock: ManualClock, fail: int, exc: type[Exception] = ValueError) -> None:
        self.clock = clock
        self.fail = fail
        self.exc = exc
        self.times: list[float] = []
        self.ok: list[Any] = []
        self.lock = threading.Lock()
        self.per_event: Counter[str] = Counter()
        self.id = "flaky"

    def handle(self, event: Event) -> None:
        with self.lock:
            self.times.append(self.clock.monotonic())
            self.per_event[event.id] += 1
            n = self.per_event[event.id]
        if n <= self.fail:
            raise self.exc(f"call {n} failed")
        with self.lock:
            self.ok.append(event)


def cfg(**kw: Any) -> ListenerConfig:
    kw.setdefault("circuit", CircuitConfig(enabled=False))
    return ListenerConfig(**kw)


# -- register / lookup -----------------------------------------------------------------------


def test_register_returns_managed_listener(lm: ListenerManager) -> None:
    def on_order(ev: Event) -> None:
        pass

    m = lm.register(on_order)
    assert m.managed is True and m.id.endswith("on_order") and m.is_async is False
    assert lm.get(m.id) is m and lm.listener_ids == (m.id,)
    with pytest.raises(errors.ValidationError, match="Expected a listener id not registered yet"):
        lm.register(on_order)
    m2 = lm.register(on_order, id="second")
    assert m2.id == "second"
    with pytest.raises(TypeError, match="already managed"):
        lm.register(m)
    with pytest.raises(TypeError, match="Expected config as a ListenerConfig, got dict"):
        lm.register(print, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected a callable"):
        lm.register(42)
    assert lm.unregister("second") is m2
    with pytest.raises(errors.ListenerNotFound, match="Expected a registered listener id, got 'second'"):
        lm.unregister("second")
    with pytest.raises(errors.ListenerNotFound):
        lm.process("nope", Event("a"))


def test_manager_bad_arguments() -> None:
    with pytest.raises(TypeError, match="Expected pool with a submit\\(\\) method or None, got int"):
        ListenerManager(pool=1)
    with pytest.raises(TypeError, match="Expected a MetricsCollector or None, got str"):
        ListenerManager(metrics="m")
    with pytest.raises(TypeError, match="Expected a clock with monotonic\\(\\) and sleep\\(\\), got object"):
        ListenerManager(clock=object())
    with pytest.raises(ValueError, match="Expected timeout >= 0 seconds"):
        ListenerManager().stop(timeout=-1)
    lm = ListenerManager()
    lm.register(lambda ev: None, id="x")
    with pytest.raises(TypeError, match="Expected a nova Event, got str"):
        lm.process("x", "not an event")
    with pytest.raises(TypeError, match="Expected a nova Event, got NoneType"):
        asyncio.run(lm.aprocess("x", None))
    with pytest.raises(TypeError, match="Expected an EventStore \\(with replay\\) to redrive from, got int"):
        lm.redrive(3)
    with pytest.raises(ValueError, match="Expected timeout >= 0 seconds"):
        lm.wait_idle(-1)
    with pytest.raises(TypeError, match="Expected timeout as float seconds or a timedelta, got str"):
        lm.wait_idle("1")
    assert lm.stats("x").calls == 0
    lm.stop()


# -- the Emitter path: handle() with scheduled retries ------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Backoff.FIXED, [0.0, 0.5, 1.0, 1.5]),
        (Backoff.LINEAR, [0.0, 0.5, 1.5, 3.0]),
        (Backoff.EXPONENTIAL, [0.0, 0.5, 1.5, 3.5]),
    ],
)
def test_handle_schedules_retries_at_exact_times(lm: ListenerManager, clock: ManualClock,
                                                 backoff: Backoff, expected: list[float]) -> None:
    flaky = Flaky(clock, fail=3)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=4, initial_delay=0.5, backoff=backoff)))
    assert m.handle(Event("a")) is None  # the failure is not raised to the caller
    assert flaky.times == [0.0]
    st = lm.stats()
    assert (st.calls, st.failed, st.pending, st.retried) == (1, 1, 1, 0)
    for _ in range(3):
        due = expected[len(flaky.times)]
        clock.advance(due - clock.monotonic() - 0.01)
        assert lm.wait_idle(WAIT)
        assert len(flaky.times) < 4 and flaky.times[-1] < due  # not yet
        clock.advance(0.01)
        assert lm.wait_idle(WAIT)
        assert flaky.times[-1] == pytest.approx(due)
    assert flaky.times == pytest.approx(expected)
    st = lm.stats()
    assert (st.calls, st.processed, st.failed, st.retried, st.pending, st.dead_lettered) == (4, 1, 3, 3, 0, 0)


def test_handle_does_not_block_other_events_while_retrying(lm: ListenerManager, clock: ManualClock) -> None:
    flaky = Flaky(clock, fail=1)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=5)))
    evs = [Event("a", i) for i in range(3)]
    for ev in evs:
        m.handle(ev)  # each first attempt fails and returns at once
    assert flaky.ok == [] and lm.stats().pending == 3
    assert lm.health() is Health.DEGRADED
    clock.advance(5)
    assert lm.wait_idle(WAIT)
    assert sorted(e.data for e in flaky.ok) == [0, 1, 2]
    assert lm.stats().pending == 0


def test_an_earlier_retry_is_not_stuck_behind_a_later_one(lm: ListenerManager, clock: ManualClock) -> None:
    slow = Flaky(clock, fail=1)
    fast = Flaky(clock, fail=1)
    fast.id = "fast"
    ms = lm.register(slow, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=10)))
    mf = lm.register(fast, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=1)))
    ms.handle(Event("a"))
    assert clock.wait_for_sleepers(1, WAIT)  # the scheduler sleeps toward t=10
    mf.handle(Event("b"))  # due at t=1: must not wait for t=10
    clock.advance(1)
    assert lm.wait_idle(WAIT)
    assert len(fast.ok) == 1 and slow.ok == []
    clock.advance(9)
    assert lm.wait_idle(WAIT)
    assert len(slow.ok) == 1 and lm.stats().pending == 0


def test_real_clock_scheduler_and_call_alias() -> None:
    lm = ListenerManager()  # the system clock: the scheduler waits on a condition
    calls: list[int] = []
    lock = threading.Lock()

    def flaky(ev: Event) -> None:
        with lock:
            calls.append(ev.data)
            n = calls.count(ev.data)
        if n < 3:
            raise ConnectionError("again")

    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002)))
    for i in range(5):
        m(Event("a", i))  # __call__ is handle
    assert lm.stop() == []  # drains: every retry ran
    st = lm.stats()
    assert (st.processed, st.retried, st.pending) == (5, 10, 0)
    assert not lm.running


def test_attempts_run_out_then_dead_letter(lm: ListenerManager, clock: ManualClock) -> None:
    letters: list[DeadLetter] = []
    flaky = Flaky(clock, fail=99)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=1),
                               dead_letter=DeadLetterConfig(handler=letters.append)))
    ev = Event("user.created", {"n": 1})
    m.handle(ev)
    clock.advance(1)
    assert lm.wait_idle(WAIT)
    clock.advance(2)
    assert lm.wait_idle(WAIT)
    assert len(letters) == 1
    dl = letters[0]
    assert dl.event is ev and dl.attempts == 3 and dl.listener_id == "flaky" and dl.topic == "user.created"
    assert isinstance(dl.error, ValueError) and str(dl.error) == "call 3 failed"
    assert isinstance(dl.timestamp, int) and dl.timestamp > 0
    st = lm.stats("flaky")
    assert (st.calls, st.failed, st.retried, st.dead_lettered, st.processed) == (3, 3, 2, 1, 0)


def test_non_retryable_error_is_dead_lettered_at_once(lm: ListenerManager, clock: ManualClock) -> None:
    letters: list[DeadLetter] = []
    flaky = Flaky(clock, fail=99, exc=KeyError)
    m = lm.register(flaky, cfg(retry=RetryPolicy(retry_on=(ConnectionError,)),
                               dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("a"))
    assert len(letters) == 1 and letters[0].attempts == 1 and isinstance(letters[0].error, KeyError)
    assert lm.stats().pending == 0


def test_retry_if_that_raises_stops_retrying(lm: ListenerManager, clock: ManualClock) -> None:
    letters: list[DeadLetter] = []

    def bad_predicate(exc: BaseException) -> bool:
        raise RuntimeError("predicate broke")

    m = lm.register(Flaky(clock, fail=9), cfg(retry=RetryPolicy(retry_if=bad_predicate),
                                              dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("a"))
    assert len(letters) == 1 and isinstance(letters[0].error.__context__, RuntimeError)


def test_base_exceptions_propagate(lm: ListenerManager) -> None:
    def interrupted(ev: Event) -> None:
        raise KeyboardInterrupt

    m = lm.register(interrupted, cfg())
    with pytest.raises(KeyboardInterrupt):
        m.handle(Event("a"))
    assert m._tokens is not None and m._tokens.qsize() == 10  # the token came back


# -- the Bus path: run_inline ----------------------------------------------------------------


def test_run_inline_sleeps_on_the_clock_between_attempts() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    flaky = Flaky(clock, fail=3)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=5, initial_delay=0.25)))
    assert m.run_inline(Event("a"), topic="orders") is True
    assert flaky.times == [0.0, 0.25, 0.75, 1.75]
    st = lm.stats()
    assert (st.calls, st.retried, st.processed, st.pending) == (4, 3, 1, 0)
    assert lm.stop() == []


def test_run_inline_blocks_the_caller_until_the_clock_moves(clock: ManualClock, lm: ListenerManager) -> None:
    flaky = Flaky(clock, fail=1)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=2)))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(m.run_inline(Event("a"))))
    t.start()
    assert clock.wait_for_sleepers(1, WAIT)
    assert flaky.times == [0.0] and result == []
    clock.advance(2)
    t.join(WAIT)
    assert result == [True] and flaky.times == [0.0, 2.0]


def test_run_inline_returns_false_when_dead_lettered() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    letters: list[DeadLetter] = []
    m = lm.register(Flaky(clock, fail=9), cfg(retry=RetryPolicy(max_attempts=2),
                                              dead_letter=DeadLetterConfig(handler=letters.append)))
    assert m.run_inline(Event("a"), topic="orders") is False
    assert letters[0].topic == "orders" and letters[0].attempts == 2
    assert lm.process("flaky", Event("b")) is False
    lm.stop()


# -- circuit breaker through the manager ---------------------------------------------------------


def test_open_circuit_rejects_fast_and_rejections_are_retried() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    letters: list[DeadLetter] = []
    calls: list[float] = []

    def always_fails(ev: Event) -> None:
        calls.append(clock.monotonic())
        raise ConnectionError("down")

    m = lm.register(always_fails, ListenerConfig(
        retry=RetryPolicy(max_attempts=4, initial_delay=1, backoff=Backoff.FIXED, retry_on=(ConnectionError,)),
        circuit=CircuitConfig(failure_threshold=2, success_threshold=1, timeout=10, window=60),
        dead_letter=DeadLetterConfig(handler=letters.append)))
    assert m.run_inline(Event("a")) is False
    # calls at t=0 and t=1 fail and open the breaker; attempts 3 and 4 are rejected
    assert calls == [0.0, 1.0]
    assert isinstance(letters[0].error, errors.CircuitOpen)
    assert "Expected a closed circuit for listener" in str(letters[0].error)
    assert letters[0].attempts == 4
    st = lm.stats()
    assert (st.calls, st.rejected, st.circuit_opened) == (2, 2, 1)
    assert lm.health() is Health.CIRCUIT_OPEN and lm.listener_health(m.id) is Health.CIRCUIT_OPEN
    lm.stop()


def test_breaker_closes_again_after_probes(clock: ManualClock, lm: ListenerManager) -> None:
    state = {"fail": True}

    def svc(ev: Event) -> None:
        if state["fail"]:
            raise ConnectionError("down")

    m = lm.register(svc, ListenerConfig(
        retry=RetryPolicy(max_attempts=1),
        circuit=CircuitConfig(failure_threshold=2, success_threshold=2, timeout=5, window=60)))
    m.handle(Event("a"))
    m.handle(Event("b"))
    assert m.breaker is not None and m.breaker.state.value == "open"
    m.handle(Event("c"))  # rejected
    assert lm.stats().rejected == 1
    state["fail"] = False
    clock.advance(5)
    m.handle(Event("d"))
    m.handle(Event("e"))
    assert m.breaker.state.value == "closed"
    st = lm.stats()
    assert (st.circuit_opened, st.circuit_half_opened, st.circuit_closed) == (1, 1, 1)
    assert st.processed == 2
    # the fast path is back: a success records without the breaker
    m.handle(Event("f"))
    assert lm.stats().processed == 3


def test_half_open_admits_one_probe_at_a_time(clock: ManualClock, lm: ListenerManager) -> None:
    state = {"fail": True}
    inside, release = threading.Event(), threading.Event()
    letters: list[DeadLetter] = []

    def svc(ev: Event) -> None:
        if state["fail"]:
            raise ConnectionError("down")
        if ev.data == "probe":
            inside.set()
            release.wait(WAIT)

    m = lm.register(svc, ListenerConfig(
        retry=RetryPolicy(max_attempts=1),
        circuit=CircuitConfig(failure_threshold=1, success_threshold=1, timeout=5, half_open_max_calls=1),
        dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("e", "first"))  # opens
    state["fail"] = False
    clock.advance(5)
    t = threading.Thread(target=m.handle, args=(Event("e", "probe"),))
    t.start()
    assert inside.wait(WAIT)  # the single probe is running
    m.handle(Event("e", "second"))  # no probe slot: rejected, dead-lettered (1 attempt)
    assert isinstance(letters[-1].error, errors.CircuitOpen) and letters[-1].event.data == "second"
    assert "every probe slot taken" in str(letters[-1].error)
    release.set()
    t.join(WAIT)
    assert m.breaker is not None and m.breaker.state.value == "closed"
    st = lm.stats()
    assert (st.rejected, st.processed, st.dead_lettered) == (1, 1, 2)


def test_a_cancelled_half_open_probe_gives_its_slot_back(clock: ManualClock, lm: ListenerManager) -> None:
    # A probe that ends without a result (cancelled) must not keep its slot: the breaker
    # would stay half-open with every slot taken, rejecting every call for ever.
    state = {"fail": True}

    async def svc(ev: Event) -> None:
        if state["fail"]:
            raise ConnectionError("down")
        if ev.data == "hang":
            await asyncio.Event().wait()

    m = lm.register(svc, ListenerConfig(
        retry=RetryPolicy(max_attempts=1),
        circuit=CircuitConfig(failure_threshold=1, success_threshold=1, timeout=5, half_open_max_calls=1),
        dead_letter=DeadLetterConfig(handler=lambda dl: None)))
    breaker = m.breaker
    assert breaker is not None

    async def main() -> None:
        await m.ahandle(Event("e", "first"))  # opens
        state["fail"] = False
        clock.advance(5)
        probe = asyncio.ensure_future(m.ahandle(Event("e", "hang")))
        while breaker._probes == 0:
            await asyncio.sleep(0)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        await m.ahandle(Event("e", "ok"))  # admitted as a probe, closes the breaker

    asyncio.run(main())
    assert breaker.state.value == "closed"
    assert lm.stats().rejected == 0


def test_a_base_exception_in_a_half_open_probe_gives_its_slot_back(clock: ManualClock,
                                                                   lm: ListenerManager) -> None:
    state = {"mode": "fail"}

    def svc(ev: Event) -> None:
        if state["mode"] == "fail":
            raise ConnectionError("down")
        if state["mode"] == "interrupt":
            raise KeyboardInterrupt

    m = lm.register(svc, ListenerConfig(
        retry=RetryPolicy(max_attempts=1),
        circuit=CircuitConfig(failure_threshold=1, success_threshold=1, timeout=5),
        dead_letter=DeadLetterConfig(handler=lambda dl: None)))
    m.handle(Event("e"))  # opens
    clock.advance(5)
    state["mode"] = "interrupt"
    with pytest.raises(KeyboardInterrupt):
        m.handle(Event("e"))  # the probe ends without a result
    state["mode"] = "ok"
    m.handle(Event("e"))
    assert m.breaker is not None and m.breaker.state.value == "closed"
    assert lm.stats().rejected == 0


def test_async_retry_cut_off_by_the_end_of_its_loop_runs_again_on_the_managers_loop(
        clock: ManualClock, lm: ListenerManager) -> None:
    # The retry runs on the caller's loop; asyncio.run ends while it is in flight and
    # cancels it.  The attempt had no result: it is run again on the manager's loop,
    # not dead-lettered with the CancelledError.
    letters: list[DeadLetter] = []
    calls: list[Any] = []
    started = threading.Event()
    user_loop: list[Any] = []

    async def flaky(ev: Event) -> None:
        calls.append(asyncio.get_running_loop())
        if len(calls) == 1:
            raise ConnectionError("down")
        if asyncio.get_running_loop() is user_loop[0]:
            started.set()
            await asyncio.Event().wait()  # cut off when asyncio.run ends

    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=1),
                               dead_letter=DeadLetterConfig(handler=letters.append)))

    async def main() -> None:
        user_loop.append(asyncio.get_running_loop())
        await m.handle(Event("a"))
        clock.advance(1)
        while not started.is_set():
            await asyncio.sleep(0.001)

    asyncio.run(main())
    assert lm.wait_idle(WAIT)
    st = lm.stats()
    assert letters == []
    assert len(calls) == 3 and calls[2] is not user_loop[0]
    assert (st.processed, st.dead_lettered, st.retried, st.pending) == (1, 0, 1, 0)


# -- timeouts -------------------------------------------------------------------------------------


def test_sync_timeout_on_the_clock_ignores_the_late_result(clock: ManualClock, lm: ListenerManager) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    letters: list[DeadLetter] = []

    def slow(ev: Event) -> None:
        started.set()
        release.wait(WAIT)
        finished.set()

    m = lm.register(slow, cfg(timeout=2.0, retry=RetryPolicy(max_attempts=1),
                              dead_letter=DeadLetterConfig(handler=letters.append)))
    t = threading.Thread(target=m.handle, args=(Event("a"),))
    t.start()
    assert started.wait(WAIT)
    clock.advance(1.999)
    assert lm.wait_idle(WAIT) and t.is_alive()
    clock.advance(0.001)
    t.join(WAIT)
    assert not t.is_alive()
    assert len(letters) == 1 and isinstance(letters[0].error, errors.Timeout)
    assert "to finish within 2s, got no result" in str(letters[0].error)
    release.set()
    assert finished.wait(WAIT)
    st = lm.stats()
    assert (st.timeouts, st.failed, st.processed, st.dead_lettered) == (1, 1, 0, 1)


def test_stop_keeps_serving_the_timeout_of_a_call_in_flight(clock: ManualClock, lm: ListenerManager) -> None:
    started, release = threading.Event(), threading.Event()
    letters: list[DeadLetter] = []
    m = lm.register(lambda ev: (started.set(), release.wait(WAIT)), cfg(
        timeout=1.0, retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=letters.append)))
    t = threading.Thread(target=m.handle, args=(Event("a"),))
    t.start()
    assert started.wait(WAIT)
    assert lm.stop(timeout=0) == []
    clock.advance(1.0)  # the timeout still fires after stop()
    t.join(WAIT)
    assert not t.is_alive() and isinstance(letters[0].error, errors.Timeout)
    release.set()


def test_sync_timeout_fast_call_and_error_pass_through(clock: ManualClock, lm: ListenerManager) -> None:
    seen: list[int] = []

    def quick(ev: Event) -> None:
        if ev.data == 2:
            raise ValueError("bad")
        seen.append(ev.data)

    letters: list[DeadLetter] = []
    m = lm.register(quick, cfg(timeout=1.0, retry=RetryPolicy(max_attempts=1),
                               dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("a", 1))
    m.handle(Event("a", 2))
    assert seen == [1] and isinstance(letters[0].error, ValueError)
    assert lm.stats().timeouts == 0


def test_sync_timeout_on_the_real_clock() -> None:
    lm = ListenerManager()
    release = threading.Event()
    letters: list[DeadLetter] = []
    m = lm.register(lambda ev: release.wait(WAIT), cfg(
        timeout=0.02, retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("a"))
    release.set()
    assert isinstance(letters[0].error, errors.Timeout)
    lm.stop()


def test_async_timeout_cancels_the_coroutine(clock: ManualClock, lm: ListenerManager) -> None:
    cancelled = threading.Event()
    letters: list[DeadLetter] = []

    async def hangs(ev: Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    m = lm.register(hangs, cfg(timeout=3.0, retry=RetryPolicy(max_attempts=1),
                               dead_letter=DeadLetterConfig(handler=letters.append)))
    assert m.is_async

    async def main() -> None:
        task = asyncio.ensure_future(m.handle(Event("a")))
        while lm._scheduler.pending == 0:  # the timeout timer is armed
            await asyncio.sleep(0)
        assert not task.done()
        clock.advance(3.0)
        await asyncio.wait_for(task, WAIT)

    asyncio.run(main())
    assert cancelled.is_set()
    assert isinstance(letters[0].error, errors.Timeout) and lm.stats().timeouts == 1


def test_async_timeout_on_the_real_clock() -> None:
    lm = ListenerManager()
    letters: list[DeadLetter] = []

    async def hangs(ev: Event) -> None:
        await asyncio.Event().wait()

    m = lm.register(hangs, cfg(timeout=0.01, retry=RetryPolicy(max_attempts=1),
                               dead_letter=DeadLetterConfig(handler=letters.append)))
    asyncio.run(m.ahandle(Event("a")))
    assert isinstance(letters[0].error, errors.Timeout)
    lm.stop()


# -- async listeners --------------------------------------------------------------------------------


def test_async_listener_retries_on_the_callers_loop(clock: ManualClock, lm: ListenerManager) -> None:
    loops: list[Any] = []
    attempts: list[int] = []
    done = threading.Event()

    async def flaky(ev: Event) -> None:
        loops.append(asyncio.get_running_loop())
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("again")
        done.set()

    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=1)))

    async def main() -> None:
        await m.handle(Event("a"))
        assert len(attempts) == 1
        clock.advance(1)
        while len(attempts) < 2:
            await asyncio.sleep(0.001)
        clock.advance(2)
        while not done.is_set():
            await asyncio.sleep(0.001)
        assert all(lp is asyncio.get_running_loop() for lp in loops)
        while lm.stats().pending:
            await asyncio.sleep(0.001)

    asyncio.run(main())
    st = lm.stats()
    assert (st.calls, st.retried, st.processed) == (3, 2, 1)


def test_async_listener_run_inline_and_aprocess() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    n = {"calls": 0}

    async def flaky(ev: Event) -> None:
        n["calls"] += 1
        if n["calls"] % 2:
            raise ValueError("odd")

    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=1)))
    assert m.run_inline(Event("a")) is True  # runs on the manager's loop thread
    assert asyncio.run(lm.aprocess(m.id, Event("b"))) is True
    assert n["calls"] == 4 and clock.monotonic() == 2.0
    assert lm.stats().processed == 2
    lm.stop()


# -- dead-letter store and redrive ----------------------------------------------------------------------


def test_dead_letters_go_to_the_store_and_redrive() -> None:
    from nova.store.memory import MemoryStore

    clock = ManualClock(auto_advance=True)
    store = MemoryStore()
    lm = ListenerManager(clock=clock)
    broken = {"on": True}
    handled: list[Event] = []

    def svc(ev: Event) -> None:
        if broken["on"]:
            raise ConnectionError(f"down for {ev.data}")
        handled.append(ev)

    lm.register(svc, cfg(retry=RetryPolicy(max_attempts=2), dead_letter=DeadLetterConfig(store=store)),
                id="svc")
    lm.register(lambda ev: None, cfg(), id="other")
    evs = [Event("order.placed", i, metadata={"customer": str(i)}) for i in range(3)]
    for ev in evs:
        assert lm.process("svc", ev, topic="orders") is False
    stored, _ = store.read(DEAD_LETTER_STREAM)
    assert [e.id for e in stored] == [e.id for e in evs]
    meta = stored[0].metadata
    assert meta["nova.error.type"] == "ConnectionError"
    assert meta["nova.error.message"] == "down for 0"
    assert meta["nova.attempts"] == "2" and meta["nova.listener"] == "svc" and meta["nova.topic"] == "orders"
    assert meta["customer"] == "0"
    broken["on"] = False
    with pytest.raises(errors.ListenerNotFound):
        lm.redrive(store, listener_id="missing")
    assert lm.redrive(store, listener_id="other").replayed == 0
    assert lm.redrive(store, start=evs[1].timestamp)[:3] == (2, 2, 0)
    assert handled == evs[1:]  # original type and metadata back, dead-letter keys removed
    assert handled[0].metadata == {"customer": "1"}
    report = lm.redrive(store)  # the two handled ones are acked: only the first runs
    assert (report.replayed, report.succeeded, report.skipped) == (1, 1, 2)
    assert lm.stats("svc").processed == 3
    lm.stop()
    store.close()


def test_dead_letter_handler_errors_are_counted_not_raised(lm: ListenerManager, clock: ManualClock) -> None:
    def bad_handler(dl: DeadLetter) -> None:
        raise RuntimeError("handler broke")

    class BadStore:
        def append(self, stream: str, *events: Any) -> int:
            raise OSError("disk full")

    m = lm.register(Flaky(clock, fail=9), cfg(retry=RetryPolicy(max_attempts=1),
                                              dead_letter=DeadLetterConfig(handler=bad_handler, store=BadStore())))
    m.handle(Event("a"))
    st = lm.stats()
    assert (st.dead_lettered, st.dead_letter_errors) == (1, 2)


def test_disabled_dead_letters_are_dropped_and_counted(lm: ListenerManager, clock: ManualClock) -> None:
    called: list[DeadLetter] = []
    m = lm.register(Flaky(clock, fail=9), cfg(retry=RetryPolicy(max_attempts=1),
                                              dead_letter=DeadLetterConfig(enabled=False, handler=called.append)))
    m.handle(Event("a"))
    assert called == [] and lm.stats().dead_lettered == 1


def test_listener_on_error_hook_runs_on_dead_letter(lm: ListenerManager) -> None:
    from nova.events import FunctionListener

    seen: list[Any] = []

    def boom(ev: Event) -> None:
        raise ValueError("x")

    lis = FunctionListener(boom, id="boom", on_error=lambda ev, exc: seen.append((ev.data, str(exc))))
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=1)))
    m.handle(Event("a", 7))
    assert seen == [(7, "x")]


# -- health -----------------------------------------------------------------------------------------------


def test_health_rules(clock: ManualClock, lm: ListenerManager) -> None:
    assert lm.health() is Health.HEALTHY  # no listeners
    fail = {"on": False}

    def svc(ev: Event) -> None:
        if fail["on"]:
            raise ValueError("x")

    m = lm.register(svc, ListenerConfig(retry=RetryPolicy(max_attempts=1),
                                        circuit=CircuitConfig(failure_threshold=100, window=16.0)))
    for _ in range(5):
        m.handle(Event("a"))
    assert lm.health() is Health.HEALTHY
    fail["on"] = True
    m.handle(Event("a"))
    assert lm.health() is Health.DEGRADED  # a failure in the window
    for _ in range(3):
        m.handle(Event("a"))
    assert lm.health() is Health.DEGRADED  # 4 of 9 calls failed, under 10 calls
    m.handle(Event("a"))
    assert lm.listener_health(m.id) is Health.UNHEALTHY  # 5 of 10 failed
    clock.advance(17.0)  # the window forgets
    assert lm.health() is Health.HEALTHY
    fail["on"] = False
    for _ in range(10):
        m.handle(Event("a"))
    assert lm.health() is Health.HEALTHY
    assert "health=healthy" in repr(lm)


# -- limits ----------------------------------------------------------------------------------------------


def test_concurrency_bound(lm: ListenerManager) -> None:
    active = {"now": 0, "max": 0}
    lock = threading.Lock()
    gate = threading.Semaphore(0)
    entered = threading.Semaphore(0)

    def svc(ev: Event) -> None:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        entered.release()
        gate.acquire()
        with lock:
            active["now"] -= 1

    m = lm.register(svc, cfg(concurrency=2))
    threads = [threading.Thread(target=m.handle, args=(Event("a", i),)) for i in range(6)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=WAIT) and entered.acquire(timeout=WAIT)
    assert m._tokens is not None and m._tokens.qsize() == 0  # both tokens are taken
    for _ in range(6):
        gate.release()
    for t in threads:
        t.join(WAIT)
    assert active["max"] == 2 and lm.stats().processed == 6


def test_async_concurrency_bound() -> None:
    lm = ListenerManager()
    active = {"now": 0, "max": 0}

    async def svc(ev: Event) -> None:
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        active["now"] -= 1

    m = lm.register(svc, cfg(concurrency=3))

    async def main() -> None:
        await asyncio.gather(*(m.handle(Event("a", i)) for i in range(20)))

    asyncio.run(main())
    assert active["max"] == 3 and lm.stats().processed == 20
    lm.stop()


def test_async_gate_waiters_hold_no_threads_and_survive_cancellation() -> None:
    lm = ListenerManager()

    async def svc(ev: Event) -> None:
        await asyncio.to_thread(lambda: None)  # needs the loop's default executor

    m = lm.register(svc, cfg(concurrency=1))

    async def main() -> None:
        tasks = [asyncio.ensure_future(m.handle(Event("a", i))) for i in range(40)]
        await asyncio.sleep(0)
        tasks[5].cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
        assert tasks[5].cancelled()

    asyncio.run(main())
    assert lm.stats().processed == 39
    assert m._tokens is not None and m._tokens.qsize() == 1
    lm.stop()


def test_rate_limit_waits_on_the_clock() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    times: list[float] = []
    m = lm.register(lambda ev: times.append(clock.monotonic()), cfg(rate_limit=(10, 2)))
    for i in range(5):
        m.handle(Event("a", i))
    assert times == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    lm.stop()


def test_rate_limit_object_with_acquire(lm: ListenerManager) -> None:
    class Limiter:
        def __init__(self) -> None:
            self.n = 0

        def acquire(self, n: int = 1, timeout: float | None = None) -> None:
            self.n += n

    lim = Limiter()
    m = lm.register(lambda ev: None, cfg(rate_limit=lim))
    m.handle(Event("a"))
    m.run_inline(Event("b"))
    assert lim.n == 2


# -- metrics -----------------------------------------------------------------------------------------------


def test_metrics(clock: ManualClock) -> None:
    metrics = SimpleMetricsCollector()
    lm = ListenerManager(metrics=metrics, clock=clock)
    flaky = Flaky(clock, fail=1)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=1)))
    m.handle(Event("a"))  # fails -> dead letter
    m.handle(Event("a"))  # a new event id: fails too (first call per event)
    flaky.fail = 0
    m.handle(Event("b"))
    name = "nova_events_processed_total"
    assert metrics.value(name, listener="flaky", result="error") == 2
    assert metrics.value(name, listener="flaky", result="dead_letter") == 2
    assert metrics.value(name, listener="flaky", result="ok") == 1
    assert metrics.value("nova_listener_duration_seconds", listener="flaky")["count"] == 3
    lm.stop()


def test_breaker_transitions_reach_metrics(clock: ManualClock) -> None:
    metrics = SimpleMetricsCollector()
    lm = ListenerManager(metrics=metrics, clock=clock)
    flaky = Flaky(clock, fail=1)
    m = lm.register(flaky, ListenerConfig(
        retry=RetryPolicy(max_attempts=1),
        circuit=CircuitConfig(failure_threshold=2, success_threshold=1, timeout=5, window=60)))
    m.handle(Event("a"))
    m.handle(Event("a"))  # second failure inside the window: the breaker opens
    name = "nova_circuit_transitions_total"
    assert metrics.value(name, listener="flaky", state="open") == 1
    clock.advance(5)
    m.handle(Event("b"))  # the probe (first call of a new event id) fails: open again
    assert metrics.value(name, listener="flaky", state="half-open") == 1
    assert metrics.value(name, listener="flaky", state="open") == 2
    flaky.fail = 0
    clock.advance(5)
    m.handle(Event("c"))  # a successful probe closes it
    assert metrics.value(name, listener="flaky", state="closed") == 1
    s = lm.stats()
    assert (s.circuit_opened, s.circuit_half_opened, s.circuit_closed) == (2, 2, 1)
    lm.stop()


# -- lifecycle ----------------------------------------------------------------------------------------------


def test_stop_with_timeout_dead_letters_what_cannot_run(clock: ManualClock) -> None:
    lm = ListenerManager(clock=clock)
    letters: list[DeadLetter] = []
    flaky = Flaky(clock, fail=1)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=10),
                               dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("a", 1))
    assert lm.running
    out = lm.stop(timeout=5)  # the retry is due at t=10, after the deadline
    assert [d.event.data for d in out] == [1] and letters == out
    assert out[0].attempts == 1 and isinstance(out[0].error, ValueError)
    assert not lm.running and lm.stats().pending == 0
    # restartable: a new failure starts the scheduler again
    m.handle(Event("a", 2))
    assert lm.running
    clock.advance(10)
    assert lm.wait_idle(WAIT)
    assert [e.data for e in flaky.ok] == [2]
    assert lm.stop(timeout=0) == []
    clock.advance(1e9)


def test_stop_drains_retries_due_before_the_deadline(clock: ManualClock) -> None:
    lm = ListenerManager(clock=clock)
    flaky = Flaky(clock, fail=1)
    m = lm.register(flaky, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=1)))
    m.handle(Event("a"))
    result: list[list[DeadLetter]] = []
    t = threading.Thread(target=lambda: result.append(lm.stop()))
    t.start()
    clock.advance(1)
    t.join(WAIT)
    assert result == [[]] and len(flaky.ok) == 1
    clock.advance(1e9)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stop_from_inside_a_retry_does_not_wait_for_itself(kind: str) -> None:
    # A listener that stops its manager during a retry: stop() used to wait for every
    # running retry, its caller's too, and never returned.
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    calls: list[int] = []
    results: list[Any] = []
    returned = threading.Event()

    def body() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        results.append(lm.stop())
        returned.set()

    if kind == "sync":
        def lis(ev: Event) -> None:
            body()
    else:
        async def lis(ev: Event) -> None:  # type: ignore[misc]
            body()

    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=1)))
    if kind == "sync":
        m.handle(Event("a"))
    else:
        asyncio.run(m.handle(Event("a")))
    clock.advance(1)
    assert returned.wait(WAIT)
    assert results == [[]]
    assert lm.wait_idle(WAIT)
    st = lm.stats()
    assert (st.processed, st.retried, st.pending, st.dead_lettered) == (1, 1, 0, 0)
    assert lm.stop(timeout=0) == []
    clock.advance(1e9)


def test_context_manager_and_explicit_start() -> None:
    clock = ManualClock(auto_advance=True)
    with ListenerManager(clock=clock) as lm:
        lm.start()
        assert lm.running
        m = lm.register(Flaky(clock, fail=1), cfg(retry=RetryPolicy(max_attempts=2)))
        m.handle(Event("a"))
    assert not lm.running and lm.stats().processed == 1


def test_pool_runs_the_retries(clock: ManualClock) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ran_on: list[str] = []
    with ThreadPoolExecutor(2, thread_name_prefix="userpool") as pool:
        lm = ListenerManager(pool=pool, clock=clock)

        def svc(ev: Event) -> None:
            ran_on.append(threading.current_thread().name)
            if len(ran_on) == 1:
                raise ValueError("first")

        m = lm.register(svc, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=1)))
        m.handle(Event("a"))
        clock.advance(1)
        assert lm.wait_idle(WAIT)
        lm.stop(timeout=0)
        clock.advance(1e9)
    assert ran_on[1].startswith("userpool")


# -- many threads, exact counts ---------------------------------------------------------------------------


def _fails(ev: Event, n: int) -> bool:
    return zlib.crc32(f"{ev.id}:{n}".encode()) % 10 < 3  # 30% of calls


class ThirtyPercent:
    id = "thirty"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()

    def handle(self, ev: Event) -> None:
        with self.lock:
            self.calls[ev.id] += 1
            n = self.calls[ev.id]
        if _fails(ev, n):
            raise ConnectionError(f"flaky {n}")
        with self.lock:
            self.successes[ev.id] += 1


def _drive(lm: ListenerManager, clock: ManualClock, step: float) -> None:
    for _ in range(1000):
        if lm.stats().pending == 0:
            return
        clock.advance(step)
        assert lm.wait_idle(WAIT)
    raise AssertionError("retries never drained")


def test_100k_events_30_percent_failures_none_lost_none_doubled(clock: ManualClock) -> None:
    lm = ListenerManager(clock=clock)
    lis = ThirtyPercent()
    letters: list[DeadLetter] = []
    m = lm.register(lis, ListenerConfig(
        retry=RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=1.0),
        circuit=CircuitConfig(enabled=False),
        dead_letter=DeadLetterConfig(handler=letters.append)))
    events = [Event("tick", i) for i in range(100_000)]
    for ev in events:
        m.handle(ev)
    _drive(lm, clock, 0.1)
    st = lm.stats()
    dead = Counter(d.event.id for d in letters)
    assert st.processed + st.dead_lettered == 100_000
    assert st.processed == len(lis.successes) and st.dead_lettered == len(dead) == len(letters)
    assert all(v == 1 for v in lis.successes.values())  # none handled twice
    assert all(v == 1 for v in dead.values())
    assert not (set(dead) & set(lis.successes))  # never both
    assert set(dead) | set(lis.successes) == {e.id for e in events}  # none lost
    # every dead letter used all 3 attempts; the arithmetic of 30% failures holds
    assert all(d.attempts == 3 for d in letters)
    assert st.retried == st.calls - 100_000 and st.failed == st.calls - st.processed
    assert 0.27 < st.failed / st.calls < 0.33
    assert 0.015 < st.dead_lettered / 100_000 < 0.05
    lm.stop(timeout=0)
    clock.advance(1e9)


def test_many_threads_run_inline_exact_counts() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    lis = ThirtyPercent()
    results: Counter[bool] = Counter()
    lock = threading.Lock()
    m = lm.register(lis, ListenerConfig(
        concurrency=3, retry=RetryPolicy(max_attempts=3, initial_delay=0.01),
        circuit=CircuitConfig(enabled=False)))
    barrier = threading.Barrier(6)

    def partition(k: int) -> None:
        barrier.wait()
        for i in range(1000):
            ok = m.run_inline(Event("tick", (k, i)), topic=f"p{k}")
            with lock:
                results[ok] += 1

    threads = [threading.Thread(target=partition, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    st = lm.stats()
    assert results[True] == st.processed == len(lis.successes) == sum(lis.successes.values())
    assert results[False] == st.dead_lettered and results[True] + results[False] == 6000
    assert st.calls == sum(lis.calls.values()) and st.pending == 0
    lm.stop()


def test_many_threads_exact_counts(clock: ManualClock) -> None:
    lm = ListenerManager(clock=clock)
    lis = ThirtyPercent()
    letters: list[DeadLetter] = []
    lock = threading.Lock()

    def on_dead(dl: DeadLetter) -> None:
        with lock:
            letters.append(dl)

    m = lm.register(lis, ListenerConfig(
        concurrency=4,
        retry=RetryPolicy(max_attempts=4, initial_delay=0.05, backoff=Backoff.LINEAR),
        circuit=CircuitConfig(enabled=False),
        dead_letter=DeadLetterConfig(handler=on_dead)))
    per_thread = 1500
    barrier = threading.Barrier(8)

    def producer(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            m.handle(Event("tick", (k, i)))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    _drive(lm, clock, 0.05)
    st = lm.stats()
    total = 8 * per_thread
    assert st.processed + st.dead_lettered == total
    assert st.processed == sum(lis.successes.values()) == len(lis.successes)
    assert st.dead_lettered == len({d.event.id for d in letters}) == len(letters)
    assert st.calls == sum(lis.calls.values())
    lm.stop(timeout=0)
    clock.advance(1e9)
