"""The timer scheduler: a heap of due times served by one thread, on an injectable clock.

The ListenerManager schedules its retries (and the timeouts of calls measured on a
:class:`~nova.testing.ManualClock`) here; due entries are handed to a dispatch function
that runs them elsewhere (a runner thread, a pool, an event loop).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from nova._util.checks import now_fn
from nova.testing import SYSTEM_CLOCK

__all__ = ("Scheduler", "Entry")

# The records of this scheduler keep the logger they had when it was the listener's.
_log = logging.getLogger("nova.listener")


class Scheduler:
    """A timer heap served by one thread, on an injectable clock.

    * On the system clock the thread waits on a condition with a timeout.
    * On any other clock (e.g. :class:`nova.testing.ManualClock`) it waits with
      ``clock.sleep(until_due)``, so a test's ``advance`` wakes it.  Because such a
      sleep cannot be interrupted, an entry due earlier than the current sleep target
      starts a short-lived helper thread that sleeps toward the earlier time.

    Due entries are handed to *dispatch* (which runs them elsewhere); a dispatched
    entry counts as active until :meth:`task_done`.
    """

    def __init__(self, clock: Any, dispatch: Callable[[Callable[[], Any]], None]) -> None:
        self._clock = clock
        self._now = now_fn(clock)
        self._real = clock is SYSTEM_CLOCK
        self._dispatch = dispatch
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()
        self._gen = 0
        self._thread: threading.Thread | None = None
        self._targets: list[float] = []  # clock-sleep targets of sleeping threads
        self._main_sleeping = 0  # the generation of a main thread inside clock.sleep, or 0
        self._live = 0  # entries in the heap not cancelled
        self._active = 0  # dispatched, not done

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is not None:
            return
        self._gen += 1
        t = threading.Thread(target=self._serve, args=(self._gen, True), name="nova-retry-scheduler",
                             daemon=True)
        self._thread = t
        t.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stop(self, join: float = 5.0) -> bool:
        """Stop the threads (a thread inside a manual clock's sleep exits when woken),
        waiting at most *join* seconds for the serving thread to end.

        Entries still scheduled (timers of calls in flight) keep it running: returns
        False then, and it stops by itself on the next :meth:`stop` once they are gone.
        """
        with self._cond:
            if self._live > 0:
                return False
            t = self._thread
            self._thread = None
            self._gen += 1
            self._cond.notify_all()
            sleeping = self._main_sleeping != 0
        if t is not None and not sleeping and t is not threading.current_thread():
            t.join(join)
        return True

    # -- entries -------------------------------------------------------------------
    def schedule(self, due: float, fn: Callable[[], Any]) -> Entry:
        entry = Entry(fn)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), entry))
            self._live += 1
            if self._thread is None:
                self._start_locked()
            elif (not self._real and self._main_sleeping == self._gen
                  and due < min(self._targets, default=math.inf)):
                threading.Thread(target=self._serve, args=(self._gen, False),
                                 name="nova-retry-alarm", daemon=True).start()
            self._cond.notify_all()
        return entry

    def cancel(self, entry: Entry) -> bool:
        """Cancel a scheduled entry; False if it already ran or was cancelled."""
        with self._cond:
            if entry.state != 0:
                return False
            entry.state = 2
            self._live -= 1
            self._cond.notify_all()
            return True

    def take_all(self, predicate: Callable[[float, Any], bool]) -> list[tuple[float, Entry]]:
        """Remove and return the live entries for which ``predicate(due, fn)`` holds."""
        with self._cond:
            keep: list[tuple[float, int, Entry]] = []
            taken: list[tuple[float, int, Entry]] = []
            for item in self._heap:
                if item[2].state != 0:
                    continue
                (taken if predicate(item[0], item[2].fn) else keep).append(item)
            heapq.heapify(keep)
            self._heap = keep
            for _, _, e in taken:
                e.state = 2
            self._live -= len(taken)
            self._cond.notify_all()
            return [(d, e) for d, _, e in taken]

    def task_done(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        return self._live

    def idle_now(self) -> bool:
        """No entry running and none due at the clock's current time (call with the lock)."""
        if self._active:
            return False
        now = self._now()
        for due, _, e in self._heap:
            if e.state == 0 and due <= now:
                return False
        return True

    def wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (real seconds) until *predicate()* holds under the lock; False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # -- the serving loop ------------------------------------------------------------
    def _pop_due(self, now: float) -> list[Entry]:
        heap = self._heap
        out = []
        while heap and (heap[0][2].state != 0 or heap[0][0] <= now):
            _, _, e = heapq.heappop(heap)
            if e.state == 0:
                e.state = 1
                out.append(e)
        self._live -= len(out)
        self._active += len(out)
        return out

    def _serve(self, gen: int, main: bool) -> None:
        cond = self._cond
        while True:
            with cond:
                if gen != self._gen:
                    return
                now = self._now()
                due = self._pop_due(now)
                if not due:
                    heap = self._heap
                    if self._real:
                        cond.wait(heap[0][0] - now if heap else None)
                        continue
                    covered = bool(self._targets) and heap and min(self._targets) <= heap[0][0]
                    if not heap or covered:
                        if not main:
                            cond.notify_all()
                            return
                        cond.wait()
                        continue
                    target = heap[0][0]
                    self._targets.append(target)
                    if main:
                        self._main_sleeping = gen
            if due:
                for e in due:
                    self._run(e)
                continue
            try:
                self._clock.sleep(max(0.0, target - now))
            finally:
                with cond:
                    self._targets.remove(target)
                    if main and self._main_sleeping == gen:
                        self._main_sleeping = 0
                    cond.notify_all()

    def _run(self, entry: Entry) -> None:
        try:
            self._dispatch(entry.fn)
        except BaseException:
            self.task_done()
            _log.exception("nova: could not dispatch a scheduled retry")


class Entry:
    """One scheduled function; ``state`` is 0 scheduled, 1 dispatched, 2 cancelled."""

    __slots__ = ("fn", "state")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.state = 0
