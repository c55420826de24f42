"""The Emitter: in-process events, delivered inline, through a worker pool, or on asyncio.

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

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from time import monotonic, perf_counter
from typing import Any, NamedTuple

from nova._core import event_py as _event_py
from nova._util import atexit as _exit
from nova.errors import BufferFull, EmitterClosed, QueueClosed, QueueEmpty, Timeout, ValidationError, type_name
from nova.events import Event, FunctionListener, Subscription, as_listener, is_async_listener
from nova.testing import to_seconds

__all__ = ("Emitter", "EmitterStats", "HookMiddleware", "hooks", "WILDCARD", "OVERFLOW_POLICIES", "ERROR_POLICIES")

_log = logging.getLogger("nova.emitter")

#: Subscribe to this event type to receive every event.
WILDCARD = "*"
#: The accepted ``overflow`` values.
OVERFLOW_POLICIES = ("block", "error", "drop_newest", "drop_oldest")
#: The accepted ``error_policy`` values.
ERROR_POLICIES = ("raise", "continue")

_EVENT_CLASSES: tuple[type, ...] = tuple({Event, _event_py.Event})
_BATCH = 256  # most events a worker takes from the buffer at once
_RETIRED_COMPACT = 256  # fold retired route counters when this many pile up
_RETIRED_AGE = 2.0  # seconds a retired route counter must be idle before it is folded

_SKIP = object()  # returned by a once-listener that lost the race (it did not run)
_tls = threading.local()  # .emitter: the Emitter whose drain loop runs on this thread


# Emitters that started threads, so a forked child can reset its copies.
_LIVE_EMITTERS: weakref.WeakSet[Emitter] = weakref.WeakSet()


def _reset_emitters_in_child() -> None:
    """``os.fork()`` child: see :meth:`Emitter._after_fork_in_child`."""
    for em in list(_LIVE_EMITTERS):
        em._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_emitters_in_child)


def _count_value(counter: itertools.count[int]) -> int:
    """The next value of an ``itertools.count`` without consuming it (= calls so far)."""
    r = repr(counter)
    return int(r[r.index("(") + 1 : -1])


def _check_event(event: object) -> None:
    if not isinstance(event, _EVENT_CLASSES):
        raise TypeError(f"Expected a nova Event, got {type_name(event)}")


def _check_type(event_type: object) -> str:
    if not isinstance(event_type, str):
        raise TypeError(f"Expected a non-empty str event type, got {type_name(event_type)}")
    if not event_type:
        raise ValidationError("Expected a non-empty str event type, got ''")
    return event_type


def _check_pos_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int > 0, got {type_name(value)}")
    if value <= 0:
        raise ValueError(f"Expected {name} > 0, got {value}")
    return value


def _check_timeout(timeout: float | timedelta | None) -> float | None:
    return None if timeout is None else to_seconds(timeout, "timeout")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


class EmitterStats(NamedTuple):
    """A snapshot of an :class:`Emitter`'s counters (see :meth:`Emitter.stats`).

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
        undelivered: buffered events a timed-out :meth:`Emitter.shutdown` gave up on.
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


class HookMiddleware:
    """Middleware of the seed's ``before``/``after`` shape, as an onion middleware.

    ``before(event)`` runs first: it returns ``None`` (go on with *event*), an
    :class:`~nova.events.Event` (go on with that one instead) or ``False`` (stop: the
    event is not delivered).  If it raises, the event is not delivered and the error
    is a middleware error.  ``after(event, error)`` runs once delivery is over, with the
    delivery error (``None`` if every listener succeeded or errors were reported rather
    than raised); its return value is ignored.

    With :meth:`Emitter.emit_async`, ``before`` runs in the emitting thread (so a
    rejection raises at the call) and ``after`` in the worker after delivery.

    Raises:
        TypeError: neither hook given, or a hook is not callable.
    """

    __slots__ = ("before", "after")

    def __init__(self, before: Callable[[Any], Any] | None = None, after: Callable[[Any, BaseException | None], Any] | None = None) -> None:
        if before is None and after is None:
            raise TypeError("Expected a before and/or an after hook, got neither")
        for name, fn in (("before", before), ("after", after)):
            if fn is not None and not callable(fn):
                raise TypeError(f"Expected a callable {name} hook, got {type_name(fn)}")
        self.before = before
        self.after = after

    def run_before(self, event: Any) -> Any:
        """Run ``before``: return the event to deliver, or ``None`` to stop."""
        if self.before is None:
            return event
        r = self.before(event)
        if r is None:
            return event
        if r is False:
            return None
        if isinstance(r, _EVENT_CLASSES):
            return r
        raise TypeError(f"Expected before() to return None, False or an Event, got {type_name(r)}")

    def after_only(self, event: Any, call_next: Callable[[Any], Any]) -> Any:
        """The part of this middleware that runs after ``before`` already ran."""
        err: BaseException | None = None
        try:
            return call_next(event)
        except BaseException as exc:
            err = exc
            raise
        finally:
            if self.after is not None:
                self.after(event, err)

    def __call__(self, event: Any, call_next: Callable[[Any], Any]) -> Any:
        ev = self.run_before(event)
        if ev is None:
            return None
        return self.after_only(ev, call_next)

    def __repr__(self) -> str:
        return f"<HookMiddleware before={self.before!r} after={self.after!r}>"


def hooks(before: Callable[[Any], Any] | None = None, after: Callable[[Any, BaseException | None], Any] | None = None) -> HookMiddleware:
    """Make a middleware from ``before(event)`` / ``after(event, error)`` hooks (the
    Go seed's shape).  See :class:`HookMiddleware`."""
    return HookMiddleware(before, after)


class _Rec:
    """One subscription as the emitter sees it."""

    __slots__ = ("seq", "sub", "listener", "lid", "call", "is_async", "sem", "event_type", "checked", "bounded")

    def __init__(self, seq: int, sub: Subscription, listener: Any, call: Callable[[Any], Any], is_async: bool, sem: Any, event_type: str) -> None:
        self.seq = seq
        self.sub = sub
        self.listener = listener
        self.lid = str(getattr(listener, "id", "?"))
        self.call = call
        self.is_async = is_async
        self.sem = sem
        self.event_type = event_type
        # True when the call may return something to act on: an awaitable (a Listener's
        # handle, e.g. a managed listener) or the once-gate's "did not run".  A plain
        # function's return value is ignored.
        self.checked = not isinstance(listener, FunctionListener) or is_async
        self.bounded = False  # the call acquires its own concurrency slot


class _Route:
    """The immutable delivery plan of one event type (copy-on-write)."""

    __slots__ = ("recs", "calls", "n", "count", "wcount", "all_sync", "single_async", "checked", "fast", "wfast")

    def __init__(self, recs: tuple[_Rec, ...]) -> None:
        self.recs = recs
        self.calls = tuple(r.call for r in recs)
        self.n = len(recs)
        self.count = itertools.count()  # emit/aemit fast path: one emitted event, n calls presumed ok
        self.wcount = itertools.count()  # worker fast path: n calls presumed ok
        self.all_sync = not any(r.is_async for r in recs)
        self.single_async = len(recs) == 1 and recs[0].is_async
        # what the fast paths read: (callables, the counter's bound __next__, the route)
        self.checked = any(r.checked for r in recs)
        self.fast = (self.calls, self.count.__next__, self, self.checked)
        self.wfast = (self.calls, self.wcount.__next__, self, self.checked)


