"""The :class:`Emitter` facade: in-process events, delivered inline, through a worker
pool, or on asyncio.

* :meth:`Emitter.emit` calls the listeners inline, in subscription order.
* :meth:`Emitter.emit_async` puts the event in a bounded buffer drained by worker
  threads (a :class:`~nova.pool.WorkerPool`) with an overflow policy.
* :meth:`Emitter.aemit` delivers from asyncio code, async listeners concurrently.
* :meth:`Emitter.shutdown` stops intake, delivers what was accepted and closes.

Guarantees, in short: one failing listener never hides the others; an ``async def``
listener is always run to completion (on nova's own loop when nothing else can run
it); errors are raised to the caller or reported to ``on_error`` hooks, never lost;
every accepted event is either delivered or counted in ``stats().undelivered``.
See ``docs/emitter.md``.

The facade checks arguments, owns the lock and the lifecycle, and delegates: the route
table (:mod:`.routes`), delivery and errors (:mod:`.dispatch`), the buffer
(:mod:`.buffered`), asyncio (:mod:`.aio`), counters (:mod:`.stats`), and the
benchmarked shortcuts (:mod:`.fastpath`).  Size: :class:`Emitter` is over ~400 lines
only by its public API with docstrings; each mechanism is in the sibling module named.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from time import monotonic
from typing import Any

from nova._core import Event
from nova._util.checks import check_name, check_opt_callable, check_positive_int, check_timeout
from nova._util.counters import count_value
from nova.emitter import fastpath
from nova.emitter.aio import adeliver_through
from nova.emitter.buffered import BufferedIntake
from nova.emitter.dispatch import Dispatcher
from nova.emitter.middleware import Stack, as_middleware
from nova.emitter.routes import WILDCARD, Entry, RouteTable, bounded_call, once_call
from nova.emitter.lifecycle import Lifecycle
from nova.emitter.stats import Counters, EmitterStats, snapshot
from nova.errors import EmitterClosed, ValidationError, type_name
from nova.observability.observers import check as check_observer
from nova.observability.observers import plus as observers_plus
from nova.events import EVENT_CLASSES, FunctionListener, Subscription, as_listener, check_event, is_async_listener

__all__ = ("Emitter", "OVERFLOW_POLICIES", "ERROR_POLICIES")

_log = logging.getLogger("nova.emitter")

#: The accepted ``overflow`` values.
OVERFLOW_POLICIES = ("block", "error", "drop_newest", "drop_oldest")
#: The accepted ``error_policy`` values.
ERROR_POLICIES = ("raise", "continue")

_METRIC_OPS = ("inc_events_emitted", "inc_events_processed", "observe_listener_duration",
               "set_queue_size", "set_active_listeners", "inc_events_dropped")

def _check_type(event_type: object) -> str:
    # Not checks.check_name: tests assert this TypeError wording ("a non-empty str
    # event type, got int"), where check_name says "a str event type".
    if not isinstance(event_type, str):
        raise TypeError(f"Expected a non-empty str event type, got {type_name(event_type)}")
    return check_name(event_type, "event type")


def _check_pool(pool: Any, workers: int) -> None:
    if pool is None:
        return
    if not callable(getattr(pool, "submit", None)):
        raise TypeError(f"Expected a WorkerPool (with submit) or None, got {type_name(pool)}")
    size = getattr(pool, "size", None)
    if isinstance(size, int) and not isinstance(size, bool) and workers > size:
        # each drain loop holds a pool thread until shutdown: the extra ones would
        # never run (and the first emit_async would wait for them)
        raise ValueError(
            f"Expected workers <= the {size} threads of the given pool (each drain loop "
            f"holds one until shutdown), got workers={workers}"
        )


def _check_metrics(metrics: Any) -> Any:
    """The collector to report to, or None (none given, or one that is disabled)."""
    if metrics is None:
        return None
    for op in _METRIC_OPS:
        if not callable(getattr(metrics, op, None)):
            raise TypeError(f"Expected a MetricsCollector (with {op}) or None, got {type_name(metrics)}")
    return None if getattr(metrics, "enabled", True) is False else metrics


class Emitter:
    """Emit events to listeners: inline, through a bounded buffer and worker pool, or on asyncio.

    (Size: the facade of the whole documented public API, about half of it docstrings;
    routes, dispatch, buffer, asyncio and lifecycle are sibling modules.)

    Args:
        pool: a :class:`~nova.pool.WorkerPool` to run the buffer's drain loops on (the
            emitter then occupies *workers* of its threads until shutdown, and does not
            close it; *workers* must not exceed its ``size``).  ``None`` (default): the
            emitter makes its own pool of *workers* threads on the first ``emit_async``
            and closes it on shutdown.
        workers: drain loops (threads) serving the buffer.
        buffer_size: the most events waiting in the buffer.
        max_concurrency: the most concurrent calls of one subscription that nova itself
            schedules: awaitables (``async def`` listeners) from every path, and calls
            in worker threads when ``workers > max_concurrency``.  A caller that finds
            the subscription saturated waits (up to *acquire_timeout*, then the call
            fails with :class:`~nova.errors.Timeout`, reported like a listener error).
            ``None``: no bound.  Sync listeners called inline by ``emit()`` run in the
            calling thread and are not counted, unless the subscription gave its own
            ``max_concurrency`` (see :meth:`subscribe`).
        overflow: what ``emit_async`` does when the buffer is full: ``"block"`` (wait up
            to the call's timeout, then :class:`~nova.errors.Timeout`), ``"error"``
            (:class:`~nova.errors.BufferFull` at once), ``"drop_newest"`` (the new event
            is dropped, ``emit_async`` returns False), ``"drop_oldest"`` (the oldest
            waiting event is dropped to make room).  Drops are counted.
        error_policy: ``"raise"``: ``emit``/``aemit`` run every listener, then raise the
            error (one) or an :class:`ExceptionGroup` (several).  ``"continue"``: errors go
            to the listener's ``on_error(event, exc)`` and to *on_error*, and the call
            returns normally.  Worker threads always report (there is no caller to raise to).
        metrics: a :class:`~nova.observability.metrics.MetricsCollector`; ``None`` (or
            a collector whose ``enabled`` is False) reports nothing and costs nothing.
        validator: ``validator(event)`` runs on every emitted event; returning
            ``False`` rejects the event at the call with ``ValidationError``; an error it
            raises rejects it too and propagates as is.
        name: the emitter's name (metrics labels, thread names).
        on_error: ``on_error(event, exc, listener)``: the emitter-level error hook
            (``listener`` is ``None`` for a middleware error).  When an error is reported
            and neither a listener ``on_error`` nor this hook exists, it is logged on the
            ``nova.emitter`` logger.  Errors raised by hooks are logged, never propagated.
        acquire_timeout: how long a call waits for a ``max_concurrency`` slot (``None``:
            without limit).
        tracing: a :class:`~nova.observability.Tracing` to trace every emit and listener
            call with OpenTelemetry (``None``: no tracing, and no cost).

    Raises:
        TypeError / ValueError: an invalid argument, at construction.

    Thread-safe: every method may be called from many threads at once.

    (Near the ~400-line class guide only through the documented public API; every
    mechanism lives in a sibling module.)

    Size: the public facade and its docstrings; dispatch, buffer and asyncio paths
    are sibling modules.
    """

    def __init__(
        self,
        *,
        pool: Any = None,
        workers: int = 4,
        buffer_size: int = 1000,
        max_concurrency: int | None = 10,
        overflow: str = "block",
        error_policy: str = "raise",
        metrics: Any = None,
        validator: Callable[[Any], Any] | None = None,
        name: str = "emitter",
        on_error: Callable[[Any, BaseException, Any], Any] | None = None,
        acquire_timeout: float | timedelta | None = None,
        tracing: Any = None,
    ) -> None:
        if tracing is not None:
            check_observer(tracing)
        workers = check_positive_int(workers, "workers")
        buffer_size = check_positive_int(buffer_size, "buffer_size")
        self._max_concurrency = None if max_concurrency is None else check_positive_int(max_concurrency, "max_concurrency")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Expected overflow among {OVERFLOW_POLICIES}, got {overflow!r}")
        if error_policy not in ERROR_POLICIES:
            raise ValueError(f"Expected error_policy among {ERROR_POLICIES}, got {error_policy!r}")
        check_opt_callable(validator, "validator")
        check_opt_callable(on_error, "on_error(event, exc, listener)")
        if not isinstance(name, str) or not name:
            raise TypeError(f"Expected a non-empty str name, got {name!r}")
        _check_pool(pool, workers)
        self._metrics = metrics = _check_metrics(metrics)
        self._overflow = overflow
        self._block = overflow == "block"
        self._validator = validator
        self._name = name
        self._component = f"emitter:{name}"

        self._lock = threading.RLock()  # subscriptions, middleware, lifecycle
        self._table = RouteTable()
        self._mw = Stack()
        self._counters = Counters()
        self._d = Dispatcher(
            name=name, table=self._table, counters=self._counters, metrics=metrics,
            raise_errors=error_policy == "raise", on_error=on_error,
            acquire_timeout=check_timeout(acquire_timeout),
            bound_workers=self._max_concurrency is not None and workers > self._max_concurrency,
        )
        self._intake = BufferedIntake(self, workers, buffer_size, pool)
        self._publish_intake()
        self._closed = False
        self._life = Lifecycle(self)
        self._obs: Any = None  # tracing / audit trail: an observer or Observers (nova.observability.observers)
        self._refresh()
        if tracing is not None:
            self._add_observer(tracing)

    def _add_observer(self, observer: Any) -> None:
        """Let *observer* (a Tracing or an AuditTrail) see every emit and listener call
        from now on (the fast paths give way to the observed general path)."""
        with self._lock:
            self._obs = observers_plus(self._obs, observer)
            self._d.observe(self._obs)
            self._refresh()

    # The benchmarked shortcuts (see nova.emitter.fastpath).
    emit = fastpath.emit
    emit_async = fastpath.emit_async
    aemit = fastpath.aemit

    # -- subscriptions ---------------------------------------------------------------

    def subscribe(self, event_type: str, listener: Any, *, max_concurrency: int | None = None) -> Subscription:
        """Subscribe *listener* to *event_type* (``"*"`` for every type).

        *listener* is any callable ``fn(event)``, an ``async def``, or a
        :class:`~nova.events.Listener` (``id`` + ``handle``; a managed listener from a
        :class:`~nova.listener.ListenerManager` too).  *max_concurrency* overrides the
        emitter's bound for this subscription, and then bounds every call of it, the
        sync calls made inline by ``emit()`` in many threads too (a caller waits for a
        slot up to ``acquire_timeout``, then that call fails with
        :class:`~nova.errors.Timeout`).  Subscribing the same listener twice
        makes two subscriptions (it is then called twice per event).  nova awaits what an
        ``async def`` listener or a Listener's ``handle`` returns; a plain function's
        return value is ignored.

        Returns:
            the :class:`~nova.events.Subscription`; ``sub.unsubscribe()`` removes this
            subscription only.

        Raises:
            TypeError: *event_type* is not a str, or *listener* is not callable.
            ValidationError: *event_type* is empty.
            EmitterClosed: the emitter was shut down.
        """
        return self._add(event_type, listener, once=False, max_concurrency=max_concurrency)

    def once(self, event_type: str, listener: Any) -> Subscription:
        """Subscribe *listener* for exactly one event: the first emit that reaches it
        calls it, every other one (even at the same moment in another thread) does not.
        The subscription ends before the call.  Raises as :meth:`subscribe`."""
        return self._add(event_type, listener, once=True, max_concurrency=None)

    def on(self, event_type: str, listener: Any = None, *, max_concurrency: int | None = None) -> Any:
        """Subscribe a listener and return it unchanged: the decorator form
        ``@em.on("user.created")``, or the call form ``em.on("user.created", fn)`` (as
        in pyee and Node's EventEmitter).  Use :meth:`subscribe` for the
        :class:`~nova.events.Subscription`.

        Raises the same exceptions as :meth:`subscribe` (the event type is checked at once).
        """
        _check_type(event_type)
        if listener is not None:
            self.subscribe(event_type, listener, max_concurrency=max_concurrency)
            return listener

        def decorator(fn: Any) -> Any:
            self.subscribe(event_type, fn, max_concurrency=max_concurrency)
            return fn

        return decorator

    def _add(self, event_type: str, listener: Any, *, once: bool, max_concurrency: int | None) -> Subscription:
        _check_type(event_type)
        mc = self._max_concurrency if max_concurrency is None else check_positive_int(max_concurrency, "max_concurrency")
        lis = as_listener(listener)
        is_async = is_async_listener(lis)
        call = lis.fn if isinstance(lis, FunctionListener) and not is_async else lis.handle
        sem = None
        if mc is not None:
            from nova.pool import Semaphore

            sem = Semaphore(mc)
        sub = Subscription(event_type, lis, self._detach)
        entry = Entry(next(self._table.seq), sub, lis, call, is_async, sem, event_type)
        if once:
            entry.call = once_call(entry, call)
            entry.checked = True
        elif max_concurrency is not None and not is_async:
            # An explicit bound covers every call of this subscription, inline ones too.
            entry.call = bounded_call(entry, call, self._d.acquire_timeout)
            entry.bounded = True
        with self._lock:
            if self._closed:
                raise EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down: it takes no new subscriptions")
            self._table.add(entry)
            if sem is not None:
                self._life.watch_fork()  # a forked child gives it a fresh semaphore
            self._refresh(event_type)
            n = self._table.nsubs
        if self._metrics is not None:
            self._metrics.set_active_listeners(self._name, n)
        return sub

    def _publish_intake(self) -> None:
        """What ``emit_async``'s fast path reads of the intake, on the emitter itself
        (one attribute load less per event)."""
        self._getters, self._parked = self._intake.getters, self._intake.parked
        self._c_accepted = self._counters.accepted

    def _detach(self, sub: Subscription) -> None:
        with self._lock:
            if not self._table.remove(sub):
                return
            self._refresh(sub.topic)
            n = self._table.nsubs
        if self._metrics is not None:
            self._metrics.set_active_listeners(self._name, n)

    def listeners(self, event_type: str) -> list[Any]:
        """The listeners an event of *event_type* reaches now, in call order (the
        ``"*"`` subscriptions merged in by subscription order).  For ``"*"`` itself:
        the wildcard listeners.

        Raises:
            TypeError / ValidationError: a bad *event_type*.
        """
        _check_type(event_type)
        if event_type == WILDCARD:
            with self._lock:
                return [e.listener for e in self._table.subs.get(WILDCARD, ())]
        return [e.listener for e in self._table.route(event_type).entries]

    def event_types(self) -> list[str]:
        """The event types with at least one subscription (``"*"`` included if used),
        in the order they were first subscribed."""
        with self._lock:
            return list(self._table.subs)

    def _refresh(self, changed: str | None = None) -> None:
        """Rebuild the routes and decide which fast paths apply, then publish what the
        fast paths read.  Call with ``self._lock`` held (or from ``__init__``).
        *changed*: the one event type whose subscriptions changed (``None``: all)."""
        plain = self._metrics is None and self._validator is None and self._obs is None
        fast_ok = not self._closed and not self._mw.all and plain
        wfast_ok = not self._mw.worker and self._metrics is None and self._obs is None and not self._d.bound_workers
        self._afast = fast_ok
        # emit_async's fast put needs no hook unless an observer wants sends (tracing)
        intake_ok = self._metrics is None and self._validator is None and (self._obs is None or not self._obs.producer)
        self._aq = self._intake.queue if not self._closed and not self._mw.before and intake_ok else None
        t = self._table
        t.refresh(changed, fast_ok, wfast_ok, monotonic(), self._counters.lock)
        self._routes, self._default = t.routes, t.default
        self._fast, self._fastc, self._fast_default = t.fast, t.fastc, t.fast_default

    # -- middleware ------------------------------------------------------------------

    def use(self, middleware: Any = None, *, before: Callable[[Any], Any] | None = None,
            after: Callable[[Any, BaseException | None], Any] | None = None) -> Any:
        """Add a middleware; the first added is the outermost.

        ``middleware(event, call_next)`` wraps delivery: it may change the event (pass
        another one to ``call_next``), time or log it, or stop it (not call
        ``call_next``).  ``call_next(event)`` delivers and, with ``error_policy="raise"``,
        raises the listeners' error.  The seed's shape is accepted too: ``use(before=...,
        after=...)``, or an object with ``before``/``after`` methods (see
        :class:`HookMiddleware`).

        Returns:
            the middleware as added (a :class:`HookMiddleware` for the hook shapes).

        Raises:
            TypeError: not a callable, an ``async def``, or both forms given.
            EmitterClosed: the emitter was shut down.
        """
        mw = as_middleware(middleware, before, after)
        with self._lock:
            if self._closed:
                raise EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down")
            self._mw = self._mw.plus(mw)
            self._refresh()
        return mw

    # -- emit (sync): the general path behind fastpath.emit --------------------------

    def _prep(self, event: Any) -> None:
        """Validate *event* for intake (type, validator, closed)."""
        if type(event) is not Event:
            check_event(event)
        if self._closed:
            raise self._closed_error()
        v = self._validator
        if v is not None and v(event) is False:
            raise ValidationError(f"Expected an event the validator accepts, got {event.type!r} rejected")

    def _emit_slow(self, event: Any) -> None:
        self._prep(event)
        next(self._counters.emitted)
        obs = self._obs
        if obs is not None and obs.producer:
            self._emit_observed(event, obs)
            return
        mws = self._mw.all
        if mws:
            self._d.through_chain(event, mws)
        else:
            self._d.deliver_inline(event)

    def _emit_observed(self, event: Any, obs: Any) -> None:
        tokens = obs.send(event, event.type, "emitter")
        try:
            mws = self._mw.all
            if mws:
                self._d.through_chain(event, mws)
            else:
                self._d.deliver_inline(event)
        except BaseException as exc:
            obs.sent(tokens, None, exc)
            raise
        obs.sent(tokens, None, None)

    # -- emit_async (the buffer) -----------------------------------------------------

    def emit_batch(self, events: Iterable[Any], timeout: float | timedelta | None = None) -> int:
        """:meth:`emit_async` each of *events* in order; *timeout* bounds the whole call.
        Every event is type-checked before the first is enqueued.

        Returns:
            how many events were accepted.

        Raises:
            TypeError: *events* is not iterable, or holds a non-Event (nothing is enqueued).
            Exception: the errors of :meth:`emit_async` (the events before the failing
                one stay accepted).
        """
        try:
            it = iter(events)
        except TypeError:
            raise TypeError(f"Expected an iterable of Events, got {type_name(events)}") from None
        evs = list(it)  # an error raised while iterating is the iterable's own: it propagates
        for i, ev in enumerate(evs):
            if type(ev) is not Event and not isinstance(ev, EVENT_CLASSES):
                raise TypeError(f"Expected a nova Event at index {i}, got {type_name(ev)}")
        return self._intake.emit_batch(evs, check_timeout(timeout))

    async def aemit_async(self, event: Any, timeout: float | timedelta | None = None) -> bool:
        """:meth:`emit_async` from asyncio code: never blocks the event loop.

        With ``overflow="block"`` and a full buffer, the wait for room (up to *timeout*)
        happens in a helper thread while the loop goes on; the other policies never
        wait.  Returns and raises as :meth:`emit_async`.
        """
        return await self._intake.aput(event, check_timeout(timeout))

    def _closed_error(self) -> EmitterClosed:
        return EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down: it accepts no more events")

    @staticmethod
    def _timeout(timeout: Any) -> float | None:
        return check_timeout(timeout)

    def drain(self, timeout: float | timedelta | None = None) -> bool:
        """Wait until every event accepted by ``emit_async`` so far has been delivered
        (or dropped, or given up by shutdown), without stopping intake.

        Returns:
            True when that happened, False when *timeout* passed first.

        Raises:
            ValueError / TypeError: a bad *timeout*.
            RuntimeError: called from a listener running in this emitter's workers.
        """
        t = check_timeout(timeout)
        self._not_from_worker("drain")
        target = count_value(self._c_accepted)
        return self._intake.wait_settled(target, None if t is None else monotonic() + t)

    def _not_from_worker(self, what: str) -> None:
        if self._intake.in_worker() or self._d.runner.in_thread():
            raise RuntimeError(
                f"Expected {what}() from outside emitter {self._name!r}'s workers, got a call from one "
                "(it would wait for itself)"
            )

    # -- asyncio: the general path behind fastpath.aemit -----------------------------

    async def _aemit_slow(self, event: Any) -> None:
        self._prep(event)
        next(self._counters.emitted)
        obs = self._obs
        if obs is None or not obs.producer:
            await adeliver_through(self._d, event, self._mw.all)
            return
        tokens = obs.send(event, event.type, "emitter")
        try:
            await adeliver_through(self._d, event, self._mw.all)
        except BaseException as exc:
            obs.sent(tokens, None, exc)
            raise
        obs.sent(tokens, None, None)

    # -- shutdown --------------------------------------------------------------------

    def shutdown(self, timeout: float | timedelta | None = None) -> bool:
        """Stop intake, deliver everything already accepted, wait for in-flight
        listeners (the buffer's and those running on nova's loop), then close.

        From the first call on, ``emit``/``emit_async``/``aemit``/``subscribe`` raise
        :class:`~nova.errors.EmitterClosed`.  ``emit()``/``aemit()`` calls already past
        intake in other threads or tasks finish in their callers.

        Returns:
            True when everything accepted was delivered in time.  False when *timeout*
            passed first: the events not yet started are given up and counted in
            ``stats().undelivered`` (so ``delivered + undelivered`` + drop_oldest drops
            equals the accepted count once the calls in flight at that moment, which
            still finish in their threads, are done).

        Idempotent and thread-safe: later calls wait for the first one (up to their own
        *timeout*) and return its result.

        Raises:
            TypeError / ValueError: a bad *timeout*.
            RuntimeError: called from a listener running in this emitter's workers (it
                would wait for itself).
        """
        return self._life.shutdown(check_timeout(timeout), at_exit=False)

    def close_at_exit(self, timeout: float) -> None:
        """Interpreter exit (called by :mod:`nova._util.atexit` with the seconds left of
        the shared budget, ``NOVA_EXIT_TIMEOUT``): :meth:`shutdown` bounded by *timeout*.
        Events accepted by ``emit_async`` are delivered while the time lasts; the ones not
        started then are given up (counted in ``stats().undelivered``) and, with the
        deliveries still running (a listener blocked for ever), logged at WARNING on the
        ``nova.emitter`` logger.  The worker and loop threads are daemons: what is left
        cannot hold the interpreter.
        """
        self._life.close_at_exit(timeout)

    def _started_threads(self) -> None:
        """The emitter now owns threads (see :meth:`Lifecycle.started_threads`)."""
        self._life.started_threads()

    async def ashutdown(self, timeout: float | timedelta | None = None) -> bool:
        """:meth:`shutdown` from asyncio code, without blocking the loop."""
        return await asyncio.to_thread(self.shutdown, timeout)

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ashutdown()

    # -- stats -----------------------------------------------------------------------

    def stats(self) -> EmitterStats:
        """A snapshot of the counters (see :class:`EmitterStats`); each event and each
        listener call is counted exactly once."""
        return snapshot(self._counters, self._table, self._intake, self._lock)

    @property
    def name(self) -> str:
        """The emitter's name."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Emitter {self._name!r} {state} subscriptions={self._table.nsubs}>"
