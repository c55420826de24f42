"""Daemon helper threads that grow on demand: :class:`ThreadRunner`.

Why not :class:`nova.WorkerPool`: a pool has a fixed number of threads started at
construction and is drained at interpreter exit.  The ListenerManager runs sync listener
calls under a timeout and scheduled retries on threads that must (a) exist only when
needed (up to 256 of them when calls hang past their timeout), and (b) never hold up
the interpreter's exit, since a call that overran its timeout cannot be killed and is
abandoned.  A :class:`ThreadRunner` starts a daemon thread only when no idle thread can
take a task, queues the rest once at its bound, and is never joined.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from nova.errors import PoolClosed

__all__ = ("ThreadRunner",)

_log = logging.getLogger("nova.listener")


class ThreadRunner:
    """Daemon worker threads that grow on demand up to *max_threads* (the rest queue).

    Daemon threads, so that a sync listener stuck past its timeout never blocks the
    interpreter's exit.
    """

    def __init__(self, name: str, max_threads: int) -> None:
        self._name = name
        self._max = max_threads
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (a closed runner takes no task)."""
        return self._closed

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run *fn* on an idle thread, a new one (below the bound) or, at the bound, the
        next thread free.

        Raises:
            nova.errors.PoolClosed: the runner was closed.
        """
        with self._lock:
            if self._closed:
                raise PoolClosed("Expected an open runner, got a closed one")
            spawn = self._idle <= self._queue.qsize() and self._threads < self._max
            if spawn:
                self._threads += 1
            self._queue.put(fn)
        if spawn:
            threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()

    def _work(self) -> None:
        q = self._queue
        lock = self._lock
        while True:
            with lock:
                self._idle += 1
            fn = q.get()
            with lock:
                self._idle -= 1
            if fn is None:
                with lock:
                    self._threads -= 1
                return
            try:
                fn()
            except BaseException:  # pragma: no cover - tasks catch their own errors
                _log.exception("nova: a runner task failed")

    def close(self) -> None:
        """Tell every thread to exit once its current task is done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            n = self._threads
        for _ in range(n):
            self._queue.put(None)