class _Ctx:
    """Per-call state of a slow delivery through middleware."""

    __slots__ = ("delivery_exc", "pending")

    def __init__(self) -> None:
        self.delivery_exc: BaseException | None = None
        self.pending: list[Any] | None = None


class Emitter:
    """Emit events to listeners: inline, through a bounded buffer and worker pool, or on asyncio.

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

    Raises:
        TypeError / ValueError: an invalid argument, at construction.

    Thread-safe: every method may be called from many threads at once.
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
    ) -> None:
        self._workers = _check_pos_int(workers, "workers")
        self._buffer_size = _check_pos_int(buffer_size, "buffer_size")
        self._max_concurrency = None if max_concurrency is None else _check_pos_int(max_concurrency, "max_concurrency")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Expected overflow among {OVERFLOW_POLICIES}, got {overflow!r}")
        if error_policy not in ERROR_POLICIES:
            raise ValueError(f"Expected error_policy among {ERROR_POLICIES}, got {error_policy!r}")
        if validator is not None and not callable(validator):
            raise TypeError(f"Expected a callable validator or None, got {type_name(validator)}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"Expected a callable on_error(event, exc, listener) or None, got {type_name(on_error)}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"Expected a non-empty str name, got {name!r}")
        if pool is not None and not (callable(getattr(pool, "submit", None))):
            raise TypeError(f"Expected a WorkerPool (with submit) or None, got {type_name(pool)}")
        size = getattr(pool, "size", None)
        if isinstance(size, int) and not isinstance(size, bool) and self._workers > size:
            # each drain loop holds a pool thread until shutdown: the extra ones would
            # never run (and the first emit_async would wait for them)
            raise ValueError(
                f"Expected workers <= the {size} threads of the given pool (each drain loop "
                f"holds one until shutdown), got workers={self._workers}"
            )
        if metrics is not None:
            for op in ("inc_events_emitted", "inc_events_processed", "observe_listener_duration",
                       "set_queue_size", "set_active_listeners", "inc_events_dropped"):
                if not callable(getattr(metrics, op, None)):
                    raise TypeError(f"Expected a MetricsCollector (with {op}) or None, got {type_name(metrics)}")
            if getattr(metrics, "enabled", True) is False:
                metrics = None
        self._acquire_timeout = _check_timeout(acquire_timeout)
        self._user_pool = pool
        self._overflow = overflow
        self._block = overflow == "block"
        self._raise = error_policy == "raise"
        self._error_policy = error_policy
        self._metrics = metrics
        self._validator = validator
        self._name = name
        self._component = f"emitter:{name}"
        self._on_error = on_error

        self._lock = threading.RLock()  # subscriptions, middleware, lifecycle
        self._seq = itertools.count()
        self._subs: dict[str, list[_Rec]] = {}
        self._nsubs = 0
        self._routes: dict[str, _Route] = {}
        self._default = _Route(())
        self._fast: dict[str, tuple[Any, ...]] = {}  # plain routes: return values ignored
        self._fastc: dict[str, tuple[Any, ...]] = {}  # checked routes: return values acted on
        self._fast_default: tuple[Any, ...] | None = self._default.fast
        self._wfast: dict[str, tuple[Any, ...]] = {}
        self._wfast_default: tuple[Any, ...] | None = self._default.wfast
        self._compact_at = _RETIRED_COMPACT
        self._retired: list[tuple[itertools.count[int], itertools.count[int], int, float]] = []
        self._middleware: tuple[Any, ...] = ()
        self._before: tuple[HookMiddleware, ...] = ()  # hook middlewares with a before (emit_async)
        self._wlayers: tuple[Any, ...] = ()  # what runs in workers around delivery
        self._bound_workers = self._max_concurrency is not None and self._workers > self._max_concurrency

        # counters
        self._stats_lock = threading.Lock()
        self._c_emitted = itertools.count()
        self._c_accepted = itertools.count()  # emit_async/emit_batch
        self._c_dropped_new = itertools.count()  # drop_newest (not accepted)
        self._c_victims = itertools.count()  # drop_oldest (accepted, then dropped)
        self._base_emitted = 0
        self._base_processed = 0
        self._processed = 0
        self._failed = 0
        self._corrections = 0
        self._mw_errors = 0
        self._undelivered = 0

        # async machinery (lazy)
        self._queue: Any = None
        self._aq: Any = None
        self._pool: Any = None
        self._drains: list[Any] = []
        self._wdone: list[int] = [0] * self._workers
        self._wbatch: list[list[Any]] = [[] for _ in range(self._workers)]
        # Wake one worker per handoff (see _drain): the workers waiting on the buffer
        # (one entry each; list append/pop are atomic), and the parked ones' locks.
        self._getters: list[int] = []
        self._parked: list[Any] = []
        self._drain_cond = threading.Condition(threading.Lock())
        self._drain_waiters = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._bg_cond = threading.Condition(threading.Lock())
        self._bg = 0  # awaitables running on nova's loop

        self._closed = False
        self._shutdown_started = False
        self._shutdown_done = threading.Event()
        self._shutdown_result = True
        self._refresh()

    # ------------------------------------------------------------------ subscriptions

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

    def on(self, event_type: str, *, max_concurrency: int | None = None) -> Callable[[Any], Any]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged.

        Raises:
            as :meth:`subscribe` (the event type is checked at once).
        """
        _check_type(event_type)

        def decorator(fn: Any) -> Any:
            self.subscribe(event_type, fn, max_concurrency=max_concurrency)
            return fn

        return decorator

    def _add(self, event_type: str, listener: Any, *, once: bool, max_concurrency: int | None) -> Subscription:
        _check_type(event_type)
        mc = self._max_concurrency if max_concurrency is None else _check_pos_int(max_concurrency, "max_concurrency")
        lis = as_listener(listener)
        is_async = is_async_listener(lis)
        if isinstance(lis, FunctionListener) and not is_async:
            call = lis.fn
        else:
            call = lis.handle
        sem = None
        if mc is not None:
            from nova.pool import Semaphore

            sem = Semaphore(mc)
        sub = Subscription(event_type, lis, self._detach)
        rec = _Rec(next(self._seq), sub, lis, call, is_async, sem, event_type)
        if once:
            rec.call = self._once_call(rec, call)
            rec.checked = True
        elif max_concurrency is not None and not is_async:
            # An explicit bound covers every call of this subscription, inline ones too.
            rec.call = self._bounded_call(call, sem)
            rec.bounded = True
        with self._lock:
            if self._closed:
                raise EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down: it takes no new subscriptions")
            if any(r.call is rec.call for rs in self._subs.values() for r in rs):
                rec.call = _alias(rec.call)  # the calls of a route are distinct objects
            self._subs.setdefault(event_type, []).append(rec)
            self._nsubs += 1
            self._refresh(event_type)
            n = self._nsubs
        if self._metrics is not None:
            self._metrics.set_active_listeners(self._name, n)
        return sub

    def _bounded_call(self, call: Callable[[Any], Any], sem: Any) -> Callable[[Any], Any]:
        acquire, release, timeout = sem.acquire, sem.release, self._acquire_timeout

        def bounded_call(event: Any) -> Any:
            acquire(1, timeout)
            try:
                return call(event)
            finally:
                release(1)

        return bounded_call

    @staticmethod
    def _once_call(rec: _Rec, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        gate = threading.Lock()
        take = gate.acquire

        def once_call(event: Any) -> Any:
            if not take(False):
                return _SKIP
            rec.sub.unsubscribe()
            return call(event)

        return once_call

    def _detach(self, sub: Subscription) -> None:
        with self._lock:
            recs = self._subs.get(sub.topic)
            if not recs:
                return
            for i, r in enumerate(recs):
                if r.sub is sub:
                    del recs[i]
                    break
            else:
                return
            if not recs:
                del self._subs[sub.topic]
            self._nsubs -= 1
            self._refresh(sub.topic)
            n = self._nsubs
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
                return [r.listener for r in self._subs.get(WILDCARD, ())]
        route = self._routes.get(event_type, self._default)
        return [r.listener for r in route.recs]

    def event_types(self) -> list[str]:
        """The event types with at least one subscription (``"*"`` included if used),
        in the order they were first subscribed."""
        with self._lock:
            return list(self._subs)

    def _refresh(self, changed: str | None = None) -> None:
        """Rebuild the routes (copy-on-write).  Call with ``self._lock`` held.
        *changed*: the one event type whose subscriptions changed (``None``: all)."""
        star = tuple(self._subs.get(WILDCARD, ()))
        old = self._routes
        now = monotonic()
        fast_ok = not self._closed and not self._middleware and self._metrics is None and self._validator is None
        wfast_ok = not self._wlayers and self._metrics is None and not self._bound_workers
        self._afast = fast_ok
        self._aq = self._queue if (
            not self._closed and not self._before and self._validator is None and self._metrics is None
        ) else None
        if changed is not None and changed != WILDCARD:
            # One type changed: copy the dicts and replace that entry only.
            routes = dict(old)
            prev = routes.pop(changed, None)
            if prev is not None:
                self._retire(prev, now)
            recs = self._subs.get(changed)
            fast = dict(self._fast) if fast_ok else {}
            fastc = dict(self._fastc) if fast_ok else {}
            wfast = dict(self._wfast) if wfast_ok else {}
            fast.pop(changed, None)
            fastc.pop(changed, None)
            wfast.pop(changed, None)
            if recs:
                merged = tuple(sorted((*recs, *star), key=lambda r: r.seq)) if star else tuple(recs)
                route = routes[changed] = _Route(merged)
                if route.all_sync:
                    if fast_ok:
                        (fastc if route.checked else fast)[changed] = route.fast
                    if wfast_ok:
                        wfast[changed] = route.wfast
            self._routes = routes
            self._fast = fast
            self._fastc = fastc
            self._wfast = wfast
            default = self._default
            self._fast_default = default.fast if fast_ok and default.all_sync else None
            self._wfast_default = default.wfast if wfast_ok and default.all_sync else None
            return
        routes = {}
        for t, recs in self._subs.items():
            if t == WILDCARD:
                continue
            merged = tuple(sorted((*recs, *star), key=lambda r: r.seq)) if star else tuple(recs)
            prev = old.get(t)
            if prev is not None and len(prev.recs) == len(merged) and all(a is b for a, b in zip(prev.recs, merged)):
                routes[t] = prev
            else:
                routes[t] = _Route(merged)
        default = self._default
        if not (len(default.recs) == len(star) and all(a is b for a, b in zip(default.recs, star))):
            default = _Route(star)
        keep = {id(r) for r in routes.values()}
        keep.add(id(default))
        for r in (*old.values(), self._default):
            if id(r) not in keep:
                self._retire(r, now)
        self._routes = routes
        self._default = default
        if fast_ok:
            self._fast = {t: r.fast for t, r in routes.items() if r.all_sync and not r.checked}
            self._fastc = {t: r.fast for t, r in routes.items() if r.all_sync and r.checked}
            self._fast_default = default.fast if default.all_sync else None
        else:
            self._fast = {}
            self._fastc = {}
            self._fast_default = None
        if wfast_ok:
            self._wfast = {t: r.wfast for t, r in routes.items() if r.all_sync}
            self._wfast_default = default.wfast if default.all_sync else None
        else:
            self._wfast = {}
            self._wfast_default = None

    def _retire(self, route: _Route, now: float) -> None:
        """Keep a replaced route's counters (emits holding it may still count)."""
        self._retired.append((route.count, route.wcount, route.n, now))
        if len(self._retired) > self._compact_at:
            self._compact(now)
            self._compact_at = max(_RETIRED_COMPACT, 2 * len(self._retired))

    def _compact(self, now: float) -> None:
        keep = []
        with self._stats_lock:
            for c, w, n, t in self._retired:
                if now - t >= _RETIRED_AGE:
                    ce, cw = _count_value(c), _count_value(w)
                    self._base_emitted += ce
                    self._base_processed += (ce + cw) * n
                else:
                    keep.append((c, w, n, t))
        self._retired = keep

    # ------------------------------------------------------------------ middleware

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
        if middleware is None:
            mw: Any = HookMiddleware(before, after)
        else:
            if before is not None or after is not None:
                raise TypeError("Expected either a middleware or before/after hooks, got both")
            if isinstance(middleware, HookMiddleware):
                mw = middleware
            elif not callable(middleware) and (hasattr(middleware, "before") or hasattr(middleware, "after")):
                mw = HookMiddleware(getattr(middleware, "before", None), getattr(middleware, "after", None))
            elif callable(middleware):
                if inspect.iscoroutinefunction(middleware) or inspect.iscoroutinefunction(getattr(middleware, "__call__", None)):
                    raise TypeError("Expected a sync middleware(event, call_next), got an async def")
                mw = middleware
            else:
                raise TypeError(f"Expected a middleware(event, call_next) or an object with before/after, got {type_name(middleware)}")
        with self._lock:
            if self._closed:
                raise EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down")
            self._middleware = (*self._middleware, mw)
            self._before = tuple(m for m in self._middleware if isinstance(m, HookMiddleware) and m.before is not None)
            layers = []
            for m in self._middleware:
                if isinstance(m, HookMiddleware):
                    if m.after is not None:
                        layers.append(m.after_only)
                else:
                    layers.append(m)
            self._wlayers = tuple(layers)
            self._refresh()
        return mw

    # ------------------------------------------------------------------ emit (sync)

    def emit(self, event: Any) -> None:
        """Deliver *event* now, in this thread: middleware, then every listener in
        subscription order.

        An ``async def`` listener is run to completion on nova's own event loop when
        this thread has no running loop (``emit`` waits for it).  Called from inside a
        running loop, ``emit`` cannot wait without blocking that loop: the coroutine
        is scheduled on nova's loop and its errors are reported (``on_error`` hooks);
        :meth:`shutdown` waits for it.  Prefer :meth:`aemit` in asyncio code.

        Raises:
            TypeError: *event* is not an Event.
            ValidationError: the validator rejected it.
            EmitterClosed: after :meth:`shutdown`.
            Exception / ExceptionGroup: with ``error_policy="raise"``, the error of the
                one failing listener, or a group of all of them, after every listener ran;
                or a middleware's own error.
        """
        if type(event) is Event:
            route = self._fast.get(event.type)
            if route is not None:
                route[1]()
                try:
                    for fn in route[0]:
                        fn(event)
                except Exception as exc:
                    self._fast_failed(event, route[2], fn, exc, True)
                except BaseException:  # KeyboardInterrupt...: fix the counts, propagate
                    self._fast_aborted(route[2], fn)
                    raise
                return
        self._emit_slow(event)

    def _prep(self, event: Any) -> None:
        """Validate *event* for intake (type, validator, closed)."""
        if type(event) is not Event:
            _check_event(event)
        if self._closed:
            raise EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down: it accepts no more events")
        v = self._validator
        if v is not None:
            if v(event) is False:
                raise ValidationError(f"Expected an event the validator accepts, got {event.type!r} rejected")

    def _emit_slow(self, event: Any) -> None:
        if type(event) is Event:
            route = self._fastc.get(event.type)
            if route is None and event.type not in self._routes:
                route = self._fast_default  # an event type without its own subscriptions
            if route is not None:
                route[1]()
                try:
                    for fn in route[0]:
                        if (res := fn(event)) is not None:
                            self._returned(event, res, route[2], fn)
                except Exception as exc:
                    self._fast_failed(event, route[2], fn, exc, True)
                except BaseException:  # KeyboardInterrupt...: fix the counts, propagate
                    self._fast_aborted(route[2], fn)
                    raise
                return
        self._prep(event)
        next(self._c_emitted)
        m = self._metrics
        mws = self._middleware
        if not mws:
            errs = self._deliver_thread(event, self._routes.get(event.type, self._default), False)
            if m is not None:
                m.inc_events_emitted(event.type, "error" if errs else "ok")
            if errs:
                self._conclude(event, errs)
            return
        ctx = _Ctx()

        def terminal(ev: Any) -> None:
            _check_event(ev)
            errs = self._deliver_thread(ev, self._routes.get(ev.type, self._default), False)
            if m is not None:
                m.inc_events_emitted(ev.type, "error" if errs else "ok")
            if errs:
                try:
                    self._conclude(ev, errs)
                except BaseException as exc:
                    ctx.delivery_exc = exc
                    raise

        try:
            self._chain(mws, terminal)(event)
        except Exception as exc:
            if exc is ctx.delivery_exc:
                raise
            self._middleware_failed(event, exc)

    @staticmethod
    def _chain(layers: tuple[Any, ...], terminal: Callable[[Any], Any]) -> Callable[[Any], Any]:
        call = terminal
        for mw in reversed(layers):
            call = Emitter._layer(mw, call)
        return call

    @staticmethod
    def _layer(mw: Any, nxt: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def call_next_checked(ev: Any) -> Any:
            _check_event(ev)
            return nxt(ev)

        def run(ev: Any) -> Any:
            return mw(ev, call_next_checked)

        return run

    def _middleware_failed(self, event: Any, exc: BaseException) -> None:
        with self._stats_lock:
            self._mw_errors += 1
        if self._raise:
            raise exc
        self._report(event, exc, None)

    def _conclude(self, event: Any, errs: list[tuple[_Rec, BaseException]]) -> None:
        """Apply the error policy to the errors of one inline delivery."""
        if self._raise:
            if len(errs) == 1:
                raise errs[0][1]
            # an ExceptionGroup when every error is an Exception (the usual case)
            raise BaseExceptionGroup(f"{len(errs)} listeners failed on event {event.type!r}", [e for _, e in errs])
        for rec, exc in errs:
            self._report(event, exc, rec)

    # -- the fast path's exits -------------------------------------------------------

    def _returned(self, event: Any, r: Any, route: _Route, fn: Any) -> None:
        """A fast-path call returned something other than None: a once-listener that
        did not run, or an awaitable, which is run here (waited for when this thread
        has no running loop).  Raises the awaitable's error."""
        if r is _SKIP:
            with self._stats_lock:
                self._corrections += 1
            return
        if not inspect.isawaitable(r):
            return
        rec = route.recs[_index(route.calls, fn)]
        if _running_loop() is None:
            self._run_on_loop(r, rec, event, background=False)
        else:
            with self._stats_lock:
                self._corrections += 1  # the completion callback counts it
            self._run_on_loop(r, rec, event, background=True)

    def _fast_aborted(self, route: _Route, fn: Any) -> None:
        """A fast-path call raised a BaseException (not an Exception) that propagates at
        once: that call failed and the later ones never ran."""
        rest = route.n - _index(route.calls, fn) - 1
        with self._stats_lock:
            self._corrections += 1 + rest
            self._failed += 1

    def _fast_failed(self, event: Any, route: _Route, fn: Any, exc: BaseException, inline: bool) -> None:
        """A fast-path call (*fn*) raised: count it, run the listeners after it, then
        apply the error policy (*inline*: the caller's; otherwise report, as workers do)."""
        recs = route.recs
        idx = _index(route.calls, fn)
        rest = route.n - idx - 1
        with self._stats_lock:
            self._corrections += 1 + rest  # these were presumed processed
            self._failed += 1
        m = self._metrics
        if m is not None:  # the fast path runs without metrics; they may have been set since
            m.inc_events_processed(recs[idx].lid, "error")
        errs = [(recs[idx], exc)]
        if rest:
            wait = _running_loop() is None
            for rec in recs[idx + 1 :]:
                e = self._invoke(rec, event, wait, not inline)
                if e is not None:
                    errs.append((rec, e))
        if inline:
            self._conclude(event, errs)
        else:
            for rec, e in errs:
                self._report(event, e, rec)

    # ------------------------------------------------------------------ delivery helpers

    def _deliver_thread(self, event: Any, route: _Route, worker: bool) -> list[tuple[_Rec, BaseException]]:
        """Call every listener of *route* from a thread; returns the failures."""
        errs: list[tuple[_Rec, BaseException]] = []
        wait = _running_loop() is None
        for rec in route.recs:
            r = self._invoke(rec, event, wait, worker)
            if r is not None:
                errs.append((rec, r))
        return errs

    def _invoke(self, rec: _Rec, event: Any, wait: bool, worker: bool) -> BaseException | None:
        """One listener call from a thread, counted.  Returns its error or None."""
        m = self._metrics
        sem = rec.sem if (worker and self._bound_workers and not rec.is_async and not rec.bounded) else None
        t0 = perf_counter() if m is not None else 0.0
        try:
            if sem is not None:
                sem.acquire(1, self._acquire_timeout)
            try:
                r = rec.call(event)
                if r is not None and rec.checked:
                    if r is _SKIP:
                        return None
                    if inspect.isawaitable(r):
                        if wait:
                            self._run_on_loop(r, rec, event, background=False)
                        else:
                            self._run_on_loop(r, rec, event, background=True)
                            return None
            finally:
                if sem is not None:
                    sem.release()
        except Exception as exc:
            self._count(rec, False, m, t0)
            return exc
        self._count(rec, True, m, t0)
        return None

    def _count(self, rec: _Rec, ok: bool, m: Any, t0: float) -> None:
        with self._stats_lock:
            if ok:
                self._processed += 1
            else:
                self._failed += 1
        if m is not None:
            m.observe_listener_duration(rec.lid, perf_counter() - t0)
            m.inc_events_processed(rec.lid, "ok" if ok else "error")

    def _report(self, event: Any, exc: BaseException, rec: _Rec | None) -> None:
        """Send an error to the listener's on_error and the emitter's hook (or the log)."""
        reported = False
        if rec is not None:
            lis = rec.listener
            h = getattr(lis, "on_error", None)
            if h is not None and callable(h) and not (isinstance(lis, FunctionListener) and lis._on_error is None):
                reported = True
                try:
                    h(event, exc)
                except Exception:
                    _log.exception("on_error of listener %s raised while reporting %r", rec.lid, exc)
        if self._on_error is not None:
            reported = True
            try:
                self._on_error(event, exc, rec.listener if rec is not None else None)
            except Exception:
                _log.exception("on_error hook of emitter %r raised while reporting %r", self._name, exc)
        if not reported:
            who = f"listener {rec.lid}" if rec is not None else "middleware"
            _log.error("%s failed on event %r (emitter %r)", who, getattr(event, "type", event), self._name, exc_info=exc)

    # ------------------------------------------------------------------ nova's own loop

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        lp = self._loop
        if lp is not None:
            return lp
        with self._lock:
            if self._loop is None:
                lp = asyncio.new_event_loop()
                ready = threading.Event()
                t = threading.Thread(target=self._loop_main, args=(lp, ready), name=f"nova-{self._name}-loop", daemon=True)
                t.start()
                ready.wait()
                self._loop_thread = t
                self._loop = lp
                self._started_threads()
            return self._loop

    @staticmethod
    def _loop_main(lp: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(lp)
        lp.call_soon(ready.set)
        try:
            lp.run_forever()
        finally:
            try:
                # Tasks created while others finish (e.g. a ListenerManager retry sent to
                # this loop) are finished too: a task left pending at close() never
                # completes its future.
                Emitter._finish_tasks(lp)
                lp.run_until_complete(lp.shutdown_asyncgens())
                Emitter._finish_tasks(lp)  # what closing async generators started
            finally:
                asyncio.set_event_loop(None)
                lp.close()

    @staticmethod
    def _finish_tasks(lp: asyncio.AbstractEventLoop) -> None:
        """Cancel and finish every task of the stopped loop *lp*, the ones created while
        others finish too, and run the callbacks still queued (a finished task's done
        callbacks, which complete the futures other threads wait on)."""
        for _ in range(1000):
            lp.run_until_complete(asyncio.sleep(0))
            pending = asyncio.all_tasks(lp)
            if pending:
                for task in pending:
                    task.cancel()
                lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            elif not getattr(lp, "_ready", None):
                return

    async def _guarded(self, aw: Awaitable[Any], sem: Any) -> Any:
        try:
            if sem is not None:
                try:
                    await sem.acquire_async(1, self._acquire_timeout)
                except BaseException:
                    if inspect.iscoroutine(aw):
                        aw.close()
                    raise
                try:
                    return await aw
                finally:
                    sem.release()
            return await aw
        finally:
            with self._bg_cond:
                self._bg -= 1
                if self._bg == 0:
                    self._bg_cond.notify_all()

    def _run_on_loop(self, aw: Any, rec: _Rec, event: Any, background: bool) -> None:
        """Run an awaitable on nova's loop; wait for it (raising its error) or not."""
        if not inspect.iscoroutine(aw):
            aw = _await_it(aw)
        with self._bg_cond:
            self._bg += 1
        try:
            lp = self._get_loop()
            fut = asyncio.run_coroutine_threadsafe(self._guarded(aw, rec.sem), lp)
        except BaseException:
            aw.close()
            with self._bg_cond:
                self._bg -= 1
                if self._bg == 0:
                    self._bg_cond.notify_all()
            raise
        if not background:
            fut.result()
            return
        t0 = perf_counter()

        def done(f: Any) -> None:
            exc = None if f.cancelled() else f.exception()
            if f.cancelled():
                exc = EmitterClosed(f"Expected listener {rec.lid} to finish, got it cancelled by the shutdown of {self._name!r}")
            if exc is None:
                self._count(rec, True, self._metrics, t0)
            else:
                self._count(rec, False, self._metrics, t0)
                self._report(event, exc, rec)

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ emit_async (buffer + workers)

    def emit_async(self, event: Any, timeout: float | timedelta | None = None) -> bool:
        """Validate *event*, run the ``before`` hooks here, then put it in the buffer
        that the worker threads drain; returns at once (``"block"``: once there is room).

        Listener errors in workers go to the listener's ``on_error`` and the emitter's
        *on_error* hook (or the log when neither exists), whatever the error policy.

        Returns:
            True when the event was accepted; False when it was not (``drop_newest``
            with a full buffer, or a ``before`` hook stopped it).

        Raises:
            TypeError: *event* is not an Event; ValidationError: rejected by the validator.
            EmitterClosed: after :meth:`shutdown` (also when it closes while waiting).
            Timeout: ``overflow="block"`` and still full after *timeout* seconds.
            BufferFull: ``overflow="error"`` and the buffer is full.
            Exception: a ``before`` hook's error (with ``error_policy="raise"``).
        """
        q = self._aq  # the buffer, when the plain path applies (no hooks/validator/metrics)
        if q is not None and type(event) is Event:
            if self._block:
                try:
                    q.put(event, timeout)
                except QueueClosed:
                    raise self._closed_error() from None
                except Timeout:
                    raise Timeout(
                        f"Expected room in emitter {self._name!r}'s buffer within {_check_timeout(timeout)} s, "
                        f"got it full ({self._buffer_size} events)"
                    ) from None
            else:
                try:
                    q.put_nowait(event)
                except QueueClosed:
                    raise self._closed_error() from None
                except BufferFull:
                    return self._enqueue(event, None)  # the overflow policy decides
            next(self._c_accepted)
            if not self._getters and self._parked:  # every worker busy, one parked
                self._wake_one()
            return True
        return self._emit_async_slow(event, timeout, None)

    def emit_batch(self, events: Iterable[Any], timeout: float | timedelta | None = None) -> int:
        """:meth:`emit_async` each of *events* in order; *timeout* bounds the whole call.
        Every event is type-checked before the first is enqueued.

        Returns:
            how many events were accepted.

        Raises:
            TypeError: *events* is not iterable, or holds a non-Event (nothing is enqueued).
            the errors of :meth:`emit_async` (the events before the failing one stay
            accepted).
        """
        try:
            it = iter(events)
        except TypeError:
            raise TypeError(f"Expected an iterable of Events, got {type_name(events)}") from None
        evs = list(it)  # an error raised while iterating is the iterable's own: it propagates
        for i, ev in enumerate(evs):
            if type(ev) is not Event and not isinstance(ev, _EVENT_CLASSES):
                raise TypeError(f"Expected a nova Event at index {i}, got {type_name(ev)}")
        t = _check_timeout(timeout)
        deadline = None if t is None else monotonic() + t
        n = 0
        q = self._aq
        if q is not None and t is None and self._block:
            put = q.put
            accepted = self._c_accepted
            getters, parked = self._getters, self._parked
            try:
                for ev in evs:
                    put(ev)
                    next(accepted)
                    n += 1
                    if not getters and parked:
                        self._wake_one()
            except QueueClosed:
                raise self._closed_error() from None
            return n
        for ev in evs:
            if self._emit_async_slow(ev, t, deadline):
                n += 1
        return n

    async def aemit_async(self, event: Any, timeout: float | timedelta | None = None) -> bool:
        """:meth:`emit_async` from asyncio code: never blocks the event loop.

        With ``overflow="block"`` and a full buffer, the wait for room (up to *timeout*)
        happens in a helper thread while the loop goes on; the other policies never
        wait.  Returns and raises as :meth:`emit_async`.
        """
        t = _check_timeout(timeout)
        admitted = self._admit(event)
        if admitted is None:
            return False
        if self._overflow != "block":
            return self._enqueue(admitted, t)
        try:
            return self._enqueue(admitted, 0.0, first_try=t != 0)
        except Timeout:
            if t == 0:
                raise
        return await asyncio.to_thread(self._enqueue, admitted, t)

    def _closed_error(self) -> EmitterClosed:
        return EmitterClosed(f"Expected an open emitter, got {self._name!r} shut down: it accepts no more events")

    def _emit_async_slow(self, event: Any, timeout: float | timedelta | None, deadline: float | None) -> bool:
        t = _check_timeout(timeout)
        if deadline is not None:
            t = max(0.0, deadline - monotonic())
        admitted = self._admit(event)
        if admitted is None:
            return False
        return self._enqueue(admitted, t)

    def _admit(self, event: Any) -> Any:
        """Intake checks and ``before`` hooks for the buffer: the event to enqueue, or
        None when a hook stopped it (or failed, with ``error_policy="continue"``)."""
        self._prep(event)
        for hook in self._before:
            try:
                ev = hook.run_before(event)
            except Exception as exc:
                self._middleware_failed(event, exc)
                return None
            if ev is None:
                return None
            event = ev
        return event

    def _enqueue(self, event: Any, t: float | None, first_try: bool = False) -> bool:
        """Put an admitted event in the buffer under the overflow policy."""
        q = self._queue if self._queue is not None else self._start()
        m = self._metrics
        overflow = self._overflow
        try:
            if overflow == "block":
                try:
                    q.put(event, t)
                except Timeout:
                    if m is not None and not first_try:
                        m.inc_events_emitted(event.type, "rejected")
                    raise Timeout(
                        f"Expected room in emitter {self._name!r}'s buffer within {t} s, "
                        f"got it full ({self._buffer_size} events)"
                    ) from None
            elif overflow == "error":
                try:
                    q.put_nowait(event)
                except BufferFull:
                    if m is not None:
                        m.inc_events_emitted(event.type, "rejected")
                    raise BufferFull(
                        f"Expected room in emitter {self._name!r}'s buffer, got it full ({self._buffer_size} events)"
                    ) from None
            elif overflow == "drop_newest":
                try:
                    q.put_nowait(event)
                except BufferFull:
                    next(self._c_dropped_new)
                    if m is not None:
                        m.inc_events_emitted(event.type, "dropped")
                        m.inc_events_dropped(self._component, "drop_newest")
                    return False
            else:  # drop_oldest
                while True:
                    try:
                        q.put_nowait(event)
                        break
                    except BufferFull:
                        try:
                            q.get_nowait()
                        except QueueEmpty:
                            continue
                        # the victim was accepted earlier: it counts as emitted and dropped
                        next(self._c_victims)
                        if m is not None:
                            m.inc_events_dropped(self._component, "drop_oldest")
                        if self._drain_waiters:
                            self._wake_drainers()
        except QueueClosed:
            raise self._closed_error() from None
        next(self._c_accepted)
        if not self._getters and self._parked:
            self._wake_one()
        if m is not None:
            m.inc_events_emitted(event.type, "queued")
            m.set_queue_size(self._component, q.qsize())
        return True

    def _start(self) -> Any:
        """Create the buffer and start the drain loops (once)."""
        with self._lock:
            if self._queue is not None:
                return self._queue
            if self._closed:
                raise self._closed_error()
            from nova._core import RingQueue

            q = RingQueue(self._buffer_size)
            pool = self._user_pool
            if pool is None:
                from nova.pool import WorkerPool, _owned_by

                pool = self._pool = WorkerPool(self._workers, self._workers, name=f"nova-{self._name}")
                _owned_by(pool)  # this emitter closes it (at exit too) and restarts it after a fork
            self._started_threads()
            # One drain loop per pool thread: the pool hands tasks out in batches, so
            # submit the next loop only once the previous one runs on its own thread.
            drains = []
            for i in range(self._workers):
                started = threading.Event()
                drains.append(pool.submit(self._drain_loop, q, i, started))
                if not started.wait(None if self._pool is not None else 1.0):
                    _log.warning("emitter %r: drain loop %d waits for a free thread of pool %r", self._name, i, pool)
            self._drains = drains
            self._queue = q
            self._refresh()
            return q

    def _drain_loop(self, q: Any, wid: int, started: threading.Event) -> None:
        """One worker: take batches from the buffer and deliver them until it closes."""
        _tls.emitter = self
        started.set()
        try:
            self._drain(q, wid)
        finally:
            _tls.emitter = None

    # -- wake one worker per handoff --------------------------------------------------
    #
    # Idle workers must not all wait on the buffer: every put would wake one of them,
    # and at a steady rate several wake for nothing and contend for the GIL (issue 11:
    # p99 doubled with 4 workers).  So at most one worker (normally) waits on the
    # buffer, the "getter"; the other idle workers are parked, each on its own lock.
    # A getter that takes a batch goes to deliver it; if events are still waiting it
    # wakes one parked worker, which becomes the getter.  A producer wakes one only
    # when nobody waits on the buffer (every worker busy delivering) and one is parked:
    # one check on the emit_async path.  At a steady light rate the same worker takes
    # every event, as a single worker does, and the others sleep.
    #
    # The lists are changed only by atomic append/pop (under the GIL), and each side
    # publishes before it checks the other's state (a parker appends itself, then
    # looks for a getter; a getter leaves, then looks for events and parked workers),
    # so an event never waits while a worker is parked and none is a getter.

    def _wake_one(self) -> None:
        """Unpark one worker, which becomes a getter (no-op when none is parked)."""
        try:
            lock = self._parked.pop()
        except IndexError:
            return
        self._getters.append(1)
        lock.release()

    def _drain(self, q: Any, wid: int) -> None:
        get_many = q.get_many
        done = self._wdone
        slots = self._wbatch
        qsize = q.qsize
        nworkers = self._workers
        getters = self._getters
        parked = self._parked
        wake_one = self._wake_one
        park = threading.Lock()
        park.acquire()  # held: released by the waker that hands this worker the buffer
        while True:
            if getters and not qsize():  # another worker waits on the buffer: park until handed it
                parked.append(park)
                if not getters or qsize():  # the getter left meanwhile: take over (maybe ourselves)
                    wake_one()
                park.acquire()  # the waker appended our getter entry
            else:
                getters.append(1)
            # Share the waiting events between the workers; take big batches under load.
            try:
                batch = get_many(min(_BATCH, max(1, qsize() // nworkers)))
            except QueueClosed:
                getters.pop()
                while parked:  # let the parked workers see the close too
                    wake_one()
                return
            getters.pop()
            if parked and qsize() and not getters:
                wake_one()  # more events than this worker takes: hand the buffer on
            batch.reverse()
            slots[wid] = batch
            pop = batch.pop
            m = self._metrics
            if m is not None:
                m.set_queue_size(self._component, q.qsize())
            wlayers = self._wlayers
            wfast = self._wfast
            wdefault = self._wfast_default
            routes = self._routes
            k = 0
            event = None
            while True:  # a BaseException from a listener never kills the drain loop
                try:
                    while True:
                        try:
                            event = pop()
                        except IndexError:
                            break
                        route = wfast.get(event.type)
                        if route is None and wdefault is not None and event.type not in routes:
                            route = wdefault
                        if route is not None:
                            route[1]()
                            try:
                                if route[3]:
                                    for fn in route[0]:
                                        if (res := fn(event)) is not None:
                                            self._returned(event, res, route[2], fn)
                                else:
                                    for fn in route[0]:
                                        fn(event)
                            except BaseException as exc:  # noqa: BLE001 - workers report everything
                                self._fast_failed(event, route[2], fn, exc, False)
                        elif wlayers:
                            self._worker_chain(event, wlayers)
                        else:
                            for rec, e in self._deliver_thread(event, self._routes.get(event.type, self._default), True):
                                self._report(event, e, rec)
                        k += 1
                    break
                except BaseException as exc:  # noqa: BLE001
                    k += 1
                    with self._stats_lock:
                        self._failed += 1
                    self._report(event, exc, None)
            done[wid] += k
            if self._drain_waiters:
                self._wake_drainers()

    def _worker_chain(self, event: Any, layers: tuple[Any, ...]) -> None:
        ctx = _Ctx()

        def terminal(ev: Any) -> None:
            _check_event(ev)
            for rec, e in self._deliver_thread(ev, self._routes.get(ev.type, self._default), True):
                self._report(ev, e, rec)

        try:
            self._chain(layers, terminal)(event)
        except Exception as exc:
            with self._stats_lock:
                self._mw_errors += 1
            self._report(event, exc, None)

    def drain(self, timeout: float | timedelta | None = None) -> bool:
        """Wait until every event accepted by ``emit_async`` so far has been delivered
        (or dropped, or given up by shutdown), without stopping intake.

        Returns:
            True when that happened, False when *timeout* passed first.

        Raises:
            ValueError / TypeError: a bad *timeout*.
            RuntimeError: called from a listener running in this emitter's workers.
        """
        t = _check_timeout(timeout)
        self._not_from_worker("drain")
        target = _count_value(self._c_accepted)
        deadline = None if t is None else monotonic() + t
        with self._drain_cond:
            self._drain_waiters += 1
            try:
                while self._settled() < target:
                    if deadline is None:
                        self._drain_cond.wait()
                    else:
                        remaining = deadline - monotonic()
                        if remaining <= 0:
                            return False
                        self._drain_cond.wait(remaining)
            finally:
                self._drain_waiters -= 1
        return True

    def _not_from_worker(self, what: str) -> None:
        if getattr(_tls, "emitter", None) is self or threading.current_thread() is self._loop_thread:
            raise RuntimeError(
                f"Expected {what}() from outside emitter {self._name!r}'s workers, got a call from one "
                "(it would wait for itself)"
            )

    def _settled(self) -> int:
        """Accepted buffered events whose fate is known: delivered, dropped to make room,
        or given up by shutdown."""
        return sum(self._wdone) + _count_value(self._c_victims) + self._undelivered

    def _wake_drainers(self) -> None:
        if self._drain_waiters:
            with self._drain_cond:
                self._drain_cond.notify_all()

    # ------------------------------------------------------------------ asyncio

    async def aemit(self, event: Any) -> None:
        """Deliver *event* from asyncio code and return once every listener finished.

        Sync listeners run inline (in subscription order); async listeners run
        concurrently on the running loop (one is awaited directly; several are
        gathered).  The error policy applies as in :meth:`emit`.  Never blocks the
        loop: a saturated ``max_concurrency`` slot is awaited.

        Sync middleware runs first and decides what is delivered (it may change or stop
        the event); in ``aemit`` delivery happens once the middleware chain returned, so
        middleware does not see the listeners' errors there.

        Raises:
            the same as :meth:`emit`.
        """
        if type(event) is Event and self._afast:
            route = self._routes.get(event.type, self._default)
            if route.all_sync and not route.checked:  # plain sync listeners: as emit()
                route.count.__next__()
                fn = None
                try:
                    for fn in route.calls:
                        fn(event)
                except Exception as exc:
                    self._fast_failed(event, route, fn, exc, True)
                except BaseException:
                    self._fast_aborted(route, fn)
                    raise
                return
            if route.single_async:
                rec = route.recs[0]
                next(route.count)
                sem = rec.sem
                if sem is None or sem.try_acquire():
                    try:
                        aw = rec.call(event)
                        if aw is not _SKIP:
                            await aw
                        else:
                            with self._stats_lock:
                                self._corrections += 1
                    except Exception as exc:
                        with self._stats_lock:
                            self._corrections += 1
                            self._failed += 1
                        self._conclude(event, [(rec, exc)])
                    except BaseException:  # cancelled: the call did not return (as in _arun)
                        with self._stats_lock:
                            self._corrections += 1
                        raise
                    finally:
                        if sem is not None:
                            sem.release()
                    return
                with self._stats_lock:
                    self._corrections += 1  # counted by _arun below
                exc2 = await self._arun(rec, event, None)
                if exc2 is not None:
                    self._conclude(event, [(rec, exc2)])
                return
        await self._aemit_slow(event)

    async def _aemit_slow(self, event: Any) -> None:
        self._prep(event)
        next(self._c_emitted)
        mws = self._middleware
        if not mws:
            await self._adeliver(event)
            return
        ctx = _Ctx()
        ctx.pending = []
        pending = ctx.pending

        def terminal(ev: Any) -> None:
            _check_event(ev)
            pending.append(ev)

        try:
            self._chain(mws, terminal)(event)
        except Exception as exc:
            self._middleware_failed(event, exc)
        for ev in pending:
            await self._adeliver(ev)

    async def _adeliver(self, event: Any) -> None:
        route = self._routes.get(event.type, self._default)
        m = self._metrics
        errs: list[tuple[_Rec, BaseException]] = []
        later: list[tuple[_Rec, Any]] = []
        for rec in route.recs:
            if rec.is_async:
                later.append((rec, None))
                continue
            t0 = perf_counter() if m is not None else 0.0
            try:
                r = rec.call(event)
            except Exception as exc:
                self._count(rec, False, m, t0)
                errs.append((rec, exc))
                continue
            if r is not None and rec.checked and r is not _SKIP and inspect.isawaitable(r):
                later.append((rec, r))
            elif r is not _SKIP:
                self._count(rec, True, m, t0)
        if len(later) == 1:
            rec, aw = later[0]
            e = await self._arun(rec, event, aw)
            if e is not None:
                errs.append((rec, e))
        elif later:
            # Run them concurrently: the first in this task, the others as tasks (one
            # task fewer than gather); cancelling aemit cancels them all.
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self._arun(rec, event, aw)) for rec, aw in later[1:]]
            try:
                results = [await self._arun(later[0][0], event, later[0][1])]
                for task in tasks:
                    results.append(await task)
            except BaseException:
                for task in tasks:
                    task.cancel()
                raise
            for (rec, _), e in zip(later, results):
                if e is not None:
                    errs.append((rec, e))
        if m is not None:
            m.inc_events_emitted(event.type, "error" if errs else "ok")
        if errs:
            errs.sort(key=lambda x: x[0].seq)
            self._conclude(event, errs)

    async def _arun(self, rec: _Rec, event: Any, aw: Any) -> BaseException | None:
        """Run one async call on the running loop under its concurrency bound, counted.
        Returns its error or None."""
        m = self._metrics
        t0 = perf_counter() if m is not None else 0.0
        sem = rec.sem
        try:
            if sem is not None:
                try:
                    await sem.acquire_async(1, self._acquire_timeout)
                except BaseException:
                    if aw is not None and inspect.iscoroutine(aw):
                        aw.close()
                    raise
            try:
                if aw is None:
                    aw = rec.call(event)
                    if aw is _SKIP:
                        return None
                if aw is not None and inspect.isawaitable(aw):
                    await aw
            finally:
                if sem is not None:
                    sem.release()
        except Exception as exc:
            self._count(rec, False, m, t0)
            return exc
        self._count(rec, True, m, t0)
        return None

    # ------------------------------------------------------------------ shutdown

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
        return self._shutdown(_check_timeout(timeout), at_exit=False)

    def _shutdown(self, t: float | None, at_exit: bool) -> bool:
        self._not_from_worker("shutdown")
        with self._lock:
            first = not self._shutdown_started
            if first:
                self._shutdown_started = True
                self._closed = True
                self._afast = False
                self._refresh()
        if not first:
            if self._shutdown_done.wait(t):
                return self._shutdown_result
            return False
        deadline = None if t is None else monotonic() + t

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - monotonic())

        ok = True
        try:
            q = self._queue
            if q is not None:
                q.close()
                from concurrent.futures import wait as _wait

                _, not_done = _wait(self._drains, timeout=left())
                if not_done:
                    ok = False
                    self._give_up(q, log=not at_exit)
            with self._bg_cond:
                if not self._bg_cond.wait_for(lambda: self._bg == 0, left()):
                    ok = False
            lp = self._loop
            if lp is not None:
                try:
                    lp.call_soon_threadsafe(lp.stop)
                except RuntimeError:
                    pass
                th = self._loop_thread
                if th is not None and th is not threading.current_thread():
                    # After a timeout, a moment for the loop to cancel what is left.
                    grace = 0.5 if deadline is None or not at_exit else min(0.5, left() or 0.0)
                    th.join(left() if ok else grace)
            if self._pool is not None:
                self._pool.close(timeout=left() if ok else 0.0)
            if self._metrics is not None:
                self._metrics.set_queue_size(self._component, q.qsize() if q is not None else 0)
        finally:
            self._shutdown_result = ok
            self._shutdown_done.set()
            with self._drain_cond:
                self._drain_cond.notify_all()
            _exit.unregister(self)
            _LIVE_EMITTERS.discard(self)
        return ok

    def close_at_exit(self, timeout: float) -> None:
        """Interpreter exit (called by :mod:`nova._util.atexit` with the seconds left of
        the shared budget, ``NOVA_EXIT_TIMEOUT``): :meth:`shutdown` bounded by *timeout*.
        Events accepted by ``emit_async`` are delivered while the time lasts; the ones not
        started then are given up (counted in ``stats().undelivered``) and, with the
        deliveries still running (a listener blocked for ever), logged at WARNING on the
        ``nova.emitter`` logger.  The worker and loop threads are daemons: what is left
        cannot hold the interpreter.
        """
        before = self._undelivered
        if self._shutdown(max(0.0, timeout), at_exit=True):
            return
        given_up = self._undelivered - before
        running = max(0, _count_value(self._c_accepted) - self._settled())
        _log.warning(
            "emitter %r at interpreter exit: %d accepted events undelivered (not started), "
            "%d deliveries still running and %d async listener calls abandoned after %.3g s",
            self._name, given_up, running, self._bg, timeout)

    def _started_threads(self) -> None:
        """The emitter now owns threads: close it at interpreter exit, reset it in a
        forked child.  Called with ``self._lock`` held, once per kind of thread."""
        _exit.register(self.close_at_exit, _exit.STAGE_PRODUCER)
        _LIVE_EMITTERS.add(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the drain loops, the pool's workers and nova's loop thread
        do not exist, and the locks may have been held by parent threads.  The child's
        copy starts afresh: new locks, no buffer (the next ``emit_async`` starts new
        drain loops, on a new private pool or the user's pool, itself restarted by
        :mod:`nova.pool`), no loop (made again on demand).  Events the parent had
        accepted and not delivered are the parent's: they are delivered there, never
        here, and leave the child's counters.  Subscriptions and middleware stay."""
        from nova.pool import _FORK_KEEP

        self._lock = threading.RLock()
        self._stats_lock = threading.Lock()
        self._drain_cond = threading.Condition(threading.Lock())
        self._drain_waiters = 0
        self._bg_cond = threading.Condition(threading.Lock())
        self._bg = 0
        # never freed here: see nova.pool._FORK_KEEP
        _FORK_KEEP.extend(x for x in (self._queue, self._pool, self._loop) if x is not None)
        self._queue = None
        self._pool = None
        self._drains = []
        self._loop = None
        self._loop_thread = None
        settled = sum(self._wdone)
        self._wdone = [settled] + [0] * (self._workers - 1)
        self._wbatch = [[] for _ in range(self._workers)]
        self._getters = []
        self._parked = []
        self._c_accepted = itertools.count(self._settled())  # the parent's in-flight events leave
        if self._shutdown_started and not self._shutdown_done.is_set():
            self._shutdown_done = threading.Event()
            self._shutdown_result = False
            self._shutdown_done.set()
        self._refresh()

    def _give_up(self, q: Any, log: bool = True) -> None:
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
        for b in self._wbatch:
            while True:
                try:
                    b.pop(0)
                except IndexError:
                    break
                n += 1
        with self._stats_lock:
            self._undelivered += n
        if n and self._metrics is not None:
            self._metrics.inc_events_dropped(self._component, "shutdown", n)
        if n and log:
            _log.warning("emitter %r shut down with %d accepted events undelivered", self._name, n)

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

    # ------------------------------------------------------------------ stats

    def stats(self) -> EmitterStats:
        """A snapshot of the counters (see :class:`EmitterStats`); each event and each
        listener call is counted exactly once."""
        with self._lock:  # compaction (under this lock) moves retired counts into the base
            live = [*self._routes.values(), self._default]
            retired = list(self._retired)
            n_active = self._nsubs
            with self._stats_lock:
                base_emitted, base_processed = self._base_emitted, self._base_processed
        emitted = _count_value(self._c_emitted) + _count_value(self._c_accepted)
        processed = 0
        for r in live:
            ce, cw = _count_value(r.count), _count_value(r.wcount)
            emitted += ce
            processed += (ce + cw) * r.n
        for c, w, n, _ in retired:
            ce, cw = _count_value(c), _count_value(w)
            emitted += ce
            processed += (ce + cw) * n
        with self._stats_lock:
            emitted += base_emitted
            processed += base_processed + self._processed - self._corrections
            failed = self._failed
            mw = self._mw_errors
            und = self._undelivered
        q = self._queue
        return EmitterStats(
            emitted=emitted,
            processed=processed,
            failed=failed,
            dropped=_count_value(self._c_dropped_new) + _count_value(self._c_victims),
            queued=q.qsize() if q is not None else 0,
            active_listeners=n_active,
            middleware_errors=mw,
            delivered=sum(self._wdone),
            undelivered=und,
        )

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
        return f"<Emitter {self._name!r} {state} subscriptions={self._nsubs}>"


def _index(calls: tuple[Any, ...], fn: Any) -> int:
    """The position of *fn* in *calls*, by identity (a route's calls are distinct)."""
    for i, c in enumerate(calls):
        if c is fn:
            return i
    raise LookupError(f"Expected the listener call in its route, got {fn!r} missing")


def _alias(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A distinct, equally fast callable for a listener subscribed more than once (the
    fast path finds a failing call by identity, so a route holds no object twice)."""
    if isinstance(fn, types.FunctionType):
        g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        g.__kwdefaults__ = fn.__kwdefaults__
        g.__qualname__ = fn.__qualname__
        g.__dict__.update(fn.__dict__)
        return g
    if isinstance(fn, types.MethodType):
        return types.MethodType(fn.__func__, fn.__self__)

    def alias(event: Any) -> Any:
        return fn(event)

    return alias


async def _await_it(aw: Awaitable[Any]) -> Any:
    return await aw
