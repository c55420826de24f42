"""Group commit for :class:`~nova.store.sqlite_log.SQLiteLog`: appends of many threads
share one fsync of the WAL (``durability="full"``).

Every append is its own write transaction: under the store lock it opens it, writes
its rows and commits (``synchronous=NORMAL``: the commit is in the WAL, no fsync yet),
so it is all or nothing by itself, fails alone with its own exception and never
holds up another append's rows.  With ``durability="full"`` it then waits, with no
lock held, until an fsync of the WAL that *started after its commit* has finished.
One fsync runs at a time, run by one of the waiting appenders (the *syncer*): it
notes how many commits were made (every one of them is in the WAL), fsyncs, and
wakes every append whose commit it covered, in one pass.  Appends committed while
it ran wait for the next fsync, which the oldest of them runs (it is handed the
role and woken).  So one fsync serves every append committed during the previous
one: with N threads appending, each fsync covers about N / 2 appends, and the
threads' own work (building, encoding and writing the next append) runs while the
WAL is being fsynced.

Why not one transaction per group (the first design of this module): with CPython's
GIL a commit leader writing the others' appends made every append cost a wake-up of
the leader, a hand-over and a wake-up of its owner, and every ``sqlite3`` call of the
leader gave the GIL to the woken owners (about 6 context switches per append).  A
commit per append costs one ``BEGIN``/``COMMIT`` more per append but no hand-over (the
appender writes its own rows): measured on a 2-core VM, single and 8-thread
``"normal"`` appends got faster, and 8-thread ``"full"`` appends stayed at the same
6-8 k/s, bound by the wait for the fsync and the wake-up (docs/store.md).

A failed fsync fails every append it covered (their rows are committed: they are
in the file, but not known to be on disk).  A syncer interrupted by an exception
that is not an error (``KeyboardInterrupt``, ``SystemExit``) fails nobody else: the
role passes to the oldest waiter, which fsyncs again.

.. versionadded:: 0.2
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ("GroupCommit",)


class _Waiter:
    """An append committed and waiting for an fsync: its owner sleeps on :attr:`wake`
    (acquired at creation) until an fsync covered its commit, or until it is made
    the syncer."""

    __slots__ = ("ticket", "error", "lead", "wake")

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket  # the commit number an fsync must cover
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit:
    """The commit path of one connection (see the module docstring).

    Args:
        lock: the store lock, held while an append writes and commits.
        begin: open the write transaction (lock held), before the append's rows.
        commit: commit the open write transaction, if any (lock held); on failure it
            rolls back, rebuilds what it must and raises.
        commits: the number of successful commits so far (read without the lock:
            a commit is counted once it is in the WAL).
        lost: after an append raised (lock held): recover when the open transaction
            was rolled back with it (say by SQLite after an I/O error).
        sync: make every commit made before the call durable (called with no lock
            held); ``None``: a commit is enough (``durability="normal"`` or ``"off"``).
    """

    def __init__(
        self,
        lock: Any,
        begin: Callable[[], None],
        commit: Callable[[], None],
        commits: Callable[[], int],
        lost: Callable[[], bool],
        sync: Callable[[], None] | None = None,
    ) -> None:
        self._lock = lock
        self._begin = begin
        self._commit = commit
        self._commits = commits
        self._lost = lost
        self._sync = sync
        #: Appends committed, fsyncs run (for tests and stats).
        self.appends = 0
        self.fsyncs = 0
        self.after_fork()

    def after_fork(self) -> None:
        """A fresh state (also in a forked child: nobody waits or syncs any more)."""
        self._mutex = threading.Lock()
        self._waiting: list[_Waiter] = []  # committed, waiting for an fsync, oldest first
        self._syncing = False
        self._synced = 0  # every commit up to this number is durable

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run *fn* (an append: writes its rows, store lock held, transaction open) in
        its own transaction, commit it and, with an fsync, return once the commit is
        durable; return what *fn* returned.  Raises what *fn* raised (what it wrote
        is undone), the commit's error, or the error of the fsync that covered it."""
        with self._lock:
            try:
                self._begin()
                value = fn()
            except BaseException:
                self._lost()
                self._commit()  # (what an eviction or a wait for room committed stays)
                raise
            self._commit()
            self.appends += 1
            if self._sync is None:
                return value
            ticket = self._commits()
        self.wait_durable(ticket)
        return value

    def wait_durable(self, ticket: int) -> None:
        """Return once commit number *ticket* is durable: an fsync that started after
        it was made has finished (run here, or by another appender).

        Raises:
            OSError: the fsync that covered it failed.
        """
        waiter = None
        with self._mutex:
            if self._synced >= ticket:
                return
            if self._syncing:
                waiter = _Waiter(ticket)
                self._waiting.append(waiter)
            else:
                self._syncing = True
        if waiter is not None:
            waiter.wake.acquire()  # covered, or made the syncer
            if not waiter.lead:
                if waiter.error is not None:
                    raise waiter.error
                return
        self._sync_round()

    def _sync_round(self) -> None:
        """Run one fsync as the syncer, wake the appends it covered, and pass the role
        to the oldest append left waiting (or give it up)."""
        target = self._commits()  # every commit counted so far is in the WAL
        assert self._sync is not None
        try:
            self._sync()
        except Exception as exc:  # the fsync failed: so does every append it covered
            self._done(target, exc)
            raise
        except BaseException:  # interrupted: nobody else fails, the next waiter syncs
            self._done(0, None)
            raise
        self._done(target, None)

    def _done(self, target: int, error: BaseException | None) -> None:
        """After the fsync that covered commits up to *target* (0: none), failed with
        *error* or not: wake the waiters it covered, hand the syncer role on."""
        with self._mutex:
            if target and error is None:
                self.fsyncs += 1
                if target > self._synced:
                    self._synced = target
            waiting = self._waiting
            covered = [w for w in waiting if w.ticket <= target] if target else []
            if covered:
                waiting = self._waiting = [w for w in waiting if w.ticket > target]
            if waiting:
                nxt = waiting.pop(0)
                nxt.lead = True
                nxt.wake.release()
            else:
                self._syncing = False
        for w in covered:
            w.error = error
            w.wake.release()
