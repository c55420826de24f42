"""StoreSubscription: a live subscription that reads the store's log itself.

History after the cursor joins live appends exactly (no gap, no duplicate); a full
buffer follows the overflow policy (block the appenders, drop the oldest, or end with
:class:`~nova.errors.BufferFull`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from nova.store.consumer import Consumer
from nova.store.protocol import SubscriptionStats

if TYPE_CHECKING:
    from nova.store.logstore import LogStore

__all__ = ("StoreSubscription",)

#: Events a subscription takes from the log at a time.
_FETCH = 512


def wake_future(fut: asyncio.Future[None]) -> None:
    """Resolve an async subscriber's wait (called on its loop)."""
    if not fut.done():
        fut.set_result(None)


class StoreSubscription(Consumer):
    """A live subscription to a :class:`~nova.store.MemoryStore` or any
    :class:`~nova.store.logstore.LogStore` (what ``subscribe`` returns).

    Iterate it (``for ev in sub``, or ``async for ev in sub``) to get the history after
    the cursor and then live appends; iteration ends when the subscription or the store
    is closed.  :meth:`get` / :meth:`get_many` take events with a timeout.
    :attr:`cursor` is the place of the last event taken, to resume from later.

    The subscription reads the store's log itself (in batches of up to 512 events), so
    nothing is copied per subscriber and history joins live appends exactly.
    Thread-safe; one consumer at a time is the intended use.
    """

    _store: LogStore

    def __init__(
        self, store: LogStore, stream: str | None, after: int, buffer: int, overflow: str,
        *, hide_system: bool = False,
    ) -> None:
        self._store = store
        self.stream = stream
        self._hide_system = hide_system  # stream=None without include_system
        code = store._codes.get(stream) if stream is not None else -1
        self._code: int = -2 if code is None else code  # -2: the stream does not exist yet
        self._init_state(store, stream, after, self._head(), buffer, overflow)
        self._consumer = threading.Lock()

    # -- state (store lock held)
    def _head(self) -> int:
        log = self._store._log
        if self._code == -1:
            return log.last_seq  # type: ignore[no-any-return]
        if self._code == -2:
            code = self._store._codes.get(self.stream)  # type: ignore[arg-type]
            if code is None:
                return 0
            self._code = code
        return log.stream_last_position(self._code)  # type: ignore[no-any-return]

    def _end_on_overflow(self) -> None:
        self._ended("overflow")  # the store lock is held already
        self._store._detach(self)

    def _fetch(self) -> Any:
        """Take the next events from the log (lock held); None when nothing new.  A
        subscription to every stream that leaves system streams out skips their rows
        here (they are neither delivered nor counted as missed)."""
        while True:
            sl = self._fetch_rows()
            if sl is None or not self._hide_system:
                return sl
            system = self._store._system_codes()
            if not system:
                return sl
            keep = ~np.isin(sl.stream, np.fromiter(system, np.int32, len(system)))
            if keep.all():
                return sl
            if keep.any():
                return _Rows(sl, np.flatnonzero(keep))
            # only system rows: look further (self._next moved past them)

    def _fetch_rows(self) -> Any:
        """The next rows of the log after ``self._next`` (lock held), all streams'."""
        if self._store._retention_ns is not None:
            self._store._expire()  # an expired event is never delivered (counted as missed)
        head = self._head()
        self._apply_overflow(head)
        if self._code == -2:
            return None
        last_wanted = self._last_wanted(head)
        if last_wanted is None:
            return None
        limit = min(_FETCH, last_wanted - self._next + 1)
        log = self._store._log
        if self._code == -1:
            sl = log.since_sequence(self._next - 1, limit)
            keys = sl.seq
        else:
            sl = log.stream_slice(self._code, self._next - 1, limit)
            keys = sl.pos
        if len(sl) and int(keys[-1]) > last_wanted:
            # evicted rows made the slice reach past the wanted range: cut it there
            n = int((keys <= last_wanted).sum())
            sl = _Rows(sl, np.arange(n))
            keys = keys[:n]
        if len(sl) == 0:
            # everything up to last_wanted was evicted before we got there
            self._missed += last_wanted - self._next + 1
            self._next = last_wanted + 1
            return None
        last = int(keys[-1])
        self._missed += (last - self._next + 1) - len(sl)
        self._next = last + 1
        if self._store._block_subs:
            self._store._cond.notify_all()
        return sl

    def _accept(self, sl: Any) -> None:
        """Make *sl* the pending batch (consumer lock held; outside the store lock:
        a slice is a snapshot)."""
        if self._keys is not None and len(self._keys):
            self._base = (int(self._keys[-1]), int(self._tss[-1]))
        events = sl.events(0, len(sl))
        self._keys = sl.seq if self._code == -1 else sl.pos
        self._tss = sl.ts
        self._delivered += len(events)
        self._dq.extend(events)

    def _take(self, timeout: float | None) -> bool:
        """Refill the pending batch, waiting up to *timeout* (None: forever).  Returns
        False when the subscription ended or the timeout passed with nothing new."""
        store = self._store
        cond = store._cond
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._consumer:
            if self._dq:
                return True  # another consumer thread refilled it
            with cond:
                while True:
                    if self._closed:
                        return False
                    sl = self._fetch()
                    if sl is not None:
                        break
                    if deadline is None:
                        wait = None
                    else:
                        wait = deadline - time.monotonic()
                        if wait <= 0:
                            return False
                    store._nwait += 1
                    store._refresh()
                    try:
                        cond.wait(wait)
                    finally:
                        store._nwait -= 1
                        store._refresh()
            self._accept(sl)
        return True

    # -- consumer API (iteration, get, get_many: Consumer)
    async def __anext__(self) -> Any:
        """The next event, awaiting live appends without blocking the event loop.

        Raises:
            StopAsyncIteration: the subscription or the store was closed.
            BufferFull: ``overflow="error"`` and the buffer overflowed.
        """
        dq = self._dq
        store = self._store
        loop = asyncio.get_running_loop()
        while True:
            if dq:
                try:
                    return dq.popleft()
                except IndexError:
                    continue
            with self._consumer:
                if dq:
                    continue
                with store._lock:
                    if self._closed:
                        raise StopAsyncIteration
                    sl = self._fetch()
                    if sl is None:
                        fut: asyncio.Future[None] = loop.create_future()
                        store._async_waiters.append((loop, fut))
                        store._nwait += 1
                        store._refresh()
                if sl is not None:
                    self._accept(sl)
                    continue
            try:
                await fut
            finally:
                if not fut.done():
                    with store._lock:
                        if (loop, fut) in store._async_waiters:
                            store._async_waiters.remove((loop, fut))
                            store._nwait -= 1
                            store._refresh()

    # -- introspection (close: Consumer)
    def stats(self) -> SubscriptionStats:
        """This subscription's counters."""
        with self._store._lock:
            return self._stats_with(0 if self._closed else self._backlog_at(self._head()))


class _Rows:
    """Some rows of a slice (the indices *idx*, increasing): the rows up to a limit,
    or those of non-system streams."""

    __slots__ = ("_sl", "_idx", "ts", "seq", "pos", "stream")

    def __init__(self, sl: Any, idx: Any) -> None:
        self._sl = sl
        self._idx = idx
        self.ts = sl.ts[idx]
        self.seq = sl.seq[idx]
        self.pos = sl.pos[idx]
        self.stream = sl.stream[idx]

    def __len__(self) -> int:
        return len(self._idx)

    def events(self, i: int, j: int) -> list[Any]:
        idx = self._idx[i:j]
        if not len(idx):
            return []
        lo = int(idx[0])
        rows = self._sl.events(lo, int(idx[-1]) + 1)
        return [rows[k - lo] for k in idx.tolist()]
