"""Group commit for :class:`~nova.store.sqlite_log.SQLiteLog`: many threads appending
with ``durability="full"`` share one fsync.

Each append commits under the store lock (``synchronous=NORMAL``: the WAL frames are
handed to the OS, which takes microseconds) and takes a ticket.  Then, outside the
lock, :meth:`GroupCommit.flush` waits until an fsync of the WAL that started after
that commit has finished.  The first waiter runs one for every commit made so far,
with no lock held, so other threads go on appending meanwhile and share the next
one.  This is what ``synchronous=FULL`` does at each commit, shared between the
appends that were waiting.  A failed fsync fails every append it covered.

.. versionadded:: 0.2
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ("GroupCommit", "GATHER_SECONDS")

#: How long an fsync about to start waits at most for the appends under way.
GATHER_SECONDS = 0.001


class GroupCommit:
    """Commit tickets and shared fsyncs for one connection.

    *sync* makes every commit made before the call durable (called with no lock
    held); ``None``: a commit is enough (``durability="normal"`` or ``"off"``).
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self._committed = 0  # commits made (the store lock held to change it)
        self._synced = 0  # commits made durable (cond held to change it)
        self._failed: tuple[int, int, BaseException] | None = None
        self._syncing = False
        self._waiting = 0
        self._inflight = 0  # appends between enter() and leave()
        self._gathering = False
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()

    def enter(self) -> None:
        """An append starts: an fsync about to start waits (briefly) for it to commit,
        so one fsync covers it too."""
        with self._cond:
            self._inflight += 1

    def leave(self) -> None:
        """The append started by :meth:`enter` committed (or failed)."""
        with self._cond:
            self._inflight -= 1
            if not self._inflight and self._gathering:
                self._cond.notify_all()

    def ticket(self) -> None:
        """This thread just committed (store lock held): its next :meth:`flush` waits
        for an fsync covering that commit."""
        self._committed += 1
        self._local.ticket = self._committed

    def flush(self) -> None:
        """Return once this thread's last commit is durable (called without the store
        lock; at once when there is no *sync*).

        Raises:
            OSError: the fsync covering it failed.
        """
        ticket = getattr(self._local, "ticket", 0)
        if not ticket:
            return
        self._local.ticket = 0
        if self._sync is None:
            return
        cond = self._cond
        with cond:
            while True:
                failed = self._failed
                if failed is not None and failed[0] <= ticket <= failed[1]:
                    raise failed[2]
                if self._synced >= ticket:
                    return
                if not self._syncing:
                    self._syncing = True
                    break
                self._waiting += 1
                try:
                    cond.wait()
                finally:
                    self._waiting -= 1
            if self._inflight:  # let the appends under way commit first (bounded wait)
                self._gathering = True
                cond.wait_for(lambda: not self._inflight, GATHER_SECONDS)
                self._gathering = False
        target = self._committed  # every commit so far is in the WAL: one fsync covers them
        try:
            self._sync()
        except BaseException as exc:
            with cond:
                self._failed = (self._synced + 1, target, exc)
                self._syncing = False
                cond.notify_all()
            raise
        with cond:
            self._synced = max(self._synced, target)
            self._syncing = False
            if self._waiting:
                cond.notify_all()
