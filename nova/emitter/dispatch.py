"""Delivery from a thread, and what happens to errors.

:class:`Dispatcher` calls the listeners of a route from the emitting thread or a worker,
counts each call, runs what an ``async def`` listener returns on nova's loop
(:class:`~nova.emitter.aio.LoopRunner`), and applies the error policy: raise to the
caller (one error, or an :class:`ExceptionGroup`) or report to the listener's
``on_error``, the emitter's hook, or the ``nova.emitter`` log.  It also finishes what a
fast path (:mod:`nova.emitter.fastpath`) started when a call there raised.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from array import array
from collections.abc import Callable
from time import perf_counter
from typing import Any

from nova._core import deliver_noted
from nova.emitter.aio import LoopRunner
from nova.emitter.middleware import Ctx, run
from nova.emitter.routes import SKIP, Entry, Route, RouteTable, index_of
from nova.emitter.stats import Counters
from nova.errors import EmitterClosed
from nova.events import FunctionListener

__all__ = ("Dispatcher",)

_log = logging.getLogger("nova.emitter")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


def _hand_calls(sink: Any, start: float, evs: list[Any], lids: list[str], ends: array[float],
                errors: list[tuple[int, BaseException]] | None) -> None:
    """Give a batch of recorded calls to the observer's ``record_calls``; an observer
    that raises is logged and never disturbs delivery (as in ``Observers``)."""
    try:
        sink(start, evs, lids, ends, errors)
    except Exception:
        logging.getLogger("nova.observability").exception("nova: observer %r failed in record_calls", sink)


class Dispatcher:
    """Calls listeners, counts the calls, applies the error policy (see the module)."""

    def __init__(self, *, name: str, table: RouteTable, counters: Counters, metrics: Any, raise_errors: bool,
                 on_error: Callable[[Any, BaseException, Any], Any] | None, acquire_timeout: float | None,
                 bound_workers: bool) -> None:
        self.name = name
        self.table = table
        self.counters = counters
        self.metrics = metrics
        self.raise_errors = raise_errors
        self.on_error = on_error
        self.acquire_timeout = acquire_timeout
        self.bound_workers = bound_workers  # workers take a max_concurrency slot per call
        self.runner = LoopRunner(name, acquire_timeout)
        self.obs: Any = None  # nova.observability.observers.Observers (tracing, audit) or None
        # the observer's batch form (an AuditTrail's record_calls), read by fastpath.deliver_batch
        self.record_calls: Any = None

    # -- calling ---------------------------------------------------------------------
    def deliver(self, event: Any, route: Route, worker: bool) -> list[tuple[Entry, BaseException]]:
        """Call every listener of *route* from a thread; returns the failures."""
        errs: list[tuple[Entry, BaseException]] = []
        wait = _running_loop() is None
        for entry in route.entries:
            r = self.invoke(entry, event, wait, worker)
            if r is not None:
                errs.append((entry, r))
        return errs

    def deliver_reporting(self, event: Any) -> None:
        """A worker's delivery of *event*: every error is reported."""
        for entry, e in self.deliver(event, self.table.route(event.type), True):
            self.report(event, e, entry)

    def invoke(self, entry: Entry, event: Any, wait: bool, worker: bool) -> BaseException | None:
        """One listener call from a thread, counted.  An awaitable it returns is run on
        nova's loop: waited for when *wait*, else left running there (counted when it
        ends).  Returns the call's error or None."""
        bounded = worker and self.bound_workers and not entry.is_async and not entry.bounded
        sem = entry.sem if bounded else None
        t0 = perf_counter() if self.metrics is not None else 0.0
        try:
            if sem is None:
                counted = self._call(entry, event, wait)
            else:
                sem.acquire(1, self.acquire_timeout)
                try:
                    counted = self._call(entry, event, wait)
                finally:
                    sem.release()
        except Exception as exc:
            self.count(entry, False, t0)
            return exc
        if counted:
            self.count(entry, True, t0)
        return None

    def observe(self, obs: Any) -> None:
        """Run every listener call inside *obs*'s ``begin``/``end`` from now on: the
        instance's ``invoke`` becomes :meth:`_invoke_observed` (unobserved, ``invoke``
        stays the class's, without even a check)."""
        self.obs = obs
        self.invoke = self._invoke_observed  # type: ignore[method-assign]
        self.record_calls = getattr(obs, "record_calls", None)

    def _invoke_observed(self, entry: Entry, event: Any, wait: bool, worker: bool) -> BaseException | None:
        """:meth:`invoke` inside the observers' ``begin``/``end`` (one attempt; an
        emitter does not retry, so a failure is settled ``error`` at once)."""
        obs = self.obs
        tokens = obs.begin(event, entry.lid, event.type, None, None, 1)
        try:
            r = Dispatcher.invoke(self, entry, event, wait, worker)
        except BaseException as exc:
            obs.end(tokens, exc, "error")
            raise
        obs.end(tokens, r, "error")
        return r

    def _call(self, entry: Entry, event: Any, wait: bool) -> bool:
        """Call *entry*; False when the call is not to be counted here (a once-listener
        that did not run, or an awaitable left running on nova's loop)."""
        r = entry.call(event)
        if r is None or not entry.checked:
            return True
        if r is SKIP:
            return False
        if inspect.isawaitable(r):
            self.run_on_loop(r, entry, event, background=not wait)
            return wait
        return True

    def count(self, entry: Entry, ok: bool, t0: float) -> None:
        """One call of *entry* that started at *t0* ended (ok or failed)."""
        self.counters.count(ok)
        m = self.metrics
        if m is not None:
            m.observe_listener_duration(entry.lid, perf_counter() - t0)
            m.inc_events_processed(entry.lid, "ok" if ok else "error")

    def run_on_loop(self, aw: Any, entry: Entry, event: Any, background: bool) -> None:
        """Run an awaitable on nova's loop; wait for it (raising its error) or not (it is
        counted and its error reported when it ends)."""
        fut = self.runner.submit(aw, entry.sem)
        if not background:
            fut.result()
            return
        t0 = perf_counter()

        def done(f: Any) -> None:
            exc = None if f.cancelled() else f.exception()
            if f.cancelled():
                exc = EmitterClosed(f"Expected listener {entry.lid} to finish, got it cancelled by the shutdown of {self.name!r}")
            self.count(entry, exc is None, t0)
            if exc is not None:
                self.report(event, exc, entry)

        fut.add_done_callback(done)

    def deliver_in_worker(self, event: Any, fast: tuple[Any, ...] | None, layers: tuple[Any, ...]) -> None:
        """A worker's delivery of *event* off the plain fast path: on *fast* (the fast
        view of a sync route whose calls' return values are acted on), else through the
        middleware *layers*, else the general way.  Every error is reported."""
        if fast is None:
            if layers:
                self.through_workers_chain(event, layers)
            elif self.obs is not None and self.metrics is None and not self.bound_workers:
                plain = self.table.route(event.type)
                if plain.all_sync and not plain.checked:
                    self.deliver_observed(event, plain, False)
                else:
                    self.deliver_reporting(event)
            else:
                self.deliver_reporting(event)
            return
        route: Route = fast[2]
        route.wtick()
        try:
            for fn in route.calls:
                if (res := fn(event)) is not None:
                    self.returned(event, res, route, fn)
        except BaseException as exc:  # noqa: BLE001 - workers report everything
            self.fast_failed(event, route, fn, exc, False)

    def through_workers_chain(self, event: Any, layers: tuple[Any, ...]) -> None:
        """A worker's delivery of *event* through the middleware *layers*."""
        exc = run(layers, event, self.deliver_reporting)
        if exc is not None:
            self.counters.middleware_error()
            self.report(event, exc, None)

    def through_chain(self, event: Any, layers: tuple[Any, ...]) -> None:
        """An inline delivery of *event* through the middleware *layers*, under the
        error policy (a listener error raised from ``call_next`` is not a middleware
        error)."""
        ctx = Ctx()

        def terminal(ev: Any) -> None:
            try:
                self.deliver_inline(ev)
            except BaseException as exc:
                ctx.delivery_exc = exc
                raise

        exc = run(layers, event, terminal)
        if exc is None:
            return
        if exc is ctx.delivery_exc:
            raise exc
        self.middleware_failed(event, exc)

    def deliver_inline(self, event: Any) -> None:
        """``emit``'s delivery without middleware: every listener, then the policy."""
        route = self.table.route(event.type)
        if route.all_sync and not route.checked:
            if self.obs is None:
                if self.metrics is not None:
                    self.deliver_metered(event, route)
                    return
            elif self.metrics is None:
                self.deliver_observed(event, route, True)
                return
        errs = self.deliver(event, route, False)
        if self.metrics is not None:
            self.metrics.inc_events_emitted(event.type, "error" if errs else "ok")
        if errs:
            self.conclude(event, errs)

    def deliver_metered(self, event: Any, route: Route) -> None:
        """:meth:`deliver_inline` on a route of plain sync calls with metrics on: the
        fast path's counting (one tick for the route, corrected when a call fails)
        plus the metrics, without the general path's per-call frames.  Benchmark:
        ``asv_benchmarks/ratio_observability.py`` (emit with a Prometheus collector)."""
        m = self.metrics
        route.wtick()  # n calls presumed processed (the emit itself was counted by the caller)
        errs: list[tuple[Entry, BaseException]] = []
        entries = route.entries
        for i, entry in enumerate(entries):
            t0 = perf_counter()
            try:
                entry.call(event)
            except Exception as exc:
                self.counters.correct(1, failed=1)
                m.observe_listener_duration(entry.lid, perf_counter() - t0)
                m.inc_events_processed(entry.lid, "error")
                errs.append((entry, exc))
                continue
            except BaseException:  # KeyboardInterrupt...: fix the counts, propagate
                self.counters.correct(len(entries) - i, failed=1)
                raise
            m.observe_listener_duration(entry.lid, perf_counter() - t0)
            m.inc_events_processed(entry.lid, "ok")
        m.inc_events_emitted(event.type, "error" if errs else "ok")
        if errs:
            self.conclude(event, errs)

    def deliver_observed(self, event: Any, route: Route, inline: bool) -> None:
        """Deliver *event* on a route of plain sync calls, each call inside the
        observers' ``begin``/``end`` (tracing, audit) and otherwise exactly as the fast
        paths do (one presumption for the route, :meth:`fast_failed` on a failure: the
        later calls made through the observed :meth:`invoke`, then the error policy
        (*inline*) or the reports (a worker)).  Benchmark:
        ``asv_benchmarks/ratio_observability.py`` (emit_async with an audit trail)."""
        obs = self.obs
        route.wtick()  # n calls presumed processed (the emit itself is counted by the caller)
        lid_type = event.type
        for entry in route.entries:
            tokens = obs.begin(event, entry.lid, lid_type, None, None, 1)
            try:
                entry.call(event)
            except Exception as exc:
                obs.end(tokens, exc, "error")
                self.fast_failed(event, route, entry.call, exc, inline)
                return
            except BaseException as exc:
                obs.end(tokens, exc, "error")
                if inline:  # KeyboardInterrupt...: fix the counts, propagate at once
                    self.fast_aborted(route, entry.call)
                    raise
                self.fast_failed(event, route, entry.call, exc, False)  # workers report everything
                return
            obs.end(tokens, None)

    def deliver_batch_recorded(self, batch: list[Any], layers: tuple[Any, ...]) -> int:
        """:func:`~nova.emitter.fastpath.deliver_batch` when the one observer takes calls
        in batches (an AuditTrail's ``record_calls``): events on plain sync routes are
        delivered by the ``deliver_noted`` kernel, which makes and notes their calls
        (a clock reading in C stored as a double, two list appends per call), and the
        events, listener ids and readings go to the observer once per batch, without a
        ``begin``/``end`` call each; every other event takes the observed general path
        (:meth:`deliver_in_worker`).  Counting and error reports are those of
        :meth:`deliver_observed`.  Benchmark: ``asv_benchmarks/ratio_observability.py``
        (emit_async with an audit trail)."""
        if layers or self.metrics is not None or self.bound_workers:
            return self._deliver_general(batch, layers)
        sink = self.record_calls
        routes, default = self.table.routes, self.table.default
        evs: list[Any] = []
        lids: list[str] = []
        ends = array("d")  # readings stored as C doubles by deliver_noted (no float per call)
        deliver = deliver_noted
        clock = perf_counter
        hand = _hand_calls
        k = 0
        start = clock()
        try:
            while True:
                taken: int
                taken, event, route, failed = deliver(batch, routes, default, evs, lids, ends)
                k += taken
                if event is None:
                    return k
                try:
                    if failed is None:  # not a plain route: the general path
                        if ends:  # the recorded calls go before the general path's records
                            hand(sink, start, evs, lids, ends, None)
                            evs, lids, ends = [], [], array("d")
                        self.deliver_in_worker(event, None, layers)
                    elif failed[0] is not None:  # a call raised (noted, the rest not called)
                        hand(sink, start, evs, lids, ends, [(len(ends) - 1, failed[1])])
                        evs, lids, ends = [], [], array("d")
                        self.fast_failed(event, route, failed[0].call, failed[1], False)
                    else:  # finding the route raised
                        self.counters.correct(0, failed=1)
                        self.report(event, failed[1], None)
                except BaseException as exc:  # noqa: BLE001
                    self.counters.correct(0, failed=1)
                    self.report(event, exc, None)
                failed = None
                start = clock()
        finally:
            if ends:
                hand(sink, start, evs, lids, ends, None)

    def _deliver_general(self, batch: list[Any], layers: tuple[Any, ...]) -> int:
        """:meth:`deliver_batch_recorded` when no call can be noted in a batch
        (middleware, metrics or bounded workers): every event takes the observed
        general path."""
        pop = batch.pop
        k = 0
        while True:
            try:
                event = pop()
            except IndexError:
                return k
            k += 1
            try:
                self.deliver_in_worker(event, None, layers)
            except BaseException as exc:  # noqa: BLE001 - workers report everything
                self.counters.correct(0, failed=1)
                self.report(event, exc, None)

    # -- errors ----------------------------------------------------------------------
    def middleware_failed(self, event: Any, exc: BaseException) -> None:
        self.counters.middleware_error()
        if self.raise_errors:
            raise exc
        self.report(event, exc, None)

    def conclude(self, event: Any, errs: list[tuple[Entry, BaseException]]) -> None:
        """Apply the error policy to the errors of one inline delivery."""
        if self.raise_errors:
            if len(errs) == 1:
                raise errs[0][1]
            # an ExceptionGroup when every error is an Exception (the usual case)
            raise BaseExceptionGroup(f"{len(errs)} listeners failed on event {event.type!r}", [e for _, e in errs])
        for entry, exc in errs:
            self.report(event, exc, entry)

    def report(self, event: Any, exc: BaseException, entry: Entry | None) -> None:
        """Send an error to the listener's on_error and the emitter's hook (or the log)."""
        reported = False
        if entry is not None:
            lis = entry.listener
            h = getattr(lis, "on_error", None)
            if h is not None and callable(h) and not (isinstance(lis, FunctionListener) and lis._on_error is None):
                reported = True
                try:
                    h(event, exc)
                except Exception:
                    _log.exception("on_error of listener %s raised while reporting %r", entry.lid, exc)
        if self.on_error is not None:
            reported = True
            try:
                self.on_error(event, exc, entry.listener if entry is not None else None)
            except Exception:
                _log.exception("on_error hook of emitter %r raised while reporting %r", self.name, exc)
        if not reported:
            who = f"listener {entry.lid}" if entry is not None else "middleware"
            _log.error("%s failed on event %r (emitter %r)", who, getattr(event, "type", event), self.name, exc_info=exc)

    # -- the fast paths' exits -------------------------------------------------------
    def returned(self, event: Any, r: Any, route: Route, fn: Any) -> None:
        """A fast-path call returned something other than None: a once-listener that
        did not run, or an awaitable, which is run here (waited for when this thread
        has no running loop).  Raises the awaitable's error."""
        if r is SKIP:
            self.counters.correct(1)
            return
        if not inspect.isawaitable(r):
            return
        entry = route.entries[index_of(route.calls, fn)]
        if _running_loop() is None:
            self.run_on_loop(r, entry, event, background=False)
        else:
            self.counters.correct(1)  # the completion callback counts it
            self.run_on_loop(r, entry, event, background=True)

    def fast_aborted(self, route: Route, fn: Any) -> None:
        """A fast-path call raised a BaseException (not an Exception) that propagates at
        once: that call failed and the later ones never ran."""
        rest = route.n - index_of(route.calls, fn) - 1
        self.counters.correct(1 + rest, failed=1)

    def fast_failed(self, event: Any, route: Route, fn: Any, exc: BaseException, inline: bool) -> None:
        """A fast-path call (*fn*) raised: count it, run the listeners after it, then
        apply the error policy (*inline*: the caller's; otherwise report, as workers do)."""
        entries = route.entries
        idx = index_of(route.calls, fn)
        rest = route.n - idx - 1
        self.counters.correct(1 + rest, failed=1)  # these were presumed processed
        if self.metrics is not None:
            self.metrics.inc_events_processed(entries[idx].lid, "error")
        errs = [(entries[idx], exc)]
        if rest:
            wait = _running_loop() is None
            for entry in entries[idx + 1 :]:
                e = self.invoke(entry, event, wait, not inline)
                if e is not None:
                    errs.append((entry, e))
        if inline:
            self.conclude(event, errs)
        else:
            for entry, e in errs:
                self.report(event, e, entry)
