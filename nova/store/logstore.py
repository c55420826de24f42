"""LogStore: the event-store facade shared by every backend over a column log.

Over 600 lines because it is one class, the whole EventStore protocol over a log, with
its docstrings (argument checks, batches and subscriptions are sibling modules).

The log (:class:`~nova._core.ColumnLog`, or a log with its interface such as
:class:`~nova.store.sqlite_log.SQLiteLog`) holds the rows and the (timestamp, sequence)
index; this facade adds what a store promises on top: stream limits and retention,
blocking subscribers, live subscriptions that read the log itself, and a close that
ends them all.  :class:`~nova.store.MemoryStore` and :class:`~nova.store.SQLiteStore`
are its subclasses.

.. versionadded:: 0.2
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from nova import _core
from nova._core import forksafe as _forksafe
from nova._util import atexit as _exit
from nova._util.checks import check_clock, check_int, check_opt_int, check_timeout
from nova.errors import StoreClosed, StreamFull, ValidationError, type_name
from nova.store.args import bound, check_include_system, check_stream, cursor_position, events_seq, is_system, names
from nova.store.batch import EventBatch
from nova.store.lifecycle import StoreLifecycle, sweep_loop
from nova.store.protocol import ON_FULL_POLICIES, OVERFLOW_POLICIES, Cursor, StoreStats, StreamInfo
from nova.store.subscription import StoreSubscription, wake_future
from nova.testing import to_seconds

__all__ = ("LogStore",)

_log = logging.getLogger("nova.store")

_INT64_MIN = -(2**63)


class LogStore(StoreLifecycle):
    """The store facade over a column log: limits, retention, blocking subscribers,
    subscriptions and close, the same for every backend whose log has the
    :class:`~nova._core.ColumnLog` interface (:class:`~nova.store.MemoryStore` over the
    kernel, :class:`~nova.store.SQLiteStore` over a SQLite-backed log).

    One lock-protected state machine (appends, limits, waiters and close share the
    log's mutex), hence one class over ~400 lines.

    Args:
        log_factory: called once the arguments are checked; returns the log.
        max_events_per_stream, retention, on_full, max_streams, clock, now_ns,
            sweep_interval: as :class:`~nova.store.MemoryStore` documents them.

    Raises:
        TypeError / ValueError: an argument of the wrong type or value.

    Size: the whole EventStore protocol over a log, with its docstrings.
    """

    def __init__(
        self,
        log_factory: Callable[[], Any],
        *,
        max_events_per_stream: int | None = None,
        retention: float | timedelta | None = None,
        on_full: str = "evict_oldest",
        max_streams: int | None = None,
        clock: Any = None,
        now_ns: Callable[[], int] | None = None,
        sweep_interval: float | timedelta | None = 1.0,
    ) -> None:
        self._limit = check_opt_int(max_events_per_stream, "max_events_per_stream", 1)
        if on_full not in ON_FULL_POLICIES:
            raise ValueError(f"Expected on_full among {ON_FULL_POLICIES}, got {on_full!r}")
        self._on_full = on_full
        self._max_streams = check_opt_int(max_streams, "max_streams", 1)
        self._retention_ns: int | None = None
        if retention is not None:
            seconds = to_seconds(retention, "retention")
            if seconds != float("inf"):  # an infinite retention keeps everything, as None
                self._retention_ns = int(round(seconds * 1e9))
        if clock is not None:
            check_clock(clock)
        self._clock = clock
        if now_ns is not None and not callable(now_ns):  # (the wording the tests assert)
            raise TypeError(f"Expected now_ns as a callable returning int ns, got {type_name(now_ns)}")
        self._now_ns: Callable[[], int] = now_ns if now_ns is not None else _core.now_ns
        interval = check_timeout(sweep_interval, "sweep_interval")  # inf: no sweep, as None
        if interval is not None and interval <= 0:
            raise ValueError(f"Expected sweep_interval > 0 seconds or None, got {sweep_interval!r}")
        self._log = log_factory()
        self._lock = self._log.mutex
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._codes: dict[str, int] = {}
        # system streams ("nova." names), recomputed when _codes grows (_system_codes)
        self._sys_seen = 0
        self._sys_codes: frozenset[int] = frozenset()
        self._user_codes: list[int] = []
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
                target=sweep_loop,
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
        self._stop._at_fork_reinit()  # type: ignore[attr-defined]  # (a sweeper may have held its lock)
        self._nwait = 0
        self._async_waiters = []
        for sub in list(self._subs):
            sub._consumer = threading.Lock()
        self._refresh()

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
                    loop.call_soon_threadsafe(wake_future, fut)
                except RuntimeError:  # the loop was closed: nobody waits there any more
                    pass

    def _stream_codes(self, names: list[str] | None) -> list[int] | None:
        """Codes of the known streams among *names* (lock held)."""
        if names is None:
            return None
        codes = self._codes
        return [codes[n] for n in names if n in codes]

    def _system_codes(self) -> frozenset[int]:
        """Codes of the system streams (names starting with ``"nova."``; lock held).
        Streams are never removed, so the sets are recomputed only when a stream was
        added since the last call (also streams another process added to a file)."""
        codes = self._codes
        if len(codes) != self._sys_seen:
            self._sys_codes = frozenset(c for n, c in codes.items() if is_system(n))
            self._user_codes = [c for n, c in codes.items() if not is_system(n)]
            self._sys_seen = len(codes)
        return self._sys_codes

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
        return self._append_locked(stream, *events)

    def _append_locked(self, stream: str, *events: Any) -> int:
        """:meth:`append` through the store lock (limits, subscribers, new streams)."""
        check_stream(stream)
        with self._lock:
            return self._append_body(stream, events)

    def _append_body(self, stream: str, events: Any) -> int:
        """:meth:`append` of a checked stream name (lock held)."""
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
        return self.append(stream, *events_seq(events))

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
        check_stream(stream)
        with self._lock:
            return self._columns_body(stream, (types, timestamps, data, ids))

    def _columns_body(self, stream: str, columns: tuple[Any, Any, Any, Any]) -> int:
        """:meth:`append_columns` of a checked stream name (lock held)."""
        self._check_open()
        code = self._codes.get(stream)
        if code is None:
            code = self._new_stream(stream)
            pos = self._append_slow(code, None, columns)
            if pos:
                self._codes[stream] = code
            return pos
        return self._append_slow(code, None, columns)

    def _new_stream(self, stream: str) -> int:
        """The kernel code for new *stream* (lock held).  It is registered in
        ``_codes`` only once an append to it succeeded, so a failed append leaves
        no trace."""
        check_stream(stream)
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
        # a subscription to every stream that leaves system streams out never gets
        # this append: it does not wait for that one
        system = is_system(self._log.stream_names()[code])
        while True:
            self._check_open()
            full = None
            for sub in self._block_subs:
                if sub._code == -2:
                    sub._head()
                if (sub._code == -1 and not (system and sub._hide_system)) or sub._code == code:
                    backlog = sub._backlog_at(sub._head())
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
            raise TypeError(f"Expected a str stream name, got {type_name(stream)}")
        after = cursor_position(cursor, stream)
        limit = check_opt_int(limit, "limit", 0)
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

    def _slice(self, start: Any, end: Any, streams: Any, types: Any, include_system: Any) -> Any:
        s = bound(start, "start")
        e = bound(end, "end")
        snl = names(streams, "streams")
        tnl = names(types, "types")
        if include_system.__class__ is not bool:
            check_include_system(include_system)
        with self._lock:
            self._check_open()
            if self._retention_ns is not None:
                self._expire()
            if snl is not None:
                sc: list[int] | None = self._stream_codes(snl)
            elif include_system or (len(self._codes) == self._sys_seen and not self._sys_codes):
                sc = None  # (the common case checked inline: the window benchmark)
            else:
                sc = list(self._user_codes) if self._system_codes() else None
            tc = self._type_codes(tnl)
            snames, tnames = self._log.name_lists()
            return self._log.window(s, e, sc, tc), snames, tnames

    def window(
        self,
        start: Any = None,
        end: Any = None,
        *,
        streams: Any = None,
        types: Any = None,
        include_system: bool = False,
    ) -> EventBatch:
        """The events with ``start <= timestamp < end`` as an :class:`EventBatch`, in
        (timestamp, sequence) order.  Bounds accept what Event accepts for timestamps;
        ``None`` is open.  *streams* / *types*: a name or names to keep.

        ``streams=None`` means every stream except nova's system streams (names starting
        with ``"nova."``: dead letters, redrive acks, audit records), so a window over a
        store that also holds dead letters has only business events;
        ``include_system=True`` adds them, and a system stream named in *streams* is
        always read.

        O(log n) with zero-copy column views while the log is in time order, nothing
        inside the window was evicted and the store has no system stream (or
        ``include_system=True``); O(log n + k) otherwise.

        Raises:
            ValidationError: a bad bound.  TypeError: bad filters or *include_system*.
            StoreClosed: the store is closed.

        .. versionchanged:: 0.2
            System streams are left out unless named or ``include_system=True``.
        """
        sl, snames, tnames = self._slice(start, end, streams, types, include_system)
        return EventBatch(sl, snames, tnames)

    def replay(
        self,
        start: Any = None,
        end: Any = None,
        *,
        streams: Any = None,
        types: Any = None,
        include_system: bool = False,
    ) -> Iterator[Any]:
        """Iterate the Events with ``start <= timestamp < end`` in (timestamp, sequence)
        order (a snapshot taken at the call; arguments are checked at the call).
        Events appended as Events come back as the same objects.  *streams*, *types*
        and *include_system* filter as in :meth:`window` (``streams=None``: every
        stream except the ``"nova."`` system streams).

        Raises:
            ValidationError / TypeError / StoreClosed: as :meth:`window`.

        .. versionchanged:: 0.2
            System streams are left out unless named or ``include_system=True``.
        """
        sl, _, _ = self._slice(start, end, streams, types, include_system)
        return _iter_slice(sl)

    def stream_info(self, stream: str) -> StreamInfo:
        """What the store knows about *stream*.

        Raises:
            TypeError: *stream* is not a str.
            KeyError: no event was ever appended to *stream*.
            StoreClosed: the store is closed.
        """
        if not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name, got {type_name(stream)}")
        with self._lock:
            self._check_open()
            self._expire()
            code = self._codes.get(stream)
            if code is None:
                raise KeyError(f"Expected a stream with events, got unknown stream {stream!r}")
            live, first, last, evicted = self._log.stream_info(code)
        return StreamInfo(stream, live, first or None, last, evicted)

    def streams(self) -> list[str]:
        """The names of every stream ever appended to, in creation order, nova's
        system streams (``"nova."`` names) included: this is the store's inventory
        (what ``nova.store.copy`` and backups walk).

        Raises:
            StoreClosed: the store is closed.
        """
        with self._lock:
            self._check_open()
            return list(self._codes)

    def stats(self) -> StoreStats:
        """A snapshot of the store's counters (works after close too).  They count
        storage, so system streams (dead letters, acks, audit) are included."""
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

    def subscribe(
        self,
        stream: str | None = None,
        cursor: Cursor | None = None,
        *,
        buffer: int = 1000,
        overflow: str = "block",
        include_system: bool = False,
    ) -> StoreSubscription:
        """Follow *stream* (``None``: every stream, in append order): the events after
        *cursor* (``None``: from the start), then live appends, with no gap and no
        duplicate.  *stream* may not exist yet.

        With ``stream=None`` the events of nova's system streams (names starting with
        ``"nova."``: dead letters, redrive acks, audit records) are not delivered unless
        ``include_system=True``; a system stream named as *stream* is always followed.
        (Their appends still count toward the *buffer* of a ``stream=None``
        subscription that leaves them out.)

        *buffer* bounds the live events appended but not yet taken by the subscriber;
        when it is full, *overflow* decides: ``"block"`` makes appenders to the stream
        wait, ``"drop_oldest"`` drops the oldest of them (counted in
        ``stats().dropped``), ``"error"`` raises :class:`~nova.errors.BufferFull` in the
        subscriber (and ends the subscription).

        Raises:
            TypeError / ValueError: bad arguments.  StoreClosed: the store is closed.

        .. versionchanged:: 0.2 ``include_system``; system streams left out by default.
        """
        if stream is not None and not isinstance(stream, str):
            raise TypeError(f"Expected a str stream name or None, got {type_name(stream)}")
        if stream == "":
            raise ValidationError("Expected a non-empty str stream name or None, got ''")
        after = cursor_position(cursor, stream)
        check_int(buffer, "buffer", 1)
        check_include_system(include_system)
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Expected overflow among {OVERFLOW_POLICIES}, got {overflow!r}")
        with self._lock:
            self._check_open()
            sub = StoreSubscription(self, stream, after, buffer, overflow,
                                    hide_system=stream is None and not include_system)
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

    def close(self) -> None:
        """Close the store: subscriptions end, blocked appenders get
        :class:`~nova.errors.StoreClosed`, the sweep stops.  Idempotent."""
        with self._lock:
            if not self._close_locked():
                return
        _exit.unregister(self)
        self._join_sweeper(None)

    def _sweep_once(self) -> bool:
        """One background sweep: retention applied, waiters woken (False: closed)."""
        with self._lock:
            if self._closed:
                return False
            self._expire()
            self._cond.notify_all()
        return True

    def _closing(self) -> None:
        """No more lock-free appends once closed (lock held)."""
        self._log.fast = False

    def _closed_wake(self) -> None:
        """Async subscribers wake too (lock held)."""
        self._wake()

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

    def __enter__(self) -> LogStore:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} events={len(self._log)} streams={len(self._codes)} {state}>"


def _iter_slice(sl: Any) -> Iterator[Any]:
    n = len(sl)
    for i in range(0, n, 4096):
        yield from sl.events(i, i + 4096)
