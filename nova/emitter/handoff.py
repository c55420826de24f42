"""The hand-off between an emitter's drain loops: which worker takes from the buffer,
which parks, and who helps with a batch another worker took.

Wake one worker per handoff, and only when it has work.  Idle workers must not all
wait on the buffer: every put would wake one of them, and at a steady rate several wake
for nothing and contend for the GIL (issue 11: p99 doubled with 4 workers).  So at most
one worker sleeps on the buffer, the sole "getter"; the other idle workers are parked,
each on its own lock.  The getter takes everything waiting (up to BATCH): at a light load
one worker delivers it alone, exactly as a single worker would.  (Taking a per-worker
share instead left most of a 2-4 event burst to a parked worker, so at 50 k events/s
nearly every event cost a thread wake-up and a GIL handoff, and the p99 doubled.)

A taken batch is shared: a list its worker pops from the end, and so can other workers.
A worker always helps with a batch that has unstarted events before it takes from the
buffer or parks.  A parked worker is woken to help only when a batch is still unfinished
WATCH seconds (4 ms) after it was taken: its worker is slow or blocked in a listener.
The first idle worker to park becomes the *watcher*: while multi-event batches are being
taken it parks for WATCH at a time, and when it finds a batch unfinished that long it
helps with it (and wakes the next parked worker while events remain), so a slow or
blocking listener holds up only its own event (the others of its batch wait WATCH
to 2 x WATCH, 4-8 ms).  After a few polls with no multi-event batch taken it
sleeps until the next one is taken (one wake then), so an idle emitter does not poll.
The watcher's park is :class:`nova._core.park.Watch` (``wait``): with the compiled
kernels it polls with the GIL released, reading the take times of the batches from C
arrays, and takes the GIL back only to help, when woken, or when it goes idle (a poll
that took the GIL a thousand times a second, often just as an event had to be
delivered, was the rest of the p99 gap with 4 workers).  (Waking a parked worker for every batch of
two or more events instead, at 50 k events/s, cost ~0.2 thread wake-ups per event,
each contending for the GIL with the worker delivering the batch, and the p99 with 4
workers was twice that of one.)  A producer wakes one parked worker only when nobody
will look at the buffer (no getter, none woken and not yet running) -- one check on the
``emit_async`` path.

``getters`` holds one entry per worker that will look at the buffer: 1 for a getter, 0
for a woken worker that has not run yet (so ``emit_async`` does not wake a second one
for the same work). The lists are changed only by atomic append/pop/remove (under the
GIL), and each side publishes before it checks the other's state (a parker appends
itself, then looks for a getter and for work; a getter publishes its batch, then leaves,
then looks for parked workers), so work never waits while a worker is parked and none
will look at it (the watcher looks at the taken batches). Only the sole getter sleeps on
the buffer (a second getter takes a fair share, ``qsize() // workers``, without
waiting): the buffer's own wake-up cannot be aimed at a worker, nor reach one for events
another worker already took.

.. versionadded:: 0.2
"""

from __future__ import annotations

from typing import Any

from nova._core import kernel
from nova.errors import QueueClosed

__all__ = ("Handoff", "BATCH", "WATCH", "IDLE_POLLS")

BATCH = 256  # most events a worker takes from the buffer at once

#: How often the watcher looks for a batch left unfinished (its worker is slow or
#: blocked in a listener); a batch unfinished for this long gets a helper.  (1 ms
#: polls, even with the GIL released, preempted the threads delivering events on a
#: 2-core machine often enough to show in the p99 at 50 k events/s; at 4 ms they did not:
#: docs/performance.md.)
WATCH = 0.004
#: Polls without any multi-event batch taken before the watcher sleeps (it is woken
#: again by the next one).
IDLE_POLLS = 8


