"""Live subscriptions of a :class:`~nova.store.RedisStore`.

A subscription reads the server in batches of up to 512 events after the last one it
took (by position in one stream, or by global sequence in the append log for
``stream=None``), and waits for more with ``XREAD BLOCK`` on that key: the server
wakes it when any process appends, so history joins live appends with no gap, no
duplicate and no polling.  Waits are cut into slices of at most half a second so that
``close()`` is noticed.

.. versionadded:: 0.2
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from nova.store.protocol import SubscriptionStats
from nova.store.consumer import Consumer
from nova.store.args import is_system
from nova.store.redis_rows import event_of

__all__ = ("RedisSubscription",)

_FETCH = 512
_SLICE = 0.5
_ID_MAX = 2**64 - 1


#: Marks a row of a system stream that a subscription to every stream leaves out.
_SYSTEM: Any = object()


class RedisSubscription(Consumer):
    """A live subscription to a :class:`~nova.store.RedisStore` (what ``subscribe``
    returns): the same API and guarantees as
    :class:`~nova.store.StoreSubscription`.

    Iterate it (``for``, ``async for``), or take events with :meth:`get` /
    :meth:`get_many`; :attr:`cursor` is the place of the last event taken.  While
    the server is unreachable, :meth:`get` raises
    :class:`~nova.errors.StoreUnavailable` and the subscription stays where it
    was: the next call resumes after the last event taken.
    """

    def __init__(self, store: Any, stream: str | None, after: int, head: int, buffer: int, overflow: str,
                 include_system: bool = False) -> None:
        self._init_state(store, stream, after, head, buffer, overflow)
        #: With ``stream=None``: whether system streams ("nova." names) are followed too.
        self.include_system = include_system
        self._consumer = threading.Lock()

    # -- state (the rest: Consumer)

    def _read(self, first: int) -> tuple[int, list[tuple[int, Any]]]:
        """(head, [(key, fields or None)]) of up to 512 events from key *first* on."""
        store = self._store
        if first > _ID_MAX:
            return 0, []
        with store._guard("reading a subscription"):
            if self.stream is None:
                r = store._s_log_fetch(keys=[store._k_meta, store._k_log, store._k_bycode],
                                       args=[store._k_stream, first, _FETCH])
                if self.include_system:
                    return int(r[0]), [(int(r[i]), r[i + 3]) for i in range(1, len(r), 4)]
                names = store._name_of_codes({int(r[i + 1]) for i in range(1, len(r), 4)})
                return int(r[0]), [
                    (int(r[i]), _SYSTEM if is_system(names.get(int(r[i + 1]), "")) else r[i + 3])
                    for i in range(1, len(r), 4)]
            head, entries = store._s_stream_fetch(
                keys=[store._k_names, store._k_last, store._skey(self.stream)],
                args=[self.stream, first, _FETCH])
        return int(head), [(int(eid.split(b"-", 1)[0]), f) for eid, f in entries]

    def _fetch(self) -> list[tuple[int, Any]] | None:
        """The next rows (consumer lock held); None when nothing new."""
        store = self._store
        if store._retention_ns is not None:
            store._expire()  # an expired event is never delivered (counted as missed)
        first = self._next
        head, rows = self._read(first)
        self._apply_overflow(head)
        last_wanted = self._last_wanted(head)
        if last_wanted is None:
            return None
        if self._next != first:
            _head, rows = self._read(self._next)
        rows = [r for r in rows if r[0] <= last_wanted]
        if not rows:
            self._missed += last_wanted - self._next + 1
            self._next = last_wanted + 1
            return None
        last = rows[-1][0]
        kept = [r for r in rows if r[1] is not None and r[1] is not _SYSTEM]
        skipped = sum(1 for r in rows if r[1] is _SYSTEM)  # left out by choice: not missed
        self._missed += (last - self._next + 1) - len(kept) - skipped
        self._next = last + 1
        if store._block_subs:
            with store._cond:
                store._cond.notify_all()
        return kept or None

    def _accept(self, rows: list[tuple[int, Any]]) -> None:
        if self._keys:
            self._base = (self._keys[-1], self._tss[-1])
        decode = self._store.codec.decode
        events = [event_of(f, decode) for _k, f in rows]
        self._keys = [k for k, _f in rows]
        self._tss = [e.timestamp for e in events]
        self._delivered += len(events)
        self._dq.extend(events)

    def _wait(self, seconds: float) -> None:
        """Block on the server until an event after the last one fetched may exist."""
        store = self._store
        # a blocking read must end before the socket timeout of the call
        ms = max(1, int(min(seconds, store.timeout / 2) * 1000))
        if self.stream is None:
            key, last = store._k_log, f"{self._next - 1}-0"
        else:
            key, last = store._skey(self.stream), f"{self._next - 1}-{_ID_MAX}"
        with store._guard("waiting for appends"):
            store._client.xread({key: last}, count=1, block=ms)

    def _take(self, timeout: float | None) -> bool:
        """Refill the pending batch, waiting up to *timeout* (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._consumer:
            if self._dq:
                return True
            while True:
                if self._closed or self._store._closed:
                    return False
                rows = self._fetch()
                if rows is not None:
                    break
                if self._next - 1 >= _ID_MAX:
                    wait = _SLICE
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                        if wait <= 0:
                            return False
                    time.sleep(wait)  # nothing can come after the largest position
                    continue
                if deadline is None:
                    wait = _SLICE
                else:
                    wait = min(_SLICE, deadline - time.monotonic())
                    if wait < 0.001:
                        return False
                self._wait(wait)
            self._accept(rows)
        return True

    # -- consumer API (iteration, get, get_many: Consumer)
    def _ended_now(self) -> str | None:
        """Why nothing more can come (the store's close ends it too)."""
        if self._closed or self._store._closed:
            return self.end_reason or "store closed"
        return None

    async def __anext__(self) -> Any:
        """The next event; the blocking read runs in a worker thread, so the event
        loop is never blocked.

        Raises:
            StopAsyncIteration: the subscription or the store was closed.
            BufferFull, StoreUnavailable: as :meth:`get`.
        """
        dq = self._dq
        while True:
            try:
                return dq.popleft()
            except IndexError:
                pass
            if self._closed or self._store._closed:
                raise StopAsyncIteration
            await asyncio.to_thread(self._take, _SLICE)

    # -- introspection (close: Consumer)
    def stats(self) -> SubscriptionStats:
        """This subscription's counters (``backlog`` asks the server for the head)."""
        backlog = 0
        if not self._closed:
            seq, pos = self._store._heads(self.stream)
            backlog = self._backlog_at(seq if self.stream is None else pos)
        return self._stats_with(backlog)

