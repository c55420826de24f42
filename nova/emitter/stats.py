"""The emitter's counters and their snapshot, :class:`EmitterStats`.

Hot paths count with lock-free ``itertools.count`` objects (one atomic ``next`` each);
the rarer outcomes (failures, corrections of calls a fast path presumed successful,
middleware errors, events given up) are plain ints under one small lock.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from nova._util.counters import count_value

if TYPE_CHECKING:
    from nova.emitter.buffered import BufferedIntake
    from nova.emitter.routes import RouteTable

__all__ = ("EmitterStats", "Counters", "snapshot")


class EmitterStats(NamedTuple):
    """A snapshot of an :class:`~nova.emitter.Emitter`'s counters (see
    :meth:`~nova.emitter.Emitter.stats`).

    Attributes:
        emitted: events accepted by ``emit``, ``emit_async``/``emit_batch`` and ``aemit``.
        processed: listener calls that returned without error (a call on the fast path
            is counted when it starts and taken back if it raises, so a snapshot taken
            meanwhile includes calls still running).
        failed: listener calls that raised (or timed out waiting for a concurrency slot).
        dropped: events dropped by the ``drop_newest``/``drop_oldest`` overflow policies.
        queued: events waiting in the buffer now.
        active_listeners: subscriptions now.
        middleware_errors: errors raised by middleware itself (not by listeners).
        delivered: buffered events whose delivery to every listener finished.
        undelivered: buffered events a timed-out :meth:`~nova.emitter.Emitter.shutdown`
            gave up on.
    """

    emitted: int
    processed: int
    failed: int
    dropped: int
    queued: int
    active_listeners: int
    middleware_errors: int
    delivered: int
    undelivered: int


class Counters:
    """Every counter of one emitter but the routes' own (see
    :class:`~nova.emitter.routes.RouteTable`) and the workers' delivered slots."""

    __slots__ = ("lock", "emitted", "accepted", "dropped_new", "victims", "processed", "failed",
                 "corrections", "mw_errors", "undelivered")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.emitted = itertools.count()  # slow-path emit/aemit
        self.accepted = itertools.count()  # emit_async/emit_batch
        self.dropped_new = itertools.count()  # drop_newest (not accepted)
        self.victims = itertools.count()  # drop_oldest (accepted, then dropped)
        self.processed = 0
        self.failed = 0
        self.corrections = 0  # fast-path calls presumed processed that were not
        self.mw_errors = 0
        self.undelivered = 0

    def count(self, ok: bool) -> None:
        """One listener call ended: processed or failed."""
        with self.lock:
            if ok:
                self.processed += 1
            else:
                self.failed += 1

    def correct(self, n: int, failed: int = 0) -> None:
        """*n* calls presumed processed were not; *failed* of them failed."""
        with self.lock:
            self.corrections += n
            self.failed += failed

    def middleware_error(self) -> None:
        with self.lock:
            self.mw_errors += 1

    def give_up(self, n: int) -> None:
        with self.lock:
            self.undelivered += n

    def dropped(self) -> int:
        return count_value(self.dropped_new) + count_value(self.victims)

    def after_fork_in_child(self, settled: int) -> None:
        """A forked child: a fresh lock (a parent thread may have held it), and the
        accepted count restarts at *settled* (the parent's in-flight events leave)."""
        self.lock = threading.Lock()
        self.accepted = itertools.count(settled)


def snapshot(c: Counters, table: RouteTable, intake: BufferedIntake, lock: Any) -> EmitterStats:
    """The :class:`EmitterStats` of one emitter; *lock*: its lock, under which route
    compaction moves retired counts into the table's base."""
    with lock:
        emitted, processed = table.counted()
        n_active = table.nsubs
        with c.lock:
            emitted += table.base_emitted
            processed += table.base_processed
    emitted += count_value(c.emitted) + count_value(c.accepted)
    with c.lock:
        processed += c.processed - c.corrections
        failed, mw, und = c.failed, c.mw_errors, c.undelivered
    q = intake.queue
    return EmitterStats(
        emitted=emitted,
        processed=processed,
        failed=failed,
        dropped=c.dropped(),
        queued=q.qsize() if q is not None else 0,
        active_listeners=n_active,
        middleware_errors=mw,
        delivered=sum(intake.done),
        undelivered=und,
    )
