"""ManagedListener: one listener run with retries, a circuit breaker, dead letters,
a timeout, a concurrency bound and a rate limit (see :class:`ManagedListener`)."""

from __future__ import annotations

import asyncio
import queue
from typing import TYPE_CHECKING, Any

from nova.listener.config import ListenerConfig
from nova.listener.fastpath import make_fast_handle
from nova.listener.retries import ListenerRetries
from nova.resilience.retry import Outcome, aretry_inline, retry_inline

if TYPE_CHECKING:
    from nova.listener.manager import ListenerManager

__all__ = ("ManagedListener",)


class ManagedListener(ListenerRetries):
    """A listener wrapped by a :class:`ListenerManager` (made by :meth:`~ListenerManager.register`).

    Subscribe it to an :class:`~nova.Emitter` or a :class:`~nova.Bus` like any listener.

    * :meth:`handle` (the Emitter path): the first call runs inline; when it fails with
      a retryable error the next attempts are scheduled on the manager's retry
      scheduler, so neither the caller nor other listeners wait.  Errors are never
      raised to the caller: they go to stats, metrics and dead letters.
    * :meth:`run_inline` (the Bus path): every attempt runs in the calling thread,
      sleeping on the manager's clock in between, so an ordered partition keeps order.

    ``managed`` is ``True``; ``id`` is the wrapped listener's id; ``is_async`` tells
    whether :meth:`handle` returns an awaitable; ``listener`` is the wrapped listener and
    ``config`` its :class:`ListenerConfig`.  Thread-safe.

    Layers: its state, counters, health and dead letters in :mod:`nova.listener.state`;
    one call (gate, rate limit, breaker, timeout) in :mod:`nova.listener.calls`;
    scheduled retries in :mod:`nova.listener.retries`; the closure that replaces
    :meth:`handle` for speed in :mod:`nova.listener.fastpath`.
    """

    managed = True

    def __init__(self, manager: ListenerManager, listener: Any, config: ListenerConfig) -> None:
        super().__init__(manager, listener, config)
        if not self.is_async and self._tokens is not None:
            self.handle = make_fast_handle(self)  # type: ignore[method-assign,assignment]

    # -- the Emitter path ---------------------------------------------------------------------
    def handle(self, event: Any) -> Any:
        """Handle *event* (the Emitter path); see the class docstring.

        Returns ``None`` (an awaitable for an ``async def`` listener).  Never raises what
        the listener raised: failures are retried, then dead-lettered.
        """
        if self._fast:
            tokens = self._tokens
            if tokens is not None:
                try:
                    tokens.get_nowait()
                except queue.Empty:  # at the concurrency bound: wait on the slow path
                    return self._handle_slow(event)
            try:
                self._fn(event)
            except Exception as exc:
                if tokens is not None:
                    tokens.put(None)
                self._fast_failed(event, exc)
                return None
            except BaseException:
                if tokens is not None:
                    tokens.put(None)
                raise
            if tokens is not None:
                tokens.put(None)
            self._ok_next()
            if self._now() >= self._b_end:
                self._roll_now(self._now())
            self._b_next()
            return None
        return self._handle_slow(event)

    def _fast_failed(self, event: Any, exc: BaseException) -> None:
        br = self._breaker
        now = self._now()
        self._record(False, now, br._epoch if br is not None else 0, exc, now)
        self._after_failure(event, exc, 1, getattr(event, "type", None), None)

    def _handle_slow(self, event: Any) -> Any:
        if self.is_async:
            return self.ahandle(event)
        err = self._call_sync(event)
        if err is None:
            self._count_processed()
        else:
            self._after_failure(event, err, 1, getattr(event, "type", None), None)
        return None

    __call__ = handle

    async def ahandle(self, event: Any) -> None:
        """Handle *event* from asyncio code: like :meth:`handle`, awaited on this loop.

        Retries of an ``async def`` listener run on this loop while it runs.  A sync
        listener runs inline (its retries on the scheduler's threads).
        """
        if not self.is_async:
            if self._check_result and self._timeout is None:
                # what the Listener's handle returns is awaited on this loop
                err = await self._acall(event)
                if err is None:
                    self._count_processed()
                else:
                    self._after_failure(event, err, 1, getattr(event, "type", None), None)
                return
            self.handle(event)
            return
        err = await self._acall(event)
        if err is None:
            self._count_processed()
        else:
            self._after_failure(event, err, 1, getattr(event, "type", None), asyncio.get_running_loop())

    # -- the Bus path ---------------------------------------------------------------------------
    def run_inline(self, event: Any, *, topic: str | None = None) -> bool:
        """Handle *event* with every attempt in the calling thread (the Bus path).

        Sleeps on the manager's clock between attempts.  Returns ``True`` if a call
        succeeded, ``False`` if the event was dead-lettered.  An ``async def`` listener
        runs to completion on the manager's event loop thread.  Never raises what the
        listener raised.
        """
        if self.is_async:
            return bool(self._manager._run_coro(self.arun_inline(event, topic=topic)))
        err = self._call_sync(event)
        if err is not None:

            def again() -> BaseException | None:
                e = self._call_sync(event)
                self._count_retried()
                return e

            def sleep(seconds: float) -> bool:
                self._clock.sleep(seconds)
                return False

            return self._inline_end(event, retry_inline(
                again, self._retry, err, sleep=sleep, on_predicate_error=self._retry_if_raised), topic)
        self._count_processed()
        return True

    async def arun_inline(self, event: Any, *, topic: str | None = None) -> bool:
        """:meth:`run_inline` for asyncio code: attempts awaited in turn on this loop."""
        # what the handle of a Listener object returns is awaited on this loop
        awaited = self.is_async or (self._check_result and self._timeout is None)

        async def call() -> BaseException | None:
            return await self._acall(event) if awaited else self._call_sync(event)

        err = await call()
        if err is not None:

            async def again() -> BaseException | None:
                e = await call()
                self._count_retried()
                return e

            async def sleep(seconds: float) -> bool:
                await self._manager._asleep(seconds)
                return False

            return self._inline_end(event, await aretry_inline(
                again, self._retry, err, sleep=sleep, on_predicate_error=self._retry_if_raised), topic)
        self._count_processed()
        return True

    def _inline_end(self, event: Any, out: Outcome, topic: str | None) -> bool:
        """Count the end of an inline retry loop: handled (True) or dead-lettered."""
        if out.error is None:
            self._count_processed()
            return True
        self._dead_letter(event, out.error, out.attempts, topic)
        return False

    def __repr__(self) -> str:
        return f"<ManagedListener {self._id!r}>"
