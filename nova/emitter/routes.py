"""The route table: subscriptions, and for each event type the immutable plan that
delivers it (its listeners in call order, wildcard subscriptions merged in).

Routes are copy-on-write: a subscribe or unsubscribe builds new :class:`Route` objects
and swaps the dicts, so a delivery in another thread keeps the plan it started with and
never takes a lock.  Each route counts its own deliveries with lock-free counters; a
replaced route's counters are kept ("retired") and folded into a base once idle, so
:meth:`~nova.emitter.Emitter.stats` counts every call exactly once.
"""

from __future__ import annotations

import itertools
import threading
import types
from collections.abc import Callable
from typing import Any

from nova._util.counters import count_value
from nova.events import FunctionListener, Subscription

__all__ = ("WILDCARD", "SKIP", "Entry", "Route", "RouteTable", "index_of", "alias", "bounded_call", "once_call")

#: Subscribe to this event type to receive every event.
WILDCARD = "*"

#: Returned by a once-listener that lost the race (it did not run).
SKIP = object()

RETIRED_COMPACT = 256  # fold retired route counters when this many pile up
RETIRED_AGE = 2.0  # seconds a retired route counter must be idle before it is folded


class Entry:
    """One subscription as the emitter sees it."""

    __slots__ = ("seq", "sub", "listener", "lid", "call", "is_async", "sem", "event_type", "checked", "bounded")

    def __init__(self, seq: int, sub: Subscription, listener: Any, call: Callable[[Any], Any], is_async: bool,
                 sem: Any, event_type: str) -> None:
        self.seq = seq  # subscription order (wildcards merge in by it)
        self.sub = sub
        self.listener = listener
        self.lid = str(getattr(listener, "id", "?"))
        self.call = call  # what a delivery calls with the event
        self.is_async = is_async
        self.sem = sem  # the max_concurrency Semaphore, or None
        self.event_type = event_type
        # True when the call may return something to act on: an awaitable (a Listener's
        # handle, e.g. a managed listener) or the once-gate's "did not run".  A plain
        # function's return value is ignored.
        self.checked = not isinstance(listener, FunctionListener) or is_async
        self.bounded = False  # the call acquires its own concurrency slot


class Route:
    """The immutable delivery plan of one event type.

    ``tick`` counts one emitted event with ``n`` calls presumed to succeed (corrections
    are counted apart when one fails), ``wtick`` the same for workers.  The fast paths
    (:mod:`nova.emitter.fastpath`) read ``fast``/``wfast``: ``(calls, tick, route,
    checked)`` as a plain tuple.
    """

    __slots__ = ("entries", "calls", "n", "count", "wcount", "tick", "wtick", "all_sync", "single_async", "checked",
                 "fast", "wfast")

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        self.entries = entries
        self.calls = tuple(e.call for e in entries)
        self.n = len(entries)
        self.count = itertools.count()  # emit/aemit fast path
        self.wcount = itertools.count()  # worker fast path
        self.tick = self.count.__next__
        self.wtick = self.wcount.__next__
        self.all_sync = not any(e.is_async for e in entries)
        self.single_async = len(entries) == 1 and entries[0].is_async
        self.checked = any(e.checked for e in entries)
        # The fast paths' view, a plain tuple (calls, tick, route, checked): indexing it
        # is ~10 ns faster per emit than reading slots (see nova.emitter.fastpath).
        self.fast = (self.calls, self.tick, self, self.checked)
        self.wfast = (self.calls, self.wtick, self, self.checked)

    def same_entries(self, entries: tuple[Entry, ...]) -> bool:
        """True when this route delivers exactly *entries* (by identity)."""
        return len(self.entries) == len(entries) and all(a is b for a, b in zip(self.entries, entries))


