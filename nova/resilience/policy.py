"""Retry, circuit and dead-letter policies: immutable value types, validated at construction.

* :class:`Backoff` — how the delay between attempts grows (FIXED, LINEAR, EXPONENTIAL).
* :class:`RetryPolicy` — how many calls, which errors are retried, and the delays.
* :class:`CircuitConfig` — the sliding-window circuit breaker's thresholds.
* :class:`DeadLetterConfig` — where events go whose attempts ran out.
* :class:`DeadLetter` — what a dead-letter handler receives.

The ListenerManager and the Bus both take these (and run them through
:mod:`nova.resilience.retry` and :mod:`nova.resilience.deadletter`).

Backoff formulas (``d`` = ``initial_delay``, ``n`` = the number of the call that
failed, 1 for the first call):

* FIXED: ``d``
* LINEAR: ``d * n``
* EXPONENTIAL: ``d * 2 ** (n - 1)``

each capped by ``max_delay``; then, with ``jitter = j > 0``, multiplied by a factor
drawn uniformly from ``[1 - j, 1 + j)`` and capped by ``max_delay`` again.

.. versionadded:: 0.1
"""

from __future__ import annotations

import enum
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nova._util.checks import check_duration, check_int
from nova.errors import CircuitOpen, type_name

__all__ = ("Backoff", "RetryPolicy", "CircuitConfig", "DeadLetterConfig", "DeadLetter")


class Backoff(str, enum.Enum):
    """How the delay between attempts grows; see the module docstring for formulas.

    The members are also their lower-case names as strings, and
    ``RetryPolicy(backoff="linear")`` is accepted.
    """

    FIXED = "fixed"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"

    def __str__(self) -> str:
        return self.value


