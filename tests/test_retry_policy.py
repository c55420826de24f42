"""RetryPolicy, Backoff and the other listener value types: formulas and validation."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from nova.errors import CircuitOpen
from nova.listener import (
    Backoff,
    CircuitConfig,
    DeadLetter,
    DeadLetterConfig,
    Health,
    ListenerConfig,
    RetryPolicy,
)


def test_defaults() -> None:
    p = RetryPolicy()
    assert (p.max_attempts, p.initial_delay, p.max_delay, p.backoff, p.jitter) == (
        3, 0.1, 30.0, Backoff.EXPONENTIAL, 0.0)
    assert p.retry_on == (Exception,) and p.retry_if is None


def test_fixed_delays_exact() -> None:
    p = RetryPolicy(max_attempts=5, initial_delay=0.25, backoff=Backoff.FIXED)
    assert p.delays() == [0.25, 0.25, 0.25, 0.25]


def test_linear_delays_exact() -> None:
    p = RetryPolicy(max_attempts=6, initial_delay=0.5, max_delay=2.0, backoff=Backoff.LINEAR)
    assert p.delays() == [0.5, 1.0, 1.5, 2.0, 2.0]  # d*n, capped


def test_exponential_delays_are_exponential_not_quadratic() -> None:
    p = RetryPolicy(max_attempts=8, initial_delay=0.1, max_delay=5.0)
    assert p.delays() == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert [p.delay(n) for n in range(1, 8)] == [min(0.1 * 2 ** (n - 1), 5.0) for n in range(1, 8)]


def test_exponential_huge_attempt_is_capped_not_overflowing() -> None:
    p = RetryPolicy(max_attempts=5000, initial_delay=1.0, max_delay=60.0)
    assert p.delay(4999) == 60.0
    assert RetryPolicy(max_attempts=5000, initial_delay=0.0, max_delay=0.0).delay(4999) == 0.0
    # between 1025 and 1100 doublings 2.0 ** (n - 1) alone overflows a float
    for n in (1025, 1050, 1100, 1101):
        exact = 1e-300 * 2.0 ** 1000 * 2.0 ** (n - 1001)
        assert RetryPolicy(max_attempts=2000, initial_delay=1e-300, max_delay=1e300).delay(n) == exact
    assert RetryPolicy(max_attempts=2000, initial_delay=1.0, max_delay=1e300).delay(1025) == 1e300
    assert RetryPolicy(max_attempts=3000, initial_delay=5e-324, max_delay=1.0).delay(2000) == 1.0


def test_backoff_from_string_and_timedelta() -> None:
    p = RetryPolicy(backoff="LINEAR", initial_delay=timedelta(milliseconds=200), max_delay=timedelta(seconds=1))
    assert p.backoff is Backoff.LINEAR and p.initial_delay == 0.2 and p.max_delay == 1.0
    assert str(Backoff.FIXED) == "fixed"


def test_jitter_bounds_and_injected_random_source() -> None:
    p = RetryPolicy(max_attempts=4, initial_delay=1.0, max_delay=100.0, jitter=0.5)
    a = p.delays(random.Random(7))
    b = p.delays(random.Random(7))
    assert a == b
    for n, d in enumerate(a, start=1):
        base = 2.0 ** (n - 1)
        assert base * 0.5 <= d < base * 1.5

    class Fixed:
        def __init__(self, u: float) -> None:
            self.u = u

        def random(self) -> float:
            return self.u

    assert p.delay(3, Fixed(0.0)) == 2.0
    assert p.delay(3, Fixed(0.5)) == 4.0
    assert RetryPolicy(initial_delay=1.0, max_delay=100.0, jitter=0.5, rng=Fixed(0.75)).delay(2) == 2.5
    # jitter never exceeds max_delay
    capped = RetryPolicy(max_attempts=9, initial_delay=1.0, max_delay=4.0, jitter=1.0)
    assert capped.delay(8, Fixed(0.999)) == 4.0


def test_should_retry_counts_all_calls() -> None:
    p = RetryPolicy(max_attempts=3)
    assert p.should_retry(ValueError(), 1)
    assert p.should_retry(ValueError(), 2)
    assert not p.should_retry(ValueError(), 3)
    assert not RetryPolicy(max_attempts=1).should_retry(ValueError(), 1)


def test_retry_on_and_retry_if() -> None:
    p = RetryPolicy(retry_on=(ConnectionError, TimeoutError), retry_if=lambda e: "fatal" not in str(e))
    assert p.should_retry(ConnectionError("x"), 1)
    assert not p.should_retry(ConnectionError("fatal x"), 1)
    assert not p.should_retry(ValueError("x"), 1)
    # a single class is accepted; CircuitOpen is always retryable while attempts remain
    q = RetryPolicy(retry_on=KeyError, retry_if=lambda e: False)
    assert q.retry_on == (KeyError,)
    assert q.should_retry(CircuitOpen("open"), 1)
    assert not q.should_retry(CircuitOpen("open"), 3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        ({"max_attempts": 0}, ValueError, "Expected max_attempts >= 1, got 0"),
        ({"max_attempts": 2.0}, TypeError, "Expected max_attempts as an int >= 1, got float"),
        ({"max_attempts": True}, TypeError, "got bool"),
        ({"initial_delay": -1}, ValueError, "Expected initial_delay >= 0 seconds, got -1"),
        ({"initial_delay": "1"}, TypeError, "Expected initial_delay as float seconds or a timedelta, got str"),
        ({"max_delay": float("inf")}, ValueError, "Expected a finite max_delay"),
        ({"max_delay": 0.05}, ValueError, "Expected max_delay >= initial_delay (0.1), got 0.05"),
        ({"backoff": "quadratic"}, ValueError, "Expected backoff 'fixed', 'linear' or 'exponential', got 'quadratic'"),
        ({"backoff": 2}, TypeError, "Expected backoff as a Backoff, got int"),
        ({"jitter": 1.5}, ValueError, "Expected jitter in [0, 1], got 1.5"),
        ({"jitter": "x"}, TypeError, "Expected jitter as a float in [0, 1], got str"),
        ({"retry_on": int}, TypeError, "Expected retry_on as exception classes, got the class int"),
        ({"retry_on": (ValueError, 3)}, TypeError, "got an item of type int"),
        ({"retry_on": "ValueError"}, TypeError, "got str"),
        ({"retry_if": 3}, TypeError, "Expected retry_if as a callable or None, got int"),
        ({"rng": object()}, TypeError, "Expected rng with a random() method, got object"),
    ],
)
def test_retry_policy_validation(kwargs: dict, exc: type, msg: str) -> None:
    with pytest.raises(exc) as info:
        RetryPolicy(**kwargs)
    assert msg in str(info.value)


def test_delay_validates_attempt() -> None:
    p = RetryPolicy()
    with pytest.raises(ValueError, match="Expected attempt >= 1, got 0"):
        p.delay(0)
    with pytest.raises(TypeError, match="Expected attempt as an int >= 1, got float"):
        p.should_retry(ValueError(), 1.0)  # type: ignore[arg-type]


def test_policies_are_immutable_and_comparable() -> None:
    p = RetryPolicy(max_attempts=4)
    with pytest.raises(AttributeError):
        p.max_attempts = 5  # type: ignore[misc]
    assert p == RetryPolicy(max_attempts=4)


def test_circuit_config_validation() -> None:
    c = CircuitConfig(timeout=timedelta(seconds=2), window=timedelta(minutes=1))
    assert (c.timeout, c.window) == (2.0, 60.0)
    for kwargs, exc, msg in [
        ({"failure_threshold": 0}, ValueError, "Expected failure_threshold >= 1, got 0"),
        ({"success_threshold": 0}, ValueError, "Expected success_threshold >= 1, got 0"),
        ({"half_open_max_calls": 0}, ValueError, "Expected half_open_max_calls >= 1, got 0"),
        ({"window": 0}, ValueError, "Expected window > 0 seconds, got 0"),
        ({"timeout": -1}, ValueError, "Expected timeout >= 0 seconds, got -1"),
        ({"enabled": 1}, TypeError, "Expected enabled as a bool, got int"),
    ]:
        with pytest.raises(exc) as info:
            CircuitConfig(**kwargs)
        assert msg in str(info.value)


def test_dead_letter_config_validation() -> None:
    assert DeadLetterConfig().enabled is True
    with pytest.raises(TypeError, match="Expected handler as a callable or None, got int"):
        DeadLetterConfig(handler=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected store as an EventStore \\(with append\\) or None, got str"):
        DeadLetterConfig(store="mem")
    with pytest.raises(TypeError, match="Expected enabled as a bool, got NoneType"):
        DeadLetterConfig(enabled=None)  # type: ignore[arg-type]


def test_listener_config_validation() -> None:
    cfg = ListenerConfig(timeout=timedelta(milliseconds=500), rate_limit=(5, 2))
    assert cfg.timeout == 0.5 and cfg.concurrency == 10
    assert ListenerConfig(concurrency=None).concurrency is None
    for kwargs, exc, msg in [
        ({"concurrency": 0}, ValueError, "Expected concurrency >= 1, got 0"),
        ({"retry": 3}, TypeError, "Expected retry as a RetryPolicy, got int"),
        ({"circuit": {}}, TypeError, "Expected circuit as a CircuitConfig, got dict"),
        ({"dead_letter": None}, TypeError, "Expected dead_letter as a DeadLetterConfig, got NoneType"),
        ({"timeout": 0}, ValueError, "Expected timeout > 0 seconds, got 0"),
        ({"rate_limit": 0}, ValueError, "Expected rate_limit > 0 calls per second, got 0"),
        ({"rate_limit": "fast"}, TypeError, "Expected rate_limit as calls per second"),
        ({"rate_limit": (1, 2, 3)}, ValueError, "Expected rate_limit as a (rate, burst) pair"),
        ({"rate_limit": (1, 0)}, ValueError, "Expected rate_limit burst >= 1, got 0"),
    ]:
        with pytest.raises(exc) as info:
            ListenerConfig(**kwargs)
        assert msg in str(info.value)


def test_dead_letter_record_and_health_values() -> None:
    err = ValueError("x")
    dl = DeadLetter("ev", err, 3, "lid", "orders", 123)
    assert (dl.event, dl.error, dl.attempts, dl.listener_id, dl.topic, dl.timestamp) == (
        "ev", err, 3, "lid", "orders", 123)
    with pytest.raises(AttributeError):
        dl.attempts = 4  # type: ignore[misc]
    assert [h.value for h in Health] == ["healthy", "degraded", "unhealthy", "circuit-open"]
    assert Health("circuit-open") is Health.CIRCUIT_OPEN and str(Health.HEALTHY) == "healthy"


def test_module_all_is_a_tuple_of_defined_names() -> None:
    import nova
    import nova.listener as mod

    assert isinstance(mod.__all__, tuple)
    for name in mod.__all__:
        assert getattr(mod, name).__doc__ or name == "DEAD_LETTER_STREAM"
    for name in ("ListenerManager", "ListenerConfig", "RetryPolicy", "Backoff", "CircuitConfig",
                 "DeadLetterConfig", "DeadLetter", "Health"):
        assert getattr(nova, name) is getattr(mod, name)
