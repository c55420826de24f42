"""The one set of argument checks every facade uses.

Each check returns the normalised value or raises at the call, with a message that says
what was expected and what came (``TypeError`` for a wrong kind, ``ValueError`` /
:class:`nova.errors.ValidationError` for a wrong value).  Durations are float seconds or
:class:`datetime.timedelta`; a timeout too long for a lock wait (``inf`` included) means
no limit, as ``None`` does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from nova.errors import ValidationError, type_name
from nova.testing import SYSTEM_CLOCK, to_seconds

__all__ = (
    "check_int",
    "check_positive_int",
    "check_opt_int",
    "check_duration",
    "check_timeout",
    "check_positive_timeout",
    "check_callable",
    "check_opt_callable",
    "check_clock",
    "now_fn",
    "check_name",
)


def check_int(value: object, name: str, minimum: int) -> int:
    """An int (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int >= {minimum}, got {type_name(value)}")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum}, got {value!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """An int (not a bool) ``> 0`` (sizes and capacities)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int > 0, got {type_name(value)}")
    if value <= 0:
        raise ValueError(f"Expected {name} > 0, got {value!r}")
    return value


def check_opt_int(value: object, name: str, minimum: int) -> int | None:
    """``None`` or an int ``>= minimum``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int or None, got {type_name(value)}")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum} or None, got {value!r}")
    return value


def check_duration(value: object, name: str, *, positive: bool = False, finite: bool = True) -> float:
    """A duration in seconds (``>= 0``; ``> 0`` with *positive*; finite unless told)."""
    seconds = to_seconds(value, name)  # type: ignore[arg-type]
    if finite and math.isinf(seconds):
        raise ValueError(f"Expected a finite {name}, got {value!r}")
    if positive and seconds <= 0:
        raise ValueError(f"Expected {name} > 0 seconds, got {value!r}")
    return seconds


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """A wait bound: ``None`` (no limit) or seconds ``>= 0``; one too long for a lock
    wait (``inf``, ``timedelta.max``) is no limit too."""
    if value is None:
        return None
    seconds = to_seconds(value, name)  # type: ignore[arg-type]
    return None if seconds >= threading.TIMEOUT_MAX else seconds


def check_positive_timeout(value: object, name: str = "timeout") -> float | None:
    """A per-call time budget: ``None`` or finite seconds ``> 0``."""
    if value is None:
        return None
    return check_duration(value, name, positive=True)


def check_callable(value: object, what: str) -> Callable[..., Any]:
    """A callable; *what* describes it (``"handler(event)"``)."""
    if not callable(value):
        raise TypeError(f"Expected a callable {what}, got {type_name(value)}")
    return value


def check_opt_callable(value: object, what: str) -> Callable[..., Any] | None:
    """``None`` or a callable; *what* describes it."""
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"Expected a callable {what} or None, got {type_name(value)}")
    return value


def check_clock(clock: object) -> Any:
    """The system clock for ``None``, else an object with ``monotonic()`` and ``sleep()``."""
    if clock is None:
        return SYSTEM_CLOCK
    if not (callable(getattr(clock, "monotonic", None)) and callable(getattr(clock, "sleep", None))):
        raise TypeError(f"Expected a clock with monotonic() and sleep(), got {type_name(clock)}")
    return clock


def now_fn(clock: Any) -> Callable[[], float]:
    """The fastest ``monotonic`` of *clock* (``time.monotonic`` itself for the system clock)."""
    import time

    return time.monotonic if clock is SYSTEM_CLOCK else clock.monotonic


def check_name(value: object, what: str, *, max_length: int | None = None) -> str:
    """A non-empty str (an event type, a topic, a stream name...); *what* names it."""
    if not isinstance(value, str):
        raise TypeError(f"Expected a str {what}, got {type_name(value)}")
    if not value:
        raise ValidationError(f"Expected a non-empty str {what}, got ''")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(
            f"Expected a {what} of at most {max_length} characters, got {len(value)} characters"
        )
    return value
