"""Issue 13: the circuit breaker's rule table (docs/resilience.md), each rule on a
ManualClock, the exception filters, automatic half-open, and breaker logging."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from nova.events import Event
from nova.listener import (
    CircuitBreaker,
    CircuitConfig,
    CircuitState,
    DeadLetterConfig,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.testing import ManualClock


def breaker(clock: ManualClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("timeout", 10.0)
    kw.setdefault("success_threshold", 1)
    return CircuitBreaker(CircuitConfig(**kw), clock)


def call(b: CircuitBreaker, ok: bool, duration: float = 0.0) -> None:
    assert b.allow()
    if ok:
        b.record_success(duration)
    else:
        b.record_failure(duration)


# -- defaults stay backward-compatible ---------------------------------------------------------


def test_defaults_are_the_old_count_rule() -> None:
    c = CircuitConfig()
    assert (c.failure_threshold, c.failure_rate, c.window, c.window_type) == (5, None, 60.0, "time")
    assert c.automatic_half_open and c.record_on == (Exception,) and c.ignore == ()
    assert CircuitConfig(failure_rate=0.5).failure_threshold is None  # the rate rule alone
    assert CircuitConfig(failure_rate=0.5, failure_threshold=3).failure_threshold == 3  # both


@pytest.mark.parametrize(("kw", "exc", "msg"), [
    ({"failure_rate": 0.0}, ValueError, "Expected failure_rate in (0, 1], got 0.0"),
    ({"failure_rate": 1.5}, ValueError, "Expected failure_rate in (0, 1], got 1.5"),
    ({"failure_rate": "x"}, TypeError, "Expected failure_rate as a fraction"),
    ({"minimum_calls": 0}, ValueError, "Expected minimum_calls >= 1, got 0"),
    ({"window_type": "calls"}, ValueError, "Expected window_type 'time' or 'count', got 'calls'"),
    ({"window_type": "count", "window": 2.5}, TypeError, "Expected window (a count of calls) as an int"),
    ({"slow_call_rate": 0.5}, ValueError, "Expected slow_call_duration with slow_call_rate"),
    ({"slow_call_duration": 0}, ValueError, "Expected slow_call_duration > 0 seconds"),
    ({"ignore": "ValueError"}, TypeError, "Expected ignore as an exception class"),
    ({"record_on": [KeyError, 3]}, TypeError, "Expected record_on as exception classes"),
    ({"record_if": 3}, TypeError, "Expected record_if as a callable or None, got int"),
    ({"automatic_half_open": 1}, TypeError, "Expected automatic_half_open as a bool, got int"),
])
def test_bad_rules_are_refused_at_the_call(kw: dict[str, Any], exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc) as info:
        CircuitConfig(**kw)
    assert msg in str(info.value)


# -- rule: failure_threshold (count), time window ----------------------------------------------


def test_failure_threshold_in_a_time_window() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=3, window=timedelta(seconds=5))
    call(b, False)
    clock.advance(3)
    call(b, False)
    clock.advance(3)  # the first failure left the window
    call(b, False)
    assert b.state is CircuitState.CLOSED
    call(b, False)
    assert b.state is CircuitState.OPEN
    assert b.reason.startswith("failure_threshold: 3 failures within 5s")


# -- rule: failure_rate + minimum_calls -----------------------------------------------------------


def test_failure_rate_waits_for_minimum_calls_then_opens_at_the_rate() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_rate=0.5, minimum_calls=4, window=10.0)
    call(b, False)
    call(b, False)
    call(b, False)  # 3 of 3 failed, but fewer than minimum_calls
    assert b.state is CircuitState.CLOSED
    call(b, True)  # 3 of 4 >= 0.5
    assert b.state is CircuitState.OPEN
    assert b.reason == "failure_rate: 3 of 4 calls failed in the last 10s (>= 0.5)"


def test_failure_rate_below_the_rate_never_opens_whatever_the_count() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_rate=0.5, minimum_calls=10, window=60.0)
    for i in range(1000):  # 1 in 3 fails: 333 failures, far above any count threshold
        call(b, i % 3 != 0)
        clock.advance(0.01)
    assert b.state is CircuitState.CLOSED
    assert b.transitions["opened"] == 0


def test_failure_rate_forgets_calls_older_than_the_time_window() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_rate=0.5, minimum_calls=4, window=16.0)
    for _ in range(3):
        call(b, False)
    clock.advance(17)  # those left the window
    for ok in (True, True, False, True):
        call(b, ok)
    assert b.state is CircuitState.CLOSED
    assert b.window_counts() == (4, 1, 0)


# -- rule: count-based window -------------------------------------------------------------------


def test_count_window_keeps_exactly_the_last_n_calls() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_rate=0.5, minimum_calls=4, window=4, window_type="count")
    for ok in (False, True, True, True, True):
        call(b, ok)  # the failure slid out after 4 more calls
    assert b.window_counts() == (4, 0, 0)
    clock.advance(10_000)  # time does not matter for a count window
    call(b, False)
    assert b.state is CircuitState.CLOSED  # 1 of 4
    call(b, False)  # 2 of 4 >= 0.5
    assert b.state is CircuitState.OPEN
    assert b.reason == "failure_rate: 2 of 4 calls failed in the last 4 calls (>= 0.5)"


def test_count_window_with_a_failure_threshold() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=2, window=3, window_type="count")
    for ok in (False, True, True, False):  # the first failure slid out
        call(b, ok)
    assert b.state is CircuitState.CLOSED
    call(b, False)
    assert b.state is CircuitState.OPEN


# -- rule: slow calls ------------------------------------------------------------------------------


def test_slow_successes_open_it_at_the_slow_call_rate() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=None, failure_rate=1.0, slow_call_duration=2.0,
                slow_call_rate=0.5, minimum_calls=4, window=60.0)
    call(b, True, 2.5)
    call(b, True, 0.1)
    call(b, True, 2.0)  # exactly the duration counts as slow
    assert b.state is CircuitState.CLOSED  # 3 calls < minimum_calls
    call(b, True, 0.1)  # 2 slow of 4
    assert b.state is CircuitState.OPEN
    assert b.reason.startswith("slow_call_rate: 2 of 4 calls were slow")


def test_a_slow_probe_reopens_a_half_open_breaker_with_a_slow_call_rule() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_rate=0.5, slow_call_duration=1.0, slow_call_rate=0.5, minimum_calls=2)
    call(b, False)
    call(b, False)
    assert b.state is CircuitState.OPEN
    clock.advance(10)
    call(b, True, 5.0)
    assert b.state is CircuitState.OPEN and b.reason == "probe slow"


# -- exception filters: record_on / ignore / record_if -------------------------------------------------


def test_record_on_ignore_and_record_if() -> None:
    c = CircuitConfig(record_on=(OSError, ValueError), ignore=(FileNotFoundError,),
                      record_if=lambda e: "fatal" not in str(e))
    assert c.records(ConnectionError("x"))
    assert not c.records(FileNotFoundError("x"))  # ignore wins over record_on
    assert not c.records(KeyError("x"))  # not in record_on
    assert not c.records(ValueError("fatal"))  # record_if says no


def test_an_ignored_error_is_neither_failure_nor_success_and_frees_the_probe() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=1, ignore=(PermissionError,), success_threshold=1)
    assert b.allow()
    assert not b.record_error(PermissionError("frozen"))
    assert b.state is CircuitState.CLOSED
    assert b.record_error(ConnectionError("down"))
    assert b.state is CircuitState.OPEN
    clock.advance(10)
    assert b.allow() and not b.allow()  # one probe slot, taken
    b.record_error(PermissionError("frozen"))  # ignored: the slot comes back, no close
    assert b.state is CircuitState.HALF_OPEN
    assert b.allow()


def test_a_raising_record_if_records_the_error(caplog: pytest.LogCaptureFixture) -> None:
    def bad(exc: BaseException) -> bool:
        raise RuntimeError("bug")

    b = breaker(ManualClock(), failure_threshold=1, record_if=bad)
    assert b.allow()
    with caplog.at_level(logging.ERROR, "nova.resilience"):
        assert b.record_error(ConnectionError("down"))
    assert b.state is CircuitState.OPEN
    assert "record_if of a circuit breaker raised" in caplog.text


# -- automatic half-open ---------------------------------------------------------------------------


def test_automatic_half_open_needs_no_call() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=1, timeout=5.0)
    call(b, False)
    clock.advance(5)
    assert b.state is CircuitState.HALF_OPEN
    assert b.transitions["half_opened"] == 1


def test_without_automatic_half_open_the_next_call_moves_it() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=1, timeout=5.0, automatic_half_open=False)
    call(b, False)
    clock.advance(50)
    assert b.state is CircuitState.OPEN and b.retry_after() == 0.0
    assert b.allow()
    assert b.state is CircuitState.HALF_OPEN


# -- user report 1 and the listener wiring (both twins) -------------------------------------------


def test_report_1_business_errors_never_open_the_breaker_for_others(core: Any) -> None:
    """Five PermissionError('account frozen') for one customer used to open the breaker
    and refuse the next healthy customer's event; with ignore=(PermissionError,) and a
    failure-rate rule, 3,000 events with one bad customer and a 5% error rate never
    open it, and every healthy event is handled."""
    import random

    clock = ManualClock()
    rng = random.Random(13)
    letters: list[Any] = []
    handled: list[str] = []

    def pay(ev: Event) -> None:
        clock.advance(0.002)
        if ev.data["customer"] == "frozen":
            raise PermissionError("account frozen")
        if rng.random() < 0.05:
            raise ConnectionError("gateway blip")
        handled.append(ev.id)

    lm = ListenerManager(clock=clock)
    lm.register(pay, ListenerConfig(
        retry=RetryPolicy(max_attempts=3, initial_delay=0.0, retry_on=(ConnectionError,)),
        circuit=CircuitConfig(failure_rate=0.5, minimum_calls=20, window=10.0, timeout=30.0,
                              ignore=(PermissionError,)),
        dead_letter=DeadLetterConfig(handler=letters.append)), id="payments")
    events = [Event("payment", {"customer": "frozen" if i % 10 == 0 else f"c{i}"}) for i in range(3000)]
    results = [lm.process("payments", ev) for ev in events]
    st = lm.stats("payments")
    assert st.circuit_opened == 0 and st.rejected == 0
    frozen = sum(1 for ev in events if ev.data["customer"] == "frozen")
    # business errors are not retried (retry_on) and go straight to dead letters
    assert results.count(False) == len(letters) >= frozen
    assert {type(d.error) for d in letters} <= {PermissionError, ConnectionError}
    assert sum(1 for d in letters if isinstance(d.error, PermissionError)) == frozen
    assert all(d.attempts == 1 for d in letters if isinstance(d.error, PermissionError))
    assert len(handled) == results.count(True)


def test_rate_rules_see_fast_path_successes(core: Any) -> None:
    # A success on the Emitter path (handle) must count as a recorded call for a rate rule.
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    fail = {"on": False}

    def lis(ev: Event) -> None:
        if fail["on"]:
            raise ConnectionError("down")

    m = lm.register(lis, ListenerConfig(
        retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=lambda d: None),
        circuit=CircuitConfig(failure_rate=0.5, minimum_calls=10, window=60.0)))
    for _ in range(10):
        m.handle(Event("t"))
    fail["on"] = True
    for _ in range(9):
        m.handle(Event("t"))
    assert m.breaker is not None and m.breaker.state is CircuitState.CLOSED  # 9 of 19
    m.handle(Event("t"))  # 10 of 20
    assert m.breaker.state is CircuitState.OPEN


def test_breaker_logging_debug_transitions_one_warning_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    lm = ListenerManager(clock=clock)

    def down(ev: Event) -> None:
        raise ConnectionError("down")

    m = lm.register(down, ListenerConfig(
        retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=lambda d: None),
        circuit=CircuitConfig(failure_threshold=1, success_threshold=1, timeout=1.0)), id="flappy")
    with caplog.at_level(logging.DEBUG, "nova.listener"):
        for _ in range(30):  # open, half-open, probe fails: 30 openings in 30 s
            m.handle(Event("t"))
            clock.advance(1.0)
    assert m.stats().circuit_opened == 30
    records = [r for r in caplog.records if r.name == "nova.listener"]
    warnings = [r for r in records if r.levelno == logging.WARNING and "opened" in r.getMessage()]
    assert len(warnings) == 1 and "failure_threshold" in warnings[0].getMessage()
    assert not [r for r in records if r.levelno == logging.INFO]
    assert sum(1 for r in records if r.levelno == logging.DEBUG and "->" in r.getMessage()) >= 59
    caplog.clear()
    clock.advance(60.0)
    with caplog.at_level(logging.WARNING, "nova.listener"):
        m.handle(Event("t"))
    warnings = [r for r in caplog.records if "opened" in r.getMessage()]
    assert len(warnings) == 1 and "29 more opening(s)" in warnings[0].getMessage()
