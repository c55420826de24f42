"""Copying events between stores: :func:`copy`.

``nova.store.copy(src, dst)`` saves a MemoryStore session into a SQLiteStore, loads a
file into memory, or moves events between any two :class:`~nova.store.EventStore`
implementations.  It pages through each stream with ``read`` (a bounded number of
events in memory at a time) and appends the pages with ``append_many``.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nova.store.args import check_include_system, is_system
from nova.store.bounds import bound_ns

__all__ = ("copy",)


def copy(
    src: Any,
    dst: Any,
    start: Any = None,
    end: Any = None,
    streams: str | Iterable[str] | None = None,
    *,
    batch_size: int = 10_000,
    include_system: bool = True,
) -> int:
    """Copy the events of *src* with ``start <= timestamp < end`` (``None``: open;
    the bounds ``window`` accepts, ISO-8601 strings included) of *streams* (``None``:
    every stream) to *dst*; return how many were copied.

    Each stream is copied in position order, at most *batch_size* events in memory at
    a time; events keep their id, type, timestamp, data and metadata, and take the
    next positions of the same stream in *dst*.  Streams are copied one after another
    (the global sequence across streams is not kept; use ``EventBatch`` +
    ``append_batch`` for an exact restore).

    Unlike ``replay``/``window``, ``streams=None`` copies nova's system streams
    (``"nova."`` names: dead letters, redrive acks, audit records) too, so a copy is
    a complete backup and a redrive from it skips what was already redriven;
    ``include_system=False`` leaves them out (a system stream named in *streams* is
    always copied).

    .. versionchanged:: 0.2 ``include_system``.

    Raises:
        TypeError: a store without ``read``/``streams``/``append_many``, bad *streams*,
            *batch_size* or *include_system*.
        ValidationError: a bad bound.
    """
    for store, name, need in ((src, "src", ("read", "streams")), (dst, "dst", ("append_many",))):
        if not all(callable(getattr(store, m, None)) for m in need):
            raise TypeError(f"Expected {name} as an EventStore, got {type(store).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TypeError(f"Expected batch_size as an int >= 1, got {batch_size!r}")
    check_include_system(include_system)
    s = bound_ns(start, "start")
    e = bound_ns(end, "end")
    if streams is None:
        names = [n for n in src.streams() if include_system or not is_system(n)]
    elif isinstance(streams, str):
        names = [streams]
    else:
        names = list(streams)
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"Expected streams as str names, got {type(n).__name__}")
    known = set(src.streams())
    copied = 0
    for name in names:
        if name not in known:
            continue
        cursor = None
        while True:
            events, cursor = src.read(name, cursor, batch_size)
            if not events:
                break
            if s is not None or e is not None:
                events = [ev for ev in events if (s is None or ev.timestamp >= s) and (e is None or ev.timestamp < e)]
            if events:
                dst.append_many(name, events)
                copied += len(events)
    return copied
