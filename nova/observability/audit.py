"""The audit trail: every delivery attempt, recorded in an EventStore stream.

:class:`AuditTrail` is an observer (see :mod:`nova.observability.observers`) attached to
an Emitter or a Bus (``trail.attach(component)``).  For every delivery attempt it
records the event id and type, the destination (event type or topic) and partition,
the listener id, the consumer group, the attempt number, the outcome (``ok``,
``error``, ``retry_scheduled``, ``dead_lettered``, ``rejected_by_circuit``,
``timeout``, ``dropped``), the duration, the error's type and message, and the time
the attempt started, as one event of type ``nova.audit.<outcome>`` in stream *stream*
of *store*, its ``data`` a row of those fields (:data:`FIELDS` order; see
:mod:`nova.observability.audit_rows`).

Recording is off the hot path: a delivering thread appends a small tuple (an Emitter
worker, one per batch of calls) to a bounded buffer (lock-free for single records); a background thread
turns batches of them into columns and writes them with one ``append_columns`` call
each.  A full buffer never drops silently: with ``overflow="drop"`` (the default) the
record is counted in ``stats().overflowed`` (and a WARNING is logged on
``nova.observability``, at most once a second); with ``overflow="block"`` the
delivering thread waits for room.  :meth:`AuditTrail.flush` and :meth:`AuditTrail.close`
write everything accepted, and so does interpreter exit (``nova._util.atexit``).

Queries: :meth:`AuditTrail.history` (every attempt for one event, in order) and
:meth:`AuditTrail.window` (an :class:`~nova.EventBatch` of the attempts in a time
range: ``pd.DataFrame(batch.data)`` answers "which listener failed most between 09:00
and 09:30").

.. versionadded:: 0.3
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from time import perf_counter
from typing import Any, NamedTuple

from nova._util import atexit as _exit
from nova._util.checks import check_timeout
from nova._util.counters import count_value
from nova.errors import type_name
from nova.observability.audit_rows import FIELDS, AuditRecord, columns, read_history, read_window
from nova.observability.observers import OUTCOMES

__all__ = ("AuditTrail", "AuditRecord", "AuditStats", "AUDIT_STREAM", "FIELDS")

_log = logging.getLogger("nova.observability")

#: The default stream.
AUDIT_STREAM = "nova.audit"


class AuditStats(NamedTuple):
    """``accepted`` records (into the buffer), ``written`` to the store, ``overflowed``
    (refused by a full buffer, ``overflow="drop"``, or after close), ``write_errors``
    (store appends that raised; their records are counted in ``lost``), ``pending``
    (accepted, not yet written)."""

    accepted: int
    written: int
    overflowed: int
    write_errors: int
    lost: int
    pending: int


class AuditTrail:
    """Record every delivery attempt of the attached components (see the module).

    Args:
        store: an :class:`~nova.EventStore` (``MemoryStore``, ``SQLiteStore``...).
        stream: the stream the records go to.
        buffer_size: records waiting to be written, at most.
        overflow: ``"drop"`` (count it in ``stats().overflowed``) or ``"block"`` (the
            delivering thread waits for room) when the buffer is full.
        flush_interval: seconds between background writes (a full batch is written
            at once).
        batch_size: records per store append (an Emitter worker's batch of calls is
            never split: an append may hold one such batch more).

    Thread-safe.  Close it (or use it as a context manager) to write what is left; at
    interpreter exit an open trail is flushed within nova's exit budget.

    Raises:
        TypeError / ValueError: a bad argument.
    """

    def __init__(self, store: Any, stream: str = AUDIT_STREAM, *, buffer_size: int = 65536,
                 overflow: str = "drop", flush_interval: float = 0.05, batch_size: int = 4096) -> None:
        for name in ("append_columns", "window", "read"):
            if not callable(getattr(store, name, None)):
                raise TypeError(f"Expected an EventStore, got {type_name(store)}")
        if not isinstance(stream, str):
            raise TypeError(f"Expected stream as a str, got {type_name(stream)}")
        if not stream:
            raise ValueError("Expected a non-empty stream, got ''")
        for name, v in (("buffer_size", buffer_size), ("batch_size", batch_size)):
            if type(v) is not int:
                raise TypeError(f"Expected {name} as an int, got {type_name(v)}")
            if v < 1:
                raise ValueError(f"Expected {name} >= 1, got {v}")
        if overflow not in ("drop", "block"):
            raise ValueError(f"Expected overflow 'drop' or 'block', got {overflow!r}")
        interval = check_timeout(flush_interval)
        if interval is None or interval <= 0:
            raise ValueError(f"Expected flush_interval > 0, got {flush_interval!r}")
        self.store = store
        self.stream = stream
        self._cap = buffer_size
        self._block = overflow == "block"
        self._interval = interval
        self._batch = batch_size
        # Items: a record tuple, or a list of an Emitter worker's calls (audit_rows).
        # Records buffered = len(_buf) + _extra (a call list of n adds n - 1 to _extra).
        self._buf: deque[Any] = deque()
        self._extra = 0  # changed under _lock; read without it (a racy read only errs by a few)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # records added / room made / written
        self._accepted = itertools.count()  # single records, lock-free (see _put)
        self._accepted_calls = 0  # records of call batches (under _lock)
        self._epoch = (time.time_ns(), perf_counter())  # perf_counter -> wall-clock ns
        self._written = 0
        self._overflowed = 0
        self._write_errors = 0
        self._lost = 0
        self._last_warn = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        _exit.register(self.close_at_exit, _exit.STAGE_EXECUTOR)  # after the components feeding it
        _TRAILS.add(self)

    # -- attaching ----------------------------------------------------------------------
    def attach(self, component: Any) -> Any:
        """Record every delivery attempt of *component* (an Emitter, a Bus or a
        ListenerManager) from now on; returns it.

        Raises:
            TypeError: not one of those.
        """
        add = getattr(component, "_add_observer", None)
        if add is None:
            raise TypeError(f"Expected an Emitter, a Bus or a ListenerManager, got {type_name(component)}")
        add(self)
        return component

    # -- the observer calls (on delivering threads: cheap) ---------------------------------
    #: The trail records deliveries, not sends: components skip send/sent for it.
    producer = False

    def send(self, event: Any, destination: str, component: str) -> None:
        """Nothing: the trail records deliveries."""
        return None

    def sent(self, token: Any, partition: int | None, exc: BaseException | None) -> None:
        """Nothing (see :meth:`send`)."""

    def begin(self, event: Any, listener_id: str, destination: str, partition: int | None,
              group: str | None, attempt: int) -> list[Any]:
        """Note the start of one attempt (a perf_counter reading: the wall-clock
        timestamp is derived by the writer)."""
        return [perf_counter(), event, listener_id, destination, partition, group, attempt, ""]

    def end(self, t: list[Any], exc: BaseException | None, outcome: str | None = None) -> None:
        """The attempt returned or raised; recorded now when its outcome is known."""
        dur = perf_counter() - t[0]
        if exc is None:
            self._put((t, dur, None, "ok"))
        else:
            t.append((dur, exc))
            if outcome is not None:
                self._put((t, dur, exc, outcome))

    def settle(self, t: list[Any], outcome: str) -> None:
        """The outcome of a failed attempt is known: record it."""
        dur, exc = t[8]
        self._put((t, dur, exc, outcome))

    def record_calls(self, start: float, events: list[Any], listeners: list[str], ends: Sequence[float],
                     errors: list[tuple[int, BaseException]] | None = None) -> None:
        """Record a batch of an Emitter worker's listener calls at once: call *i*
        called listener ``listeners[i]`` with ``events[i]`` and ended at ``ends[i]``
        (``perf_counter`` readings, in a list or an ``array('d')``, as an Emitter
        worker notes them); it started where the one before it ended, the
        first at *start*.  *errors*: ``(i, exc)`` for each call that raised (outcome
        ``error``; the others are ``ok``).  The lists are kept: the caller must not
        change them afterwards.

        This is the observer seam's batch form (:mod:`nova.observability.observers`):
        one call and one buffer append per batch instead of ``begin``/``end`` per call.
        """
        n = len(ends)
        if not n:
            return
        with self._lock:
            room = self._cap - len(self._buf) - self._extra
            if n > room or self._closed:
                k = self._calls_full(n, room)
                if not k:
                    return
                if k < n:
                    n = k
                    events, listeners, ends = events[:n], listeners[:n], ends[:n]
                    if errors is not None:
                        errors = [e for e in errors if e[0] < n] or None
            self._buf.append((start, events, listeners, ends, errors))
            self._extra += n - 1
            self._accepted_calls += n
            if self._thread is None:  # (None again in a forked child: _after_fork_in_child)
                self._start_locked()
            elif self._cap - room < self._batch <= self._cap - room + n:
                self._cond.notify_all()  # a batch to write

    def _calls_full(self, n: int, room: int) -> int:
        """:meth:`record_calls` without room for all its *n* calls (lock held): how
        many of them are accepted (all, once there is room, with ``overflow="block"``;
        the first *room* with ``"drop"``); the rest are counted in ``overflowed``."""
        if self._block and not self._closed:
            if self._thread is None or self._pid != os.getpid():
                self._start_locked()
            self._cond.notify_all()
            # wait for room for all of them (for an empty buffer when they exceed it)
            while not self._closed and self._cap - len(self._buf) - self._extra < min(n, self._cap) \
                    and (self._buf or self._extra):
                self._cond.wait(0.1)
            if not self._closed:
                return n
        keep = 0 if self._closed else max(0, room)
        self._overflowed += n - keep
        if not self._closed:
            self._warn()
        return keep

    def record(self, event: Any, listener_id: str, outcome: str, *, destination: str | None = None,
               partition: int | None = None, group: str | None = None, attempt: int = 1,
               duration: float = 0.0, error: BaseException | None = None, component: str = "app") -> None:
        """Record one attempt directly (for an outcome no component reports, or your
        own delivery code); its timestamp is now.

        Raises:
            ValueError: *outcome* is not one of ``ok``, ``error``, ``retry_scheduled``,
                ``dead_lettered``, ``rejected_by_circuit``, ``timeout``, ``dropped``.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"Expected an outcome among {', '.join(OUTCOMES)}, got {outcome!r}")
        t = [perf_counter(), event, listener_id, destination or event.type, partition, group, attempt, component]
        self._put((t, float(duration), error, outcome))

    def _put(self, rec: tuple[Any, ...]) -> None:
        # Lock-free on the common path: deque.append and next() on a count are atomic
        # under the GIL; the bound is checked before the append, so it may be passed by
        # at most one record per thread racing here.
        buf = self._buf
        n = len(buf) + self._extra
        if n >= self._cap or self._closed:
            if not self._full(rec):
                return
        else:
            buf.append(rec)
            next(self._accepted)
            if n == self._batch or self._thread is None:
                self._kick()

    def _full(self, rec: tuple[Any, ...]) -> bool:
        """The buffer is full (or the trail closed): count it, or wait for room."""
        with self._lock:
            if self._closed:
                self._overflowed += 1
                return False
            if not self._block:
                self._overflowed += 1
                self._warn()
                return False
            if self._thread is None or self._pid != os.getpid():
                self._start_locked()
            self._cond.notify_all()
            while len(self._buf) + self._extra >= self._cap and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                self._overflowed += 1
                return False
            self._buf.append(rec)
            next(self._accepted)
        return True

    def _kick(self) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._start_locked()
            self._cond.notify_all()

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._last_warn >= 1.0:
            self._last_warn = now
            _log.warning("nova: audit trail buffer full (%d records): %d records not recorded so far",
                         self._cap, self._overflowed)

    # -- the writer ---------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name=f"nova-audit-{self.stream}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = self._buf
        while True:
            if not buf:
                with self._lock:
                    if not buf:
                        if self._closed:
                            return
                        self._cond.wait(self._interval)
                        continue
            items = []
            pop = buf.popleft
            k = extra = 0
            try:
                while k < self._batch:
                    item = pop()
                    items.append(item)
                    if len(item) == 5:  # a call batch (audit_rows)
                        n = len(item[3])
                        k += n
                        extra += n - 1
                    else:
                        k += 1
            except IndexError:
                pass
            with self._lock:
                self._extra -= extra
                if self._block:
                    self._cond.notify_all()  # room for a blocked delivering thread
            self._write(items, k)

    def _write(self, items: list[Any], k: int) -> None:
        try:
            types, stamps, rows = columns(items, *self._epoch)
            self.store.append_columns(self.stream, types=types, timestamps=stamps, data=rows)
        except BaseException:  # noqa: BLE001 - logged and counted; the writer goes on
            _log.exception("nova: audit trail could not write %d records to stream %r", k, self.stream)
            with self._lock:
                self._write_errors += 1
                self._lost += k
                self._cond.notify_all()
            return
        with self._lock:
            self._written += k
            self._cond.notify_all()

    # -- flush / close ------------------------------------------------------------------------
    def flush(self, timeout: Any = None) -> bool:
        """Write every record accepted so far; True when done, False if *timeout*
        passed first."""
        t = check_timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        target = self._accepted_total()
        if not self._buf and self._written + self._lost >= target:
            return True
        with self._lock:
            self._start_locked()
            self._cond.notify_all()
            while self._written + self._lost < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.notify_all()
                self._cond.wait(0.05 if left is None else min(0.05, left))
            return True

    def close(self, timeout: Any = None) -> bool:
        """Write everything accepted, then stop the writer; later records are counted
        in ``overflowed``.  Idempotent.  Returns as :meth:`flush`."""
        done = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._cond.notify_all()
            th = self._thread
        if th is not None and th is not threading.current_thread() and self._pid == os.getpid():
            th.join(None if timeout is None else check_timeout(timeout))
        _exit.unregister(self)
        return done

    def close_at_exit(self, timeout: float) -> None:
        """Interpreter exit: :meth:`close` within *timeout* seconds."""
        if not self.close(max(0.0, timeout)):
            _log.warning("nova: audit trail %r: %d records not written at exit", self.stream, self.stats().pending)

    def stats(self) -> AuditStats:
        """The trail's counters (see :class:`AuditStats`)."""
        with self._lock:
            accepted = self._accepted_total()
            return AuditStats(accepted, self._written, self._overflowed, self._write_errors, self._lost,
                              accepted - self._written - self._lost)

    def _accepted_total(self) -> int:
        return count_value(self._accepted) + self._accepted_calls

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ----------------------------------------------------------------------------
    def history(self, event_id: str) -> list[AuditRecord]:
        """Every recorded attempt for *event_id*, in the order they started (flushes
        first).  Scans the stream: meant for investigations, not for a hot loop."""
        if not isinstance(event_id, str):
            raise TypeError(f"Expected event_id as a str, got {type_name(event_id)}")
        self.flush()
        return read_history(self.store, self.stream, event_id)

    def window(self, start: Any = None, end: Any = None) -> Any:
        """The attempts that started in ``[start, end)`` (None: open), as an
        :class:`~nova.EventBatch` (flushes first): the store's window over the
        trail's stream, with each row's data as a dict keyed by :data:`FIELDS`, so
        ``pandas.DataFrame(batch.data)`` has one column per field."""
        self.flush()
        return read_window(self.store, self.stream, start, end)

    def _after_fork_in_child(self) -> None:
        # The writer stayed in the parent, and so do the records it accepted (the parent
        # writes them; writing them here too would duplicate them in a shared store).
        # The child starts empty; its first record starts its own writer.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread = None
        self._buf.clear()
        self._extra = 0
        self._accepted = itertools.count()
        self._accepted_calls = 0
        self._written = self._overflowed = self._write_errors = self._lost = 0

    def __repr__(self) -> str:
        return f"<AuditTrail stream={self.stream!r} {'closed' if self._closed else 'open'}>"


#: Every AuditTrail of this process, for the fork handler below.
_TRAILS: weakref.WeakSet[AuditTrail] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for trail in list(_TRAILS):
        trail._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
