"""Issue 13 report 3: health computes the breaker state from time; half-open is DEGRADED
(not CIRCUIT_OPEN); health_detail() says which listener, which rule, since when."""

from __future__ import annotations

from typing import Any

from nova.events import Event
from nova.listener import (
    CircuitConfig,
    DeadLetterConfig,
    Health,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.testing import ManualClock


def test_report_3_health_turns_degraded_when_the_open_timeout_passes_with_no_traffic(core: Any) -> None:
    clock = ManualClock()
    lm = ListenerManager(clock=clock)

    def down(ev: Event) -> None:
        raise ConnectionError("down")

    lm.register(down, ListenerConfig(
        retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=lambda d: None),
        circuit=CircuitConfig(failure_threshold=2, timeout=30.0, window=10.0)), id="pay")
    lm.process("pay", Event("t"))
    lm.process("pay", Event("t"))
    assert lm.health() is Health.CIRCUIT_OPEN
    (d,) = lm.health_detail()
    assert (d.listener_id, d.health, d.since, d.retry_after) == ("pay", Health.CIRCUIT_OPEN, 0.0, 30.0)
    assert d.reason == "circuit open: failure_threshold: 2 failures within 10s"
    clock.advance(30.0)  # no call arrives
    assert lm.health() is Health.DEGRADED
    (d,) = lm.health_detail("pay")
    assert (d.health, d.reason, d.since) == (Health.DEGRADED, "circuit half-open: probing", 30.0)
    assert lm.stats("pay").circuit_half_opened == 1
    lm.stop()


def test_without_automatic_half_open_health_stays_open_until_a_call() -> None:
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    lm.register(lambda ev: None, ListenerConfig(
        circuit=CircuitConfig(failure_threshold=1, timeout=5.0, automatic_half_open=False)), id="x")
    br = lm.get("x").breaker
    assert br is not None
    br.allow()
    br.record_failure()
    clock.advance(100.0)
    assert lm.health() is Health.CIRCUIT_OPEN
    assert lm.process("x", Event("t"))
    assert lm.health() is Health.DEGRADED  # half-open: 1 of 3 probes succeeded
    lm.stop()


def test_healthy_detail_is_empty_reason() -> None:
    lm = ListenerManager(clock=ManualClock())
    lm.register(lambda ev: None, id="ok")
    assert [(d.health, d.reason) for d in lm.health_detail()] == [(Health.HEALTHY, "")]
