"""Group commit for :class:`~nova.store.sqlite_log.SQLiteLog`: many threads appending
share one commit (one fsync with ``durability="full"``).

Each append, under the store lock, inserts its rows into the open write transaction
and takes a ticket; then, outside the lock, it waits in :meth:`GroupCommit.flush`.  The
first waiter becomes the leader: it waits (at most ``GATHER_SECONDS``) for the appends
already under way (between :meth:`~GroupCommit.enter` and :meth:`~GroupCommit.leave`)
to insert, then commits everything inserted so far; the others find their ticket
committed.  A failed commit fails every append it covered.

.. versionadded:: 0.2
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ("GroupCommit", "GATHER_SECONDS")

#: How long a commit leader waits at most for the appends under way.
GATHER_SECONDS = 0.002


class GroupCommit:
    """Tickets and commit leadership for one connection.

    *mutex* is the lock the connection is used under; *commit* commits the open
    transaction (called with *mutex* held).
    """

    def __init__(self, mutex: Any, commit: Callable[[], None]) -> None:
        self._mutex = mutex
        self._commit = commit
        self._gen = 0  # tickets handed out
        self._committed = 0  # tickets committed
        self._failed: tuple[int, int, BaseException] | None = None
        self._leading = False
        self._inflight = 0  # appends between enter() and leave()
        self._waiting = 0  # flush() callers waiting for a leader's commit
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()

    def enter(self) -> None:
        """An append starts: a leader waits (briefly) for it before committing."""
        with self._cond:
            self._inflight += 1

    def leave(self) -> None:
        """The append started by :meth:`enter` inserted its rows (or failed)."""
        with self._cond:
            self._inflight -= 1
            if not self._inflight and self._leading:
                self._cond.notify_all()

    def ticket(self) -> None:
        """This thread wrote to the open transaction (mutex held): its next
        :meth:`flush` must see it committed."""
        self._gen += 1
        self._local.ticket = self._gen

    def forget(self) -> None:
        """This thread's writes were committed already (by its own commit)."""
        self._local.ticket = 0

    def flush(self) -> None:
        """Return once this thread's writes are committed (mutex not held).

        Raises:
            Exception: the commit covering them failed (they were rolled back).
        """
        ticket = getattr(self._local, "ticket", 0)
        if not ticket:
            return
        self._local.ticket = 0
        cond = self._cond
        with cond:
            while True:
                failed = self._failed
                if failed is not None and failed[0] <= ticket <= failed[1]:
                    raise failed[2]
                if self._committed >= ticket:
                    return
                if not self._leading:
                    self._leading = True
                    break
                self._waiting += 1
                try:
                    cond.wait()
                finally:
                    self._waiting -= 1
            if self._inflight:
                cond.wait_for(lambda: not self._inflight, GATHER_SECONDS)
        target = ticket
        try:
            with self._mutex:
                target = self._gen
                self._commit()
        except BaseException as exc:
            with cond:
                self._failed = (self._committed + 1, target, exc)
            raise
        finally:
            with cond:
                self._leading = False
                self._committed = max(self._committed, target)
                if self._waiting:
                    cond.notify_all()
