"""The parking of an emitter's idle workers and the watch for a stuck batch (pure-Python
twin, the specification).

An emitter's drain loops (:mod:`nova.emitter.handoff`) park idle workers, each on its
own :class:`ParkLock` (a lock held while parked, released by the worker that wakes
it).  One parked worker, the *watcher*, also looks every *period* seconds for a batch
of events another worker took and has not finished for that long (its worker is slow
or blocked in a listener) so that it can help with it.  :class:`Watch` holds what the
watcher needs: when each worker took its current multi-event batch (``took``/``clear``)
and :meth:`Watch.wait`, the watcher's park.

In this twin ``wait`` polls with the GIL (each timed-out ``acquire`` re-takes it); the
compiled twin (``park.pyx``) polls with the GIL released and takes it back only when a
batch is old enough to look at, when it is woken, or when it stops polling: at 50 k
events/s, a poll every millisecond that took the GIL from the worker delivering an event
was the remaining cause of the p99 doubling with 4 workers (issue 11).

.. versionadded:: 0.2
"""

from __future__ import annotations

import threading
from time import monotonic
from typing import Any

__all__ = ("ParkLock", "Watch", "WOKEN", "CHECK", "IDLE")

#: :meth:`Watch.wait` results: the lock was released (the worker was woken); a batch
#: has been unfinished for *period* seconds (look at it); nothing to watch lately.
WOKEN, CHECK, IDLE = 0, 1, 2

#: A parked worker's lock: ``acquire(blocking=True, timeout=-1)``, ``release()``.
ParkLock = threading.Lock


def _check_wid(wid: int, n: int) -> None:
    if not 0 <= wid < n:
        raise IndexError(f"Expected a worker index in [0, {n}), got {wid!r}")


class Watch:
    """When each of *workers* workers took the multi-event batch it is delivering, and
    the watcher's park (see the module docstring).  Every method is called with the GIL
    held except the wait of :meth:`wait` (compiled twin)."""

    def __init__(self, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"Expected workers as an int >= 1, got {workers!r}")
        self.n = workers
        self._since = [0.0] * workers  # when worker i took (or joined) its batch; 0: none
        self._acked = [0.0] * workers  # a *since* value found finished (see ack)
        self.multi = 0  # multi-event batches taken so far (the watcher's sign of activity)
        self.polls = 0  # timed-out polls of wait (for tests)

    def took(self, wid: int, multi: bool) -> None:
        """Worker *wid* took (*multi*: from the buffer, 2+ events) or joined a batch now."""
        _check_wid(wid, self.n)
        self._since[wid] = monotonic()
        if multi:
            self.multi += 1

    def clear(self, wid: int) -> None:
        """Worker *wid* finished its batch."""
        _check_wid(wid, self.n)
        self._since[wid] = 0.0

    def since(self, wid: int) -> float:
        """When worker *wid* took its batch (``time.monotonic()`` seconds; 0.0: none)."""
        _check_wid(wid, self.n)
        return self._since[wid]

    def stale(self, period: float) -> list[tuple[int, float]]:
        """``(worker, since)`` of the workers whose batch was taken *period* seconds ago
        or more and not acknowledged as finished (see :meth:`ack`)."""
        now = monotonic()
        return [(i, s) for i, s in enumerate(self._since) if s and s != self._acked[i] and now - s >= period]

    def ack(self, wid: int, since: float) -> None:
        """The batch worker *wid* took at *since* has no unstarted event left (its worker
        delivers the last one): :meth:`stale` and :meth:`wait` ignore it from now on."""
        _check_wid(wid, self.n)
        self._acked[wid] = since

    def _found(self, period: float) -> tuple[bool, bool]:
        """(a batch is stale, some batch is being delivered)."""
        now, busy = monotonic(), False
        for i, s in enumerate(self._since):
            if s:
                busy = True
                if s != self._acked[i] and now - s >= period:
                    return True, True
        return False, busy

    def wait(self, lock: Any, period: float, idle_polls: int) -> int:
        """The watcher's park: wait for *lock* (held), looking every *period* seconds for
        a stale batch.  Returns :data:`WOKEN` (the lock was released to us: we hold it),
        :data:`CHECK` (a batch is stale) or :data:`IDLE` (*idle_polls* polls in a row
        with no batch being delivered and no multi-event batch taken)."""
        if not period > 0:
            raise ValueError(f"Expected a period > 0, got {period!r}")
        seen, idle = self.multi, 0
        while True:
            if lock.acquire(True, period):
                return WOKEN
            self.polls += 1
            stale, busy = self._found(period)
            if stale:
                return CHECK
            if self.multi == seen and not busy:
                idle += 1
                if idle >= idle_polls:
                    return IDLE
            else:
                idle = 0
                seen = self.multi
