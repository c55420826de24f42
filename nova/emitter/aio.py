"""The emitter's asyncio side: nova's loop thread for awaitables that threads start, and
delivery on the caller's running loop for ``aemit``.

* :class:`LoopRunner` runs the awaitables that ``emit``/``emit_async`` callers cannot
  await themselves (an ``async def`` listener called from a thread) on one
  :class:`~nova._util.loop.LoopThread`, each under its subscription's concurrency
  bound, and counts those in flight so shutdown can wait for them.
* :func:`adeliver` / :func:`arun` deliver one event on the running loop: sync listeners
  inline, async ones concurrently.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Coroutine
from concurrent.futures import Future
from time import perf_counter
from typing import TYPE_CHECKING, Any

from nova._util.loop import LoopThread
from nova.emitter.middleware import run
from nova.emitter.routes import SKIP, Entry

if TYPE_CHECKING:
    from nova.emitter.dispatch import Dispatcher

__all__ = ("LoopRunner", "adeliver", "adeliver_through", "arun")


async def _await_it(aw: Awaitable[Any]) -> Any:
    return await aw


class LoopRunner:
    """nova's own loop (started on first use) and the count of awaitables running on it."""

    def __init__(self, name: str, acquire_timeout: float | None) -> None:
        self.loop = LoopThread(f"nova-{name}-loop")
        self._acquire_timeout = acquire_timeout
        self._cond = threading.Condition(threading.Lock())
        self.running = 0  # awaitables started and not finished

    def _started(self, n: int) -> None:
        with self._cond:
            self.running += n
            if self.running == 0:
                self._cond.notify_all()

    async def _guarded(self, aw: Awaitable[Any], sem: Any) -> Any:
        try:
            if sem is None:
                return await aw
            await _acquire(sem, self._acquire_timeout, aw)
            try:
                return await aw
            finally:
                sem.release()
        finally:
            self._started(-1)

    def submit(self, aw: Any, sem: Any) -> Future[Any]:
        """Start *aw* on the loop under *sem* (a Semaphore or None); counted until it ends.
        If the loop cannot take it (closed), *aw* is closed unstarted and the error raised."""
        coro: Coroutine[Any, Any, Any] = aw if inspect.iscoroutine(aw) else _await_it(aw)
        self._started(1)
        try:
            return self.loop.submit(self._guarded(coro, sem))
        except BaseException:
            coro.close()
            self._started(-1)
            raise

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no awaitable runs; False if *timeout* passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self.running == 0, timeout)

    def in_thread(self) -> bool:
        """True when called from nova's loop thread."""
        return self.loop.in_thread()

    def after_fork_in_child(self) -> None:
        """A forked child: the awaitables ran on the parent's loop thread (the
        :class:`LoopThread` starts afresh by itself); nothing runs here."""
        self._cond = threading.Condition(threading.Lock())
        self.running = 0


async def arun(d: Dispatcher, entry: Entry, event: Any, aw: Any) -> BaseException | None:
    """Run one async call on the running loop under its concurrency bound, counted.
    *aw*: the awaitable the call already returned, or None to make the call here.
    Returns its error or None."""
    t0 = perf_counter() if d.metrics is not None else 0.0
    sem = entry.sem
    try:
        if sem is not None:
            await _acquire(sem, d.acquire_timeout, aw)
        try:
            if aw is None:
                aw = entry.call(event)
                if aw is SKIP:
                    return None
            if aw is not None and inspect.isawaitable(aw):
                await aw
        finally:
            if sem is not None:
                sem.release()
    except Exception as exc:
        d.count(entry, False, t0)
        return exc
    d.count(entry, True, t0)
    return None


async def arun_observed(d: Dispatcher, entry: Entry, event: Any, aw: Any) -> BaseException | None:
    """:func:`arun` inside the observers' ``begin``/``end``."""
    obs = d.obs
    tokens = obs.begin(event, entry.lid, event.type, None, None, 1)
    try:
        r = await arun(d, entry, event, aw)
    except BaseException as exc:
        obs.end(tokens, exc, "error")
        raise
    obs.end(tokens, r, "error")
    return r


async def _acquire(sem: Any, timeout: float | None, aw: Any) -> None:
    """Take a slot of *sem*; if that fails, close the coroutine *aw* never started."""
    try:
        await sem.acquire_async(1, timeout)
    except BaseException:
        if aw is not None and inspect.iscoroutine(aw):
            aw.close()
        raise


async def adeliver(d: Dispatcher, event: Any) -> None:
    """Deliver *event* on the running loop: sync listeners inline in order, then the
    awaitables concurrently (the first in this task, the others as tasks, one task fewer
    than gather; cancelling the caller cancels them all); then the error policy."""
    route = d.table.route(event.type)
    errs: list[tuple[Entry, BaseException]] = []
    later: list[tuple[Entry, Any]] = []
    obs = d.obs
    begun: set[int] = set()  # entries whose sync call returned an awaitable
    for entry in route.entries:
        if entry.is_async:
            later.append((entry, None))
            continue
        t0 = perf_counter() if d.metrics is not None else 0.0
        tokens = None if obs is None else obs.begin(event, entry.lid, event.type, None, None, 1)
        try:
            r = entry.call(event)
        except Exception as exc:
            if tokens is not None:
                obs.end(tokens, exc, "error")
            d.count(entry, False, t0)
            errs.append((entry, exc))
            continue
        if tokens is not None:
            # An awaitable returned by a sync call: the attempt observed is the call
            # (its context must be detached in this task, before the awaitable runs).
            obs.end(tokens, None)
        if r is not None and entry.checked and r is not SKIP and inspect.isawaitable(r):
            later.append((entry, r))
            begun.add(id(entry))
        elif r is not SKIP:
                d.count(entry, True, t0)
    if later:
        results = await _run_all(d, event, later, begun)
        errs.extend((entry, e) for (entry, _), e in zip(later, results) if e is not None)
    if d.metrics is not None:
        d.metrics.inc_events_emitted(event.type, "error" if errs else "ok")
    if errs:
        errs.sort(key=lambda x: x[0].seq)
        d.conclude(event, errs)


async def _run_all(d: Dispatcher, event: Any, later: list[tuple[Entry, Any]], begun: set[int]) -> list[BaseException | None]:
    first, aw = later[0]
    if d.obs is not None:
        def run(entry: Entry, event: Any, a: Any) -> Any:
            if id(entry) in begun:
                return arun(d, entry, event, a)
            return arun_observed(d, entry, event, a)
    else:
        def run(entry: Entry, event: Any, a: Any) -> Any:
            return arun(d, entry, event, a)
    if len(later) == 1:
        return [await run(first, event, aw)]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(run(entry, event, a)) for entry, a in later[1:]]
    try:
        results = [await run(first, event, aw)]
        for task in tasks:
            results.append(await task)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return results


async def adeliver_through(d: Dispatcher, event: Any, layers: tuple[Any, ...]) -> None:
    """``aemit``'s delivery after the sync middleware *layers* ran: they decide what is
    delivered (the events their innermost ``call_next`` received), then each is
    delivered on the running loop.  Middleware does not see the listeners' errors."""
    if not layers:
        await adeliver(d, event)
        return
    pending: list[Any] = []
    exc = run(layers, event, pending.append)
    if exc is not None:
        d.middleware_failed(event, exc)
    for ev in pending:
        await adeliver(d, ev)
