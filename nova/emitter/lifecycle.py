"""An emitter's end: shutdown, interpreter exit, and the reset of its copy in a forked
child.

:class:`Lifecycle` runs the one shutdown (idempotent, later callers wait for the first),
the bounded :meth:`~nova.emitter.Emitter.close_at_exit`, and the ``os.fork()`` child
reset of every emitter that owns threads or concurrency semaphores.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from time import monotonic
from typing import TYPE_CHECKING

from nova._util import atexit as _exit
from nova._util.counters import count_value

if TYPE_CHECKING:
    from nova.emitter.emitter import Emitter

__all__ = ("Lifecycle",)

_log = logging.getLogger("nova.emitter")

# Emitters that own threads or semaphores, so a forked child can reset its copies.
_LIVE_EMITTERS: weakref.WeakSet[Emitter] = weakref.WeakSet()


def _reset_emitters_in_child() -> None:
    """``os.fork()`` child: see :meth:`Lifecycle.after_fork_in_child`."""
    for em in list(_LIVE_EMITTERS):
        em._life.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_emitters_in_child)


class Lifecycle:
    """Shutdown, exit and fork handling of one emitter (its *owner*)."""

    def __init__(self, owner: Emitter) -> None:
        self._owner = owner
        self.started = False  # shutdown began
        self._done = threading.Event()
        self._result = True

    def watch_fork(self) -> None:
        """Reset the owner in a forked child (it has semaphores or threads)."""
        _LIVE_EMITTERS.add(self._owner)

    def started_threads(self) -> None:
        """The owner now owns threads: close it at interpreter exit, reset it in a
        forked child.  Called with the owner's lock held."""
        _exit.register(self._owner.close_at_exit, _exit.STAGE_PRODUCER)
        _LIVE_EMITTERS.add(self._owner)

    def shutdown(self, t: float | None, at_exit: bool) -> bool:
        """See :meth:`Emitter.shutdown`; *at_exit*: the exit hook's call (no log of
        what is given up, which :meth:`close_at_exit` logs itself)."""
        em = self._owner
        em._not_from_worker("shutdown")
        with em._lock:
            first = not self.started
            if first:
                self.started = True
                em._closed = True
                em._refresh()
        if not first:
            return self._result if self._done.wait(t) else False
        deadline = None if t is None else monotonic() + t

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - monotonic())

        ok = True
        intake, runner = em._intake, em._d.runner
        try:
            ok = intake.close(left(), log=not at_exit)
            if not runner.wait_idle(left()):
                ok = False
            # After a timeout, a moment for the loop to cancel what is left.
            grace = 0.5 if deadline is None or not at_exit else min(0.5, left() or 0.0)
            runner.loop.close(left() if ok else grace)
            intake.close_pool(left() if ok else 0.0)
            if em._metrics is not None:
                q = intake.queue
                em._metrics.set_queue_size(em._component, q.qsize() if q is not None else 0)
        finally:
            self._result = ok
            self._done.set()
            intake.finished()
            _exit.unregister(em)
            _LIVE_EMITTERS.discard(em)
        return ok

    def close_at_exit(self, timeout: float) -> None:
        """See :meth:`Emitter.close_at_exit`."""
        em = self._owner
        counters = em._counters
        before = counters.undelivered
        if self.shutdown(max(0.0, timeout), at_exit=True):
            return
        given_up = counters.undelivered - before
        running = max(0, count_value(em._c_accepted) - em._intake.settled())
        _log.warning(
            "emitter %r at interpreter exit: %d accepted events undelivered (not started), "
            "%d deliveries still running and %d async listener calls abandoned after %.3g s",
            em._name, given_up, running, em._d.runner.running, timeout)

    def after_fork_in_child(self) -> None:
        """In a forked child: the drain loops, the pool's workers and nova's loop thread
        do not exist, and the locks may have been held by parent threads.  The child's
        copy starts afresh: new locks, no buffer (the next ``emit_async`` starts new
        drain loops, on a new private pool or the user's pool, itself restarted by
        :mod:`nova.pool`), no loop (made again on demand), and fresh ``max_concurrency``
        semaphores (a slot held by a parent thread would be lost here, and a semaphore
        lock a parent thread held would block every call).  Events the parent had
        accepted and not delivered are the parent's: they are delivered there, never
        here, and leave the child's counters.  Subscriptions and middleware stay."""
        from nova.pool.semaphore import Semaphore
        from nova.pool.workers import _FORK_KEEP

        em = self._owner
        em._lock = threading.RLock()
        em._intake.after_fork_in_child(_FORK_KEEP)
        em._counters.after_fork_in_child(em._intake.settled())
        em._publish_intake()
        em._d.runner.after_fork_in_child()
        for entry in em._table.entries():
            if entry.sem is not None:
                # The forking thread may be inside a bounded call: it releases the slot
                # it took to the semaphore it took it from (given a fresh lock by
                # nova.pool.semaphore), so the fresh one here is never over-released.
                entry.sem = Semaphore(entry.sem.capacity)
        if self.started and not self._done.is_set():
            self._done = threading.Event()
            self._result = False
            self._done.set()
        em._refresh()
