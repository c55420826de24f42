"""The :class:`WorkerPool`: a fixed set of threads fed by a bounded queue.

Workers take tasks in batches (``get_many`` on a :class:`~nova._core.RingQueue`), which
is what makes submission cheap; tasks a worker took but has not started can be stolen by
an idle one.  A forked child restarts every open pool with fresh workers.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import RUNNING
from datetime import timedelta
from time import monotonic
from typing import Any, NamedTuple

from nova._core import RingQueue
from nova._util import atexit as _exit
from nova._util.checks import check_opt_callable, check_positive_int, check_timeout
from nova.errors import BufferFull, PoolClosed, QueueClosed, Timeout
from nova.pool.futures import _DONE_COND, _notify, _PoolFuture

__all__ = ("WorkerPool", "PoolMetrics", "BATCH")

_log = logging.getLogger("nova.pool")

#: Most tasks a worker takes from the queue at once.
BATCH = 64


class PoolMetrics(NamedTuple):
    """A snapshot of a :class:`WorkerPool` (see :meth:`WorkerPool.metrics`)."""

    size: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int


# Put in the queue to wake an idle worker so it takes tasks another worker holds.
_WAKE = (None, None, None, None)


# Every pool not yet closed, so a forked child can give its copy fresh workers.
_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _restart_pools_in_child() -> None:
    """``os.fork()`` child: the workers of every inherited pool do not exist here (their
    queue may even be locked by a parent thread); give each open pool a fresh queue and
    fresh workers.  Tasks queued in the parent are the parent's: they run there only."""
    # The condition every finished pool future shares: a parent thread may have held it
    # (a result() call) at the fork; nobody holds it in the child.
    reinit = getattr(_DONE_COND, "_at_fork_reinit", None)
    if reinit is not None:
        reinit()
    for pool in list(_LIVE_POOLS):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_pools_in_child)

#: Objects a forked child inherited and must never free: a queue whose condition
#: variables had waiters in the parent cannot be destroyed in the child (glibc's
#: ``pthread_cond_destroy`` waits for waiters that do not exist there).
_FORK_KEEP: list[Any] = []


def _owned_by(pool: WorkerPool) -> None:
    """*pool* is private to an Emitter, which closes it and restarts it after a fork:
    take it out of the exit and fork hooks."""
    _LIVE_POOLS.discard(pool)
    _exit.unregister(pool)


