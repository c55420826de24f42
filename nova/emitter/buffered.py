"""``emit_async``'s buffer: a bounded :class:`~nova._core.RingQueue` drained by worker
threads (drain loops running on a :class:`~nova.pool.WorkerPool`), with the overflow
policies, ``drain()``, the shutdown give-up and the fork reset.

The hand-off between the drain loops (who takes from the buffer, who parks, who
helps with a taken batch) is :mod:`nova.emitter.handoff`, a base class of
:class:`BufferedIntake`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import CancelledError
from time import monotonic
from typing import TYPE_CHECKING, Any

from nova._util.checks import check_timeout
from nova._util.counters import count_value
from nova.emitter import fastpath
from nova.emitter.handoff import BATCH, Handoff  # noqa: F401  (BATCH: its old home)
from nova.errors import BufferFull, QueueClosed, QueueEmpty, Timeout

if TYPE_CHECKING:
    from nova.emitter.emitter import Emitter

__all__ = ("BufferedIntake",)

_log = logging.getLogger("nova.emitter")

_tls = threading.local()  # .intake: the BufferedIntake whose drain loop runs on this thread


class BufferedIntake(Handoff):
    """The buffer and the drain loops of one emitter (started on first use).

    Its drain loops take their events with :meth:`Handoff._take`."""

    def __init__(self, owner: Emitter, workers: int, buffer_size: int, pool: Any) -> None:
        self._owner = owner
        self.workers = workers
        self.buffer_size = buffer_size
        self._user_pool = pool
        self.queue: Any = None
        self.pool: Any = None  # the private pool, when no pool was given
        self.drains: list[Any] = []
        self._reset_workers(0)
        self._drain_cond = threading.Condition(threading.Lock())
        self.drain_waiters = 0

    def _reset_workers(self, settled: int) -> None:
        self.done = [settled] + [0] * (self.workers - 1)  # events each worker finished
        self.reset_handoff()

    # -- intake ----------------------------------------------------------------------
    def closed_error(self) -> Exception:
        return self._owner._closed_error()

    def admit(self, event: Any) -> Any:
        """Intake checks and ``before`` hooks: the event to enqueue, or None when a hook
        stopped it (or failed, with ``error_policy="continue"``)."""
        owner = self._owner
        owner._prep(event)
        for hook in owner._mw.before:
            try:
                ev = hook.run_before(event)
            except Exception as exc:
                owner._d.middleware_failed(event, exc)
                return None
            if ev is None:
                return None
            event = ev
        obs = owner._obs
        if obs is not None and obs.producer:  # the producer span covers the intake (tracing)
            obs.sent(obs.send(event, event.type, "emitter"), None, None)
        return event

    def put_slow(self, event: Any, timeout: Any, deadline: float | None) -> bool:
        """``emit_async`` off the fast path: admit, then enqueue (*deadline*: the end of
        an ``emit_batch`` call's time, which bounds this put)."""
        t = check_timeout(timeout)
        if deadline is not None:
            t = max(0.0, deadline - monotonic())
        admitted = self.admit(event)
        if admitted is None:
            return False
        return self.enqueue(admitted, t)

    def emit_batch(self, events: list[Any], t: float | None) -> int:
        """``emit_batch`` of checked *events*, *t* seconds for the whole call."""
        q = self._owner._aq
        if q is not None and t is None and self._owner._block:
            return self._put_all(q, events)
        deadline = None if t is None else monotonic() + t
        return sum(1 for ev in events if self.put_slow(ev, t, deadline))

    def _put_all(self, q: Any, events: list[Any]) -> int:
        """``emit_batch`` on the plain path: put each event, waiting for room."""
        put, accepted = q.put, self._owner._counters.accepted
        getters, parked = self.getters, self.parked
        n = 0
        try:
            for ev in events:
                put(ev)
                next(accepted)
                n += 1
                if not getters and parked:
                    self.wake_one()
        except QueueClosed:
            raise self.closed_error() from None
        return n

    async def aput(self, event: Any, t: float | None) -> bool:
        """``aemit_async``: never blocks the loop (a blocking put waits in a thread)."""
        admitted = self.admit(event)
        if admitted is None:
            return False
        if self._owner._overflow != "block":
            return self.enqueue(admitted, t)
        try:
            return self.enqueue(admitted, 0.0, first_try=t != 0)
        except Timeout:
            if t == 0:
                raise
        return await asyncio.to_thread(self.enqueue, admitted, t)

    def enqueue(self, event: Any, t: float | None, first_try: bool = False) -> bool:
        """Put an admitted event in the buffer under the overflow policy (*first_try*:
        a quick attempt that will be retried; a timeout is not counted as rejected)."""
        q = self.queue if self.queue is not None else self.start()
        m = self._owner._metrics
        overflow = self._owner._overflow
        try:
            if overflow == "block":
                self._put_blocking(q, event, t, m, first_try)
            elif overflow == "error":
                self._put_or_raise(q, event, m)
            elif overflow == "drop_newest":
                if not self._put_or_drop(q, event, m):
                    return False
            else:
                self._put_dropping_oldest(q, event, m)
        except QueueClosed:
            raise self.closed_error() from None
        next(self._owner._counters.accepted)
        if not self.getters and self.parked:
            self.wake_one()
        if m is not None:
            m.inc_events_emitted(event.type, "queued")
            m.set_queue_size(self._owner._component, q.qsize())
        return True

    def full_timeout(self, t: float | None) -> Timeout:
        return Timeout(f"Expected room in emitter {self._owner._name!r}'s buffer within {t} s, "
                       f"got it full ({self.buffer_size} events)")

    def _put_blocking(self, q: Any, event: Any, t: float | None, m: Any, first_try: bool) -> None:
        try:
            q.put(event, t)
        except Timeout:
            if m is not None and not first_try:
                m.inc_events_emitted(event.type, "rejected")
            raise self.full_timeout(t) from None

    def _put_or_raise(self, q: Any, event: Any, m: Any) -> None:
        try:
            q.put_nowait(event)
        except BufferFull:
            if m is not None:
                m.inc_events_emitted(event.type, "rejected")
            raise BufferFull(
                f"Expected room in emitter {self._owner._name!r}'s buffer, got it full ({self.buffer_size} events)"
            ) from None

    def _put_or_drop(self, q: Any, event: Any, m: Any) -> bool:
        try:
            q.put_nowait(event)
            return True
        except BufferFull:
            next(self._owner._counters.dropped_new)
            if m is not None:
                m.inc_events_emitted(event.type, "dropped")
                m.inc_events_dropped(self._owner._component, "drop_newest")
            return False

    def _put_dropping_oldest(self, q: Any, event: Any, m: Any) -> None:
        while True:
            try:
                q.put_nowait(event)
                return
            except BufferFull:
                pass
            try:
                q.get_nowait()
            except QueueEmpty:
                continue
            # the victim was accepted earlier: it counts as emitted and dropped
            next(self._owner._counters.victims)
            if m is not None:
                m.inc_events_dropped(self._owner._component, "drop_oldest")
            self.wake_drainers()

    # -- the drain loops -------------------------------------------------------------
    def start(self) -> Any:
        """Create the buffer and start the drain loops (once)."""
        owner = self._owner
        with owner._lock:
            if self.queue is not None:
                return self.queue
            if owner._closed:
                raise self.closed_error()
            from nova._core import RingQueue

            q = RingQueue(self.buffer_size)
            pool = self._user_pool
            if pool is None:
                from nova.pool.workers import WorkerPool, _owned_by

                pool = self.pool = WorkerPool(self.workers, self.workers, name=f"nova-{owner._name}")
                _owned_by(pool)  # the emitter closes it (at exit too) and restarts it after a fork
            owner._started_threads()
            # One drain loop per pool thread: the pool hands tasks out in batches, so
            # submit the next loop only once the previous one runs on its own thread.
            drains = []
            for i in range(self.workers):
                started = threading.Event()
                drains.append(pool.submit(self._drain_loop, q, i, started))
                if not started.wait(None if self.pool is not None else 1.0):
                    _log.warning("emitter %r: drain loop %d waits for a free thread of pool %r", owner._name, i, pool)
            self.drains = drains
            self.queue = q
            owner._refresh()
            return q

    def _drain_loop(self, q: Any, wid: int, started: threading.Event) -> None:
        """One worker: take batches from the buffer (or help with another worker's) and
        deliver them until it closes."""
        _tls.intake = self
        started.set()
        try:
            park = self.new_park_lock()
            park.acquire()  # held: released by the waker that hands this worker the buffer
            while (batch := self._take(q, park, wid)) is not None:
                m = self._owner._metrics
                if m is not None:
                    m.set_queue_size(self._owner._component, q.qsize())
                self.done[wid] += fastpath.deliver_batch(self._owner, batch)
                if self.drain_waiters:
                    self.wake_drainers()
        finally:
            _tls.intake = None

    def in_worker(self) -> bool:
        """True when called from one of this intake's drain loops."""
        return getattr(_tls, "intake", None) is self

    # -- drain, shutdown, fork -------------------------------------------------------
    def settled(self) -> int:
        """Accepted buffered events whose fate is known: delivered, dropped to make room,
        or given up by shutdown."""
        c = self._owner._counters
        return sum(self.done) + count_value(c.victims) + c.undelivered

    def wait_settled(self, target: int, deadline: float | None) -> bool:
        """Wait until *target* accepted events are settled; False past *deadline*."""
        with self._drain_cond:
            self.drain_waiters += 1
            try:
                while self.settled() < target:
                    remaining = None if deadline is None else deadline - monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._drain_cond.wait(remaining)
            finally:
                self.drain_waiters -= 1
        return True

    def wake_drainers(self) -> None:
        if self.drain_waiters:
            with self._drain_cond:
                self._drain_cond.notify_all()

    def close(self, timeout: float | None, log: bool) -> bool:
        """Close the buffer and wait for the drain loops; past *timeout*, give up the
        events not started.  Returns True when every accepted event was delivered."""
        q = self.queue
        if q is None:
            return True
        q.close()
        if not self._wait_drains(timeout):
            self._give_up(q, log)
            return False
        return True

    def _wait_drains(self, timeout: float | None) -> bool:
        """Wait until every drain loop ended; False when *timeout* passed first.

        Each future is waited on through its own condition (``exception()``), not with
        ``concurrent.futures.wait``: that reads the futures' states twice (which are
        done, then how many to wait for), and a pool future finishing in between (a
        :class:`~nova.pool.WorkerPool` writes FINISHED before it takes the condition)
        left it waiting for ever for a count that never reached zero.  A drain loop
        ends exactly when ``close`` is waiting for it, so shutdown hung now and then."""
        deadline = None if timeout is None else monotonic() + timeout
        for fut in self.drains:
            remaining = None if deadline is None else max(0.0, deadline - monotonic())
            try:
                fut.exception(remaining)
            except CancelledError:
                continue
            except TimeoutError:
                return False
        return True

    def _give_up(self, q: Any, log: bool) -> None:
        """After a timed-out shutdown: take every event not yet started and count it."""
        n = 0
        while True:
            try:
                batch = q.get_many(max(1, q.capacity), 0)
            except QueueClosed:
                break
            if not batch:
                break
            n += len(batch)
        for b in self.batches:
            while True:
                try:
                    b.pop(0)
                except IndexError:
                    break
                n += 1
        owner = self._owner
        owner._counters.give_up(n)
        if n and owner._metrics is not None:
            owner._metrics.inc_events_dropped(owner._component, "shutdown", n)
        if n and log:
            _log.warning("emitter %r shut down with %d accepted events undelivered", owner._name, n)

    def close_pool(self, timeout: float | None) -> None:
        if self.pool is not None:
            self.pool.close(timeout=timeout)

    def finished(self) -> None:
        """Shutdown is over: wake every ``drain()`` caller."""
        with self._drain_cond:
            self._drain_cond.notify_all()

    def after_fork_in_child(self, keep: list[Any]) -> int:
        """A forked child: no drain loop exists here and the locks may have been held by
        parent threads.  Start afresh (the next ``emit_async`` starts new drain loops on
        a new private pool or the user's pool); the inherited buffer and pool go to
        *keep* (never freed, see ``nova.pool._FORK_KEEP``).  Returns the settled count."""
        self._drain_cond = threading.Condition(threading.Lock())
        self.drain_waiters = 0
        keep.extend(x for x in (self.queue, self.pool) if x is not None)
        self.queue = None
        self.pool = None
        self.drains = []
        settled = sum(self.done)
        self._reset_workers(settled)
        return settled
