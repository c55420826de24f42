"""The Event type, ids and time conversion (pure-Python twin, the specification).

An :class:`Event` is immutable apart from the contents of its ``metadata`` dict:
``id``, ``type``, ``timestamp`` and ``data`` are read-only attributes; use
:meth:`Event.replace` for a changed copy.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime
from typing import Any

from nova._core import timeconv
from nova._core._event_common import check_metadata as _check_metadata
from nova.errors import ValidationError

__all__ = ("Event", "new_id", "to_timestamp_ns", "now_ns")

_FIELDS = ("type", "data", "id", "timestamp", "metadata")



def now_ns() -> int:
    """Return the current wall-clock time as int nanoseconds since the epoch (UTC)."""
    return time.time_ns()


#: The one conversion, shared with the compiled twin and the stores.
to_timestamp_ns = timeconv.to_timestamp_ns


# ---------------------------------------------------------------------------------
# Ids: 32 lowercase hex chars = 12 (milliseconds since the epoch) + 10 (random node,
# redrawn after fork) + 10 (per-process counter).  Ids made in one process sort in
# creation order; across processes they sort by creation time to the millisecond.
# ---------------------------------------------------------------------------------


def _new_node() -> int:
    return int.from_bytes(os.urandom(5), "big")


_node = _new_node()
_counter = itertools.count(1)
_last_ms = 0


def _reseed_after_fork() -> None:
    global _node, _counter, _last_ms
    _node = _new_node()
    _counter = itertools.count(1)
    _last_ms = 0


os.register_at_fork(after_in_child=_reseed_after_fork)


def _next_id_parts(now: int) -> tuple[int, int, int]:
    global _last_ms
    ms = now // 1_000_000
    if ms < _last_ms:
        ms = _last_ms
    else:
        _last_ms = ms
    return ms, _node, next(_counter) & 0xFFFFFFFFFF


def _format_id(ms: int, node: int, seq: int) -> str:
    return f"{ms & 0xFFFFFFFFFFFF:012x}{node:010x}{seq:010x}"


def new_id() -> str:
    """Return a new event id: unique across threads and processes, time-sortable."""
    return _format_id(*_next_id_parts(time.time_ns()))


class Event:
    """An event: a typed, timestamped, uniquely identified piece of data.

    ``Event(type, data=None, *, id=None, timestamp=None, metadata=None)``

    Attributes:
        id: ``str``; a fresh time-sortable unique id when not given.
        type: non-empty ``str`` (e.g. ``"user.created"``).
        timestamp: ``int`` nanoseconds since the epoch (UTC); now when not given. Also
            accepts an aware ``datetime`` or ``numpy.datetime64`` at construction.
        data: any object (the payload).
        metadata: a plain ``dict[str, str]`` (trace context lives here).

    Events are equal when every field is equal; ``hash(event)`` is the hash of its id.
    They pickle, and :meth:`replace` makes a changed copy.

    Raises:
        ValidationError: empty or non-``str`` type or id, a bad timestamp (naive
            datetime, float, bool, ...), non-``str`` metadata keys or values.
    """

    __slots__ = ("_type", "_data", "_id", "_timestamp", "_metadata")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The compiled Event is a final type; the twin refuses subclasses the same way.
        raise TypeError(f"type '{__name__}.Event' is not an acceptable base type")

    def __init__(
        self,
        type: str,
        data: Any = None,
        *,
        id: str | None = None,
        timestamp: object = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(type, str) or not type:
            if isinstance(type, str):
                raise ValidationError("Expected a non-empty str event type, got ''")
            raise ValidationError(f"Expected a non-empty str event type, got {_tname(type)}")
        now = time.time_ns()
        if timestamp is None:
            ts = now
        else:
            ts = to_timestamp_ns(timestamp)
        if id is None:
            id = _format_id(*_next_id_parts(now))
        elif not isinstance(id, str) or not id:
            raise ValidationError(
                f"Expected a non-empty str event id, got {_tname(id) if not isinstance(id, str) else repr(id)}"
            )
        self._type = type
        self._data = data
        self._id = id
        self._timestamp = ts
        self._metadata = _check_metadata(metadata)

    @property
    def id(self) -> str:
        """The event id (``str``)."""
        return self._id

    @property
    def type(self) -> str:
        """The event type (non-empty ``str``)."""
        return self._type

    @property
    def timestamp(self) -> int:
        """Int nanoseconds since the epoch (UTC)."""
        return self._timestamp

    @property
    def data(self) -> Any:
        """The payload."""
        return self._data

    @property
    def metadata(self) -> dict[str, str]:
        """A plain ``dict[str, str]``; mutable (middleware may enrich it)."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    @property
    def datetime(self) -> datetime:
        """The timestamp as an aware UTC :class:`datetime.datetime`, floored to the
        microsecond."""
        return timeconv.ns_to_datetime(self._timestamp)

    def replace(self, **changes: Any) -> Event:
        """Return a copy with *changes* applied (``type``, ``data``, ``id``, ``timestamp``,
        ``metadata``).  The id is kept unless ``id`` is given.

        Raises:
            TypeError: an unknown field name.
            ValidationError: a changed field is invalid.
        """
        for k in changes:
            if k not in _FIELDS:
                raise TypeError(
                    f"replace() expected fields among {', '.join(_FIELDS)}, got {k!r}"
                )
        return Event(
            changes.get("type", self._type),
            changes.get("data", self._data),
            id=changes.get("id", self._id),
            timestamp=changes.get("timestamp", self._timestamp),
            metadata=changes["metadata"] if "metadata" in changes else self._metadata,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self._id == other._id
            and self._type == other._type
            and self._timestamp == other._timestamp
            and (self._metadata or {}) == (other._metadata or {})
            and bool(self._data == other._data)
        )

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        meta = f", metadata={self._metadata!r}" if self._metadata else ""
        return (
            f"Event(type={self._type!r}, data={self._data!r}, id={self._id!r}, "
            f"timestamp={self._timestamp}{meta})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._type, self._data, self._id, self._timestamp, self._metadata))


def _restore(type: str, data: Any, id: str, timestamp: int, metadata: dict[str, str] | None) -> Event:
    return Event(type, data, id=id, timestamp=timestamp, metadata=metadata)


def _tname(value: object) -> str:
    return type(value).__name__
