"""MemoryStore: the in-memory columnar event store.

Events are kept in a :class:`~nova._core.ColumnLog` (compiled when the kernels are
built): numeric columns in growable numpy arrays, the Events (or payloads) in an
object column.  Any timestamp window is found by binary search and returned as
zero-copy numpy views (:meth:`MemoryStore.window`) or as Events
(:meth:`MemoryStore.replay`).  Live subscriptions read the log itself, so history and
live appends join without gap or duplicate.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from nova import _core
from nova._core import forksafe as _forksafe
from nova._util import atexit as _exit
from nova.errors import BufferFull, StoreClosed, StreamFull, Timeout, ValidationError
from nova.events import to_timestamp_ns
from nova.store.base import (
    ON_FULL_POLICIES,
    OVERFLOW_POLICIES,
    Cursor,
    EventBatch,
    StoreStats,
    StreamInfo,
    SubscriptionStats,
)
from nova.store.bounds import parse_iso_ns
from nova.testing import to_seconds

__all__ = ("MemoryStore", "StoreSubscription")

_log = logging.getLogger("nova.store")

_FETCH = 512
_INT64_MIN = -(2**63)


def _check_timeout(timeout: float | timedelta | None, name: str = "timeout") -> float | None:
    """None (no limit) or the duration in seconds; one too long for a lock wait (``inf``
    included) is no limit too."""
    if timeout is None:
        return None
    t = to_seconds(timeout, name)
    return None if t >= threading.TIMEOUT_MAX else t


def _tname(value: object) -> str:
    return type(value).__name__


def _check_stream(stream: object) -> None:
    """Refuse a stream name that is not a non-empty ``str`` (before any dict lookup,
    so an unhashable name gets this message too)."""
    if not isinstance(stream, str):
        raise TypeError(f"Expected a str stream name, got {_tname(stream)}")
    if not stream:
        raise ValidationError("Expected a non-empty str stream name, got ''")


def _bound(value: object, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is str:  # an ISO-8601 date-time with a zone
        return parse_iso_ns(value, name)
    return to_timestamp_ns(value, name)


def _opt_int(value: object, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int or None, got {_tname(value)}")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum} or None, got {value}")
    return value


def _wake_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryStore:
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
        self._limit = _opt_int(max_events_per_stream, "max_events_per_stream", 1)
        if on_full not in ON_FULL_POLICIES:
            raise ValueError(f"Expected on_full among {ON_FULL_POLICIES}, got {on_full!r}")
        self._on_full = on_full
        self._max_streams = _opt_int(max_streams, "max_streams", 1)
        self._retention_ns: int | None = None
        if retention is not None:
            seconds = to_seconds(retention, "retention")
            if seconds != float("inf"):  # an infinite retention keeps everything, as None
                self._retention_ns = int(round(seconds * 1e9))
        if clock is not None and not (callable(getattr(clock, "monotonic", None)) and callable(getattr(clock, "sleep", None))):
            raise TypeError(f"Expected a clock with monotonic() and sleep(), got {_tname(clock)}")
        self._clock = clock
        if now_ns is not None and not callable(now_ns):
            raise TypeError(f"Expected now_ns as a callable returning int ns, got {_tname(now_ns)}")
        self._now_ns: Callable[[], int] = now_ns if now_ns is not None else _core.now_ns
        interval = _check_timeout(sweep_interval, "sweep_interval")  # inf: no sweep, as None
        if interval is not None and interval <= 0:
            raise ValueError(f"Expected sweep_interval > 0 seconds or None, got {sweep_interval!r}")
        self._log = (_core.ColumnLog if kernel is None else kernel)(capacity)
        self._lock = self._log.mutex
        self._cond = threading.Condition(self._lock)
        self._try_append = self._log.try_append
        if type(self).append is MemoryStore.append:
            # the same behaviour as MemoryStore.append, with no Python frame when one
            # event goes to an existing stream and nothing else must happen
            self.append = self._log.appender(_locked_append(weakref.ref(self)))  # type: ignore[method-assign]
            # a kept `store.append` outliving its store must not write to the orphan log
            weakref.finalize(self, _orphan, self._log)
        self._closed = False
        self._codes: dict[str, int] = {}
        # weak: a subscription dropped without close() stops counting (and blocking)
        self._subs: weakref.WeakSet[StoreSubscription] = weakref.WeakSet()
        self._block_subs: weakref.WeakSet[StoreSubscription] = weakref.WeakSet()
        self._nwait = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._evicted = 0
        self._rejected = 0
        self._blocked = 0
        self._stop = threading.Event()
        self._exit_registered = False
        self._sweeper: threading.Thread | None = None
        self._refresh()
        _forksafe.track(self)
        if self._retention_ns is not None and interval is not None:
            self._sweeper = threading.Thread(
                target=_sweep_loop,
                args=(weakref.ref(self), self._stop, clock, interval),
                name="nova-store-sweep",
                daemon=True,
            )
            self._sweeper.start()
            self._register_exit()

    def _after_fork_in_child(self) -> None:
        """In a forked child (``nova._core.forksafe``; the log's mutex is re-created by
        the log itself): nobody waits on the store any more, so its condition and each
        subscription's consumer lock are re-created and the waiter counts cleared.  The
        events, streams and subscriptions are kept; the background sweep does not run
        in the child (retention is still applied at every read and by sweep())."""
        self._cond = threading.Condition(self._lock)
        self._nwait = 0
        self._async_waiters = []
        for sub in list(self._subs):
            sub._consumer = threading.Lock()
        self._refresh()

    # ------------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("Expected an open store, got a closed one")

    def _expire(self) -> None:
        """Apply retention now (lock held)."""
        if self._retention_ns is not None:
            # A retention longer than the time since the int64 minimum evicts nothing.
            cutoff = self._now_ns() - self._retention_ns
            if cutoff > _INT64_MIN:
                self._evicted += self._log.evict_before(cutoff)

    def _refresh(self) -> None:
        """Allow the kernel's lock-free single append only while nothing else must
        happen on an append: no limit, no blocking subscriber, nobody waiting (lock
        held)."""
        self._log.fast = (
            not self._closed and self._limit is None and not self._block_subs and not self._nwait
        )

    def _wake(self) -> None:
        """Wake subscribers waiting for appends (lock held)."""
        self._cond.notify_all()
        if self._async_waiters:
            waiters, self._async_waiters = self._async_waiters, []
            self._nwait -= len(waiters)
            self._refresh()
            for loop, fut in waiters:
                try:
                    loop.call_soon_threadsafe(_wake_future, fut)
                except RuntimeError:  # the loop was closed: nobody waits there any more
                    pass

    @staticmethod
    def _names(names: object, what: str) -> list[str] | None:
        """*names* (None, a str or an iterable of str) as a list, checked at the call."""
        if names is None:
            return None
        if isinstance(names, str):
            return [names]
        if not isinstance(names, Iterable):
            raise TypeError(f"Expected {what} as a str, an iterable of str or None, got {_tname(names)}")
        out = list(names)
        for name in out:
            if not isinstance(name, str):
                raise TypeError(f"Expected {what} as str names, got {_tname(name)}")
        return out

    def _stream_codes(self, names: list[str] | None) -> list[int] | None:
        """Codes of the known streams among *names* (lock held)."""
        if names is None:
            return None
        codes = self._codes
        return [codes[n] for n in names if n in codes]

    def _type_codes(self, names: list[str] | None) -> list[int] | None:
        """Codes of the known event types among *names* (lock held)."""
        if names is None:
            return None
        out = []
        for name in names:
            code = self._log.type_code(name, False) if name else -1
            if code >= 0:
                out.append(code)
        return out

    # ------------------------------------------------------------------ appends
    def append(self, stream: str, *events: Any) -> int:
        """Append *events* to *stream*; return the stream's last position.

        Every event is checked before any is stored (all or nothing).  With no event,
        returns the current last position (0 for an unknown stream) and stores nothing.

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

    def _append_locked(self, stream: str, *events: Any) -> int:
        """:meth:`append` through the store lock (limits, subscribers, new streams)."""
        _check_stream(stream)
        with self._lock:
            self._check_open()
            code = self._codes.get(stream)
            if code is None:
                if not events:
                    return 0
                code = self._new_stream(stream)
                pos = self._append_slow(code, events, None)
                self._codes[stream] = code
                return pos
            return self._append_slow(code, events, None)

    def append_many(self, stream: str, events: Iterable[Any]) -> int:
        """Append the Events of an iterable to *stream* (all or nothing); return the
        last position.  Same errors as :meth:`append`."""
        if not isinstance(events, (list, tuple)):
            if not isinstance(events, Iterable):
                raise TypeError(f"Expected events as an iterable of Event, got {_tname(events)}")
            events = list(events)
        return self.append(stream, *events)

    def append_columns(
        self,
        stream: str,
        *,
        types: Any,
        timestamps: Any,
        data: Any = None,
        ids: Any = None,
    ) -> int:
        """Append rows given as columns to *stream* (all or nothing); return the last
        position.

        *types*: one ``str`` for every row, or a sequence / numpy array of ``str``;
        *timestamps*: an int64 or datetime64 numpy array, or a sequence of what
        :class:`~nova.events.Event` accepts; *data*: a sequence of payloads (``None``:
        no payloads); *ids*: a sequence of non-empty ``str`` (``None``: the store
        derives unique, stable ids).  Replay turns these rows into new Events.

        Raises:
            TypeError / ValidationError: a column of the wrong kind, length or content.
            StreamFull, StoreClosed: as :meth:`append`.
        """
        _check_stream(stream)
        with self._lock:
            self._check_open()
            code = self._codes.get(stream)
            if code is None:
                code = self._new_stream(stream)
                pos = self._append_slow(code, None, (types, timestamps, data, ids))
                if pos:
                    self._codes[stream] = code
                return pos
            return self._append_slow(code, None, (types, timestamps, data, ids))

    def _new_stream(self, stream: str) -> int:
        """The kernel code for new *stream* (lock held).  It is registered in
        ``_codes`` only once an append to it succeeded, so a failed append leaves
        no trace."""
        _check_stream(stream)
        if self._max_streams is not None and len(self._codes) >= self._max_streams:
            self._rejected += 1
            raise StreamFull(
                f"Expected at most max_streams={self._max_streams} streams, got an append to a new stream {stream!r}"
            )
        return self._log.stream_code(stream)  # type: ignore[no-any-return]

    def _append_slow(self, code: int, events: Any, columns: Any) -> int:
        """Append with limits, blocking subscribers and wakeups (lock held)."""
        log = self._log
        if columns is not None:
            ts = columns[1]
            k = len(ts) if hasattr(ts, "__len__") else 1
        else:
            k = len(events)  # the kernel checks every item before storing any
        if k == 0:
            return log.stream_last_position(code)  # type: ignore[no-any-return]
        if self._block_subs:
            self._wait_for_room(code, k)
        if self._limit is not None and self._on_full == "reject":
            live = log.stream_info(code)[0]
            if live + k > self._limit:
                self._rejected += 1
                raise StreamFull(
                    f"Expected at most max_events_per_stream={self._limit} events in stream "
                    f"{log.stream_names()[code]!r}, got {live} stored + {k} appended"
                )
        if columns is not None:
            pos: int = log.append_columns(code, *columns)
        elif k == 1:
            pos = log.append_event(code, events[0])
        else:
            pos = log.append_events(code, events)
        if self._limit is not None:
            live = log.stream_info(code)[0]
            if live > self._limit:
                self._evicted += log.evict_oldest(code, live - self._limit)
        self._wake()
        return pos

    def _wait_for_room(self, code: int, k: int) -> None:
        """Block while a "block" subscriber of this stream has no room for k more
        live events (lock held; waiting releases it)."""
        counted: set[int] = set()
        while True:
            self._check_open()
            full = None
            for sub in self._block_subs:
                if sub._code == -2:
                    sub._head()
                if sub._code == -1 or sub._code == code:
                    backlog = sub._backlog()
                    if backlog > 0 and backlog + k > sub._buffer:
                        full = sub
                        break
            if full is None:
                return
            if id(full) not in counted:
                counted.add(id(full))
                full._blocked += 1
                self._blocked += 1
                self._cond.notify_all()  # lets observers see that an appender waits
            # Hold no reference while waiting: a subscription dropped without close()
            # is collected, and the periodic re-check then lets the append through.
            full = None
            self._cond.wait(1.0)

    # ------------------------------------------------------------------ reads
    def read(
        self, stream: str, cursor: Cursor | None = None, limit: int | None = None
    ) -> tuple[list[Any], Cursor]:
        """Read the events of *stream* after *cursor* (``None``: from the start), at
        most *limit* (``None``: all), in position order.  Returns the events and the
        cursor of the last one; reading past the end returns ``[]`` and the same cursor.

        Raises:
            TypeError / ValueError: a bad cursor (another stream's too) or limit.
            StoreClosed: the store is closed.
        """
        if not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name, got {_tname(stream)}")
        after = self._cursor_position(cursor, stream)
        limit = _opt_int(limit, "limit", 0)
        if cursor is None:
            cursor = Cursor(stream, 0, None)
        with self._lock:
            self._check_open()
            self._expire()
            code = self._codes.get(stream)
            if code is None or limit == 0:
                return [], cursor
            sl = self._log.stream_slice(code, after, limit)
        if len(sl) == 0:
            return [], cursor
        events = sl.events(0, len(sl))
        return events, Cursor(stream, int(sl.pos[-1]), int(sl.ts[-1]))

    @staticmethod
    def _cursor_position(cursor: object, stream: str | None) -> int:
        if cursor is None:
            return 0
        if not isinstance(cursor, Cursor):
            raise TypeError(f"Expected a Cursor or None, got {_tname(cursor)}")
        if cursor.stream != stream:
            raise ValueError(f"Expected a cursor of stream {stream!r}, got one of {cursor.stream!r}")
        if isinstance(cursor.position, bool) or not isinstance(cursor.position, int) or cursor.position < 0:
            raise ValueError(f"Expected a cursor position as an int >= 0, got {cursor.position!r}")
        return cursor.position

    def _slice(self, start: Any, end: Any, streams: Any, types: Any) -> Any:
        s = _bound(start, "start")
        e = _bound(end, "end")
        snl = self._names(streams, "streams")
        tnl = self._names(types, "types")
        with self._lock:
            self._check_open()
            if self._retention_ns is not None:
                self._expire()
            sc = self._stream_codes(snl)
            tc = self._type_codes(tnl)
            snames, tnames = self._log.name_lists()
            return self._log.window(s, e, sc, tc), snames, tnames

    def window(self, start: Any = None, end: Any = None, *, streams: Any = None, types: Any = None) -> EventBatch:
        """The events with ``start <= timestamp < end`` as an :class:`EventBatch`, in
        (timestamp, sequence) order.  Bounds accept what Event accepts for timestamps;
        ``None`` is open.  *streams* / *types*: a name or names to keep (``None``: all).

        O(log n) with zero-copy column views while the log is in time order and
        nothing inside the window was evicted; O(log n + k) otherwise.

        Raises:
            ValidationError: a bad bound.  TypeError: bad filters.
            StoreClosed: the store is closed.
        """
        sl, snames, tnames = self._slice(start, end, streams, types)
        return EventBatch(sl, snames, tnames)

    def replay(self, start: Any = None, end: Any = None, *, streams: Any = None, types: Any = None) -> Iterator[Any]:
        """Iterate the Events with ``start <= timestamp < end`` in (timestamp, sequence)
        order (a snapshot taken at the call; arguments are checked at the call).
        Events appended as Events come back as the same objects.

        Raises:
            ValidationError / TypeError / StoreClosed: as :meth:`window`.
        """
        sl, _, _ = self._slice(start, end, streams, types)
        return _iter_slice(sl)

    def stream_info(self, stream: str) -> StreamInfo:
        """What the store knows about *stream*.

        Raises:
            TypeError: *stream* is not a str.
            KeyError: no event was ever appended to *stream*.
            StoreClosed: the store is closed.
        """
        if not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name, got {_tname(stream)}")
        with self._lock:
            self._check_open()
            self._expire()
            code = self._codes.get(stream)
            if code is None:
                raise KeyError(f"Expected a stream with events, got unknown stream {stream!r}")
            live, first, last, evicted = self._log.stream_info(code)
        return StreamInfo(stream, live, first or None, last, evicted)

    def streams(self) -> list[str]:
        """The names of every stream ever appended to, in creation order.

        Raises:
            StoreClosed: the store is closed.
        """
        with self._lock:
            self._check_open()
            return list(self._codes)

    def stats(self) -> StoreStats:
        """A snapshot of the store's counters (works after close too)."""
        with self._lock:
            log = self._log
            return StoreStats(
                events=len(log),
                streams=len(self._codes),
                appended=log.last_seq,
                evicted=self._evicted,
                rejected=self._rejected,
                subscriptions=len(self._subs),
                blocked=self._blocked,
                memory_bytes=log.memory_bytes(),
            )

    # ------------------------------------------------------------------ retention
    def sweep(self) -> int:
        """Apply retention now; return how many events were evicted (0 without
        retention).

        Raises:
            StoreClosed: the store is closed.
        """
        with self._lock:
            self._check_open()
            before = self._evicted
            self._expire()
            return self._evicted - before

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        stream: str | None = None,
        cursor: Cursor | None = None,
        *,
        buffer: int = 1000,
        overflow: str = "block",
    ) -> StoreSubscription:
        """Follow *stream* (``None``: every stream, in append order): the events after
        *cursor* (``None``: from the start), then live appends, with no gap and no
        duplicate.  *stream* may not exist yet.

        *buffer* bounds the live events appended but not yet taken by the subscriber;
        when it is full, *overflow* decides: ``"block"`` makes appenders to the stream
        wait, ``"drop_oldest"`` drops the oldest of them (counted in
        ``stats().dropped``), ``"error"`` raises :class:`~nova.errors.BufferFull` in the
        subscriber (and ends the subscription).

        Raises:
            TypeError / ValueError: bad arguments.  StoreClosed: the store is closed.
        """
        if stream is not None and not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name or None, got {_tname(stream)}")
        if stream == "":
            raise ValidationError("Expected a non-empty str stream name or None, got ''")
        after = self._cursor_position(cursor, stream)
        if isinstance(buffer, bool) or not isinstance(buffer, int):
            raise TypeError(f"Expected buffer as an int, got {_tname(buffer)}")
        if buffer < 1:
            raise ValueError(f"Expected buffer >= 1, got {buffer}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Expected overflow among {OVERFLOW_POLICIES}, got {overflow!r}")
        with self._lock:
            self._check_open()
            sub = StoreSubscription(self, stream, after, buffer, overflow)
            self._subs.add(sub)
            self._register_exit()
            if overflow == "block":
                self._block_subs.add(sub)
                self._refresh()
        return sub

    def _detach(self, sub: StoreSubscription) -> None:
        """Remove *sub* (lock held)."""
        self._subs.discard(sub)
        if sub in self._block_subs:
            self._block_subs.discard(sub)
            self._refresh()
        self._cond.notify_all()
        self._wake()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the store: subscriptions end, blocked appenders get
        :class:`~nova.errors.StoreClosed`, the sweep stops.  Idempotent."""
        with self._lock:
            if not self._close_locked():
                return
        _exit.unregister(self)
        self._join_sweeper(None)

    def _close_locked(self) -> bool:
        """Close (lock held); False when it already was."""
        if self._closed:
            return False
        self._closed = True
        self._log.fast = False
        for sub in list(self._subs):
            sub._ended("store closed")
        self._subs.clear()
        self._block_subs.clear()
        self._cond.notify_all()
        self._wake()
        self._stop.set()
        return True

    def _join_sweeper(self, timeout: float | None) -> None:
        sweeper = self._sweeper
        # (a sweep sleeping on an injected clock cannot be woken: it ends at its next tick)
        if sweeper is not None and self._clock is None and sweeper is not threading.current_thread():
            sweeper.join(timeout)

    def _register_exit(self) -> None:
        """Have the store closed at interpreter exit (once it runs a sweeper thread or
        has subscriptions): nova._util.atexit, stage STAGE_STORAGE."""
        if not self._exit_registered:
            self._exit_registered = True
            _exit.register(self.close_at_exit, _exit.STAGE_STORAGE)

    def close_at_exit(self, timeout: float) -> None:
        """Called at interpreter exit with the seconds left of nova's exit budget: close
        the store as :meth:`close` does (ending its subscriptions, waking blocked
        appenders and waiters) and stop the sweeper, within *timeout*.  Appends are
        stored synchronously, so nothing accepted is pending; if the store's lock
        cannot be taken in time, a WARNING on the ``nova.store`` logger says so and the
        store is left to the (daemon) threads that hold it."""
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._lock.acquire(True, max(0.0, timeout)):
            _log.warning(
                "nova.store: %r not closed at interpreter exit: its lock was held for %.3f s",
                self, timeout,
            )
            return
        try:
            self._close_locked()
        finally:
            self._lock.release()
        self._join_sweeper(max(0.0, deadline - time.monotonic()))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<MemoryStore events={len(self._log)} streams={len(self._codes)} {state}>"




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


def _sweep_loop(ref: Any, stop: threading.Event, clock: Any, interval: float) -> None:
    """The background retention sweep.  It holds the store only weakly between
    sweeps, so a store dropped without close() is collected and the thread ends."""
    while not stop.is_set():
        if clock is None:
            if stop.wait(interval):
                return
        else:
            clock.sleep(interval)
        store = ref()
        if store is None:
            return
        with store._lock:
            if store._closed:
                return
            store._expire()
            store._cond.notify_all()
        del store


def _iter_slice(sl: Any) -> Iterator[Any]:
    n = len(sl)
    for i in range(0, n, 4096):
        yield from sl.events(i, i + 4096)


class StoreSubscription:
    """A live subscription to a :class:`MemoryStore` (what ``subscribe`` returns).

    Iterate it (``for ev in sub``, or ``async for ev in sub``) to get the history after
    the cursor and then live appends; iteration ends when the subscription or the store
    is closed.  :meth:`get` / :meth:`get_many` take events with a timeout.
    :attr:`cursor` is the place of the last event taken, to resume from later.

    The subscription reads the store's log itself (in batches of up to 512 events), so
    nothing is copied per subscriber and history joins live appends exactly.
    Thread-safe; one consumer at a time is the intended use.
    """

    def __init__(self, store: MemoryStore, stream: str | None, after: int, buffer: int, overflow: str) -> None:
        self._store = store
        self.stream = stream
        self._buffer = buffer
        self._overflow = overflow
        code = store._codes.get(stream) if stream is not None else -1
        self._code: int = -2 if code is None else code  # -2: the stream does not exist yet
        self._next = after + 1
        self._live_from = self._head() + 1
        self._skip: tuple[int, int] | None = None
        self._dq: deque[Any] = deque()
        self._consumer = threading.Lock()
        self._keys: Any = None
        self._tss: Any = None
        self._closed = False
        self.end_reason: str | None = None
        self._delivered = 0
        self._dropped = 0
        self._overflows = 0
        self._blocked = 0
        self._missed = 0
        self._base: tuple[int, int | None] = (after, None)

    # -- state (store lock held)
    def _head(self) -> int:
        log = self._store._log
        if self._code == -1:
            return log.last_seq  # type: ignore[no-any-return]
        if self._code == -2:
            code = self._store._codes.get(self.stream)  # type: ignore[arg-type]
            if code is None:
                return 0
            self._code = code
        return log.stream_last_position(self._code)  # type: ignore[no-any-return]

    def _backlog(self) -> int:
        return max(0, self._head() - max(self._next, self._live_from) + 1)

    def _ended(self, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self.end_reason = reason
            # Keep the cursor at the last event taken before dropping the untaken ones
            # (it is computed from what is left in the batch).
            cur = self.cursor
            self._base = (cur.position, cur.timestamp)
            self._keys = None
            self._tss = None
            self._dq.clear()

    def _fetch(self) -> Any:
        """Take the next events from the log (lock held); None when nothing new."""
        if self._store._retention_ns is not None:
            self._store._expire()  # an expired event is never delivered (counted as missed)
        head = self._head()
        backlog = head - max(self._next, self._live_from) + 1
        if backlog > self._buffer:
            self._overflows += 1
            if self._overflow == "error":
                self._ended("overflow")
                self._store._detach(self)
                raise BufferFull(
                    f"Expected the subscriber to keep up within buffer={self._buffer} events, "
                    f"got {backlog} live events not taken"
                )
            if self._overflow == "drop_oldest":
                cut = head - self._buffer  # live events up to and including cut are dropped
                first_live = max(self._next, self._live_from)
                self._dropped += cut - first_live + 1
                if self._next >= self._live_from:
                    self._next = cut + 1
                else:  # still in history: jump over the dropped range once there
                    a = self._live_from if self._skip is None else self._skip[0]
                    self._skip = (a, cut)
                self._live_from = cut + 1
        if self._code == -2:
            return None
        stop = None
        if self._skip is not None:
            a, b = self._skip
            if self._next >= a:
                self._next = max(self._next, b + 1)
                self._skip = None
            else:
                stop = a
        last_wanted = head if stop is None else min(head, stop - 1)
        if self._next > last_wanted:
            return None
        limit = min(_FETCH, last_wanted - self._next + 1)
        log = self._store._log
        if self._code == -1:
            sl = log.since_sequence(self._next - 1, limit)
            keys = sl.seq
        else:
            sl = log.stream_slice(self._code, self._next - 1, limit)
            keys = sl.pos
        if len(sl) and int(keys[-1]) > last_wanted:
            # evicted rows made the slice reach past the wanted range: cut it there
            n = int((keys <= last_wanted).sum())
            sl = _Head(sl, n)
            keys = keys[:n]
        if len(sl) == 0:
            # everything up to last_wanted was evicted before we got there
            self._missed += last_wanted - self._next + 1
            self._next = last_wanted + 1
            return None
        last = int(keys[-1])
        self._missed += (last - self._next + 1) - len(sl)
        self._next = last + 1
        if self._store._block_subs:
            self._store._cond.notify_all()
        return sl

    def _accept(self, sl: Any) -> None:
        """Make *sl* the pending batch (consumer lock held; outside the store lock:
        a slice is a snapshot)."""
        if self._keys is not None and len(self._keys):
            self._base = (int(self._keys[-1]), int(self._tss[-1]))
        events = sl.events(0, len(sl))
        self._keys = sl.seq if self._code == -1 else sl.pos
        self._tss = sl.ts
        self._delivered += len(events)
        self._dq.extend(events)

    def _take(self, timeout: float | None) -> bool:
        """Refill the pending batch, waiting up to *timeout* (None: forever).  Returns
        False when the subscription ended or the timeout passed with nothing new."""
        store = self._store
        cond = store._cond
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._consumer:
            if self._dq:
                return True  # another consumer thread refilled it
            with cond:
                while True:
                    if self._closed:
                        return False
                    sl = self._fetch()
                    if sl is not None:
                        break
                    if deadline is None:
                        wait = None
                    else:
                        wait = deadline - time.monotonic()
                        if wait <= 0:
                            return False
                    store._nwait += 1
                    store._refresh()
                    try:
                        cond.wait(wait)
                    finally:
                        store._nwait -= 1
                        store._refresh()
            self._accept(sl)
        return True

    # -- consumer API
    def __iter__(self) -> StoreSubscription:
        return self

    def __next__(self) -> Any:
        dq = self._dq
        while True:
            try:
                return dq.popleft()
            except IndexError:
                if not self._take(None):
                    raise StopIteration from None

    def get(self, timeout: float | timedelta | None = None) -> Any:
        """Take the next event, waiting up to *timeout* seconds (``None``: forever).

        Raises:
            Timeout: nothing came in time.
            StoreClosed: the subscription ended (closed, or its store closed).
            BufferFull: ``overflow="error"`` and the buffer overflowed.
        """
        t = _check_timeout(timeout)
        dq = self._dq
        while True:
            try:
                return dq.popleft()
            except IndexError:
                if not self._take(t):
                    if self._closed:
                        raise StoreClosed(
                            f"Expected an open subscription, got one ended ({self.end_reason})"
                        ) from None
                    raise Timeout(f"Expected an event within {t} s, got none") from None

    def get_many(self, max_items: int, timeout: float | timedelta | None = None) -> list[Any]:
        """Take up to *max_items* events, waiting up to *timeout* for the first one;
        ``[]`` when the timeout passes or the subscription ended.

        Raises:
            TypeError: *max_items* is not an int.  ValueError: *max_items* < 1.
            BufferFull: as :meth:`get`.
        """
        if isinstance(max_items, bool) or not isinstance(max_items, int):
            raise TypeError(f"Expected max_items as an int >= 1, got {_tname(max_items)}")
        if max_items < 1:
            raise ValueError(f"Expected max_items as an int >= 1, got {max_items!r}")
        t = _check_timeout(timeout)
        dq = self._dq
        if not dq and not self._take(t):
            return []
        out = []
        pop = dq.popleft
        try:
            for _ in range(max_items):
                out.append(pop())
        except IndexError:
            pass
        return out

    def __aiter__(self) -> StoreSubscription:
        return self

    async def __anext__(self) -> Any:
        """The next event, awaiting live appends without blocking the event loop.

        Raises:
            StopAsyncIteration: the subscription or the store was closed.
            BufferFull: ``overflow="error"`` and the buffer overflowed.
        """
        dq = self._dq
        store = self._store
        loop = asyncio.get_running_loop()
        while True:
            if dq:
                try:
                    return dq.popleft()
                except IndexError:
                    continue
            with self._consumer:
                if dq:
                    continue
                with store._lock:
                    if self._closed:
                        raise StopAsyncIteration
                    sl = self._fetch()
                    if sl is None:
                        fut: asyncio.Future[None] = loop.create_future()
                        store._async_waiters.append((loop, fut))
                        store._nwait += 1
                        store._refresh()
                if sl is not None:
                    self._accept(sl)
                    continue
            try:
                await fut
            finally:
                if not fut.done():
                    with store._lock:
                        if (loop, fut) in store._async_waiters:
                            store._async_waiters.remove((loop, fut))
                            store._nwait -= 1
                            store._refresh()

    # -- lifecycle and introspection
    def close(self) -> None:
        """End the subscription (idempotent): iteration stops, appenders blocked on it
        go on."""
        with self._store._lock:
            if self._closed:
                return
            self._ended("closed")
            self._store._detach(self)

    @property
    def closed(self) -> bool:
        """True once the subscription ended (closed, store closed, or overflow error)."""
        return self._closed

    @property
    def cursor(self) -> Cursor:
        """The place of the last event taken (pass it to ``subscribe`` or ``read`` to
        resume after it).  For ``stream=None`` the position is the global sequence."""
        keys = self._keys
        if keys is not None:
            i = len(keys) - len(self._dq)
            if i > 0:
                return Cursor(self.stream, int(keys[i - 1]), int(self._tss[i - 1]))
        return Cursor(self.stream, *self._base)

    def stats(self) -> SubscriptionStats:
        """This subscription's counters."""
        with self._store._lock:
            backlog = 0 if self._closed else self._backlog()
            return SubscriptionStats(
                delivered=self._delivered - len(self._dq),
                dropped=self._dropped,
                overflows=self._overflows,
                blocked=self._blocked,
                missed=self._missed,
                backlog=backlog,
            )

    def __enter__(self) -> StoreSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StoreSubscription stream={self.stream!r} overflow={self._overflow!r} {state}>"


class _Head:
    """The first *n* rows of a window slice."""

    __slots__ = ("_sl", "_n", "ts", "seq", "pos")

    def __init__(self, sl: Any, n: int) -> None:
        self._sl = sl
        self._n = n
        self.ts = sl.ts[:n]
        self.seq = sl.seq[:n]
        self.pos = sl.pos[:n]

    def __len__(self) -> int:
        return self._n

    def events(self, i: int, j: int) -> list[Any]:
        return self._sl.events(i, min(j, self._n))  # type: ignore[no-any-return]
