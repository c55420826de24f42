"""pyee's ``ExecutorEventEmitter`` on nova (``pyee.executor``).

Each listener call is submitted to a :class:`concurrent.futures.Executor` (a new
``ThreadPoolExecutor`` by default, as pyee; a :class:`nova.pool.WorkerPool` works too);
emit returns at once.  An ``Exception`` a listener raised is emitted on ``"error"`` from
the future's callback.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from nova.compat.pyee.base import EventEmitter

__all__ = ("ExecutorEventEmitter",)


class ExecutorEventEmitter(EventEmitter):
    """An :class:`~nova.compat.pyee.EventEmitter` that runs listeners on an executor.

    Args:
        executor: anything with ``submit(fn, *args, **kwargs) -> Future`` (default: a new
            ``ThreadPoolExecutor``).
        metrics, manager, listener_config, store, stream: nova's optional features (see
            :mod:`nova.compat._features`).

    Use it as a context manager, or call :meth:`shutdown`, to stop the executor.
    """

    def __init__(self, executor: Any = None, **features: Any) -> None:
        super().__init__(**features)
        if executor:
            if not callable(getattr(executor, "submit", None)):
                raise TypeError(f"Expected an Executor (with submit) or None, got {type(executor).__name__}")
            self._executor: Any = executor
        else:
            self._executor = ThreadPoolExecutor()

    def _emit_run(self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        future: Future[Any] = self._executor.submit(f, *args, **kwargs)

        def _callback(done: Future[Any]) -> None:
            if done.cancelled():
                return
            exc = done.exception()
            if isinstance(exc, Exception):
                self.emit("error", exc)
            elif exc is not None:
                raise exc

        future.add_done_callback(_callback)

    def shutdown(self, wait: bool = True) -> None:
        """Shut the executor down (``shutdown(wait)``; a nova ``WorkerPool`` is closed,
        waiting for its tasks when *wait*)."""
        ex = self._executor
        if isinstance(ex, Executor) or callable(getattr(ex, "shutdown", None)):
            ex.shutdown(wait=wait)
        else:
            ex.close(timeout=None if wait else 0)

    def __enter__(self) -> ExecutorEventEmitter:
        return self

    def __exit__(self, type: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.shutdown()
