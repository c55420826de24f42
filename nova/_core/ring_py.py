"""A bounded multi-producer, multi-consumer FIFO queue (pure-Python twin, the specification).

:class:`RingQueue` holds at most ``capacity`` items.  Producers ``put`` (blocking while
full, up to a timeout) or ``put_nowait``; consumers ``get``, ``get_nowait`` or
``get_many`` (everything available up to a maximum, in one lock acquisition).
``close()`` stops intake: getters drain what is left and then get
:class:`~nova.errors.QueueClosed`; every blocked waiter wakes at once.

Waiting uses condition variables (no polling); a blocked thread releases the GIL.

.. versionadded:: 0.1
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from datetime import timedelta
from time import monotonic
from typing import Any, NamedTuple

from nova._core import forksafe
from nova.errors import BufferFull, QueueClosed, QueueEmpty, Timeout
from nova.testing import to_seconds

__all__ = ("RingQueue", "RingStats")


class RingStats(NamedTuple):
    """A snapshot of a :class:`RingQueue`'s counters (see :meth:`RingQueue.stats`)."""

    capacity: int
    size: int
    peak: int
    puts: int
    gets: int
    getters: int
    putters: int
    closed: bool


#: The largest capacity: the most slots a list can hold (the compiled twin allocates
#: its ring up front, so a capacity needs memory for that many slots there).
MAX_CAPACITY = sys.maxsize // 8


def check_capacity(capacity: object) -> int:
    """Validate a queue capacity: an int > 0 (not a bool), at most :data:`MAX_CAPACITY`."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"Expected an int capacity, got {type(capacity).__name__}")
    if capacity <= 0:
        raise ValueError(f"Expected capacity > 0, got {capacity}")
    if capacity > MAX_CAPACITY:
        raise ValueError(f"Expected capacity <= {MAX_CAPACITY}, got {capacity}")
    return capacity


def check_max_items(max_items: object) -> int:
    """Validate ``get_many``'s *max_items*: an int > 0 (not a bool)."""
    if isinstance(max_items, bool) or not isinstance(max_items, int):
        raise TypeError(f"Expected an int max_items, got {type(max_items).__name__}")
    if max_items <= 0:
        raise ValueError(f"Expected max_items > 0, got {max_items}")
    return max_items


#: Timeouts at or beyond this many seconds (about 292 years, the most a lock wait takes;
#: infinity included) wait without limit, as ``None`` does.
MAX_TIMEOUT = float(threading.TIMEOUT_MAX)


def check_timeout(timeout: float | timedelta | None) -> float | None:
    """``None`` (wait forever) or the timeout in seconds (>= 0); a timeout of
    :data:`MAX_TIMEOUT` or more (``inf`` included) is ``None``."""
    if timeout is None:
        return None
    t = to_seconds(timeout, "timeout")
    return None if t >= MAX_TIMEOUT else t


def put_timeout_error(timeout: float, capacity: int) -> Timeout:
    return Timeout(f"Expected room in the queue within {timeout} s, got a full queue (capacity {capacity})")


def get_timeout_error(timeout: float) -> Timeout:
    return Timeout(f"Expected an item within {timeout} s, got an empty queue")


def full_error(capacity: int) -> BufferFull:
    return BufferFull(f"Expected room in the queue, got a full queue (capacity {capacity})")


def empty_error() -> QueueEmpty:
    return QueueEmpty("Expected an item, got an empty queue")


def closed_put_error() -> QueueClosed:
    return QueueClosed("Expected an open queue, got a closed one: it takes no more items")


def closed_get_error() -> QueueClosed:
    return QueueClosed("Expected an item, got a closed and drained queue")


_MAIN_IDENT = threading.main_thread().ident
#: The main thread wakes this often while blocked, to run signal handlers (Ctrl-C);
#: other threads sleep until notified.
SIGNAL_SLICE = 0.1


