"""CircuitBreaker: sliding window, open/half-open/closed transitions, probe limits."""

from __future__ import annotations

import threading

import pytest

from nova.listener import CircuitBreaker, CircuitConfig, CircuitState
from nova.testing import ManualClock


def make(clock: ManualClock, **kw: object) -> CircuitBreaker:
    cfg = {"failure_threshold": 3, "success_threshold": 2, "timeout": 10.0, "window": 5.0}
    cfg.update(kw)
    return CircuitBreaker(CircuitConfig(**cfg), clock)  # type: ignore[arg-type]


def fail(b: CircuitBreaker) -> None:
    assert b.allow()
    b.record_failure()


def test_opens_at_threshold_inside_window() -> None:
    clock = ManualClock()
    b = make(clock)
    fail(b)
    clock.advance(1)
    fail(b)
    assert b.state is CircuitState.CLOSED
    clock.advance(1)
    fail(b)
    assert b.state is CircuitState.OPEN
    assert not b.allow()
    assert b.retry_after() == 10.0
    assert b.transitions == {"opened": 1, "half_opened": 0, "closed": 0}


def test_sliding_window_forgets_old_failures() -> None:
    clock = ManualClock()
    b = make(clock)
    fail(b)
    clock.advance(3)
    fail(b)
    clock.advance(2.5)  # the first failure is now 5.5 s old: outside the 5 s window
    fail(b)
    assert b.state is CircuitState.CLOSED
    assert b.failures_in_window() == 2
    clock.advance(1)  # failures at 3.0 and 5.5 are inside; a third one opens
    fail(b)
    assert b.state is CircuitState.OPEN


def test_successes_do_not_hide_failures_in_the_window() -> None:
    clock = ManualClock()
    b = make(clock)
    for _ in range(3):
        assert b.state is CircuitState.CLOSED
        assert b.allow()
        b.record_success()
        fail(b)
    assert b.state is CircuitState.OPEN


def test_half_open_after_timeout_then_closes_after_success_threshold() -> None:
    clock = ManualClock()
    b = make(clock)
    for _ in range(3):
        fail(b)
    clock.advance(9.999)
    assert b.state is CircuitState.OPEN and not b.allow()
    clock.advance(0.001)
    assert b.state is CircuitState.HALF_OPEN
    assert b.allow()
    b.record_success()
    assert b.state is CircuitState.HALF_OPEN
    assert b.allow()
    b.record_success()
    assert b.state is CircuitState.CLOSED
    assert b.transitions == {"opened": 1, "half_opened": 1, "closed": 1}
    # closing forgets the old failures: one more failure does not re-open
    fail(b)
    assert b.state is CircuitState.CLOSED


def test_probe_failure_reopens() -> None:
    clock = ManualClock()
    b = make(clock)
    for _ in range(3):
        fail(b)
    clock.advance(10)
    assert b.allow()
    b.record_success()
    assert b.allow()
    b.record_failure()
    assert b.state is CircuitState.OPEN
    assert b.retry_after() == 10.0
    assert b.transitions["opened"] == 2


def test_half_open_admits_at_most_max_calls_at_a_time() -> None:
    clock = ManualClock()
    b = make(clock, half_open_max_calls=2, success_threshold=3)
    for _ in range(3):
        fail(b)
    clock.advance(10)
    assert b.allow() and b.allow()
    assert not b.allow()  # two probes in flight
    b.record_success()
    assert b.allow()  # a slot freed
    assert not b.allow()


def test_results_of_calls_admitted_before_a_transition_are_ignored() -> None:
    clock = ManualClock()
    b = make(clock, success_threshold=1)
    epoch_old = b._admit()  # a slow call starts while closed
    for _ in range(3):
        fail(b)
    clock.advance(10)
    assert b.state is CircuitState.HALF_OPEN
    b._record(True, epoch_old)  # finishes now: must not close the breaker
    assert b.state is CircuitState.HALF_OPEN


def test_zero_timeout_half_opens_immediately() -> None:
    clock = ManualClock()
    b = make(clock, timeout=0)
    for _ in range(3):
        fail(b)
    assert b.state is CircuitState.HALF_OPEN


def test_concurrent_failures_open_exactly_once() -> None:
    clock = ManualClock()
    b = make(clock, failure_threshold=50)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(100):
            if b.allow():
                b.record_failure()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert b.state is CircuitState.OPEN
    assert b.transitions == {"opened": 1, "half_opened": 0, "closed": 0}


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="Expected config as a CircuitConfig, got dict"):
        CircuitBreaker({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected a clock with monotonic\\(\\) and sleep\\(\\), got int"):
        CircuitBreaker(CircuitConfig(), 3)
    assert "closed" in repr(CircuitBreaker())
