"""The half every live store subscription shares: iteration, :meth:`get`,
:meth:`get_many`, :attr:`cursor`, :attr:`closed`, :meth:`close` and the context
manager, over a buffer of taken events and a ``_take(timeout)`` each backend provides
(:class:`~nova.store.StoreSubscription` reads a log in this process,
:class:`~nova.store.redis_subscription.RedisSubscription` a Redis server); and the
bookkeeping of where the subscription is (the overflow policy, the range dropped
while still in history, the end) that both apply to the head they read.

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
from collections import deque
from datetime import timedelta
from typing import Any

from nova._util.checks import check_timeout
from nova.errors import BufferFull, StoreClosed, Timeout, type_name
from nova.store.protocol import Cursor, SubscriptionStats

__all__ = ("Consumer",)


class Consumer(abc.ABC):
    """The consumer API of a store subscription (a base class; see the module).

    A subclass calls :meth:`_init_state` (which sets ``stream``, ``end_reason``,
    ``_dq``: events taken, not yet handed out, ``_closed``, ``_keys`` / ``_tss``:
    position or sequence and timestamp of each event of the last batch taken, aligned
    with its end in ``_dq``, ``None`` when none, ``_base``: the cursor before that
    batch, and the counters) and implements ``_take(timeout) -> bool`` (wait up to
    *timeout* seconds, ``None``: forever, for events and move them into ``_dq``;
    False when none came or the subscription ended).  ``_store`` is the store: its
    ``_lock`` guards the subscription's state, ``_detach(sub)`` forgets it.
    """

    stream: str | None
    end_reason: str | None
    _dq: deque[Any]
    _closed: bool
    _keys: Any
    _tss: Any
    _base: tuple[int, int | None]
    _delivered: int
    _dropped: int
    _overflows: int
    _blocked: int
    _missed: int

    _store: Any
    _buffer: int
    _overflow: str
    _next: int
    _live_from: int
    _skip: tuple[int, int] | None

    def _init_state(self, store: Any, stream: str | None, after: int, head: int, buffer: int,
                    overflow: str) -> None:
        """Start after position *after* of *stream*; what comes after *head* (the
        stream's last position now) is live, the rest history."""
        self._store = store
        self.stream = stream
        self._buffer = buffer
        self._overflow = overflow
        self._next = after + 1  # the next position (or sequence) to take
        self._live_from = head + 1
        self._skip = None  # a range dropped by drop_oldest while still in history
        self._dq = deque()
        self._closed = False
        self.end_reason = None
        self._keys = None
        self._tss = None
        self._delivered = 0
        self._dropped = 0
        self._overflows = 0
        self._blocked = 0
        self._missed = 0
        self._base = (after, None)

    @abc.abstractmethod
    def _take(self, timeout: float | None) -> bool:
        """Wait up to *timeout* seconds for events and move them into ``_dq``."""

    # -- where the subscription is (the caller holds what guards it)
    def _backlog_at(self, head: int) -> int:
        """Live events not taken yet when the stream's last position is *head*."""
        return max(0, head - max(self._next, self._live_from) + 1)

    def _ended(self, reason: str) -> None:
        """End the subscription for *reason* (store lock held); the cursor stays at
        the last event taken, the events not taken are dropped."""
        if not self._closed:
            cur = self.cursor  # computed from what is left in the batch: before clearing it
            self._base = (cur.position, cur.timestamp)
            self._closed = True
            self.end_reason = reason
            self._keys = None
            self._tss = None
            self._dq.clear()

    def _end_on_overflow(self) -> None:
        """End with ``"overflow"`` and leave the store (``overflow="error"``)."""
        with self._store._lock:
            self._ended("overflow")
            self._store._detach(self)

    def _apply_overflow(self, head: int) -> None:
        """Apply the overflow policy when more than ``buffer`` live events wait (the
        stream's last position is *head*): ``error`` ends the subscription and raises
        :class:`~nova.errors.BufferFull`; ``drop_oldest`` drops the oldest live events
        (counted in ``dropped``); ``block`` is the appender's part."""
        backlog = head - max(self._next, self._live_from) + 1
        if backlog <= self._buffer:
            return
        self._overflows += 1
        if self._overflow == "error":
            self._end_on_overflow()
            raise BufferFull(
                f"Expected the subscriber to keep up within buffer={self._buffer} events, "
                f"got {backlog} live events not taken"
            )
        if self._overflow == "drop_oldest":
            cut = head - self._buffer  # live events up to and including cut are dropped
            first_live = max(self._next, self._live_from)
            self._dropped += cut - first_live + 1
            if self._next >= self._live_from:
                self._next = cut + 1
            else:  # still in history: jump over the dropped range once there
                a = self._live_from if self._skip is None else self._skip[0]
                self._skip = (a, cut)
            self._live_from = cut + 1

    def _last_wanted(self, head: int) -> int | None:
        """The last position to take next (up to *head*, stopping before a dropped
        range still ahead); ``None`` when there is nothing to take."""
        stop = None
        if self._skip is not None:
            a, b = self._skip
            if self._next >= a:
                self._next = max(self._next, b + 1)
                self._skip = None
            else:
                stop = a
        last_wanted = head if stop is None else min(head, stop - 1)
        return None if self._next > last_wanted else last_wanted

    def close(self) -> None:
        """End the subscription (idempotent): iteration stops, appenders blocked on it
        go on (a consumer waiting on a Redis server notices within half a second)."""
        store = self._store
        with store._lock:
            if self._closed:
                return
            self._ended("closed")
            store._detach(self)

    def _stats_with(self, backlog: int) -> SubscriptionStats:
        """The subscription's counters, with *backlog* (each store computes its own)."""
        return SubscriptionStats(
            delivered=self._delivered - len(self._dq),
            dropped=self._dropped,
            overflows=self._overflows,
            blocked=self._blocked,
            missed=self._missed,
            backlog=backlog,
        )

    def _ended_now(self) -> str | None:
        """Why the subscription can give nothing more (``None``: it can)."""
        return self.end_reason if self._closed else None

    def __iter__(self) -> Consumer:
        return self

    def __next__(self) -> Any:
        dq = self._dq
        while True:
            try:
                return dq.popleft()
            except IndexError:
                if not self._take(None):
                    raise StopIteration from None

    def get(self, timeout: float | timedelta | None = None) -> Any:
        """Take the next event, waiting up to *timeout* seconds (``None``: forever).

        Raises:
            Timeout: nothing came in time.
            StoreClosed: the subscription ended (closed, or its store closed).
            BufferFull: ``overflow="error"`` and the buffer overflowed.
            StoreUnavailable: (Redis) the server did not answer; the subscription
                resumes at the next call.
        """
        t = check_timeout(timeout)
        dq = self._dq
        while True:
            try:
                return dq.popleft()
            except IndexError:
                if not self._take(t):
                    reason = self._ended_now()
                    if reason is not None:
                        raise StoreClosed(f"Expected an open subscription, got one ended ({reason})") from None
                    raise Timeout(f"Expected an event within {t} s, got none") from None

    def get_many(self, max_items: int, timeout: float | timedelta | None = None) -> list[Any]:
        """Take up to *max_items* events, waiting up to *timeout* for the first one;
        ``[]`` when the timeout passes or the subscription ended.

        Raises:
            TypeError: *max_items* is not an int.  ValueError: *max_items* < 1.
            BufferFull, StoreUnavailable: as :meth:`get`.
        """
        if isinstance(max_items, bool) or not isinstance(max_items, int):
            raise TypeError(f"Expected max_items as an int >= 1, got {type_name(max_items)}")
        if max_items < 1:  # (the wording the conformance suite asserts)
            raise ValueError(f"Expected max_items as an int >= 1, got {max_items!r}")
        t = check_timeout(timeout)
        dq = self._dq
        if not dq and not self._take(t):
            return []
        out = []
        pop = dq.popleft
        try:
            for _ in range(max_items):
                out.append(pop())
        except IndexError:
            pass
        return out

    def __aiter__(self) -> Consumer:
        return self

    @property
    def closed(self) -> bool:
        """True once the subscription ended (closed, store closed, or overflow error)."""
        return self._closed

    @property
    def cursor(self) -> Cursor:
        """The place of the last event taken (pass it to ``subscribe`` or ``read`` to
        resume after it).  For ``stream=None`` the position is the global sequence."""
        keys = self._keys
        if keys is not None:
            i = len(keys) - len(self._dq)
            if i > 0:
                return Cursor(self.stream, int(keys[i - 1]), int(self._tss[i - 1]))
        return Cursor(self.stream, *self._base)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} stream={self.stream!r} overflow={self._overflow!r} {state}>"
