"""MemoryStore: the in-memory columnar event store.

Events are kept in a :class:`~nova._core.ColumnLog` (compiled when the kernels are
built): numeric columns in growable numpy arrays, the Events (or payloads) in an
object column.  Any timestamp window is found by binary search and returned as
zero-copy numpy views (:meth:`MemoryStore.window`) or as Events
(:meth:`MemoryStore.replay`).  Live subscriptions read the log itself, so history and
live appends join without gap or duplicate.  The store behaviour is
:class:`~nova.store.logstore.LogStore`'s; this module adds the kernel's lock-free
single append.

.. versionadded:: 0.1
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from nova import _core
from nova.errors import StoreClosed
from nova.store.logstore import LogStore
from nova.store.subscription import StoreSubscription

__all__ = ("MemoryStore", "StoreSubscription")


class MemoryStore(LogStore):
    """MemoryStore(max_events_per_stream=None, retention=None, *, on_full="evict_oldest",
    max_streams=None, clock=None, now_ns=None, sweep_interval=1.0, capacity=1024,
    kernel=None)

    An in-memory, thread-safe, columnar :class:`~nova.store.EventStore`.

    Args:
        max_events_per_stream: keep at most this many events per stream (``None``: no
            limit).  When a stream is full, ``on_full="evict_oldest"`` evicts its lowest
            positions to make room, ``on_full="reject"`` refuses the whole append with
            :class:`~nova.errors.StreamFull`.
        retention: a duration (float seconds or ``timedelta``): events whose timestamp
            is older than now minus it are dropped, by a background sweep every
            *sweep_interval* and, lazily, at every read.  ``None`` (or ``inf``): kept forever.
        max_streams: at most this many streams; an append to a new stream beyond it
            raises :class:`~nova.errors.StreamFull` (it is never merged into another).
        clock: what the background sweep sleeps with (``monotonic()``/``sleep()``;
            :class:`nova.testing.ManualClock` in tests).  ``None``: the system clock.
        now_ns: a callable giving wall-clock int ns since the epoch, which retention
            compares timestamps with (``None``: :func:`nova.events.now_ns`).
        sweep_interval: seconds between background sweeps (``None``: no background
            thread; retention is then applied at reads and by :meth:`sweep`).
        capacity: rows to allocate up front (storage grows by half when full).
        kernel: the ``ColumnLog`` class to store with (``None``: the active twin;
            the tests pass the compiled and the pure one in turn).

    Evicted positions are never reused.  Closing the store ends its subscriptions;
    every later call except :meth:`close` and :meth:`stats` raises
    :class:`~nova.errors.StoreClosed`.

    Raises:
        TypeError / ValueError: an argument of the wrong type or value.
    """

    def __init__(
        self,
        max_events_per_stream: int | None = None,
        retention: float | timedelta | None = None,
        *,
        on_full: str = "evict_oldest",
        max_streams: int | None = None,
        clock: Any = None,
        now_ns: Callable[[], int] | None = None,
        sweep_interval: float | timedelta | None = 1.0,
        capacity: int = 1024,
        kernel: Any = None,
    ) -> None:
        make = _core.ColumnLog if kernel is None else kernel
        super().__init__(
            lambda: make(capacity),
            max_events_per_stream=max_events_per_stream,
            retention=retention,
            on_full=on_full,
            max_streams=max_streams,
            clock=clock,
            now_ns=now_ns,
            sweep_interval=sweep_interval,
        )
        self._try_append = self._log.try_append
        if type(self).append is MemoryStore.append:
            # the same behaviour as MemoryStore.append, with no Python frame when one
            # event goes to an existing stream and nothing else must happen
            self.append = self._log.appender(_locked_append(weakref.ref(self)))  # type: ignore[method-assign]
            # a kept `store.append` outliving its store must not write to the orphan log
            weakref.finalize(self, _orphan, self._log)

    def append(self, stream: str, *events: Any) -> int:
        """Append *events* to *stream*; return the stream's last position.

        Every event is checked before any is stored (all or nothing).  With no event,
        returns the current last position (0 for an unknown stream) and stores nothing.
        One event to an existing stream takes the kernel's lock-free path when nothing
        else must happen (no limit, no blocking subscriber, nobody waiting).

        Raises:
            TypeError: *stream* is not a ``str``, or an item is not an
                :class:`~nova.events.Event`.
            ValidationError: an empty stream name.
            StreamFull: ``on_full="reject"`` and the stream is full, or
                ``max_streams`` is reached and *stream* is new.
            StoreClosed: the store is closed.
        """
        if len(events) == 1:
            pos: int = self._try_append(stream, events[0])
            if pos:
                return pos
        return self._append_locked(stream, *events)

    def __enter__(self) -> MemoryStore:
        return self


def _orphan(log: Any) -> None:
    """Called when a store is collected: its log takes no more fast appends."""
    log.fast = False


def _locked_append(ref: Any) -> Callable[..., int]:
    """``MemoryStore._append_locked`` through a weak reference, so the compiled
    appender bound to a store makes no reference cycle (a dropped store is freed at
    once, without waiting for the cyclic garbage collector)."""

    def append(stream: str, *events: Any) -> int:
        store = ref()
        if store is None:
            raise StoreClosed("Expected an open store, got one already collected")
        pos: int = store._append_locked(stream, *events)
        return pos

    return append
