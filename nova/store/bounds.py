"""Window bounds: what ``window``/``replay`` accept for ``start`` and ``end`` in every
store — int ns since the epoch, an aware datetime, a numpy.datetime64 (what
:class:`~nova.events.Event` accepts), or an ISO-8601 string with a zone
(``"2024-01-01T00:00:00Z"``, ``"2024-01-01T01:00:00.123456789+01:00"``; nanoseconds kept).

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from nova.errors import ValidationError
from nova.events import to_timestamp_ns

__all__ = ("bound_ns", "parse_iso_ns")

_FRACTION = re.compile(r"^(?P<head>[^.,]+T\d{2}:\d{2}:\d{2})[.,](?P<frac>\d+)(?P<tail>.*)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_iso_ns(text: str, name: str = "bound") -> int:
    """Int ns since the epoch of an ISO-8601 date-time with a zone (``Z`` or ``±hh:mm``),
    fractional seconds to the nanosecond.

    Raises:
        ValidationError: not ISO-8601, or no zone (a naive time is ambiguous).
    """
    frac_ns = 0
    m = _FRACTION.match(text.strip())
    core = text.strip()
    if m is not None:
        digits = m.group("frac")
        if len(digits) > 9:
            raise ValidationError(f"Expected {name} with at most 9 fractional digits, got {text!r}")
        frac_ns = int(digits.ljust(9, "0"))
        core = m.group("head") + m.group("tail")
    try:
        dt = datetime.fromisoformat(core.replace("z", "Z").replace("Z", "+00:00") if core.endswith(("Z", "z")) else core)
    except ValueError as exc:
        raise ValidationError(f"Expected {name} as an ISO-8601 date-time with a zone, got {text!r}") from exc
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValidationError(
            f"Expected {name} as an ISO-8601 date-time with a zone (e.g. 'Z' or '+00:00'), got {text!r}"
        )
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + frac_ns


def bound_ns(value: object, name: str) -> int | None:
    """*value* as int ns (``None`` stays ``None``: an open side).

    Raises:
        ValidationError: a value Event would refuse, or a bad ISO-8601 string.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return parse_iso_ns(value, name)
    return to_timestamp_ns(value, name)
