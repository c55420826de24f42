"""pyee's ``AsyncIOEventEmitter`` on nova (``pyee.asyncio``).

A listener may be an ``async def``: emit schedules its coroutine on the loop (the one
given, else the running one) and returns at once.  Every error, of a coroutine or of a
plain function, is emitted on ``"error"`` (raised by emit when nothing listens to it).
``complete``, ``wait_for_complete()`` and ``cancel()`` govern the pending coroutines.

.. versionadded:: 0.2
"""

from __future__ import annotations

from asyncio import AbstractEventLoop, Future, ensure_future, iscoroutine, wait
from collections.abc import Callable
from typing import Any

from nova.compat.pyee.base import EventEmitter

__all__ = ("AsyncIOEventEmitter",)


class AsyncIOEventEmitter(EventEmitter):
    """An :class:`~nova.compat.pyee.EventEmitter` that runs coroutine listeners on asyncio.

    Args:
        loop: the loop to schedule coroutines on (default: the running loop at emit).
        metrics, manager, listener_config, store, stream: nova's optional features (see
            :mod:`nova.compat._features`).

    Errors raised by listeners (sync ones too) are emitted on ``"error"``; a cancelled
    coroutine is not an error.
    """

    def __init__(self, loop: AbstractEventLoop | None = None, **features: Any) -> None:
        super().__init__(**features)
        self._loop: AbstractEventLoop | None = loop
        self._waiting: set[Future[Any]] = set()

    def _emit_run(self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            coro: Any = f(*args, **kwargs)
        except Exception as exc:
            self.emit("error", exc)
            return
        if iscoroutine(coro):
            fut: Future[Any] = ensure_future(coro, loop=self._loop) if self._loop else ensure_future(coro)
        elif isinstance(coro, Future):
            fut = coro
        else:
            return

        def callback(done: Future[Any]) -> None:
            self._waiting.discard(done)
            if done.cancelled():
                return
            exc = done.exception()
            if exc:
                self.emit("error", exc)

        fut.add_done_callback(callback)
        self._waiting.add(fut)

    async def wait_for_complete(self) -> None:
        """Wait until every pending coroutine finished."""
        if self._waiting:
            await wait(self._waiting)

    def cancel(self) -> None:
        """Cancel every pending coroutine."""
        for fut in self._waiting:
            if not fut.done() and not fut.cancelled():
                fut.cancel()
        self._waiting.clear()

    @property
    def complete(self) -> bool:
        """True when no coroutine is pending."""
        return not self._waiting