class WorkerPool:
    """A fixed pool of worker threads fed by a bounded queue.

    Args:
        size: the number of worker threads (an int > 0).
        queue_size: the most tasks waiting to run (an int > 0); ``submit`` blocks and
            ``try_submit`` returns None while it is full.
        name: the pool's name (worker threads are named ``<name>-<i>``).
        on_error: ``on_error(exc, fn)`` is called in the worker when a task raises
            (the exception is also set on the task's future). If the hook itself
            raises, that error is logged on the ``nova.pool`` logger and ignored. A
            task that raises never kills a worker.

    Raises:
        TypeError / ValueError: bad *size*, *queue_size*, *name* or *on_error*.

    Workers take up to 64 queued tasks at a time (one ``get_many``, which is what
    makes submission cheap) and keep the unstarted ones in a per-worker deque that
    idle workers take from (work stealing; a worker waiting on the queue is woken
    for it), so no task waits behind a slow one while a worker is free to run it.
    Tasks start in submission order per worker, not globally.  A task's future says RUNNING only once that task has
    started, so ``future.cancel()`` works until then.

    Use it as a context manager: leaving the ``with`` block drains the pool (every
    accepted task runs) and stops the workers.  A pool still open when the interpreter
    exits runs its accepted tasks then, within the shared exit budget
    (``NOVA_EXIT_TIMEOUT``, see :meth:`close_at_exit`); the rest is cancelled and
    logged, never a hang.  In an ``os.fork()`` child an inherited open pool restarts
    with an empty queue and fresh workers (the parent's tasks run in the parent only).
    """

    def __init__(
        self,
        size: int,
        queue_size: int,
        name: str = "nova-pool",
        on_error: Callable[[BaseException, Callable[..., Any]], Any] | None = None,
    ) -> None:
        self._size = check_positive_int(size, "size")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int):
            # kept apart from check_positive_int: tests assert this wording
            raise TypeError(f"Expected an int queue_size, got {type(queue_size).__name__}")
        check_positive_int(queue_size, "queue_size")
        if not isinstance(name, str):
            raise TypeError(f"Expected a str name, got {type(name).__name__}")
        check_opt_callable(on_error, "on_error(exc, fn)")
        self._name = name
        self._on_error = on_error
        self._queue_size = queue_size
        self._start_workers()
        _LIVE_POOLS.add(self)
        # At interpreter exit: run what the shared time budget allows, cancel the rest.
        _exit.register(self.close_at_exit, _exit.STAGE_EXECUTOR)

    def _start_workers(self) -> None:
        """A fresh queue, fresh per-worker slots and fresh worker threads."""
        self._queue = RingQueue(self._queue_size)
        self._close_lock = threading.Lock()
        self._close_cancelled = 0
        # Per-worker slots, each written only by its worker; metrics() sums them.
        n = self._size
        self._started = [0] * n  # tasks started (running, completed or failed)
        self._completed = [0] * n
        self._failed = [0] * n
        self._skipped = [0] * n  # taken but found cancelled
        self._locals: list[deque[Any]] = [deque() for _ in range(n)]  # taken, not started
        self._idle = [0] * n  # 1 while the worker waits on the queue
        self._wakes_sent = [0] * n
        self._wakes_seen = [0] * n
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"{self._name}-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def _after_fork_in_child(self) -> None:
        """In a forked child: the inherited workers do not exist and the inherited queue
        holds the parent's tasks (they run in the parent).  An open pool restarts with an
        empty queue, fresh workers and zeroed counters; a closed one stays closed."""
        old = self._queue
        _FORK_KEEP.append(old)
        if old.closed:  # closed in the parent: stays closed, with nothing left to run here
            self._queue = RingQueue(self._queue_size)
            self._queue.close()
            self._locals = [deque() for _ in range(self._size)]
            self._closed_down()
            return
        self._start_workers()

    # -- intake -----------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, timeout: float | timedelta | None = None,
               **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` and return a :class:`concurrent.futures.Future`
        of its result.  Blocks while the queue is full, up to *timeout* seconds.

        Raises:
            TypeError: *fn* is not callable.
            PoolClosed: the pool is draining or closed.
            Timeout: the queue stayed full for *timeout* seconds.
        """
        if not callable(fn):
            raise TypeError(f"Expected a callable task, got {type(fn).__name__}")
        fut: Future[Any] = _PoolFuture()
        try:
            self._queue.put((fut, fn, args, kwargs or None), timeout)
        except QueueClosed:
            raise PoolClosed(f"Expected an open pool, got pool {self._name!r} draining or closed") from None
        except Timeout:
            raise Timeout(
                f"Expected room in pool {self._name!r}'s queue within {check_timeout(timeout)} s, "
                f"got a full queue ({self._queue.capacity} tasks)"
            ) from None
        return fut

    def try_submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any] | None:
        """Like :meth:`submit` but never waits: returns None when the queue is full.

        Raises:
            TypeError: *fn* is not callable.
            PoolClosed: the pool is draining or closed.
        """
        if not callable(fn):
            raise TypeError(f"Expected a callable task, got {type(fn).__name__}")
        fut: Future[Any] = _PoolFuture()
        try:
            self._queue.put_nowait((fut, fn, args, kwargs or None))
        except QueueClosed:
            raise PoolClosed(f"Expected an open pool, got pool {self._name!r} draining or closed") from None
        except BufferFull:
            return None
        return fut

    # -- workers ----------------------------------------------------------------------

    def _steal(self, wid: int) -> Any:
        """Take the oldest unstarted task another worker holds, or None."""
        locals_ = self._locals
        n = len(locals_)
        for k in range(1, n):
            other = locals_[(wid + k) % n]
            if other:
                try:
                    return other.popleft()
                except IndexError:  # its owner (or another thief) took it first
                    continue
        return None

    def _next_task(self, wid: int) -> Any:
        """This worker's deque is empty: steal a held task, else wait for a batch from
        the queue (keeping the rest in the deque and waking idle workers to steal from
        it).  None once the queue is closed and nothing is left to steal."""
        task = self._steal(wid) if self._size > 1 else None
        if task is not None:
            return task
        idle = self._idle
        idle[wid] = 1
        try:
            batch = self._queue.get_many(BATCH)
        except QueueClosed:
            idle[wid] = 0
            return self._steal(wid) if self._size > 1 else None
        idle[wid] = 0
        if len(batch) > 1:
            self._locals[wid].extend(batch[1:])
            self._wake_idle(wid, len(batch) - 1)
        return batch[0]

    def _wake_idle(self, wid: int, held: int) -> None:
        """Workers waiting on the queue would not see the *held* tasks this worker just
        took: wake them (one wake item each) so they can take them."""
        nidle = self._idle.count(1)
        sent = 0
        for _ in range(min(nidle, held)):
            try:
                self._queue.put_nowait(_WAKE)
            except (BufferFull, QueueClosed):
                break
            sent += 1
        self._wakes_sent[wid] += sent

    def _call_on_error(self, exc: BaseException, fn: Callable[..., Any]) -> None:
        try:
            self._on_error(exc, fn)  # type: ignore[misc]
        except BaseException:  # noqa: BLE001
            _log.exception("on_error hook of pool %r raised", self._name)

    # Benchmark: ratio_primitives "WorkerPool.submit+drain, 4 workers" (per-task work is
    # inline; the per-batch work is in _next_task).
    def _work(self, wid: int) -> None:
        popleft = self._locals[wid].popleft
        started_slots, completed_slots, failed_slots = self._started, self._completed, self._failed
        wakes_seen = self._wakes_seen
        on_error = self._on_error
        setdefault = dict.setdefault
        done_cond = _DONE_COND
        started = completed = failed = 0
        while True:
            try:
                task = popleft()
            except IndexError:
                # Hold no reference to the last task's objects while waiting.
                fut = fn = args = kwargs = d = task = None
                task = self._next_task(wid)
                if task is None:
                    return
            fut, fn, args, kwargs = task
            if fut is None:  # a wake item: go look for held tasks
                wakes_seen[wid] += 1
                continue
            d = fut.__dict__
            if setdefault(d, "_state", RUNNING) is not RUNNING:
                self._skipped[wid] += 1
                fut.set_running_or_notify_cancel()  # cancelled: tell its waiters
                continue
            started += 1
            started_slots[wid] = started
            try:
                result = fn(*args) if kwargs is None else fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - a task never kills a worker
                fut._exception = exc
                failed += 1
                failed_slots[wid] = failed
                if setdefault(d, "_condition", done_cond) is not done_cond:
                    _notify(fut)
                if on_error is not None:
                    self._call_on_error(exc, fn)
                del exc
            else:
                fut._result = result
                completed += 1
                completed_slots[wid] = completed
                if setdefault(d, "_condition", done_cond) is not done_cond:
                    _notify(fut)
                del result

    # -- shutdown ---------------------------------------------------------------------

    def _check_not_worker(self) -> None:
        me = threading.current_thread()
        if me in self._threads:
            raise RuntimeError(
                f"Expected drain/close from outside pool {self._name!r}'s workers, got a call from {me.name}"
            )

    def _join(self, timeout: float | None) -> bool:
        self._check_not_worker()
        deadline = None if timeout is None else monotonic() + timeout
        for t in self._threads:
            if deadline is None:
                t.join()
            else:
                t.join(max(0.0, deadline - monotonic()))
            if t.is_alive():
                return False
        return True

    def drain(self, timeout: float | timedelta | None = None) -> bool:
        """Stop intake, then wait until every queued and running task has finished
        and the workers have stopped.

        Returns:
            True when everything finished, False when *timeout* passed first (the
            workers go on with the rest; :meth:`close` with ``cancel_pending=True``
            cancels what has not started).

        Raises:
            RuntimeError: called from one of this pool's own workers (it would wait for
                itself); the pool is left as it was.
        """
        t = check_timeout(timeout)
        self._check_not_worker()  # before any side effect
        self._queue.close()
        done = self._join(t)
        if done:
            self._closed_down()
        return done

    def _closed_down(self) -> None:
        """Every worker stopped: nothing left for the fork and exit hooks to do."""
        _LIVE_POOLS.discard(self)
        _exit.unregister(self)

    def close(self, timeout: float | timedelta | None = None, cancel_pending: bool = False) -> list[Future[Any]]:
        """Stop intake and shut the pool down.

        Without *cancel_pending* every accepted task still runs (as :meth:`drain`).
        With it, every task that has not started is cancelled instead and its future
        returned, never silently dropped; running tasks finish.  Waits up to
        *timeout* seconds for the workers to stop.

        Returns:
            The futures of the tasks cancelled here (``[]`` without *cancel_pending*).

        Raises:
            RuntimeError: called from one of this pool's own workers; the pool is left
                as it was (nothing closed or cancelled).
        """
        t = check_timeout(timeout)
        self._check_not_worker()  # before any side effect
        if not cancel_pending:
            self.drain(t)
            return []
        cancelled: list[Future[Any]] = []
        q = self._queue
        with self._close_lock:
            q.close()
            while True:
                try:
                    batch = q.get_many(q.capacity, 0)
                except QueueClosed:
                    break
                for item in batch:
                    if item[0] is None:  # a wake item
                        continue
                    if item[0].cancel():
                        cancelled.append(item[0])
                        self._close_cancelled += 1
            # Tasks a worker took but has not started yet: the worker skips them.
            for held in self._locals:
                for item in list(held):
                    if item[0] is not None and item[0].cancel():
                        cancelled.append(item[0])
        if self._join(t):
            self._closed_down()
        return cancelled

    def close_at_exit(self, timeout: float) -> None:
        """Interpreter exit (called by :mod:`nova._util.atexit` with the seconds left of
        the shared budget): stop intake, let the workers run queued tasks for at most
        *timeout* seconds, then cancel every task not started and log (WARNING, logger
        ``nova.pool``) how many were cancelled and how many were still running.  Returns
        within *timeout* (plus the time to cancel); the workers are daemon threads, so a
        task blocked for ever cannot hold the interpreter.
        """
        self._queue.close()
        if self._join(max(0.0, timeout)):
            self._closed_down()
            return
        cancelled = self.close(timeout=0.0, cancel_pending=True)
        running = self.metrics().running
        _log.warning(
            "pool %r at interpreter exit: %d accepted tasks not run (cancelled), %d still running "
            "(abandoned) after %.3g s", self._name, len(cancelled), running, timeout)

    @property
    def closed(self) -> bool:
        """True once the pool stopped taking tasks (drain or close was called)."""
        return bool(self._queue.closed)

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def size(self) -> int:
        """The number of worker threads."""
        return self._size

    def metrics(self) -> PoolMetrics:
        """A snapshot: size, queued (accepted, not started), running, completed, failed,
        cancelled (by ``close(cancel_pending=True)`` or ``future.cancel()``).

        The counts are read without stopping the workers, so under load they are a
        close snapshot rather than one instant.
        """
        # Read the later counters first so no difference below can go negative.
        completed = sum(self._completed)
        failed = sum(self._failed)
        started = sum(self._started)
        held = sum(len(h) for h in self._locals)
        wakes = sum(self._wakes_sent) - sum(self._wakes_seen)
        skipped = sum(self._skipped)
        qsize = self._queue.qsize()
        running = max(0, started - completed - failed)
        queued = max(0, qsize - wakes + held)
        return PoolMetrics(self._size, queued, running, completed, failed, skipped + self._close_cancelled)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._queue.closed else "open"
        return f"<WorkerPool {self._name!r} {state} size={self._size}>"