def _wait(cond: threading.Condition, deadline: float | None) -> bool:
    """Wait on *cond* (held) once: until notified, or the *deadline* (monotonic seconds,
    None = none) passed: then return False."""
    if deadline is None:
        if threading.get_ident() == _MAIN_IDENT:
            cond.wait(SIGNAL_SLICE)
        else:
            cond.wait()
        return True
    remaining = deadline - monotonic()
    if remaining <= 0:
        return False
    if remaining > SIGNAL_SLICE and threading.get_ident() == _MAIN_IDENT:
        remaining = SIGNAL_SLICE
    cond.wait(remaining)
    return True


class RingQueue:
    """A bounded FIFO queue for many producers and many consumers.

    Args:
        capacity: the most items the queue holds (an int > 0).

    Raises:
        TypeError: *capacity* is not an int.
        ValueError: *capacity* <= 0.

    Every method is thread-safe.  Timeouts are float seconds or a
    :class:`datetime.timedelta`; ``None`` (or ``inf``, or any timeout too long for a
    lock wait) waits without limit; a negative or NaN timeout is a ``ValueError``.
    """

    __slots__ = ("_cap", "_items", "_lock", "_not_empty", "_not_full", "_closed", "_puts", "_gets", "_peak",
                 "_getters", "_putters", "__weakref__")

    def __init__(self, capacity: int) -> None:
        self._cap = check_capacity(capacity)
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._puts = 0
        self._gets = 0
        self._peak = 0
        self._getters = 0
        self._putters = 0
        forksafe.track(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`nova._core.forksafe`): the lock and conditions
        are re-created free and without waiters (the parent's waiting threads do not
        exist here); items, counters and the closed state are kept."""
        forksafe.reinit_lock(self._not_empty)  # (re-creates the shared lock too)
        forksafe.reinit_lock(self._not_full)
        self._getters = 0
        self._putters = 0

    # -- producers --------------------------------------------------------------------

    def put(self, item: Any, timeout: float | timedelta | None = None) -> None:
        """Append *item*, waiting while the queue is full.

        Raises:
            QueueClosed: the queue is closed (also when it closes while waiting).
            Timeout: still full after *timeout* seconds.
        """
        t = None if timeout is None else check_timeout(timeout)
        with self._lock:
            if self._closed:
                raise closed_put_error()
            items = self._items
            if len(items) >= self._cap:
                deadline = None if t is None else monotonic() + t
                self._putters += 1
                try:
                    while len(items) >= self._cap:
                        if not _wait(self._not_full, deadline):
                            raise put_timeout_error(t, self._cap)  # type: ignore[arg-type]
                        if self._closed:
                            raise closed_put_error()
                finally:
                    self._putters -= 1
            # inlined, not a shared helper: this is the pure twin's hot put path
            # (ratio_primitives "handoff 1->1 get_many [py]", target >= 2.5x queue.Queue;
            # a shared method call here cost ~8% per put)
            items.append(item)
            self._puts += 1
            n = len(items)
            if n > self._peak:
                self._peak = n
            if self._getters or self._putters:
                self._after_put(n)

    def put_nowait(self, item: Any) -> None:
        """Append *item* if there is room.

        Raises:
            QueueClosed: the queue is closed.
            BufferFull: the queue is full.
        """
        with self._lock:
            if self._closed:
                raise closed_put_error()
            items = self._items
            if len(items) >= self._cap:
                raise full_error(self._cap)
            # inlined, not a shared helper: this is the pure twin's hot put path (as in put)
            # (ratio_primitives "handoff 1->1 get_many [py]", target >= 2.5x queue.Queue;
            # a shared method call here cost ~8% per put)
            items.append(item)
            self._puts += 1
            n = len(items)
            if n > self._peak:
                self._peak = n
            if self._getters or self._putters:
                self._after_put(n)

    # Wake-ups (with the lock held).  A getter waits only while the queue is empty and a
    # putter only while it is full, so a notify is due only when that changes; a woken
    # thread that leaves items (or room) behind passes the wake-up on to the next
    # waiter.  Notifying on every call would cost more than the rest of the call.

    def _after_put(self, n: int) -> None:
        if self._getters and n == 1:
            self._not_empty.notify()
        if self._putters and n < self._cap:
            self._not_full.notify()

    def _after_get(self, k: int) -> None:
        n = len(self._items)
        if self._putters and n + k >= self._cap:
            self._not_full.notify(k)
        if self._getters and n:
            self._not_empty.notify()

    # -- consumers --------------------------------------------------------------------

    def _wait_not_empty(self, t: float | None) -> bool:
        """With the lock held: wait until an item is there (True) or the timeout
        passed (False).  Raises QueueClosed once closed and drained."""
        items = self._items
        if items:
            return True
        if self._closed:
            raise closed_get_error()
        if t == 0:
            return False
        deadline = None if t is None else monotonic() + t
        self._getters += 1
        try:
            while not items:
                if self._closed:
                    raise closed_get_error()
                if not _wait(self._not_empty, deadline):
                    return False
        finally:
            self._getters -= 1
        return True

    def get(self, timeout: float | timedelta | None = None) -> Any:
        """Remove and return the oldest item, waiting while the queue is empty.

        Raises:
            QueueClosed: the queue is closed and drained (also when it closes while waiting).
            Timeout: still empty after *timeout* seconds.
        """
        t = None if timeout is None else check_timeout(timeout)
        with self._lock:
            if not self._items and not self._wait_not_empty(t):
                raise get_timeout_error(t)  # type: ignore[arg-type]
            item = self._items.popleft()
            self._gets += 1
            if self._getters or self._putters:
                self._after_get(1)
            return item

    def get_nowait(self) -> Any:
        """Remove and return the oldest item if there is one.

        Raises:
            QueueEmpty: the queue is empty (and not closed).
            QueueClosed: the queue is closed and drained.
        """
        with self._lock:
            items = self._items
            if not items:
                if self._closed:
                    raise closed_get_error()
                raise empty_error()
            item = items.popleft()
            self._gets += 1
            if self._getters or self._putters:
                self._after_get(1)
            return item

    def get_many(self, max_items: int, timeout: float | timedelta | None = None) -> list[Any]:
        """Remove and return up to *max_items* of the oldest items, oldest first.

        Waits only while the queue is empty; then takes everything available (up to
        *max_items*) at once.  Returns ``[]`` when *timeout* passes with nothing to take
        (``timeout=0`` never waits).

        Raises:
            TypeError / ValueError: *max_items* is not an int > 0.
            QueueClosed: the queue is closed and drained.
        """
        m = max_items if type(max_items) is int and max_items > 0 else check_max_items(max_items)
        t = None if timeout is None else check_timeout(timeout)
        with self._lock:
            items = self._items
            if not items and not self._wait_not_empty(t):
                return []
            n = len(items)
            if n <= m:
                out = list(items)
                items.clear()
            else:
                popleft = items.popleft
                out = [popleft() for _ in range(m)]
            self._gets += len(out)
            if self._getters or self._putters:
                self._after_get(len(out))
            return out

    # -- lifecycle and introspection ----------------------------------------------------

    def close(self) -> None:
        """Stop intake and wake every waiter.  Idempotent.

        After ``close()``: ``put``/``put_nowait`` raise :class:`QueueClosed`; getters take
        the remaining items and then raise :class:`QueueClosed`.
        """
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def capacity(self) -> int:
        """The most items the queue holds."""
        return self._cap

    def qsize(self) -> int:
        """The number of items in the queue now."""
        return len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> RingStats:
        """A consistent snapshot: capacity, size now, peak size, total puts, total gets,
        threads blocked in a get / in a put now, and whether it is closed."""
        with self._lock:
            return RingStats(self._cap, len(self._items), self._peak, self._puts, self._gets,
                             self._getters, self._putters, self._closed)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RingQueue {state} {len(self._items)}/{self._cap}>"
