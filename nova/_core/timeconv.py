"""Timestamps: the one place where a time value becomes int64 nanoseconds.

Both Event twins, both ColumnLog twins and the stores convert through this plain
module (it is the same code for compiled and pure), so a value is accepted or refused
identically everywhere: ``Event(timestamp=...)``, ``append_columns(timestamps=...)``
and window / replay bounds.

A timestamp is int nanoseconds since the epoch (UTC) within the int64 range, i.e.
from 1677-09-21T00:12:43.145224192 to 2262-04-11T23:47:16.854775807.  Accepted
forms: an ``int`` (numpy integers too), an aware :class:`datetime.datetime` (a pandas
``Timestamp`` keeps its nanoseconds), a :class:`numpy.datetime64` of any unit, and
for columns an int or datetime64 array of any unit.  Anything out of that range is a
:class:`~nova.errors.ValidationError` (numpy's own ``astype("datetime64[ns]")`` wraps
silently, so conversions here are checked before they are done).  Units finer than
a nanosecond are floored to the nanosecond, as numpy does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from nova.errors import ValidationError

__all__ = (
    "INT64_MIN",
    "INT64_MAX",
    "to_timestamp_ns",
    "datetime64_to_ns",
    "datetime64_array_to_ns",
    "timestamps_array",
    "check_bound",
    "ns_to_datetime",
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

TS_HELP = (
    "an int of nanoseconds since the epoch (UTC), an aware datetime "
    "or a numpy.datetime64"
)

#: Nanoseconds per numpy datetime unit (fixed-length units at or above 1 ns).
_UNIT_NS = {
    "W": 7 * 86_400 * 10**9,
    "D": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}
#: Units per nanosecond for the units finer than 1 ns (floored).
_SUB_NS = {"ps": 10**3, "fs": 10**6, "as": 10**9}


def _tname(value: object) -> str:
    return type(value).__name__


def _range_error(name: str, got: object) -> ValidationError:
    return ValidationError(
        f"Expected {name} within the int64 nanosecond range (1677-09-21 to 2262-04-11), got {got}"
    )


def _checked(ns: int, name: str, got: object) -> int:
    if not INT64_MIN <= ns <= INT64_MAX:
        raise _range_error(name, got)
    return ns


def _units_to_ns(v: int, unit: str, count: int, name: str, got: object) -> int:
    """*v* units of ``count * unit`` as exact (unbounded) int ns."""
    f = _UNIT_NS.get(unit)
    if f is not None:
        return v * count * f
    d = _SUB_NS.get(unit)
    if d is not None:
        return (v * count) // d
    if unit in ("Y", "M"):
        months = v * count * (12 if unit == "Y" else 1)
        y, m = divmod(months, 12)
        year = 1970 + y
        if not 1 <= year <= 9999:  # far beyond the int64 ns range either way
            raise _range_error(name, got)
        delta = datetime(year, m + 1, 1, tzinfo=timezone.utc) - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**9
    raise ValidationError(f"Expected {name} as a numpy.datetime64 with a time unit, got unit {unit!r}")


def datetime64_to_ns(value: np.datetime64, name: str = "timestamp") -> int:
    """A :class:`numpy.datetime64` of any unit as int ns (range-checked, floored
    below 1 ns).

    Raises:
        ValidationError: NaT, no unit, or out of the int64 ns range.
    """
    if np.isnat(value):
        raise ValidationError(f"Expected {name} as a valid numpy.datetime64, got NaT")
    unit, count = np.datetime_data(value.dtype)
    return _checked(_units_to_ns(int(value.astype(np.int64)), unit, count, name, repr(value)), name, repr(value))


def datetime64_array_to_ns(arr: np.ndarray, name: str = "timestamps") -> np.ndarray:
    """A 1-D datetime64 array of any unit as a new int64 array of ns (range-checked).

    Raises:
        ValidationError: a NaT, no unit, or a value out of the int64 ns range.
    """
    raw = arr.view(np.int64)
    if len(raw) and bool((raw == INT64_MIN).any()):
        raise ValidationError(f"Expected valid {name}, got NaT")
    unit, count = np.datetime_data(arr.dtype)
    if len(raw) == 0:
        return np.empty(0, dtype=np.int64)
    f = _UNIT_NS.get(unit)
    if f is not None:
        f *= count
        lo, hi = int(raw.min()), int(raw.max())
        if lo < -(2**63 // f) or hi > INT64_MAX // f:
            at = int(np.argmin(raw)) if lo < -(2**63 // f) else int(np.argmax(raw))
            raise _range_error(name, repr(arr[at]))
        out = raw.astype(np.int64)  # a copy
        if f != 1:
            out *= f
        return out
    if unit in _SUB_NS and count == 1:
        # coarser than the input: no overflow possible; numpy floors, as documented
        return arr.astype("datetime64[ns]").view(np.int64).copy()
    out = np.empty(len(raw), dtype=np.int64)
    for i, v in enumerate(raw.tolist()):
        out[i] = _checked(_units_to_ns(v, unit, count, name, repr(arr[i])), name, repr(arr[i]))
    return out


def to_timestamp_ns(value: object, name: str = "timestamp") -> int:
    """Convert *value* to int nanoseconds since the epoch (UTC).

    Accepts an ``int`` (numpy integers too), an aware :class:`datetime.datetime`
    (a pandas ``Timestamp`` keeps its nanoseconds) or a :class:`numpy.datetime64` of
    any unit.

    Raises:
        ValidationError: for a naive datetime, a float, a bool, NaT, a value out of
            the int64 nanosecond range, or any other type; the message says what to
            pass.
    """
    if isinstance(value, bool):
        raise ValidationError(f"Expected {name} as {TS_HELP}, got bool")
    if isinstance(value, (int, np.integer)):
        v = int(value)
        return _checked(v, name, v)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"Expected {name} as an aware datetime, got a naive datetime {value!r}; "
                "attach a zone, e.g. dt.replace(tzinfo=timezone.utc)"
            )
        ns_attr = getattr(value, "value", None)
        if isinstance(ns_attr, int) and hasattr(value, "nanosecond"):  # pandas.Timestamp
            return _checked(ns_attr, name, repr(value))
        try:
            delta: timedelta = value - EPOCH
        except OverflowError:
            raise _range_error(name, repr(value)) from None
        ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
        return _checked(ns, name, repr(value))
    if isinstance(value, np.datetime64):
        return datetime64_to_ns(value, name)
    if isinstance(value, float):
        raise ValidationError(
            f"Expected {name} as {TS_HELP}, got float {value!r}; "
            "for seconds pass int(seconds * 1_000_000_000)"
        )
    raise ValidationError(f"Expected {name} as {TS_HELP}, got {_tname(value)}")


def check_bound(value: object, name: str) -> int | None:
    """A kernel window / eviction bound: None, or an int in the int64 range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected {name} as an int of nanoseconds or None, got {_tname(value)}")
    v = int(value)
    return _checked(v, name, v)


