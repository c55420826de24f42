"""Scheduled retries of a managed listener (the Emitter path): :class:`ListenerRetries`
decides after a failed call (through :func:`nova.resilience.retry.next_delay`), schedules the next attempt on the
manager's timer scheduler and runs it on a helper thread, a pool or an event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from nova._util.loop import start_on_loop, watch_loop
from nova.listener.calls import ListenerCalls
from nova.listener.pending import CALLING, DECIDING, DELIVERING, IN_TASK, LETTERING, PENDING, Retry
from nova.resilience.retry import next_delay

__all__ = ("ListenerRetries",)


class ListenerRetries(ListenerCalls):
    """Scheduled retries of a managed listener (the layer of
    :class:`~nova.listener.ManagedListener` above its calls)."""

    def _after_failure(self, event: Any, exc: BaseException, attempts: int,
                       topic: str | None, loop: asyncio.AbstractEventLoop | None,
                       prev: Retry | None = None) -> None:
        """The *attempts*-th call of *event* failed with *exc*: schedule the next attempt
        or dead-letter the event.  *prev* is the scheduled retry that made the call
        (``None`` for a first call, made inline by the caller)."""
        delay = next_delay(self._retry, exc, attempts, self._retry_if_raised)
        mgr = self._manager
        if loop is not None:
            # From the loop's own thread (ahandle, an attempt on it): from now on its
            # shutdown (asyncio.run ending) is seen, so no attempt is left on it.
            watch_loop(loop)
        with mgr._rcond:
            if prev is not None and prev.state != DECIDING:
                return  # stop() claimed it meanwhile and dead-lettered it
            collect = prev is not None
            if delay is not None:
                due = self._now() + delay
                if not mgr._refuse_retry(due):
                    if prev is not None:
                        mgr._forget(prev)
                    mgr._add_retry(Retry(self, event, attempts, exc, topic, loop, due))
                    return
                collect = True  # stop() ends before it would be due (or the interpreter exits)
            dl = self._new_dead_letter(event, exc, attempts, topic)
            if collect:
                for letters in mgr._collectors:
                    letters.append(dl)
            if prev is not None:
                prev.state = LETTERING
                prev.letter = dl
        if prev is None:
            self._deliver_dead_letter(dl)
            return
        # Between the decision above and the delivery a stop() whose time ran out may have
        # taken the dead letter over (it delivers it before returning): the delivery begins
        # only if it is still ours, so none starts after that stop() returned.
        with mgr._rcond:
            if prev.state != LETTERING:
                return
            prev.state = DELIVERING
        try:
            self._deliver_dead_letter(dl)
        finally:
            with mgr._rcond:
                mgr._forget(prev)

    def _run_retry(self, retry: Retry) -> Any:
        """Run one scheduled retry (on a runner thread, or on the original loop)."""
        mgr = self._manager
        with mgr._rcond:
            if retry.state != PENDING:
                return None  # claimed by stop(): it never runs
            if not self.is_async:
                retry.state = CALLING
        with self._lock:
            self._c["retried"] += 1
        if self.is_async:
            return self._submit_attempt(retry)
        try:
            err = self._call_sync(retry.event, retry)
        except BaseException as exc:  # pragma: no cover - _call_sync returns errors
            err = exc
        self._finish_retry(retry, err, None)
        return None

    def _submit_attempt(self, retry: Retry) -> concurrent.futures.Future[Any]:
        """Start an async retry attempt on its original loop while that runs, else on the
        manager's loop; returns the future of its task.

        A task cancelled before it started (its loop closing) never runs the attempt's
        code: the attempt then moves to the manager's (current) loop, or, if it was
        already there, ends with that error (retried or dead-lettered), never silently
        lost.  A retry that stop() claimed meanwhile does nothing."""
        mgr = self._manager
        loop = retry.loop
        started: list[bool] = []
        target: asyncio.AbstractEventLoop | None = None  # the manager's loop, when used
        fut: concurrent.futures.Future[Any] | None = None
        # start_on_loop makes the coroutine on the loop's thread: a hand-off dropped by a
        # loop that closed (asyncio.run ending) leaves no coroutine "never awaited", and
        # its future is cancelled (check() below then moves the attempt on).
        if loop is not None and loop.is_running() and not loop.is_closed():
            try:
                fut = start_on_loop(loop, lambda: self._aretry(retry, None, started))
            except RuntimeError:  # closed meanwhile
                pass
        tries = 0
        while fut is None:
            retry.loop = None
            target = mgr._event_loop()
            tgt = target
            try:
                fut = start_on_loop(tgt, lambda: self._aretry(retry, tgt, started))
            except RuntimeError:  # stop() closed that loop meanwhile: take the new one
                tries += 1
                if tries > 3:  # pragma: no cover - the loop keeps closing under us
                    raise
        retry.fut = fut

        def check(f: concurrent.futures.Future[Any]) -> None:
            if started or not f.cancelled():
                return
            with mgr._rcond:
                if retry.state != PENDING:
                    return  # claimed by stop(), which cancelled it
                fail = target is not None and mgr._loop is target
                if fail:
                    retry.state = CALLING
            if not fail:
                self._resubmit(retry)  # the loop it was handed to went away
            else:
                self._finish_retry(retry, asyncio.CancelledError(
                    f"Expected the retry of listener {self._id!r} to run, got it cancelled "
                    "before it started (the manager's loop closed)"), None)

        fut.add_done_callback(check)
        return fut

    async def _aretry(self, retry: Retry, target: asyncio.AbstractEventLoop | None,
                      started: list[bool]) -> None:
        started.append(True)
        mgr = self._manager
        with mgr._rcond:
            if retry.state != PENDING:
                return  # claimed by stop() before it started
            retry.state = CALLING
        IN_TASK.set(retry)  # this task's own context: stop() from inside does not wait for it
        try:
            err = await self._acall(retry.event, retry)
        except asyncio.CancelledError as exc:
            with mgr._rcond:
                if retry.state != CALLING:
                    return  # stop() claimed it (and cancelled it): nothing more runs
                # Cut off because the loop it ran on is going away (asyncio.run ending,
                # an Emitter's shutdown closing its loop, stop() replacing the manager's
                # loop): the attempt has no result, so it runs again on the manager's loop.
                again = target is None or mgr._loop is not target
                if again:
                    retry.state = PENDING
            if again:
                self._resubmit(retry)
                return
            err = exc
        self._finish_retry(retry, err, None if target is not None else asyncio.get_running_loop())

    def _resubmit(self, retry: Retry) -> None:
        """Run a pending async attempt again on the manager's loop (it counts as a
        dispatched scheduler task until it ends)."""
        retry.loop = None
        sched = self._manager._scheduler
        with sched._cond:
            sched._active += 1
        try:
            fut = self._submit_attempt(retry)
        except BaseException as exc:  # pragma: no cover - the manager's loop cannot start
            sched.task_done()
            with self._manager._rcond:
                if retry.state != PENDING:
                    return
                retry.state = CALLING
            self._finish_retry(retry, exc, None)
            return
        fut.add_done_callback(lambda f: sched.task_done())

    def _finish_retry(self, retry: Retry, err: BaseException | None,
                      loop: asyncio.AbstractEventLoop | None) -> None:
        """A retry's call ended with *err* (``None``: handled).  Ignored when stop() has
        claimed the retry meanwhile (it dead-lettered the event already)."""
        mgr = self._manager
        with mgr._rcond:
            if retry.state != CALLING:
                return
            if err is None:
                self._count_processed()
                mgr._forget(retry)
                return
            retry.state = DECIDING
            retry.attempts += 1
            retry.error = err
        self._after_failure(retry.event, err, retry.attempts, retry.topic,
                            loop if loop is not None else retry.loop, retry)
