"""Draining a ListenerManager: the ledger of its scheduled retries, ``stop()`` (wait,
then claim and dead-letter what cannot finish) and the interpreter-exit close
(:class:`DrainMixin`).

Every scheduled retry is a :class:`~nova.listener.retries.Retry` in the manager's
``_retries`` set; its state changes under ``_rcond``, so ``stop()`` and the thread running
a retry never both decide its outcome.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from nova._util.atexit import STAGE_CONSUMER
from nova._util.atexit import register as exit_register
from nova._util.checks import check_duration
from nova._util.loop import LoopThread
from nova._util.runner import ThreadRunner
from nova.errors import Timeout
from nova.listener.pending import CALLING, CLAIMABLE, CLAIMED, DONE, IN_TASK, LETTERING, PENDING, Retry
from nova.resilience.policy import DeadLetter
from nova.resilience.scheduler import Scheduler

__all__ = ("DrainMixin",)

_log = logging.getLogger("nova.listener")


class DrainMixin:
    """Retry ledger, ``stop()`` and ``close_at_exit()`` of
    :class:`~nova.listener.ListenerManager` (mixed into it)."""

    # set by ListenerManager.__init__ (and its fork reset)
    _lock: threading.RLock
    _rcond: threading.Condition
    _retries: set[Retry]
    _collectors: list[list[DeadLetter]]
    _deadlines: list[float]
    _now: Callable[[], float]
    _scheduler: Scheduler
    _exit_hooked: bool
    _exit_closed: bool
    _retry_runner_: ThreadRunner | None
    _call_runner_: ThreadRunner | None
    _loops: LoopThread | None

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The manager's event loop while its thread runs, else ``None``."""
        loops = self._loops
        return loops.loop if loops is not None and loops.started and not loops.closed else None

    def stop(self, timeout: float | Any = None) -> list[DeadLetter]:
        """Drain the scheduled retries, then stop the scheduler and helper threads.

        With ``timeout=None`` it waits until every scheduled retry has ended (on a
        :class:`~nova.testing.ManualClock`, another thread must advance it).  With a
        timeout (seconds on the manager's clock, and at most as many real seconds):

        * retries due before the deadline run; the others are dead-lettered at once with
          their last error, and so are those still waiting when the time is up;
        * a retry call still running when the time is up cannot be killed (an ``async
          def`` one is cancelled): its event is dead-lettered by ``stop()`` with a
          :class:`nova.errors.Timeout` (the last error as ``__context__``, the running call
          counted in ``attempts``), and whatever that call does afterwards is ignored:
          it is not counted as processed, never retried, never dead-lettered again.

        Returns the dead letters of the scheduled retries that ended dead-lettered while
        it ran (by ``stop()`` itself or by the thread or task that ran their last attempt);
        each went through the dead-letter path (handler, store, ``on_error``).  The rule
        is exact: a retry pending or in flight when ``stop()`` began (or scheduled while it
        runs) is either processed before it returns or in the returned list, never both,
        never neither; for those, ``processed + len(returned)`` is their number.  Once it
        returns, nothing it covered runs any more: no listener call or dead-letter call
        starts, except the ones already running that the timeout cut off (an ``async
        def`` one is cancelled and finishes on the manager's loop thread, which then ends
        by itself: no task of it is left pending).

        What ``stop()`` covers is the manager's own work: retries scheduled before it
        returns.  A first call (``managed.handle`` in the caller's thread) is the caller's;
        a failure of one after ``stop()`` returned is new work and restarts the scheduler
        (the manager is restartable).  Called by a listener from inside one of this
        manager's retries (or its dead-letter handler), it does not wait for that retry,
        which ends after it returns and is counted as usual.  The scheduler keeps serving
        the timeouts of first calls still in flight.

        Raises:
            TypeError/ValueError: a bad *timeout*.
        """
        t = None if timeout is None else check_duration(timeout, "timeout")
        letters, _ = self._stop(t)
        return letters

    def _stop(self, t: float | None) -> tuple[list[DeadLetter], LoopThread | None]:
        """:meth:`stop` (*t* checked); also returns the loop thread it closed if that had
        not ended in time (its cancelled tasks still finishing), for the exit hook to wait
        for within its own budget."""
        me = IN_TASK.get()
        if not (isinstance(me, Retry) and me.managed._manager is self):
            me = None
        rcond = self._rcond
        retries = self._retries

        def busy() -> bool:
            n = len(retries)
            return n > 1 or (n == 1 and me not in retries)

        letters: list[DeadLetter] = []
        deadline = math.inf
        real_end: float | None = None
        with rcond:
            self._collectors.append(letters)
            if t is not None:
                deadline = self._now() + t
                real_end = time.monotonic() + t
                self._deadlines.append(deadline)
        try:
            if t is None:
                with rcond:
                    rcond.wait_for(lambda: not busy())
            else:
                assert real_end is not None
                # Retries due after the deadline cannot run in time: dead-letter them now
                # (those scheduled from now on are refused by _refuse_retry).
                self._claim(lambda r: r.state == PENDING and r.due > deadline and r is not me)
                with rcond:
                    done = rcond.wait_for(lambda: not busy(), max(0.0, real_end - time.monotonic()))
                if not done:
                    # Time is up: what did not run or did not finish is dead-lettered now,
                    # and dead letters whose delivery did not begin are delivered here.
                    self._claim(lambda r: (r.state in CLAIMABLE or r.state == LETTERING) and r is not me)
        finally:
            with rcond:
                self._collectors = [c for c in self._collectors if c is not letters]
                if t is not None:
                    self._deadlines.remove(deadline)
                # Retries still being dead-lettered by their own thread need no scheduler:
                # the threads stop unless new work came in.
                idle = not any(r.state in CLAIMABLE and r is not me for r in retries)
        left_loop = self._stop_threads(real_end) if idle else None
        return letters, left_loop

    def _claim(self, which: Callable[[Retry], bool]) -> None:
        """Take the retries for which *which* holds away from whoever would run them and
        dead-letter them here (each stop() running now gets their dead letters)."""
        taken: list[tuple[Retry, DeadLetter]] = []
        with self._rcond:
            for r in [r for r in self._retries if which(r)]:
                m = r.managed
                if r.state == LETTERING:
                    # Decided by the thread that ran it, not delivered yet: deliver it here.
                    dl = r.letter
                    self._forget(r, CLAIMED)
                    for letters in self._collectors:
                        if not any(x is dl for x in letters):
                            letters.append(dl)
                    taken.append((r, dl))
                    continue
                if r.state == CALLING:
                    err: BaseException = Timeout(
                        f"Expected the retry of listener {m._id!r} to finish before stop() ended, "
                        "got it still running (its outcome is ignored)")
                    err.__context__ = r.error
                    dl = m._new_dead_letter(r.event, err, r.attempts + 1, r.topic)
                else:
                    dl = m._new_dead_letter(r.event, r.error, r.attempts, r.topic)
                self._forget(r, CLAIMED)
                for letters in self._collectors:
                    letters.append(dl)
                taken.append((r, dl))
        sched = self._scheduler
        for r, dl in taken:
            if r.entry is not None:
                sched.cancel(r.entry)
            fut = r.fut
            if fut is not None and not fut.done():
                # An async attempt: cancel its task (if its loop still runs).
                loop = r.loop if r.loop is not None else self._loop
                if loop is None or not loop.is_closed():
                    fut.cancel()
            r.managed._deliver_dead_letter(dl)

    def _stop_threads(self, real_end: float | None) -> LoopThread | None:
        """Stop the scheduler, the runners and the loop thread, waiting for them at most
        until *real_end* (5 s when None); a thread still busy then is a daemon that ends
        on its own and can no longer run anything of this manager's stopped work.
        Returns the closed loop thread if it had not ended by then (its last turn, which
        finishes the attempts cancelled by the claims, may still be running)."""

        def left() -> float:
            return 5.0 if real_end is None else max(0.0, real_end - time.monotonic())

        self._scheduler.stop(left())
        with self._lock:
            runners = [self._retry_runner_, self._call_runner_]
            self._retry_runner_ = self._call_runner_ = None
            loops, self._loops = self._loops, None
        for r in runners:
            if r is not None:
                r.close()
        if loops is not None and not loops.close(left()):  # from its own thread it only asks the loop to stop
            return loops
        return None

    def close_at_exit(self, timeout: float) -> None:
        """Called once at interpreter exit by :mod:`nova._util.atexit` with the seconds
        left of nova's exit budget (``NOVA_EXIT_TIMEOUT``).

        Works like ``stop(timeout)`` on 80% of that time: retries due within it run,
        the others are dead-lettered through the normal path (a dead-letter store keeps
        them), and the count of those is logged as a warning on ``nova.listener``.
        Failures after this point are dead-lettered at once (no retry can outlive the
        interpreter).  Returns within *timeout* even if a dead-letter handler blocks.

        The count logged is exact: it is the number of dead letters made from the moment
        the close begins until it returns, whoever makes them (the close itself, or the
        thread or task of a retry whose attempt was in flight, or being rescheduled, and
        failed once more), so it equals the number of events the close dead-lettered (in
        a dead-letter store: the entries it added).  The rest of the time (20%) lets the
        manager's loop thread finish the ``async def`` attempts the close cancelled, so
        none is left pending when the interpreter ends.
        """
        letters: list[DeadLetter] = []  # every retry dead-lettered from now on
        with self._rcond:
            self._collectors.append(letters)
            self._exit_closed = True
            pending = len(self._retries)
        try:
            if pending == 0 and self._loop is None and not self._scheduler.running:
                return
            budget = max(0.0, float(timeout))
            end = time.monotonic() + budget
            result: list[tuple[list[DeadLetter], LoopThread | None]] = []

            def run() -> None:
                result.append(self._stop(budget * 0.8))

            th = threading.Thread(target=run, name="nova-listener-exit", daemon=True)
            th.start()
            th.join(budget)
            if not result:
                _log.warning("nova: ListenerManager could not close within %.3gs at interpreter exit: "
                             "%d retried event(s) were pending; their dead-letter path was still running",
                             budget, pending)
                return
            left_loop = result[0][1]
            if left_loop is not None:
                left_loop.close(max(0.0, end - time.monotonic()))
            with self._rcond:
                n = len(letters)
            if n:
                _log.warning("nova: ListenerManager at interpreter exit: %d retried event(s) not "
                             "delivered in time, dead-lettered", n)
        finally:
            with self._rcond:
                self._collectors = [c for c in self._collectors if c is not letters]

    def _refuse_retry(self, due: float) -> bool:
        """(With ``_rcond`` held.)  Whether a retry due at *due* must be dead-lettered at
        once: a stop(timeout) running now ends before it, or the interpreter exits."""
        return self._exit_closed or (bool(self._deadlines) and due > min(self._deadlines))

    def _add_retry(self, retry: Retry) -> None:
        """(With ``_rcond`` held.)  Accept *retry* and put it on the timer heap."""
        self._retries.add(retry)
        m = retry.managed
        with m._lock:
            m._c["pending"] += 1
        if not self._exit_hooked:  # once per manager: the registry holds it weakly
            self._exit_hooked = True
            exit_register(self.close_at_exit, STAGE_CONSUMER)
        retry.entry = self._scheduler.schedule(retry.due, retry)
        self._rcond.notify_all()

    def _forget(self, retry: Retry, state: int = DONE) -> None:
        """(With ``_rcond`` held.)  *retry* ended (or was claimed by stop())."""
        retry.state = state
        if retry in self._retries:
            self._retries.discard(retry)
            m = retry.managed
            with m._lock:
                m._c["pending"] -= 1
            self._rcond.notify_all()