def timestamps_array(timestamps: object, n: int | None = None) -> np.ndarray:
    """Return *timestamps* as a 1-D int64 array of ns (a copy when converted).

    Accepts an int or datetime64 (any unit) numpy array, or a sequence of what
    :func:`to_timestamp_ns` accepts.

    Raises:
        ValidationError: NaT, a value out of range or of a type Event refuses, a
            length different from *n*, or not 1-D.
    """
    if isinstance(timestamps, np.ndarray):
        arr = timestamps
    else:
        if not isinstance(timestamps, Sequence) or isinstance(timestamps, (str, bytes)):
            raise TypeError(
                f"Expected timestamps as a numpy array or a sequence, got {_tname(timestamps)}"
            )
        try:
            arr = np.asarray(timestamps)
        except (ValueError, TypeError, OverflowError):
            arr = np.asarray(timestamps, dtype=object)
    if arr.ndim != 1:
        raise ValidationError(f"Expected 1-D timestamps, got an array of shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValidationError(f"Expected {n} timestamps (one per event), got {len(arr)}")
    kind = arr.dtype.kind
    if len(arr) == 0:
        return np.empty(0, dtype=np.int64)
    if kind == "M":
        return datetime64_array_to_ns(arr, "timestamps")
    if kind == "i":
        return np.ascontiguousarray(arr, dtype=np.int64)
    if kind == "u":
        if int(arr.max()) > INT64_MAX:
            raise _range_error("timestamps", int(arr.max()))
        return arr.astype(np.int64)
    if kind == "b":
        raise ValidationError("Expected timestamps as ints of nanoseconds, got bool")
    if kind == "f":
        raise ValidationError(
            "Expected timestamps as ints of nanoseconds, got floats; "
            "for seconds pass (seconds * 1_000_000_000).astype('int64')"
        )
    out = np.empty(len(arr), dtype=np.int64)
    items: Any = arr.tolist() if kind != "O" else arr
    for i, v in enumerate(items):
        out[i] = to_timestamp_ns(v, "timestamps")
    return out


def ns_to_datetime(ns: int) -> datetime:
    """Int ns as an aware UTC :class:`datetime.datetime`, floored to the microsecond
    (so ``-1`` ns is 1969-12-31T23:59:59.999999, on both twins)."""
    return EPOCH + timedelta(microseconds=ns // 1_000)