class Handoff:
    """The take/park/wake protocol of the drain loops of one buffer (a base of
    :class:`~nova.emitter.buffered.BufferedIntake`, which gives it ``workers``).  Each
    drain loop calls :meth:`_take` for its next events; producers call
    :meth:`wake_one` when nobody looks at the buffer (see the module docstring)."""

    workers: int

    def reset_handoff(self) -> None:
        """A fresh state: nobody parked, waiting or watching (at start and after a fork)."""
        # each worker's current batch: taken events not started (another worker's, when
        # helping with it; the same list may then appear twice)
        self.batches: list[list[Any]] = [[] for _ in range(self.workers)]
        # one entry per worker that will look at the buffer (1: a getter, 0: woken, not
        # yet running), and the parked workers' locks; list append/pop/remove are atomic
        self.getters: list[int] = []
        self.parked: list[Any] = []
        # the watcher (see _take): the park lock of the parked worker that polls, every
        # WATCH seconds, for a batch left unfinished that long; whether it sleeps
        # instead (idle: no multi-event batch lately); when each worker took or joined
        # its batch; multi-event batches taken so far (the watcher's sign of activity)
        self.watch_lock: Any = None
        self.watch_idle = True
        # when each worker took the multi-event batch it delivers, and the watcher's
        # park (compiled: it polls with the GIL released; nova._core.park)
        park = kernel("park")
        self.watch: Any = park.Watch(self.workers)
        self._woken_code, self._idle_code = park.WOKEN, park.IDLE
        self._armed: Any = None  # the watcher's lock, released by _arm

    def new_park_lock(self) -> Any:
        """A lock for a drain loop to park on (the kernel's: the compiled watcher waits
        on it with the GIL released)."""
        return kernel("park").ParkLock()

    @property
    def multi(self) -> int:
        """Multi-event batches taken from the buffer so far."""
        return int(self.watch.multi)

    @property
    def polls(self) -> int:
        """The watcher's polls that timed out (for tests)."""
        return int(self.watch.polls)

    def _unstarted(self) -> list[Any] | None:
        """A batch taken by a worker with events it has not started, or None."""
        for b in self.batches:
            if b:
                return b
        return None

    def _take(self, q: Any, park: Any, wid: int) -> list[Any] | None:
        """The events this worker delivers next, popped from the end of the returned
        list (oldest last): another worker's batch that still has unstarted events
        (shared: both pop from it), or else what waits in the buffer.  None once the
        buffer is closed."""
        getters, parked, qsize = self.getters, self.parked, q.qsize
        self.watch.clear(wid)  # the last batch is delivered
        watching = False  # woken to watch: help only a batch unfinished for WATCH seconds
        while True:
            shared = self._stuck() if watching else self._unstarted()
            if shared is not None:  # help a busy worker with the batch it took
                self.batches[wid] = shared
                self.watch.took(wid, False)
                if self.watch_lock is park:
                    self.watch_lock = None  # busy now: the next worker to park watches
                if parked and (len(shared) > 1 or (qsize() and not getters)):
                    self.wake_one()  # more than we take next, or nobody for the buffer
                return shared
            if not qsize() and (1 in getters or watching):  # another worker takes from the buffer: park
                # woken, or a batch was stuck: look again; or the watcher's poll found
                # nothing stuck: park again without helping a batch being delivered
                watching = not self._park(q, park)
                continue
            getters.append(1)
            # Only the sole getter may sleep on the buffer (the buffer's wake-up cannot
            # be aimed at a worker, nor reach one for events already taken).  Another
            # getter (the sole one is asleep there, or woken and waiting for the GIL)
            # takes a fair share without waiting: were it to block in a listener with
            # nobody parked, the one asleep on the buffer would not see its batch.
            sole = getters.count(1) == 1
            wait = None
            if sole and self._unstarted() is not None:
                if not watching:
                    getters.remove(1)  # a batch was published meanwhile: help with it
                    continue
                wait = WATCH  # watching it: look at it again soon
            try:
                # The sole getter takes everything waiting: at a light load one worker
                # delivers it alone, as a single worker would (a per-worker share meant
                # a thread wake-up per event at 50 k/s, and twice the p99).
                if sole:
                    batch: list[Any] = q.get_many(BATCH, wait)
                else:
                    batch = q.get_many(min(BATCH, max(1, qsize() // self.workers)), 0)
            except QueueClosed:
                getters.remove(1)
                while parked:  # let the parked workers see the close too
                    self.wake_one()
                return None
            batch.reverse()
            if len(batch) > 1:
                self.watch.took(wid, True)
            self.batches[wid] = batch  # published before this worker stops being a getter
            getters.remove(1)
            if not batch:
                continue
            if self.watch_lock is park:
                self.watch_lock = None  # busy now: the next worker to park watches
            if parked:
                if qsize() and not getters:
                    self.wake_one()  # nobody looks at the buffer: a parked worker does
                elif len(batch) > 1 and (self.watch_idle or self.watch_lock is None):
                    self._arm()  # nobody watches this batch: the watcher does from now
            return batch

    def _park(self, q: Any, park: Any) -> bool:
        """Park this worker until it is woken (True).  The first worker to park
        becomes the watcher (when there is none): while batches are being taken it
        parks for WATCH seconds at a time and, when a batch has had unstarted events
        for WATCH seconds or more (its worker is slow or blocked), stops watching and
        helps with it (True).  A poll that found nothing stuck returns False (park
        again).  A parked worker wakes only to help, never for a batch its worker is
        about to finish: waking one per multi-event batch made the workers contend for
        the GIL, and the p99 at 50 k events/s with 4 workers was twice that of one."""
        getters, parked = self.getters, self.parked
        if self.watch_lock is None:
            self.watch_lock = park
        watcher = self.watch_lock is park
        if watcher:
            parked.insert(0, park)  # woken last by wake_one (LIFO): others do the work
        else:
            parked.append(park)
        # published, now check: work that came, a close, a getter that left (the
        # watcher need not replace it: the next put wakes a parked worker), a batch
        # no one watches
        if q.qsize() or q.closed or (1 not in getters and not watcher):
            self.wake_one()  # maybe ourselves
        elif self.watch_idle and self._unstarted() is not None:
            self._arm()
        if watcher and not self.watch_idle:
            # polls every WATCH seconds (compiled: with the GIL released) until woken, a
            # batch is unfinished that long, or IDLE_POLLS polls saw nothing being taken
            got = self.watch.wait(park, WATCH, IDLE_POLLS)
            if got == self._woken_code:
                return self._woken(park)
            try:
                parked.remove(park)
            except ValueError:  # popped by a waker meanwhile: its release is coming
                park.acquire()
                return self._woken(park)
            if got == self._idle_code:
                self.watch_idle = True  # until a multi-event take arms it again
                return False
            if self._stuck() is not None:
                self.watch_lock = None  # the next worker to park watches
                return True
            return False
        park.acquire()
        return self._woken(park)

    def _woken(self, park: Any) -> bool:
        """A parked worker was woken: by :meth:`wake_one` (True: it looks for work) or,
        when it watches, by :meth:`_arm` (False: it polls again without helping yet)."""
        self.getters.remove(0)  # its entry as a woken worker
        if self._armed is park:
            self._armed = None
            return False
        if self.watch_lock is park:
            self.watch_lock = None  # watching is for parked workers: the next one does
        return True

    def _stuck(self) -> list[Any] | None:
        """A batch that has had unstarted events for WATCH seconds or more, or None.
        A batch taken that long ago with no unstarted event left (its worker delivers
        the last one) is acknowledged, so that the watcher's polls stop looking at it."""
        watch = self.watch
        for i, since in watch.stale(WATCH):
            b = self.batches[i]
            if b:
                return b
            watch.ack(i, since)
        return None

    def _arm(self) -> None:
        """Wake the sleeping watcher so that it polls again (a multi-event batch was
        taken, or one was found unwatched); with no watcher, wake any parked worker."""
        lock = self.watch_lock
        if lock is None:
            self.wake_one()
            return
        self.watch_idle = False
        try:
            self.parked.remove(lock)
        except ValueError:
            return  # already woken: it watches again when it parks
        self.getters.append(0)
        self._armed = lock  # (only this call can release it now)
        lock.release()

    def wake_one(self) -> None:
        """Unpark one worker (no-op when none is parked).  Until it runs, its entry 0 in
        ``getters`` stands for it: it will look at the buffer and the taken batches, so
        ``emit_async`` need not wake another."""
        try:
            lock = self.parked.pop()
        except IndexError:
            return
        self.getters.append(0)
        lock.release()

