"""The EventStore protocol and the small value types every store backend returns.

* :class:`EventStore` — the protocol every backend implements.
* :class:`Cursor` — where a reader is in a stream: ``Cursor(stream, position, timestamp)``.
* :class:`StreamInfo`, :class:`StoreStats`, :class:`SubscriptionStats` — small records.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

from nova.store.batch import EventBatch

__all__ = (
    "Cursor",
    "EventStore",
    "StreamInfo",
    "StoreStats",
    "SubscriptionStats",
    "OVERFLOW_POLICIES",
    "ON_FULL_POLICIES",
)

#: What a live subscription does when its buffer is full.
OVERFLOW_POLICIES = ("block", "drop_oldest", "error")
#: What ``append`` does when a stream holds ``max_events_per_stream`` events.
ON_FULL_POLICIES = ("evict_oldest", "reject")


class Cursor(NamedTuple):
    """A place in a stream: the last event read.

    ``stream`` is the stream name (``None`` for a cursor over every stream, as given by
    a ``subscribe(None, ...)`` subscription: ``position`` is then the global sequence);
    ``position`` is the position of the last event read (0 = before the first event);
    ``timestamp`` is that event's timestamp (``None`` when nothing was read).
    """

    stream: str | None
    position: int
    timestamp: int | None = None


class StreamInfo(NamedTuple):
    """What a store knows about one stream.

    ``length``: events stored now; ``first_position`` / ``last_position``: positions of
    the oldest stored event (``None`` when none is stored) and of the last event ever
    appended (0 when none; positions are never reused); ``evicted``: events removed by
    retention or ``max_events_per_stream``.
    """

    stream: str
    length: int
    first_position: int | None
    last_position: int
    evicted: int


class StoreStats(NamedTuple):
    """Counters of a store: ``events`` stored now, ``streams``, ``appended`` since
    creation, ``evicted`` (retention and ``evict_oldest``), ``rejected`` (appends refused
    by ``on_full="reject"`` or ``max_streams``), live ``subscriptions``, ``blocked``
    (times an appender waited for a ``"block"`` subscriber), and ``memory_bytes`` (the
    store's own storage, not counting the payloads)."""

    events: int
    streams: int
    appended: int
    evicted: int
    rejected: int
    subscriptions: int
    blocked: int
    memory_bytes: int


class SubscriptionStats(NamedTuple):
    """Counters of one live subscription: ``delivered`` events, ``dropped`` by the
    ``"drop_oldest"`` policy, ``overflows`` (times the buffer overflowed), ``blocked``
    (times an appender waited on this subscriber), ``missed`` (events evicted from the
    store by retention or ``max_events_per_stream`` before the subscriber reached them),
    and ``backlog`` (live events appended but not yet taken)."""

    delivered: int
    dropped: int
    overflows: int
    blocked: int
    missed: int
    backlog: int


@runtime_checkable
class EventStore(Protocol):
    """What every event store implements (``MemoryStore``; durable and distributed
    backends later).  ``tests/store_conformance.py`` is its executable specification.

    * ``append(stream, *events) -> int`` — the last position in the stream (positions
      start at 1, are never reused); every event is validated before any is stored.
    * ``append_many(stream, events)`` and ``append_columns(stream, *, types,
      timestamps, data=None, ids=None)`` — batch forms, all or nothing.
    * ``read(stream, cursor=None, limit=None) -> (events, cursor)``.
    * ``replay(start, end, *, streams=None, types=None)`` — Events with
      ``start <= timestamp < end`` in (timestamp, sequence) order.
    * ``window(start, end, *, streams=None, types=None) -> EventBatch``.
    * ``subscribe(stream=None, cursor=None, *, buffer=1000, overflow="block")`` —
      history after the cursor, then live appends, no gap, no duplicate.
    * ``stream_info(stream)``, ``streams()``, ``stats()``, ``close()``, context manager.
    """

    def append(self, stream: str, *events: Any) -> int:
        """Append *events* to *stream*; return the stream's last position.

        Raises ValidationError (nothing stored) if any event is invalid, StreamFull when
        ``on_full="reject"`` and the stream is full, StoreClosed after close().
        """
        ...

    def append_many(self, stream: str, events: Iterable[Any]) -> int:
        """Append every event of *events* to *stream*, all or nothing; return the last position."""
        ...

    def append_columns(
        self, stream: str, *, types: Any, timestamps: Any, data: Any = None, ids: Any = None
    ) -> int:
        """Append rows given as columns (types, int64 ns timestamps, optional data and
        ids), all or nothing; return the stream's last position."""
        ...

    def read(
        self, stream: str, cursor: Cursor | None = None, limit: int | None = None
    ) -> tuple[list[Any], Cursor]:
        """Return up to *limit* events after *cursor* (None: the stream's start) and the
        cursor to continue from; past the end, no events and the same cursor."""
        ...

    def replay(
        self, start: Any = None, end: Any = None, *, streams: Any = None, types: Any = None
    ) -> Iterator[Any]:
        """Iterate the Events with ``start <= timestamp < end`` (None: open) in
        (timestamp, sequence) order, optionally only some streams and types."""
        ...

    def window(
        self, start: Any = None, end: Any = None, *, streams: Any = None, types: Any = None
    ) -> EventBatch:
        """Return the events of ``[start, end)`` as columns (an :class:`EventBatch`)."""
        ...

    def subscribe(
        self,
        stream: str | None = None,
        cursor: Cursor | None = None,
        *,
        buffer: int = 1000,
        overflow: str = "block",
    ) -> Any:
        """Follow *stream* (None: every stream): the history after *cursor*, then live
        appends, with no gap and no duplicate; a full buffer follows *overflow*
        (``"block"``, ``"drop_oldest"`` or ``"error"``)."""
        ...

    def stream_info(self, stream: str) -> StreamInfo:
        """Return the counts, positions and time range of *stream* (KeyError if unknown)."""
        ...

    def streams(self) -> list[str]:
        """Return the names of every stream ever appended to, in creation order."""
        ...

    def stats(self) -> StoreStats:
        """Return the store's counters (events, streams, evictions, memory...)."""
        ...

    def close(self) -> None:
        """Close the store: end its subscriptions; later calls raise StoreClosed. Idempotent."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

