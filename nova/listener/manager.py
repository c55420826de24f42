"""ListenerManager: registers listeners and runs them as :class:`ManagedListener` objects,
owning their shared machinery (the timer scheduler, helper threads, the asyncio loop
thread) and the manager-wide health, stats and redrive."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from nova._util.checks import check_clock, check_duration, now_fn
from nova._util.loop import LoopThread
from nova._util.runner import ThreadRunner
from nova.errors import ListenerNotFound, PoolClosed, ValidationError, type_name
from nova.events import check_event
from nova.observability.managed import observe as observe_managed
from nova.observability.observers import plus as observers_plus
from nova.listener.calls import threadsafe_set
from nova.listener.config import ListenerConfig
from nova.listener.drain import DrainMixin
from nova.listener.health import HealthMixin
from nova.listener.managed import ManagedListener
from nova.listener.pending import CLAIMED, IN_TASK, Retry
from nova.resilience.redrive import RedriveReport, Target, redrive
from nova.resilience.policy import DeadLetter
from nova.resilience.scheduler import Scheduler
from nova.testing import SYSTEM_CLOCK

__all__ = ("ListenerManager",)

_log = logging.getLogger("nova.listener")

#: Every live ListenerManager, so a forked child can make its inherited copies usable.
_MANAGERS: weakref.WeakSet[ListenerManager] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for manager in list(_MANAGERS):
        manager._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ListenerManager(DrainMixin, HealthMixin):
    """Runs listeners with retries, circuit breakers, dead letters, timeouts and limits.

    (Size: the public API of the manager with its docstrings; calls, retries, draining
    and state are sibling modules.)

    Args:
        pool: a :class:`nova.WorkerPool` (anything with ``submit(fn)``) to run scheduled
            retries on; by default the manager's own daemon threads run them.
        metrics: a metrics collector; ``nova_events_processed_total{listener,result}``
            (results ``ok``, ``error``, ``timeout``, ``rejected``,
            ``dead_letter``, ``dropped``) and ``nova_listener_duration_seconds``.
            ``None`` records nothing.
        clock: ``monotonic()`` + ``sleep()``; backoff delays, breaker windows and
            timeouts are measured on it (:class:`nova.testing.ManualClock` in tests).

    ``register`` works at once.  The retry scheduler starts on first need (or with
    :meth:`start`); :meth:`stop` drains it and may be followed by a new start.  Usable as
    a context manager (``stop()`` on exit).  Thread-safe.

    Left open at interpreter exit, it finishes the retries due within its share of
    ``NOVA_EXIT_TIMEOUT`` and dead-letters (and logs the count of) the rest: see
    :meth:`close_at_exit`.  Inherited by a forked child, it is usable there without the
    parent's pending retries (the parent runs those).

    Raises:
        TypeError: *pool*, *metrics* or *clock* lacks the needed methods.

    ``stop()``, ``close_at_exit()`` and the retry ledger are in :mod:`nova.listener.drain`.
    """

    def __init__(self, pool: Any = None, metrics: Any = None, clock: Any = None) -> None:
        if pool is not None and not callable(getattr(pool, "submit", None)):
            raise TypeError(f"Expected pool with a submit() method or None, got {type_name(pool)}")
        if metrics is not None and not callable(getattr(metrics, "inc_events_processed", None)):
            raise TypeError(f"Expected a MetricsCollector or None, got {type_name(metrics)}")
        self._pool = pool
        self._metrics = metrics
        self._obs: Any = None  # observability seam: tracing / audit (see _add_observer)
        self._clock = check_clock(clock)
        self._now = now_fn(self._clock)
        self._lock = threading.RLock()
        self._listeners: dict[str, ManagedListener] = {}
        self._scheduler = Scheduler(self._clock, self._dispatch)
        self._retry_runner_: ThreadRunner | None = None
        self._call_runner_: ThreadRunner | None = None
        self._loops: LoopThread | None = None  # runs async listeners; replaced after stop()
        # Scheduled retries (accepted events with attempts left) and their states; see
        # Retry.  stop() waits on and claims them under _rcond.
        self._rcond = threading.Condition(threading.Lock())
        self._retries: set[Retry] = set()
        self._collectors: list[list[DeadLetter]] = []  # one per stop() running now
        self._deadlines: list[float] = []  # of the stop(timeout) calls running now
        self._exit_hooked = False  # registered with nova._util.atexit
        self._exit_closed = False  # close_at_exit ran: failures are dead-lettered at once
        self._managed: weakref.WeakSet[ManagedListener] = weakref.WeakSet()
        _MANAGERS.add(self)

    # -- registry -----------------------------------------------------------------------------
    def register(self, listener: Any, config: ListenerConfig | None = None, *,
                 id: str | None = None) -> ManagedListener:
        """Wrap *listener* (a callable, an ``async def`` or a Listener) and return the
        :class:`ManagedListener` to subscribe.  Its id is the listener's (or *id*).

        Raises:
            TypeError: *listener* is not callable or *config* not a ListenerConfig.
            nova.errors.ValidationError: the id is already registered here.
        """
        from nova.events import as_listener

        if config is None:
            config = ListenerConfig()
        elif not isinstance(config, ListenerConfig):
            raise TypeError(f"Expected config as a ListenerConfig, got {type_name(config)}")
        if isinstance(listener, ManagedListener):
            raise TypeError("Expected a plain listener, got a ManagedListener (already managed)")
        inner = as_listener(listener, id=id)
        with self._lock:
            if inner.id in self._listeners:
                raise ValidationError(f"Expected a listener id not registered yet, got {inner.id!r}")
            managed = ManagedListener(self, inner, config)
            if self._obs is not None:
                observe_managed(managed, self._obs)
            self._listeners[inner.id] = managed
            self._managed.add(managed)
        return managed

    def _add_observer(self, observer: Any) -> None:
        """Observability seam: let *observer* (a Tracing or an AuditTrail) see every
        attempt of every listener, registered now or later
        (:mod:`nova.observability.managed`)."""
        with self._lock:
            self._obs = observers_plus(self._obs, observer)
            for m in self._listeners.values():
                observe_managed(m, self._obs)

    def unregister(self, listener_id: str) -> ManagedListener:
        """Forget a listener: :meth:`process`, :meth:`health` and :meth:`stats` no longer
        see it.  Its retries already scheduled still run; the returned object keeps working
        where it is subscribed (unsubscribe it there).

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        with self._lock:
            try:
                return self._listeners.pop(listener_id)
            except KeyError:
                raise ListenerNotFound(
                    f"Expected a registered listener id, got {listener_id!r}") from None

    def get(self, listener_id: str) -> ManagedListener:
        """The managed listener registered under *listener_id*.

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        try:
            return self._listeners[listener_id]
        except KeyError:
            raise ListenerNotFound(f"Expected a registered listener id, got {listener_id!r}") from None

    @property
    def listener_ids(self) -> tuple[str, ...]:
        """The registered ids, in registration order."""
        with self._lock:
            return tuple(self._listeners)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the retry scheduler (it also starts by itself on the first retry)."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        """Whether the retry scheduler thread runs."""
        return self._scheduler.running

    def _reset_after_fork(self) -> None:
        """In a forked child: drop the parent's threads, locks and scheduled retries (the
        parent runs those; the child must not handle them twice) and make the manager
        usable again.  Listeners, configs, breaker states and counters are kept."""
        self._lock = threading.RLock()
        self._rcond = threading.Condition(threading.Lock())
        for r in self._retries:
            r.state = CLAIMED
        self._retries = set()
        self._collectors = []
        self._deadlines = []
        self._scheduler = Scheduler(self._clock, self._dispatch)
        self._retry_runner_ = self._call_runner_ = None
        self._loops = None  # the parent's loop thread did not survive the fork
        for m in list(self._managed):
            m._reset_after_fork()

    def __enter__(self) -> ListenerManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ListenerManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no retry runs and none is due at the clock's current time.

        With a :class:`~nova.testing.ManualClock`: ``clock.advance(d)`` then
        ``wait_idle()`` returns once everything due by then has run.  *timeout* is in
        real seconds; returns False if it passed first.
        """
        t = None if timeout is None else check_duration(timeout, "timeout")
        return self._scheduler.wait(self._scheduler.idle_now, t)

    def _dispatch(self, fn: Callable[[], Any]) -> None:
        sched = self._scheduler

        def task() -> None:
            token = IN_TASK.set(fn)  # an async retry's task inherits it too
            try:
                result = fn()
            except BaseException:
                sched.task_done()
                _log.exception("nova: a scheduled task failed")
                return
            finally:
                IN_TASK.reset(token)
            if isinstance(result, concurrent.futures.Future):
                result.add_done_callback(lambda f: sched.task_done())
            else:
                sched.task_done()

        pool = self._pool
        if pool is not None and isinstance(fn, Retry):
            # Never block the scheduler thread on a full pool, and never lose a retry to a
            # closed one: the manager's own threads take it then.
            try:
                try_submit = getattr(pool, "try_submit", None)
                if try_submit is not None:
                    if try_submit(task) is not None:
                        return
                else:
                    pool.submit(task)
                    return
            except Exception:  # PoolClosed, RuntimeError of a shut-down executor...
                pass
        for _ in range(3):
            try:
                self._retry_runner().submit(task)
                return
            except PoolClosed:  # stop() closed that runner meanwhile: a new one takes it
                continue
        self._retry_runner().submit(task)

    def _retry_runner(self) -> ThreadRunner:
        with self._lock:
            r = self._retry_runner_
            if r is None or r.closed:
                r = self._retry_runner_ = ThreadRunner("nova-retry", 16)
            return r

    def _call_runner(self) -> ThreadRunner:
        with self._lock:
            r = self._call_runner_
            if r is None or r.closed:
                r = self._call_runner_ = ThreadRunner("nova-listener-call", 256)
            return r

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The manager's event loop, its thread started on first use (a new one after stop())."""
        with self._lock:
            loops = self._loops
            if loops is None or loops.closed:
                loops = self._loops = LoopThread("nova-listener-loop")
            return loops.loop

    def _run_coro(self, coro: Any) -> Any:
        """Run *coro* to completion on the manager's loop thread and return its result.

        Through :meth:`LoopThread.submit`: a stop() closing that loop meanwhile either
        runs or cancels *coro*, or refuses it (RuntimeError); it is never dropped with
        a future this call would wait on for ever."""
        with self._lock:
            loops = self._loops
            if loops is None or loops.closed:
                loops = self._loops = LoopThread("nova-listener-loop")
        if loops.in_thread():  # pragma: no cover - misuse guard
            coro.close()
            raise RuntimeError("Expected a call from outside the manager's loop thread, got one from it")
        return loops.submit(coro).result()

    async def _asleep(self, seconds: float) -> None:
        """Sleep *seconds* on the manager's clock without blocking the running loop."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self._clock is SYSTEM_CLOCK:
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        entry = self._scheduler.schedule(self._now() + seconds, lambda: threadsafe_set(loop, fut))
        try:
            await fut
        finally:
            self._scheduler.cancel(entry)

    # -- direct use ------------------------------------------------------------------------------
    def process(self, listener_id: str, event: Any, *, topic: str | None = None) -> bool:
        """Run *event* through the listener now, every attempt in this thread (sleeping on
        the clock between them).  True if handled, False if dead-lettered.

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
            TypeError: *event* is not an Event.
        """
        managed = self.get(listener_id)
        check_event(event)
        return managed.run_inline(event, topic=topic)

    async def aprocess(self, listener_id: str, event: Any, *, topic: str | None = None) -> bool:
        """:meth:`process` for asyncio code.

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
            TypeError: *event* is not an Event.
        """
        managed = self.get(listener_id)
        check_event(event)
        return await managed.arun_inline(event, topic=topic)

    # -- redrive -----------------------------------------------------------------------------------
    def redrive(self, store: Any, *, listener_id: str | None = None, start: Any = None,
                end: Any = None, dry_run: bool = False, on_open: str = "stop") -> RedriveReport:
        """Replay dead letters from *store*'s ``"nova.deadletter"`` stream back through
        their listeners (all registered ones, or only *listener_id*), each with
        :meth:`process` semantics (inline, with retries).  *start*/*end* bound the events'
        timestamps, ``[start, end)``.  Each event gets its original type back and loses
        the dead-letter metadata.

        Idempotent: what was done is recorded in stream ``"nova.deadletter.ack"`` of the
        same store (the dead-letter stream itself is never rewritten), so an entry handled
        by a redrive, or one that failed again and was dead-lettered anew into this store,
        is skipped by the next redrive.  Before each entry the listener's breaker is
        asked: if it is open the redrive stops there (``on_open="stop"``, the entry counts
        as ``rejected`` and the rest as ``left``) or waits on the manager's clock until it
        half-opens (``on_open="wait"``).  ``dry_run=True`` runs nothing and lists the
        events that would be replayed in ``events``.

        Returns a :class:`~nova.resilience.redrive.RedriveReport`.

        Raises:
            nova.errors.ListenerNotFound: *listener_id* is not registered.
            TypeError: *store* is not an EventStore.
            ValueError: *on_open* is not ``"stop"`` or ``"wait"``.

        .. versionchanged:: 0.2
            Returns a RedriveReport (was the number replayed); idempotent; breaker-aware;
            ``dry_run`` and ``on_open``.
        """
        from nova.events import Event

        if not callable(getattr(store, "replay", None)) or not callable(getattr(store, "append", None)):
            raise TypeError(f"Expected an EventStore (with replay) to redrive from, got {type_name(store)}")
        if listener_id is not None:
            self.get(listener_id)

        def target(lid: str, topic: str | None) -> Target | None:
            if listener_id is not None and lid != listener_id:
                return None
            managed = self._listeners.get(lid)
            if managed is None:
                return None

            def run(event: Any, topic: str | None) -> bool:
                return managed.run_inline(event, topic=topic)

            return Target(run, managed.breaker, managed.config.dead_letter.store is store)

        return redrive(store, target, start=start, end=end, dry_run=dry_run, on_open=on_open,
                       wait=self._clock.sleep, new_event=Event)

    def __repr__(self) -> str:
        return f"<ListenerManager listeners={len(self._listeners)} health={self.health().value}>"