def _check_exception_types(value: object) -> tuple[type[BaseException], ...]:
    if value == ():
        return ()
    if isinstance(value, type):
        if issubclass(value, BaseException):
            return (value,)
        raise TypeError(f"Expected retry_on as exception classes, got the class {value.__name__}")
    if isinstance(value, (tuple, list)):
        for item in value:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(
                    f"Expected retry_on as exception classes, got an item of type {type_name(item)}"
                )
        return tuple(value)
    raise TypeError(f"Expected retry_on as an exception class or a tuple of them, got {type_name(value)}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing listener call is retried.

    Args:
        max_attempts: calls in total, the first one included (``1`` = never retry).
        initial_delay: ``d`` in the backoff formulas, seconds or ``timedelta``.
        max_delay: the cap of every delay, seconds or ``timedelta``; ``>= initial_delay``.
        backoff: a :class:`Backoff` (or its name as a string).
        jitter: a fraction in ``[0, 1]``: each delay is multiplied by a factor drawn
            uniformly from ``[1 - jitter, 1 + jitter)`` (then capped again).
        retry_on: exception classes that may be retried (others are not).
        retry_if: optional predicate ``retry_if(exc) -> bool``; an error is retried only
            if it is an instance of ``retry_on`` *and* the predicate returns true.
        rng: optional random source for jitter: an object with ``random() -> float`` in
            ``[0, 1)`` (e.g. ``random.Random(seed)``); the module's ``random`` by default.

    :class:`nova.errors.CircuitOpen` is always retryable while attempts remain (the call
    did not run, the breaker may close), whatever ``retry_on`` and ``retry_if`` say.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``max_attempts < 1``, a negative or infinite delay,
            ``max_delay < initial_delay``, or ``jitter`` outside ``[0, 1]``.
    """

    max_attempts: int = 3
    initial_delay: float = 0.1
    max_delay: float = 30.0
    backoff: Backoff = Backoff.EXPONENTIAL
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_if: Callable[[BaseException], bool] | None = None
    rng: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        check_int(self.max_attempts, "max_attempts", 1)
        initial = check_duration(self.initial_delay, "initial_delay")
        maximum = check_duration(self.max_delay, "max_delay")
        if maximum < initial:
            raise ValueError(
                f"Expected max_delay >= initial_delay ({initial}), got {maximum}"
            )
        setattr_(self, "initial_delay", initial)
        setattr_(self, "max_delay", maximum)
        backoff = self.backoff
        if not isinstance(backoff, Backoff):
            if isinstance(backoff, str):
                try:
                    backoff = Backoff(backoff.lower())
                except ValueError:
                    raise ValueError(
                        f"Expected backoff 'fixed', 'linear' or 'exponential', got {self.backoff!r}"
                    ) from None
            else:
                raise TypeError(f"Expected backoff as a Backoff, got {type_name(backoff)}")
            setattr_(self, "backoff", backoff)
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"Expected jitter as a float in [0, 1], got {type_name(jitter)}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"Expected jitter in [0, 1], got {jitter!r}")
        setattr_(self, "jitter", float(jitter))
        setattr_(self, "retry_on", _check_exception_types(self.retry_on))
        if self.retry_if is not None and not callable(self.retry_if):
            raise TypeError(f"Expected retry_if as a callable or None, got {type_name(self.retry_if)}")
        if self.rng is not None and not callable(getattr(self.rng, "random", None)):
            raise TypeError(f"Expected rng with a random() method, got {type_name(self.rng)}")

    def base_delay(self, attempt: int) -> float:
        """The delay after the *attempt*-th failed call, before jitter (capped).

        Raises:
            TypeError/ValueError: *attempt* is not an int >= 1.
        """
        check_int(attempt, "attempt", 1)
        d = self.initial_delay
        if self.backoff is Backoff.FIXED:
            base = d
        elif self.backoff is Backoff.LINEAR:
            base = d * attempt
        else:
            # d * 2 ** (n - 1) overflows a float for huge n: the cap wins then.
            try:
                base = math.ldexp(d, attempt - 1)
            except OverflowError:
                base = math.inf
        return base if base < self.max_delay else self.max_delay

    def delay(self, attempt: int, rng: Any = None) -> float:
        """Seconds to wait after the *attempt*-th failed call, before call ``attempt + 1``.

        ``attempt`` starts at 1.  With jitter, the random source is *rng* if given, else
        the policy's ``rng``, else the :mod:`random` module.

        Raises:
            TypeError/ValueError: *attempt* is not an int >= 1.
        """
        base = self.base_delay(attempt)
        j = self.jitter
        if j == 0.0 or base == 0.0:
            return base
        source = rng if rng is not None else (self.rng if self.rng is not None else _random)
        value = base * (1.0 - j + 2.0 * j * source.random())
        return value if value < self.max_delay else self.max_delay

    def delays(self, rng: Any = None) -> list[float]:
        """Every delay this policy would wait, in order (``max_attempts - 1`` of them)."""
        return [self.delay(n, rng) for n in range(1, self.max_attempts)]

    def is_retryable(self, exc: BaseException) -> bool:
        """True if *exc* is of a kind this policy retries (ignoring the attempt count).

        An exception raised by ``retry_if`` propagates.
        """
        if isinstance(exc, CircuitOpen):
            return True
        if not isinstance(exc, self.retry_on):
            return False
        return self.retry_if is None or bool(self.retry_if(exc))

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """True if, after the *attempt*-th call failed with *exc*, another call is made.

        That is: ``attempt < max_attempts`` and :meth:`is_retryable` holds.

        Raises:
            TypeError/ValueError: *attempt* is not an int >= 1.
        """
        check_int(attempt, "attempt", 1)
        return attempt < self.max_attempts and self.is_retryable(exc)


def _check_rate(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected {name} as a fraction in (0, 1] or None, got {type_name(value)}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"Expected {name} in (0, 1], got {value!r}")
    return float(value)


def _check_types(value: object, name: str) -> tuple[type[BaseException], ...]:
    try:
        return _check_exception_types(value)
    except TypeError as exc:
        raise TypeError(str(exc).replace("retry_on", name)) from None


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    """The circuit breaker of one listener: a small table of named rules.

    Args:
        enabled: ``False`` turns the breaker off (every call runs).
        failure_threshold: the *count* rule: this many recorded failures inside the
            window open it.  Default 5, or ``None`` (rule off) when ``failure_rate`` is
            given without it; pass both to have both rules.
        failure_rate: the *rate* rule, a fraction in ``(0, 1]``: opens when recorded
            failures / recorded calls in the window reach it, once the window holds at
            least ``minimum_calls`` recorded calls.  ``None`` (default): rule off.
        minimum_calls: recorded calls the window must hold before a rate rule
            (``failure_rate``, ``slow_call_rate``) can open it.
        window: the sliding window: seconds (or ``timedelta``) with
            ``window_type="time"``, a number of calls with ``window_type="count"``.
        window_type: ``"time"`` (default; calls of the last ``window`` seconds) or
            ``"count"`` (the last ``window`` recorded calls).
        slow_call_duration: seconds from which a call is *slow*; ``None``: no call is.
        slow_call_rate: the *slow-call* rule: opens when slow calls (successes and
            failures) / recorded calls in the window reach this fraction, with at least
            ``minimum_calls`` recorded.  Needs ``slow_call_duration``.
        record_on: exception classes recorded as failures (default: every Exception).
        ignore: exception classes never recorded (checked first).
        record_if: optional predicate ``record_if(exc) -> bool``; an error is recorded
            only if it is a ``record_on`` instance, not an ``ignore`` one, and the
            predicate returns true.  A predicate that raises records the error (and is
            logged).  An error not recorded is *ignored*: it counts neither as a failure
            nor as a success (a half-open probe slot is given back) and still propagates
            to the retry and dead-letter logic.
        success_threshold: consecutive successful probes that close it from half-open.
        timeout: seconds it stays open before half-opening.
        half_open_max_calls: probes admitted at a time while half-open.
        automatic_half_open: ``True`` (default): the breaker is half-open as soon as
            ``timeout`` has passed, whoever asks (a call, ``state``, health, stats);
            ``False``: it stays open until the next call arrives.

    Durations are float seconds or ``timedelta``.  The rules are documented as a table
    in docs/resilience.md.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a threshold, ``minimum_calls`` or ``half_open_max_calls`` < 1, a rate
            outside ``(0, 1]``, a non-positive ``window`` or ``slow_call_duration``, a
            negative ``timeout``, ``window_type`` not ``"time"``/``"count"``, a
            fractional count window, ``slow_call_rate`` without ``slow_call_duration``.

    .. versionchanged:: 0.2
        ``failure_rate``, ``minimum_calls``, ``window_type``, ``slow_call_duration``,
        ``slow_call_rate``, ``record_on``, ``ignore``, ``record_if``,
        ``automatic_half_open``.
    """

    enabled: bool = True
    failure_threshold: int | None = None
    success_threshold: int = 3
    timeout: float = 30.0
    window: float = 60.0
    half_open_max_calls: int = 1
    failure_rate: float | None = None
    minimum_calls: int = 10
    window_type: str = "time"
    slow_call_duration: float | None = None
    slow_call_rate: float | None = None
    record_on: tuple[type[BaseException], ...] = (Exception,)
    ignore: tuple[type[BaseException], ...] = ()
    record_if: Callable[[BaseException], bool] | None = None
    automatic_half_open: bool = True

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        for name in ("enabled", "automatic_half_open"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Expected {name} as a bool, got {type_name(getattr(self, name))}")
        rate = _check_rate(self.failure_rate, "failure_rate")
        setattr_(self, "failure_rate", rate)
        if self.failure_threshold is None:
            if rate is None:
                setattr_(self, "failure_threshold", 5)
        else:
            check_int(self.failure_threshold, "failure_threshold", 1)
        check_int(self.success_threshold, "success_threshold", 1)
        check_int(self.half_open_max_calls, "half_open_max_calls", 1)
        check_int(self.minimum_calls, "minimum_calls", 1)
        setattr_(self, "timeout", check_duration(self.timeout, "timeout"))
        if self.window_type not in ("time", "count"):
            raise ValueError(f"Expected window_type 'time' or 'count', got {self.window_type!r}")
        if self.window_type == "count":
            check_int(self.window, "window (a count of calls)", 1)
        else:
            setattr_(self, "window", check_duration(self.window, "window", positive=True))
        if self.slow_call_duration is not None:
            setattr_(self, "slow_call_duration",
                     check_duration(self.slow_call_duration, "slow_call_duration", positive=True))
        slow_rate = _check_rate(self.slow_call_rate, "slow_call_rate")
        if slow_rate is not None and self.slow_call_duration is None:
            raise ValueError("Expected slow_call_duration with slow_call_rate, got slow_call_duration=None")
        setattr_(self, "slow_call_rate", slow_rate)
        setattr_(self, "record_on", _check_types(self.record_on, "record_on"))
        setattr_(self, "ignore", _check_types(self.ignore, "ignore"))
        if self.record_if is not None and not callable(self.record_if):
            raise TypeError(f"Expected record_if as a callable or None, got {type_name(self.record_if)}")

    def records(self, exc: BaseException) -> bool:
        """True if *exc* counts as a failure for the breaker (see ``record_on``,
        ``ignore``, ``record_if``).  A raising ``record_if`` propagates."""
        if isinstance(exc, self.ignore) or not isinstance(exc, self.record_on):
            return False
        return self.record_if is None or bool(self.record_if(exc))


@dataclass(frozen=True, slots=True)
class DeadLetterConfig:
    """Where an event goes when its attempts ran out or a non-retryable error stopped it.

    Args:
        enabled: ``False`` drops such events (they are still counted as failed).
        handler: ``handler(dead_letter: DeadLetter)``, called once per dead letter.  An
            exception it raises is counted (``stats().dead_letter_errors``), never
            propagated.
        store: an EventStore; the event is appended to stream ``"nova.deadletter"``
            with metadata ``nova.error.type``, ``nova.error.message``,
            ``nova.attempts``, ``nova.listener`` (and ``nova.topic`` when known).

    With neither handler nor store, enabled dead letters are counted
    (``stats().dead_lettered``, the ``dead_letter`` metric) and logged as a warning on
    the ``nova.listener`` logger; give a handler or a store to keep the events.

    Raises:
        TypeError: ``handler`` is not callable, or ``store`` has no ``append`` method.
    """

    enabled: bool = True
    handler: Callable[[DeadLetter], Any] | None = None
    store: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"Expected enabled as a bool, got {type_name(self.enabled)}")
        if self.handler is not None and not callable(self.handler):
            raise TypeError(f"Expected handler as a callable or None, got {type_name(self.handler)}")
        if self.store is not None and not callable(getattr(self.store, "append", None)):
            raise TypeError(
                f"Expected store as an EventStore (with append) or None, got {type_name(self.store)}"
            )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event that could not be handled.

    Attributes:
        event: the event.
        error: the last exception (a :class:`nova.errors.CircuitOpen` or
            :class:`nova.errors.Timeout` when the breaker or the timeout stopped it).
        attempts: how many calls were made (rejected-by-breaker calls included).
        listener_id: the id of the listener that failed.
        topic: the topic or event type it came through, ``None`` if unknown.
        timestamp: when it was dead-lettered, int ns since the epoch (UTC).
    """

    event: Any
    error: BaseException
    attempts: int
    listener_id: str
    topic: str | None
    timestamp: int
