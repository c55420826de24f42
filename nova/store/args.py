"""The store's own argument checks: stream names, window bounds, name filters and
cursors (the generic ones are :mod:`nova._util.checks`).

Each raises at the call with "Expected <what>, got <what came>".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from nova.errors import ValidationError, type_name
from nova.events import to_timestamp_ns
from nova.store.bounds import parse_iso_ns
from nova.store.protocol import Cursor

__all__ = ("check_stream", "bound", "names", "cursor_position", "events_seq", "SYSTEM_PREFIX",
           "is_system", "check_include_system")

#: Streams whose name starts with this prefix are nova's own (dead letters, redrive acks,
#: audit records): ``replay``/``window``/``subscribe`` leave them out unless asked.
SYSTEM_PREFIX = "nova."


def check_stream(stream: object) -> None:
    """Refuse a stream name that is not a non-empty ``str`` (before any dict lookup,
    so an unhashable name gets this message too)."""
    if not isinstance(stream, str):
        raise TypeError(f"Expected a str stream name, got {type_name(stream)}")
    if not stream:
        raise ValidationError("Expected a non-empty str stream name, got ''")


def events_seq(events: object) -> Sequence[Any]:
    """The events given to ``append_many`` as a list or tuple (an iterable is read
    once into a list); the events themselves are checked by ``append``."""
    if isinstance(events, (list, tuple)):
        return events
    if not isinstance(events, Iterable):
        raise TypeError(f"Expected events as an iterable of Event, got {type_name(events)}")
    return list(events)


def bound(value: object, name: str) -> int | None:
    """A window bound as int ns (``None``: open): what Event accepts for a timestamp,
    or an ISO-8601 date-time with a zone."""
    if value is None:
        return None
    if type(value) is str:
        return parse_iso_ns(value, name)
    return to_timestamp_ns(value, name)


def names(value: object, what: str) -> list[str] | None:
    """*value* (None, a str or an iterable of str) as a list, checked at the call."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"Expected {what} as a str, an iterable of str or None, got {type_name(value)}")
    out = list(value)
    for name in out:
        if not isinstance(name, str):
            raise TypeError(f"Expected {what} as str names, got {type_name(name)}")
    return out


def cursor_position(cursor: object, stream: str | None) -> int:
    """The position after which a read or subscription of *stream* starts (0 for
    ``None``); the cursor must belong to *stream*."""
    if cursor is None:
        return 0
    if not isinstance(cursor, Cursor):
        raise TypeError(f"Expected a Cursor or None, got {type_name(cursor)}")
    if cursor.stream != stream:
        raise ValueError(f"Expected a cursor of stream {stream!r}, got one of {cursor.stream!r}")
    if isinstance(cursor.position, bool) or not isinstance(cursor.position, int) or cursor.position < 0:
        raise ValueError(f"Expected a cursor position as an int >= 0, got {cursor.position!r}")
    return cursor.position


def is_system(stream: str) -> bool:
    """True when *stream* is one of nova's system streams (its name starts with
    :data:`SYSTEM_PREFIX`, ``"nova."``)."""
    return stream.startswith(SYSTEM_PREFIX)


def check_include_system(value: object) -> bool:
    """*include_system* as a bool (refused at the call otherwise)."""
    if not isinstance(value, bool):
        raise TypeError(f"Expected include_system as a bool, got {type_name(value)}")
    return value
