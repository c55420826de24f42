"""Worker pool, weighted semaphore and rate limiter: what Go's "Ion" gave nova-go.

* :class:`WorkerPool` runs callables on a fixed set of threads fed by a bounded
  :class:`~nova._core.RingQueue`; workers take tasks in batches (``get_many``), which is
  what makes submission cheap.
* :class:`Semaphore` is a weighted, FIFO-fair semaphore usable from threads and from
  asyncio code at the same time.
* :class:`RateLimiter` is a small facade over :class:`~nova._core.TokenBucket`.

Every class here is thread-safe.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from datetime import timedelta
from time import monotonic
from typing import Any, NamedTuple

from nova._core import RingQueue, TokenBucket
from nova._util import atexit as _exit
from nova.errors import BufferFull, PoolClosed, QueueClosed, Timeout
from nova.testing import to_seconds

__all__ = ("WorkerPool", "PoolMetrics", "Semaphore", "RateLimiter")

_log = logging.getLogger("nova.pool")

#: Most tasks a worker takes from the queue at once.
BATCH = 64


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected an int {name}, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"Expected {name} > 0, got {value}")
    return value


def _check_timeout(timeout: float | timedelta | None) -> float | None:
    """None (no limit) or the timeout in seconds; a timeout too long for a lock wait
    (``inf`` included) is no limit too."""
    if timeout is None:
        return None
    t = to_seconds(timeout, "timeout")
    return None if t >= threading.TIMEOUT_MAX else t


# ---------------------------------------------------------------------------------------
# WorkerPool
# ---------------------------------------------------------------------------------------


class PoolMetrics(NamedTuple):
    """A snapshot of a :class:`WorkerPool` (see :meth:`WorkerPool.metrics`)."""

    size: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int


# A pool future is a real ``concurrent.futures.Future`` that costs almost nothing until
# somebody looks at it.  A stock Future builds a threading.Condition and two lists in
# __init__, which costs more than running a trivial task.  Here:
#
# * ``_state``/``_result``/``_exception`` start as class attributes (PENDING, None,
#   None); the lists and the condition are made on first access (``__getattr__``).
# * The claims that matter are single ``dict.setdefault`` calls, atomic under the GIL:
#   the worker starts a task by claiming ``_state`` = RUNNING (``cancel`` claims it =
#   CANCELLED, so exactly one of them wins); after writing the outcome and FINISHED it
#   claims ``_condition`` with the shared ``_DONE_COND``.  If a waiter had already
#   made a real condition (result(), add_done_callback, concurrent.futures.wait...),
#   the worker notifies through it exactly as Future.set_result does; otherwise the
#   future is finished and later callers find the shared condition and a final state.
_DONE_COND = threading.Condition(threading.RLock())


class _PoolFuture(Future[Any]):
    _state = PENDING
    _result = None
    _exception = None
    __init__ = object.__init__

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not made yet.
        if name == "_condition":
            return self.__dict__.setdefault("_condition", threading.Condition())
        if name == "_waiters" or name == "_done_callbacks":
            return self.__dict__.setdefault(name, [])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def cancel(self) -> bool:
        """Cancel the task if it has not started; True if it is cancelled."""
        # A str equal to CANCELLED but a new object, so we know whether our claim won.
        mark = "".join(("CANC", "ELLED"))
        with self._condition:
            state = self.__dict__.setdefault("_state", mark)
            if state is not mark:
                return state in (CANCELLED, CANCELLED_AND_NOTIFIED)
            self._condition.notify_all()
        self._invoke_callbacks()
        return True


# Put in the queue to wake an idle worker so it takes tasks another worker holds.
_WAKE = (None, None, None, None)


def _notify(fut: _PoolFuture) -> None:
    """After FINISHED was written and a real condition found: wake its waiters and run
    the done-callbacks, as Future.set_result/set_exception do."""
    cond = fut._condition
    with cond:
        for waiter in fut._waiters:
            if fut._exception is None:
                waiter.add_result(fut)
            else:
                waiter.add_exception(fut)
        cond.notify_all()
    fut._invoke_callbacks()


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
        self._size = _check_positive_int(size, "size")
        _check_positive_int(queue_size, "queue_size")
        if not isinstance(name, str):
            raise TypeError(f"Expected a str name, got {type(name).__name__}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"Expected a callable on_error(exc, fn) or None, got {type(on_error).__name__}")
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
                f"Expected room in pool {self._name!r}'s queue within {_check_timeout(timeout)} s, "
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

    def _work(self, wid: int) -> None:
        q = self._queue
        get_many, put_nowait = q.get_many, q.put_nowait
        mine = self._locals[wid]
        popleft = mine.popleft
        idle = self._idle
        started_slots, completed_slots, failed_slots = self._started, self._completed, self._failed
        wakes_sent, wakes_seen = self._wakes_sent, self._wakes_seen
        on_error = self._on_error
        setdefault = dict.setdefault
        done_cond = _DONE_COND
        started = completed = failed = 0
        while True:
            try:
                task = popleft()
            except IndexError:
                task = self._steal(wid) if self._size > 1 else None
                if task is None:
                    # Hold no reference to the last task's objects while waiting.
                    fut = fn = args = kwargs = d = task = batch = None
                    idle[wid] = 1
                    try:
                        batch = get_many(BATCH)
                    except QueueClosed:
                        idle[wid] = 0
                        task = self._steal(wid) if self._size > 1 else None
                        if task is None:
                            return
                    else:
                        idle[wid] = 0
                        task = batch[0]
                        if len(batch) > 1:
                            mine.extend(batch[1:])
                            # Workers waiting on the queue would not see the tasks now held
                            # here: wake them (one wake item each) so they can take them.
                            nidle = idle.count(1)
                            if nidle:
                                sent = 0
                                for _ in range(min(nidle, len(batch) - 1)):
                                    try:
                                        put_nowait(_WAKE)
                                    except (BufferFull, QueueClosed):
                                        break
                                    sent += 1
                                wakes_sent[wid] += sent
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
                fut._state = FINISHED
                failed += 1
                failed_slots[wid] = failed
                if setdefault(d, "_condition", done_cond) is not done_cond:
                    _notify(fut)
                if on_error is not None:
                    try:
                        on_error(exc, fn)
                    except BaseException:  # noqa: BLE001
                        _log.exception("on_error hook of pool %r raised", self._name)
                del exc
            else:
                fut._result = result
                fut._state = FINISHED
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
        t = _check_timeout(timeout)
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
        t = _check_timeout(timeout)
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


# ---------------------------------------------------------------------------------------
# Semaphore
# ---------------------------------------------------------------------------------------


class _Waiter:
    __slots__ = ("n", "granted", "event", "loop", "future")

    def __init__(self, n: int) -> None:
        self.n = n
        self.granted = False
        self.event: threading.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[None] | None = None


_MAIN_IDENT = threading.main_thread().ident
_SIGNAL_SLICE = 0.1


def _wait_event(event: threading.Event, timeout: float | None) -> bool:
    """``event.wait(timeout)``, but the main thread wakes every 0.1 s so signal
    handlers (Ctrl-C) run while it waits."""
    if threading.get_ident() != _MAIN_IDENT:
        return event.wait(timeout)
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        if deadline is None:
            if event.wait(_SIGNAL_SLICE):
                return True
        else:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return event.is_set()
            if event.wait(min(remaining, _SIGNAL_SLICE)):
                return True


def _set_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Semaphore:
    """A weighted, FIFO-fair counting semaphore for threads and asyncio tasks at once.

    ``acquire(n)`` takes *n* units; requests are served strictly in arrival order, so a
    large request at the head of the line is not starved by a stream of small ones
    (small requests behind it wait too).

    Args:
        capacity: the number of units (an int > 0).

    Raises:
        TypeError / ValueError: *capacity* is not an int > 0.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = _check_positive_int(capacity, "capacity")
        self._value = self._capacity
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def capacity(self) -> int:
        """The total number of units."""
        return self._capacity

    @property
    def available(self) -> int:
        """Units free now."""
        return self._value

    @property
    def waiting(self) -> int:
        """How many acquirers are waiting now."""
        return len(self._waiters)

    def _check_n(self, n: object) -> int:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"Expected an int n, got {type(n).__name__}")
        if n <= 0:
            raise ValueError(f"Expected n > 0, got {n}")
        if n > self._capacity:
            raise ValueError(f"Expected n <= capacity ({self._capacity}), got {n}: it could never be granted")
        return n

    def _grant(self) -> None:
        # With the lock held: serve waiters from the head while they fit.
        ws = self._waiters
        while ws and ws[0].n <= self._value:
            w = ws.popleft()
            self._value -= w.n
            w.granted = True
            if w.event is not None:
                w.event.set()
            elif w.loop is not None and w.future is not None:
                try:
                    w.loop.call_soon_threadsafe(_set_future, w.future)
                except RuntimeError:
                    # The waiter's loop is closed: nobody will take the units; give them back.
                    w.granted = False
                    self._value += w.n

    def try_acquire(self, n: int = 1) -> bool:
        """Take *n* units if they are free and nobody is waiting; never waits.

        Raises:
            TypeError / ValueError: *n* is not an int with ``0 < n <= capacity``.
        """
        n = self._check_n(n)
        with self._lock:
            if not self._waiters and self._value >= n:
                self._value -= n
                return True
            return False

    def acquire(self, n: int = 1, timeout: float | timedelta | None = None) -> None:
        """Take *n* units, waiting in FIFO order up to *timeout* seconds.

        Raises:
            TypeError / ValueError: *n* is not an int with ``0 < n <= capacity``, or a bad timeout.
            Timeout: the units were not granted within *timeout* (nothing is taken then).
        """
        if type(n) is not int or not 0 < n <= self._capacity:
            self._check_n(n)
        t = None if timeout is None else _check_timeout(timeout)
        with self._lock:
            if not self._waiters and self._value >= n:
                self._value -= n
                return
            if t == 0:
                raise Timeout(f"Expected {n} free units within 0 s, got {self._value} and {len(self._waiters)} waiting")
            w = _Waiter(n)
            w.event = threading.Event()
            self._waiters.append(w)
        try:
            if _wait_event(w.event, t):
                return
        except BaseException:
            # Interrupted (e.g. KeyboardInterrupt): leave the line and take nothing.
            with self._lock:
                if w.granted:
                    self._value += n
                else:
                    self._waiters.remove(w)
                self._grant()
            raise
        with self._lock:
            if w.granted:
                return
            self._waiters.remove(w)
            self._grant()  # the head may have changed
            raise Timeout(f"Expected {n} free units within {t} s, got {self._value} and {len(self._waiters)} waiting")

    async def acquire_async(self, n: int = 1, timeout: float | timedelta | None = None) -> None:
        """Like :meth:`acquire` from asyncio code: waits without blocking the loop.
        If the waiting task is cancelled, nothing stays taken.

        Raises:
            the same as :meth:`acquire`; :class:`asyncio.CancelledError` on cancellation.
        """
        n = self._check_n(n)
        t = _check_timeout(timeout)
        with self._lock:
            if not self._waiters and self._value >= n:
                self._value -= n
                return
            if t == 0:
                raise Timeout(f"Expected {n} free units within 0 s, got {self._value} and {len(self._waiters)} waiting")
            loop = asyncio.get_running_loop()
            w = _Waiter(n)
            w.loop = loop
            w.future = loop.create_future()
            self._waiters.append(w)
        try:
            if t is None:
                await w.future
            else:
                await asyncio.wait_for(asyncio.shield(w.future), t)
        except BaseException as exc:
            with self._lock:
                if w.granted:
                    # Granted while we were being cancelled / timing out: give it back.
                    self._value += n
                else:
                    self._waiters.remove(w)
                self._grant()
                value, waiting = self._value, len(self._waiters)
            if not w.future.done():
                w.future.cancel()
            if isinstance(exc, TimeoutError):
                raise Timeout(f"Expected {n} free units within {t} s, got {value} and {waiting} waiting") from None
            raise

    def release(self, n: int = 1) -> None:
        """Give back *n* units and wake the waiters they let through.

        Raises:
            TypeError / ValueError: *n* is not an int > 0, or more units would be given
                back than are taken.
        """
        if type(n) is not int:
            raise TypeError(f"Expected an int n, got {type(n).__name__}")
        if n <= 0:
            raise ValueError(f"Expected n > 0, got {n}")
        with self._lock:
            taken = self._capacity - self._value
            if n > taken:
                raise ValueError(f"Expected to release at most the {taken} units taken, got {n}")
            self._value += n
            self._grant()

    def __enter__(self) -> Semaphore:
        with self._lock:
            if not self._waiters and self._value:
                self._value -= 1
                return self
        self.acquire(1)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._value < self._capacity:
                self._value += 1
                if self._waiters:
                    self._grant()
                return
        self.release(1)  # raises the over-release error

    async def __aenter__(self) -> Semaphore:
        await self.acquire_async(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release(1)

    def __repr__(self) -> str:
        return f"<Semaphore {self._value}/{self._capacity} free, {len(self._waiters)} waiting>"


# ---------------------------------------------------------------------------------------
# RateLimiter
# ---------------------------------------------------------------------------------------


class RateLimiter:
    """Allow *rate* operations per *per* seconds, with bursts up to *burst*.

    A facade over :class:`~nova._core.TokenBucket` (the compiled kernel when built):
    ``RateLimiter(100, per=60)`` allows 100 operations a minute, starting with a full
    burst.

    Args:
        rate: operations per *per* seconds (a number >= 0; 0 = only the burst, ever).
        burst: the most operations allowed at once; defaults to *rate* (at least 1).
        per: the period in seconds (or a timedelta) that *rate* refers to.
        clock: an object with ``monotonic()`` and ``sleep(seconds)`` (tests pass
            :class:`nova.testing.ManualClock`).

    Raises:
        TypeError / ValueError: bad rate, burst, per or clock.
    """

    __slots__ = ("_bucket", "_per", "_rate")

    def __init__(self, rate: float, burst: float | None = None, *, per: float | timedelta = 1.0,
                 clock: Any = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"Expected rate as an int or float, got {type(rate).__name__}")
        p = to_seconds(per, "per")
        if p == 0:
            raise ValueError(f"Expected per > 0 seconds, got {per!r}")
        if burst is None:
            burst = max(1.0, float(rate)) if rate == rate else 1.0
        self._per = p
        self._rate = rate
        self._bucket = TokenBucket(rate / p, burst, clock)

    @property
    def bucket(self) -> Any:
        """The underlying :class:`~nova._core.TokenBucket`."""
        return self._bucket

    @property
    def rate(self) -> float:
        """Operations allowed per :attr:`per` seconds."""
        return float(self._rate)

    @property
    def per(self) -> float:
        """The period, in seconds, that :attr:`rate` refers to."""
        return self._per

    @property
    def burst(self) -> float:
        """The most operations allowed at once."""
        return float(self._bucket.burst)

    @property
    def available(self) -> float:
        """Operations allowed right now."""
        return float(self._bucket.available)

    def try_acquire(self, n: float = 1) -> bool:
        """Allow *n* operations now if the budget has them; never waits.

        Raises:
            TypeError / ValueError: *n* is not a number with ``0 < n <= burst``.
        """
        return bool(self._bucket.try_acquire(n))

    def acquire(self, n: float = 1, timeout: float | timedelta | None = None) -> None:
        """Wait (blocking the thread) until *n* operations are allowed.

        Raises:
            TypeError / ValueError: bad *n* or timeout.
            Timeout: the budget cannot allow them within *timeout* seconds.
        """
        self._bucket.acquire(n, timeout)

    async def acquire_async(self, n: float = 1, timeout: float | timedelta | None = None) -> None:
        """Like :meth:`acquire`, awaiting instead of blocking the event loop."""
        await self._bucket.acquire_async(n, timeout)

    def __enter__(self) -> RateLimiter:
        self.acquire(1)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> RateLimiter:
        await self.acquire_async(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"<RateLimiter {self._rate:g} per {self._per:g} s, burst {self.burst:g}>"
