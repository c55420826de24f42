"""Group commit for :class:`~nova.store.sqlite_log.SQLiteLog`: many threads appending
share one fsync.

Each append, under the store lock, inserts its rows into the open write transaction
and takes a ticket.  Then, outside the lock, :meth:`GroupCommit.flush`:

1. commits the transaction if no other thread's commit covered the ticket yet (a
   commit without fsync: WAL frames written to the OS, ``synchronous=NORMAL``; a few
   microseconds, under the store lock);
2. with ``durability="full"``, waits until an fsync of the WAL that started after that
   commit has finished.  The first waiter fsyncs for everyone committed so far, without
   any lock held, so other threads go on inserting and committing meanwhile, and the
   next fsync covers all of them.  This is what ``synchronous=FULL`` does per commit,
   shared between the appends that were waiting.

A failed commit or fsync fails every append it covered.

.. versionadded:: 0.2
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ("GroupCommit",)


class GroupCommit:
    """Tickets, commits and shared fsyncs for one connection.

    *mutex* is the lock the connection is used under; *commit* commits the open
    transaction (called with *mutex* held); *sync* makes what was committed durable
    (called with no lock held; ``None``: commits are enough).
    """

    def __init__(self, mutex: Any, commit: Callable[[], None], sync: Callable[[], None] | None = None) -> None:
        self._mutex = mutex
        self._commit = commit
        self._sync = sync
        self._gen = 0  # tickets handed out (mutex held)
        self._committed = 0  # tickets committed (mutex held to write)
        self._synced = 0  # tickets made durable (cond held to write)
        self._failed: tuple[int, int, BaseException] | None = None
        self._syncing = False
        self._waiting = 0
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()

    def ticket(self) -> None:
        """This thread wrote to the open transaction (mutex held): its next
        :meth:`flush` must see it committed."""
        self._gen += 1
        self._local.ticket = self._gen

    def forget(self) -> None:
        """This thread's writes were committed already (by a commit of its own, mutex
        held)."""
        self._local.ticket = 0
        self._committed = self._gen

    def _check(self, ticket: int) -> None:
        failed = self._failed
        if failed is not None and failed[0] <= ticket <= failed[1]:
            raise failed[2]

    def flush(self) -> None:
        """Return once this thread's writes are committed (and durable, with a sync).
        Called without the mutex.

        Raises:
            Exception: the commit or fsync covering them failed.
        """
        ticket = getattr(self._local, "ticket", 0)
        if not ticket:
            return
        self._local.ticket = 0
        if self._committed < ticket:
            with self._mutex:
                if self._committed < ticket:
                    target = self._gen
                    try:
                        self._commit()
                    except BaseException as exc:
                        self._failed = (self._committed + 1, target, exc)
                        self._committed = target
                        raise
                    self._committed = target
        self._check(ticket)
        if self._sync is None:
            return
        cond = self._cond
        with cond:
            while True:
                self._check(ticket)
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
