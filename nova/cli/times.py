"""Time arguments of the ``nova`` command: ISO-8601 with a zone, ``now-15m`` style
relative times, or int ns since the epoch.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
import time

from nova.errors import ValidationError
from nova.store.bounds import parse_iso_ns

__all__ = ("parse_time", "UNITS")

#: Relative-time units and their length in ns.
UNITS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*((?:\d+(?:ns|us|ms|s|m|h|d|w))+))?$")
_PART = re.compile(r"(\d+)(ns|us|ms|s|m|h|d|w)")
_HINT = "ISO-8601 with a zone (2024-01-01T09:00:00Z), now-15m style (units ns us ms s m h d w) or epoch ns"


def parse_time(text: str, now_ns: int | None = None, name: str = "time") -> int:
    """Int ns since the epoch of *text*.

    ``"2024-01-01T09:00:00Z"`` / ``"...+01:00"`` (nanoseconds kept), ``"now"``,
    ``"now-15m"``, ``"now-1h30m"``, ``"now+2d"``, or digits (epoch ns).  *now_ns*
    (default: the wall clock) anchors the relative forms.

    Raises:
        ValidationError: anything else ("Expected <name> as ..., got '...'").
    """
    if not isinstance(text, str):
        raise ValidationError(f"Expected {name} as text ({_HINT}), got {type(text).__name__}")
    t = text.strip()
    if t.isdigit():
        return int(t)
    m = _RELATIVE.match(t.lower())
    if m is not None:
        base = time.time_ns() if now_ns is None else now_ns
        if m.group(1) is None:
            return base
        offset = sum(int(n) * UNITS[u] for n, u in _PART.findall(m.group(2)))
        return base - offset if m.group(1) == "-" else base + offset
    if "T" in t.upper() and any(c.isdigit() for c in t):
        try:
            return parse_iso_ns(t, name)
        except ValidationError:
            pass
    raise ValidationError(f"Expected {name} as {_HINT}, got {text!r}")
