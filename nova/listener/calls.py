"""One call of a managed listener: its concurrency gate, rate limit, circuit breaker
admission, timeout and the bookkeeping of its result (:class:`ListenerCalls`).

A sync call runs in the calling thread; under a timeout it runs on one of the manager's
helper threads (:class:`nova._util.runner.ThreadRunner`) and the caller waits for it at
most the timeout.  An ``async def`` call runs on the running loop (or the manager's).
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from nova.errors import CircuitOpen, Timeout
from nova.listener.state import ListenerState
from nova.listener.pending import CALLING, Retry

__all__ = ("ListenerCalls",)


class _Box:
    """The result slot of a sync call run on a helper thread under a timeout."""

    __slots__ = ("done", "error", "abandoned", "finished", "lock")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.abandoned = False
        self.finished = False
        self.lock = threading.Lock()


class ListenerCalls(ListenerState):
    """One call of a managed listener (the layer of :class:`~nova.listener.ManagedListener`
    above its state)."""

    def _acquire_gate(self) -> None:
        tokens = self._tokens
        if tokens is not None:
            tokens.get()

    async def _aacquire_gate(self) -> None:
        tokens = self._tokens
        if tokens is None:
            return
        try:
            tokens.get_nowait()
            return
        except queue.Empty:
            pass
        loop = asyncio.get_running_loop()
        while True:
            item = (loop, loop.create_future())
            with self._lock:
                self._awaiters.append(item)
            try:  # registered first, so a token returned from now on wakes us
                tokens.get_nowait()
            except queue.Empty:
                pass
            else:
                self._forget_awaiter(item)
                return
            try:
                await item[1]
            except BaseException:
                if not self._forget_awaiter(item):
                    self._wake_awaiter()  # we were woken: pass the wake-up on
                raise

    def _forget_awaiter(self, item: Any) -> bool:
        with self._lock:
            try:
                self._awaiters.remove(item)
                return True
            except ValueError:
                return False

    def _wake_awaiter(self) -> None:
        with self._lock:
            while self._awaiters:
                loop, fut = self._awaiters.popleft()
                try:
                    loop.call_soon_threadsafe(set_if_pending, fut)
                    return
                except RuntimeError:  # that loop is closed
                    continue

    def _release_gate(self) -> None:
        tokens = self._tokens
        if tokens is not None:
            tokens.put(None)
            if self._awaiters:
                self._wake_awaiter()

    def _record(self, ok: bool, now: float, epoch: int, exc: BaseException | None, t0: float) -> None:
        with self._lock:
            c = self._c
            if now >= self._b_end:
                self._roll(now)
            self._b_next()
            if not ok:
                c["failed"] += 1
                self._b_fail[self._b_idx] += 1
                self._last_failure = now
                if isinstance(exc, Timeout):
                    c["timeouts"] += 1
        br = self._breaker
        if br is not None:
            if exc is None or br.records(exc):
                br._record(ok, epoch, now - t0)
            else:  # an ignored error: neither a failure nor a success
                br._abandon(epoch)
        if self._metrics_on:
            m = self._metrics
            result = "ok" if ok else ("timeout" if isinstance(exc, Timeout) else "error")
            m.inc_events_processed(self._id, result)
            m.observe_listener_duration(self._id, max(0.0, now - t0))

    def _admit(self) -> int:
        """Ask the breaker to admit a call: its epoch (0 without a breaker), -1 if rejected."""
        br = self._breaker
        return 0 if br is None else br._admit()

    def _abandon(self, epoch: int) -> None:
        """An admitted call ended without a result: give a half-open probe slot back."""
        br = self._breaker
        if br is not None:
            br._abandon(epoch)

    def _rejected(self) -> CircuitOpen:
        br = self._breaker
        wait = br.retry_after() if br is not None else 0.0
        with self._lock:
            self._c["rejected"] += 1
        if self._metrics_on:
            self._metrics.inc_events_processed(self._id, "rejected")
        return CircuitOpen(
            f"Expected a closed circuit for listener {self._id!r}, got "
            + (f"open (half-opens in {wait:.6g}s)" if wait > 0 else "half-open with every probe slot taken")
        )

    def _timed_out(self) -> Timeout:
        return Timeout(f"Expected listener {self._id!r} to finish within {self._timeout:.6g}s, got no result")

    # -- one call -----------------------------------------------------------------------
    def _call_sync(self, event: Any, retry: Retry | None = None) -> BaseException | None:
        """One attempt in this thread (an async listener runs on the manager's loop).

        *retry*: the scheduled retry making the call; if stop() claims it while the call
        waits for its concurrency slot or rate-limit token, the listener is not called
        (``None`` is returned and ignored)."""
        if self.is_async:
            err: BaseException | None = self._manager._run_coro(self._acall(event))
            return err
        epoch = self._admit()
        if epoch < 0:
            return self._rejected()
        try:
            self._acquire_gate()
        except BaseException:
            self._abandon(epoch)
            raise
        try:
            t0 = self._now()
            try:
                if self._bucket is not None:
                    self._bucket.acquire(1)  # sleeps on the manager's clock
                elif self._limiter is not None:
                    self._limiter.acquire(1)
                t0 = self._now()
                # checked right before the call: stop() may claim the retry up to here
                if retry is not None and retry.state != CALLING:  # claimed by stop() meanwhile
                    self._abandon(epoch)
                    return None
                if self._timeout is None:
                    r = self._fn(event)
                    if r is not None and self._check_result and inspect.isawaitable(r):
                        self._manager._run_coro(await_it(r))
                else:
                    self._call_with_timeout(event, retry)
            except Exception as exc:
                self._record(False, self._now(), epoch, exc, t0)
                return exc
            except BaseException:  # no result: a half-open probe slot must not leak
                self._abandon(epoch)
                raise
            self._record(True, self._now(), epoch, None, t0)
            return None
        finally:
            self._release_gate()

    def _call_with_timeout(self, event: Any, retry: Retry | None = None) -> None:
        box = _Box()
        fn = self._fn
        check = self._check_result
        mgr = self._manager

        def run() -> None:
            if box.abandoned:
                return
            if retry is not None and retry.state != CALLING:  # claimed by stop(): not called
                with box.lock:
                    box.finished = True
                box.done.set()
                return
            error = None
            try:
                r = fn(event)
                if r is not None and check and inspect.isawaitable(r):
                    mgr._run_coro(await_it(r))
            except BaseException as exc:
                error = exc
            with box.lock:
                if box.abandoned:  # too late: the result is ignored
                    return
                box.finished = True
                box.error = error
            box.done.set()

        def expire() -> None:
            with box.lock:
                if not box.finished:
                    box.abandoned = True
            box.done.set()

        timeout = self._timeout
        assert timeout is not None
        entry = None if self._real else mgr._scheduler.schedule(self._now() + timeout, expire)
        mgr._call_runner().submit(run)
        if self._real:
            if not box.done.wait(timeout):
                expire()
        else:
            box.done.wait()
            assert entry is not None
            mgr._scheduler.cancel(entry)
        with box.lock:
            if not box.finished:
                box.abandoned = True
                raise self._timed_out()
        if box.error is not None:
            raise box.error

    async def _acall(self, event: Any, retry: Retry | None = None) -> BaseException | None:
        """One attempt on the running loop (*retry*: as in :meth:`_call_sync`)."""
        epoch = self._admit()
        if epoch < 0:
            return self._rejected()
        try:
            await self._aacquire_gate()
        except BaseException:  # cancelled while waiting for the gate
            self._abandon(epoch)
            raise
        try:
            t0 = self._now()
            try:
                if self._bucket is not None:
                    await _atake(self._bucket, self._manager._asleep)
                elif self._limiter is not None:
                    await asyncio.to_thread(self._limiter.acquire, 1)
                if retry is not None and retry.state != CALLING:  # claimed by stop() meanwhile
                    self._abandon(epoch)
                    return None
                t0 = self._now()
                result = self._fn(event)
                if self._timeout is None:
                    if inspect.isawaitable(result):
                        await result
                else:
                    await self._await_with_timeout(result)
            except Exception as exc:
                self._record(False, self._now(), epoch, exc, t0)
                return exc
            except BaseException:  # cancelled: no result, a half-open probe slot must not leak
                self._abandon(epoch)
                raise
            self._record(True, self._now(), epoch, None, t0)
            return None
        finally:
            self._release_gate()

    async def _await_with_timeout(self, result: Any) -> None:
        if not inspect.isawaitable(result):
            return
        task = asyncio.ensure_future(result)
        loop = asyncio.get_running_loop()
        expired = loop.create_future()
        timeout = self._timeout
        assert timeout is not None
        entry = None
        handle = None
        if self._real:
            handle = loop.call_later(timeout, set_if_pending, expired)
        else:
            entry = self._manager._scheduler.schedule(
                self._now() + timeout, lambda: threadsafe_set(loop, expired))
        try:
            await asyncio.wait((task, expired), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            if handle is not None:
                handle.cancel()
            if entry is not None:
                self._manager._scheduler.cancel(entry)
            if not expired.done():
                expired.cancel()
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # the cancelled (or late-failing) call is ignored
                pass
            raise self._timed_out()
        task.result()


async def _atake(bucket: Any, asleep: Callable[[float], Awaitable[None]]) -> None:
    """Take a token of the core TokenBucket *bucket*, waiting with *asleep* (the
    manager's clock, without blocking the loop) until one is due."""
    while not bucket.try_acquire(1):
        await asleep(max(0.0, (1.0 - bucket.available) / bucket.rate))


async def await_it(aw: Any) -> Any:
    return await aw


def set_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def threadsafe_set(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    try:
        loop.call_soon_threadsafe(set_if_pending, fut)
    except RuntimeError:  # the loop closed: nobody waits any more
        pass
