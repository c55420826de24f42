"""The consumer half every live store subscription shares: iteration, :meth:`get`,
:meth:`get_many`, :attr:`cursor`, :attr:`closed` and the context manager, over a
buffer of taken events and a ``_take(timeout)`` each backend provides
(:class:`~nova.store.StoreSubscription` reads a log in this process,
:class:`~nova.store.redis_subscription.RedisSubscription` a Redis server).

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
from collections import deque
from datetime import timedelta
from typing import Any

from nova._util.checks import check_timeout
from nova.errors import StoreClosed, Timeout, type_name
from nova.store.protocol import Cursor, SubscriptionStats

__all__ = ("Consumer",)


class Consumer(abc.ABC):
    """The consumer API of a store subscription (a base class; see the module).

    A subclass sets ``stream``, ``end_reason``, ``_dq`` (events taken, not yet
    handed out), ``_closed``, ``_keys`` / ``_tss`` (position or sequence and
    timestamp of each event of the last batch taken, aligned with its end in
    ``_dq``; ``None`` when none) and ``_base`` (the cursor before that batch), and
    implements ``_take(timeout) -> bool`` (wait up to *timeout* seconds, ``None``:
    forever, for events and move them into ``_dq``; False when none came or the
    subscription ended) and ``close()``.
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

    @abc.abstractmethod
    def _take(self, timeout: float | None) -> bool:
        """Wait up to *timeout* seconds for events and move them into ``_dq``."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the subscription (idempotent)."""

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
