"""The :class:`Semaphore`: weighted, FIFO-fair, for threads and asyncio tasks at once.

In a forked child every Semaphore gets a fresh lock and an empty line (the waiting
threads and loops were the parent's); the units stay as they were (whoever held them
in the parent cannot give them back here, see :meth:`Semaphore._after_fork_in_child`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from datetime import timedelta
from time import monotonic

from nova._util.checks import check_positive_int, check_timeout
from nova.errors import Timeout

__all__ = ("Semaphore",)

# Every Semaphore, so a forked child can give each a fresh lock.
_LIVE_SEMAPHORES: weakref.WeakSet[Semaphore] = weakref.WeakSet()


def _reset_semaphores_in_child() -> None:
    for sem in list(_LIVE_SEMAPHORES):
        sem._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_semaphores_in_child)


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
        self._capacity = check_positive_int(capacity, "capacity")
        self._value = self._capacity
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        _LIVE_SEMAPHORES.add(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: only the forking thread exists.  A parent thread may have
        held the lock at the fork (every later call here would block for ever), and the
        waiters in line were parent threads and loops that will never take their units:
        a fresh lock and an empty line.  Units taken stay taken (the thread holding them
        may be the forking one, which gives them back here); an owner that knows its
        holders are gone (an Emitter) replaces the semaphore with a fresh one."""
        self._lock = threading.Lock()
        self._waiters = deque()

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

    def _take_now(self, n: int, t: float | None) -> bool:
        """With the lock held: take *n* units if free and nobody waits (True); else
        raise Timeout when *t* is 0, or return False (the caller gets in line)."""
        if not self._waiters and self._value >= n:
            self._value -= n
            return True
        if t == 0:
            raise Timeout(f"Expected {n} free units within 0 s, got {self._value} and {len(self._waiters)} waiting")
        return False

    def _leave(self, w: _Waiter) -> None:
        """With the lock held: *w* gives up (its units back if it was granted them, else
        it leaves the line, which a fork may already have emptied); serve the line."""
        if w.granted:
            self._value += w.n
        elif w in self._waiters:
            self._waiters.remove(w)
        self._grant()

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
        t = None if timeout is None else check_timeout(timeout)
        with self._lock:
            if self._take_now(n, t):
                return
            w = _Waiter(n)
            w.event = threading.Event()
            self._waiters.append(w)
        try:
            if _wait_event(w.event, t):
                return
        except BaseException:
            # Interrupted (e.g. KeyboardInterrupt): leave the line and take nothing.
            with self._lock:
                self._leave(w)
            raise
        with self._lock:
            if w.granted:
                return
            self._leave(w)  # the head may have changed
            raise Timeout(f"Expected {n} free units within {t} s, got {self._value} and {len(self._waiters)} waiting")

    async def acquire_async(self, n: int = 1, timeout: float | timedelta | None = None) -> None:
        """Like :meth:`acquire` from asyncio code: waits without blocking the loop.
        If the waiting task is cancelled, nothing stays taken.

        Raises the same exceptions as :meth:`acquire`, and
        :class:`asyncio.CancelledError` on cancellation.
        """
        n = self._check_n(n)
        t = check_timeout(timeout)
        with self._lock:
            if self._take_now(n, t):
                return
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
                self._leave(w)  # granted while being cancelled / timing out: given back
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
