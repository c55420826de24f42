"""The emitter's benchmarked fast paths, and only them.

Each function here is the plain-Python shortcut of a path that
``asv_benchmarks/ratio_emitter.py`` (and ``benchmarks/bench_emitter.py``) measure; the
general path it falls back to lives in :mod:`~nova.emitter.dispatch` (sync),
:mod:`~nova.emitter.aio` (asyncio) and :mod:`~nova.emitter.buffered` (the buffer).  A
fast path runs when nothing needs the general one: no middleware, validator or metrics,
a route of sync listeners (see :meth:`Emitter._refresh`).  It counts a whole route's
calls with one lock-free tick and corrects the count only when a call raises.

The route dicts the fast paths read hold each route's fast view, a plain tuple
``(calls, tick, route, checked)`` (:attr:`Route.fast <nova.emitter.routes.Route>`):
``route[0]`` is ~10 ns per emit cheaper than a slot or a NamedTuple field, which the
"emit, 1 sync listener" ratio (<= 4x a bare loop) shows.

:class:`~nova.emitter.Emitter` binds :func:`emit`, :func:`emit_async` and :func:`aemit`
as its methods (their docstrings are the public ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nova._core import Event
from nova.emitter.aio import arun
from nova.emitter.routes import SKIP
from nova.errors import BufferFull, QueueClosed, Timeout

if TYPE_CHECKING:
    from nova.emitter.emitter import Emitter

__all__ = ("emit", "emit_checked", "emit_async", "aemit", "deliver_batch")


# Benchmark: ratio_emitter "emit, 1 sync listener" / "emit, 10 sync listeners" (vs a
# bare loop over the listeners) and bench_emitter.EmitSync.time_emit_x1000.
def emit(self: Emitter, event: Any) -> None:
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
            route[1]()  # tick
            try:
                for fn in route[0]:  # calls
                    fn(event)
            except Exception as exc:
                self._d.fast_failed(event, route[2], fn, exc, True)
            except BaseException:  # KeyboardInterrupt...: fix the counts, propagate
                self._d.fast_aborted(route[2], fn)
                raise
            return
    if not emit_checked(self, event):
        self._emit_slow(event)


# Benchmark: as emit() above, for listeners whose return value is acted on (Listener
# objects, once-listeners) and event types with only wildcard subscriptions.
def emit_checked(self: Emitter, event: Any) -> bool:
    """``emit`` on a sync route whose calls' return values are acted on; False when
    the general path must deliver *event*."""
    if type(event) is not Event:
        return False
    route = self._fastc.get(event.type)
    if route is None and event.type not in self._routes:
        route = self._fast_default  # an event type without its own subscriptions
    if route is None:
        return False
    d = self._d
    calls, tick, r, _ = route
    tick()
    try:
        for fn in calls:
            if (res := fn(event)) is not None:
                d.returned(event, res, r, fn)
    except Exception as exc:
        d.fast_failed(event, r, fn, exc, True)
    except BaseException:  # KeyboardInterrupt...: fix the counts, propagate
        d.fast_aborted(r, fn)
        raise
    return True


# Benchmark: ratio_emitter "emit_async -> 4 workers -> trivial listener" (>= 1 M ev/s)
# and the "emit_async p99 latency" rows.
def emit_async(self: Emitter, event: Any, timeout: Any = None) -> bool:
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
    if q is None or type(event) is not Event:
        return self._intake.put_slow(event, timeout, None)
    if self._block:
        try:
            q.put(event, timeout)
        except QueueClosed:
            raise self._closed_error() from None
        except Timeout:
            raise self._intake.full_timeout(self._timeout(timeout)) from None
    else:
        try:
            q.put_nowait(event)
        except QueueClosed:
            raise self._closed_error() from None
        except BufferFull:
            return self._intake.enqueue(event, None)  # the overflow policy decides
    next(self._c_accepted)
    if not self._getters and self._parked:  # every worker busy, one parked
        self._intake.wake_one()
    return True


# Benchmark: ratio_emitter "await aemit, 1 async listener" (vs pyee's AsyncIOEventEmitter).
async def aemit(self: Emitter, event: Any) -> None:
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
            route.tick()
            fn = None
            try:
                for fn in route.calls:
                    fn(event)
            except Exception as exc:
                self._d.fast_failed(event, route, fn, exc, True)
            except BaseException:
                self._d.fast_aborted(route, fn)
                raise
            return
        if route.single_async:
            route.tick()
            entry = route.entries[0]
            d = self._d
            sem = entry.sem
            if sem is not None and not sem.try_acquire():
                d.counters.correct(1)  # counted by arun below
                exc2 = await arun(d, entry, event, None)
                if exc2 is not None:
                    d.conclude(event, [(entry, exc2)])
                return
            try:
                aw = entry.call(event)
                if aw is not SKIP:
                    await aw
                else:
                    d.counters.correct(1)
            except Exception as exc:
                d.counters.correct(1, failed=1)
                d.conclude(event, [(entry, exc)])
            except BaseException:  # cancelled: the call did not return (as in arun)
                d.counters.correct(1)
                raise
            finally:
                if sem is not None:
                    sem.release()
            return
    await self._aemit_slow(event)


# Benchmark: ratio_emitter "emit_async -> 4 workers -> trivial listener" (each worker
# delivers its batch here; a function call per event would cost a fifth of it).
def deliver_batch(self: Emitter, batch: list[Any]) -> int:
    """A worker delivers *batch* (reversed: popped from the end), reporting every
    error; a BaseException from a listener never kills the drain loop.  Other workers
    may pop from the same list meanwhile (a shared batch; each pop is atomic), and a
    timed-out shutdown may take the rest.  Returns how many events this call took."""
    table = self._table
    wfast, wdefault, routes = table.wfast, table.wfast_default, table.routes
    d = self._d
    if d.record_calls is not None:  # an audit trail takes the calls in batches
        return d.deliver_batch_recorded(batch, self._mw.worker)
    pop = batch.pop
    k = 0
    while True:
        try:
            event = pop()
        except IndexError:
            return k
        k += 1
        try:
            route = wfast.get(event.type)
            if route is None and wdefault is not None and event.type not in routes:
                route = wdefault
            if route is None or route[3]:  # none, or checked
                d.deliver_in_worker(event, route, self._mw.worker)
                continue
            route[1]()  # wtick
            try:
                for fn in route[0]:  # calls
                    fn(event)
            except BaseException as exc:  # noqa: BLE001 - workers report everything
                d.fast_failed(event, route[2], fn, exc, False)
        except BaseException as exc:  # noqa: BLE001
            d.counters.correct(0, failed=1)
            d.report(event, exc, None)