class RouteTable:
    """Subscriptions by event type, and the routes built from them.

    Not locked itself: the owner changes it under its own lock; readers use the
    published dicts (``routes``, ``default`` and the fast dicts), replaced whole.
    """

    def __init__(self) -> None:
        self.seq = itertools.count()
        self.subs: dict[str, list[Entry]] = {}
        self.nsubs = 0
        self.routes: dict[str, Route] = {}
        self.default = Route(())  # the wildcard subscriptions alone
        # Sync-only routes the fast paths may run: plain ones (return values ignored),
        # checked ones (return values acted on), and the workers' (both kinds).
        self.fast: dict[str, tuple[Any, ...]] = {}
        self.fastc: dict[str, tuple[Any, ...]] = {}
        self.fast_default: tuple[Any, ...] | None = self.default.fast
        self.wfast: dict[str, tuple[Any, ...]] = {}
        self.wfast_default: tuple[Any, ...] | None = self.default.wfast
        self.retired: list[tuple[itertools.count[int], itertools.count[int], int, float]] = []
        self.compact_at = RETIRED_COMPACT
        # Counts of compacted retired routes (under the owner's stats lock).
        self.base_emitted = 0
        self.base_processed = 0

    # -- subscriptions ---------------------------------------------------------------
    def add(self, entry: Entry) -> None:
        """Add *entry* (its call made distinct from every other call first)."""
        if any(e.call is entry.call for es in self.subs.values() for e in es):
            entry.call = alias(entry.call)  # the calls of a route are distinct objects
        self.subs.setdefault(entry.event_type, []).append(entry)
        self.nsubs += 1

    def remove(self, sub: Subscription) -> bool:
        """Remove the entry of *sub*; False if it was not there."""
        entries = self.subs.get(sub.topic)
        if not entries:
            return False
        for i, e in enumerate(entries):
            if e.sub is sub:
                del entries[i]
                break
        else:
            return False
        if not entries:
            del self.subs[sub.topic]
        self.nsubs -= 1
        return True

    def route(self, event_type: str) -> Route:
        """The route an event of *event_type* takes now."""
        return self.routes.get(event_type, self.default)

    def entries(self) -> list[Entry]:
        """Every subscription."""
        return [e for es in self.subs.values() for e in es]

    # -- rebuilding ------------------------------------------------------------------
    def _merged(self, event_type: str, star: tuple[Entry, ...]) -> tuple[Entry, ...]:
        entries = self.subs[event_type]
        return tuple(sorted((*entries, *star), key=lambda e: e.seq)) if star else tuple(entries)

    def refresh(self, changed: str | None, fast_ok: bool, wfast_ok: bool, now: float, stats_lock: Any) -> None:
        """Rebuild the routes after a change of *changed*'s subscriptions (``None``:
        any change, e.g. a wildcard one, or a fast-path switch).  *fast_ok* / *wfast_ok*:
        whether the inline / worker fast paths may run at all."""
        if changed is not None and changed != WILDCARD:
            self._refresh_one(changed, fast_ok, wfast_ok, now, stats_lock)
        else:
            self._refresh_all(fast_ok, wfast_ok, now, stats_lock)
        default = self.default
        self.fast_default = default.fast if fast_ok and default.all_sync else None
        self.wfast_default = default.wfast if wfast_ok and default.all_sync else None

    def _refresh_one(self, changed: str, fast_ok: bool, wfast_ok: bool, now: float, stats_lock: Any) -> None:
        """One type changed: copy the dicts and replace that entry only."""
        routes = dict(self.routes)
        prev = routes.pop(changed, None)
        if prev is not None:
            self._retire(prev, now, stats_lock)
        fast = dict(self.fast) if fast_ok else {}
        fastc = dict(self.fastc) if fast_ok else {}
        wfast = dict(self.wfast) if wfast_ok else {}
        for d in (fast, fastc, wfast):
            d.pop(changed, None)
        if self.subs.get(changed):
            route = routes[changed] = Route(self._merged(changed, tuple(self.subs.get(WILDCARD, ()))))
            if route.all_sync:
                if fast_ok:
                    (fastc if route.checked else fast)[changed] = route.fast
                if wfast_ok:
                    wfast[changed] = route.wfast
        self.routes, self.fast, self.fastc, self.wfast = routes, fast, fastc, wfast

    def _refresh_all(self, fast_ok: bool, wfast_ok: bool, now: float, stats_lock: Any) -> None:
        star = tuple(self.subs.get(WILDCARD, ()))
        old = self.routes
        routes = {}
        for t in self.subs:
            if t == WILDCARD:
                continue
            merged = self._merged(t, star)
            prev = old.get(t)
            routes[t] = prev if prev is not None and prev.same_entries(merged) else Route(merged)
        default = self.default if self.default.same_entries(star) else Route(star)
        keep = {id(r) for r in routes.values()}
        keep.add(id(default))
        for r in (*old.values(), self.default):
            if id(r) not in keep:
                self._retire(r, now, stats_lock)
        self.routes = routes
        self.default = default
        sync = [(t, r) for t, r in routes.items() if r.all_sync]
        self.fast = {t: r.fast for t, r in sync if not r.checked} if fast_ok else {}
        self.fastc = {t: r.fast for t, r in sync if r.checked} if fast_ok else {}
        self.wfast = {t: r.wfast for t, r in sync} if wfast_ok else {}

    def _retire(self, route: Route, now: float, stats_lock: Any) -> None:
        """Keep a replaced route's counters (deliveries holding it may still count)."""
        self.retired.append((route.count, route.wcount, route.n, now))
        if len(self.retired) > self.compact_at:
            self._compact(now, stats_lock)
            self.compact_at = max(RETIRED_COMPACT, 2 * len(self.retired))

    def _compact(self, now: float, stats_lock: Any) -> None:
        keep = []
        with stats_lock:
            for c, w, n, t in self.retired:
                if now - t >= RETIRED_AGE:
                    ce, cw = count_value(c), count_value(w)
                    self.base_emitted += ce
                    self.base_processed += (ce + cw) * n
                else:
                    keep.append((c, w, n, t))
        self.retired = keep

    def counted(self) -> tuple[int, int]:
        """(emitted, processed) counted by the routes' fast-path counters, live and
        retired (the compacted base excluded).  Call under the owner's lock."""
        emitted = processed = 0
        for r in (*self.routes.values(), self.default):
            ce, cw = count_value(r.count), count_value(r.wcount)
            emitted += ce
            processed += (ce + cw) * r.n
        for c, w, n, _ in self.retired:
            ce, cw = count_value(c), count_value(w)
            emitted += ce
            processed += (ce + cw) * n
        return emitted, processed


def index_of(calls: tuple[Any, ...], fn: Any) -> int:
    """The position of *fn* in *calls*, by identity (a route's calls are distinct)."""
    for i, c in enumerate(calls):
        if c is fn:
            return i
    raise LookupError(f"Expected the listener call in its route, got {fn!r} missing")


def alias(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
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

    def aliased(event: Any) -> Any:
        return fn(event)

    return aliased


def bounded_call(entry: Entry, call: Callable[[Any], Any], timeout: float | None) -> Callable[[Any], Any]:
    """*call* taking a slot of *entry*'s concurrency semaphore (waiting up to *timeout*)."""

    def bounded(event: Any) -> Any:
        sem = entry.sem  # read per call: a forked child gives the entry a fresh one
        sem.acquire(1, timeout)
        try:
            return call(event)
        finally:
            sem.release(1)

    return bounded


def once_call(entry: Entry, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """*call* gated to run once: the first caller unsubscribes and calls, every other
    one gets :data:`SKIP` (it did not run)."""
    gate = threading.Lock()
    take = gate.acquire

    def once(event: Any) -> Any:
        if not take(False):
            return SKIP
        entry.sub.unsubscribe()
        return call(event)

    return once
