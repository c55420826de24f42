"""Group commit for :class:`~nova.store.sqlite_log.SQLiteLog`: a commit leader writes
the appends of many threads in one transaction, committed once, fsynced once.

An appender checks and encodes its events without any lock, then queues its append
(a callable that writes it, store lock held) and waits.  When no leader is at work,
the first to queue becomes the leader: it waits (at most :data:`GATHER_SECONDS`) for
the appends other threads already started to be queued, takes everything queued,
and under the store lock runs each append in queue order in one write transaction
(positions and sequences are assigned in that order; single-event rows go to the
file in one multi-row INSERT), commits once and hands leadership to the oldest
append queued meanwhile, so the next group is written while this one is fsynced.
With ``durability="full"`` it then makes the commit durable: one fsync of the WAL
at a time, covering every commit made before it started (it waits, bounded, for the
appends already started to be committed first), so one fsync serves several groups
when they come fast.  Then it wakes each waiter with its own result or exception.

Every append is all or nothing by itself, and fails alone: its events are checked
and encoded before it is queued, stream limits and restored positions are checked
before it writes, and rows of more than one statement are written in a savepoint.
What the database itself refuses is handled by what it undid: a statement that
failed undid only that append's rows; a transaction SQLite rolled back (I/O error,
a full disk) undid the group's earlier uncommitted appends too, which run again in
a new transaction; a failed commit fails every append it would have committed (the
transaction is rolled back and the index rebuilt from the file), while appends an
earlier commit of the same group made permanent (an eviction commits at once)
succeed; a failed fsync fails every append it covered.

.. versionadded:: 0.2
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ("GroupCommit", "GATHER_SECONDS", "RunAlone")

#: How long a leader about to commit with an fsync waits at most for the appends being
#: encoded by other threads, so that one fsync covers them too.
GATHER_SECONDS = 0.001


class RunAlone(Exception):
    """Raised by an append run in a group, before it writes anything, when it may have
    to wait (for a blocking subscriber to make room: waiting there while leading a
    group would hold up every other append of the group, among them maybe the very
    consumer it waits for).  Its owner then runs it alone (:meth:`GroupCommit.run_alone`)."""


class _Append:
    """One queued append: what to run, then its outcome.  Its owner sleeps on
    :attr:`wake` (acquired at creation) until it is done or made the next leader."""

    __slots__ = ("fn", "value", "error", "after", "done", "lead", "wake", "alone")

    def __init__(self, fn: Callable[[bool], Any]) -> None:
        self.fn = fn
        self.value: Any = None
        self.error: BaseException | None = None
        self.after = 0  # commits made when it was written (see GroupCommit._write)
        self.done = False
        self.lead = False
        self.alone = False  # it raised RunAlone: its owner runs it by itself
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit:
    """The commit leader of one connection (see the module docstring).

    Leadership passes from one group's leader to the oldest queued append as soon as
    the group is committed, so the next group is written while this one is fsynced.
    One fsync runs at a time; it covers every commit made before it started, and
    waits (at most :data:`GATHER_SECONDS`) for the appends already started to be
    committed by the next leader first.  A leader whose commit an fsync already
    covered returns without one.

    Args:
        lock: the store lock, held by the leader while it writes and commits.
        begin: open the write transaction (lock held), before the group's appends.
        commit: commit the open write transaction, if any (lock held); on failure it
            rolls back, rebuilds what it must and raises.
        commits: the number of successful commits so far (lock held to change it).
        lost: after an append raised, whether the open transaction was rolled back
            with it (say by SQLite after an I/O error); it then recovers (lock held)
            and the group's earlier uncommitted appends fail with that error.
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
        #: Groups committed, appends they held, fsyncs run (for tests and stats).
        self.groups = 0
        self.appends = 0
        self.fsyncs = 0
        self.after_fork()

    def after_fork(self) -> None:
        """A fresh state (also in a forked child: nobody waits or leads any more)."""
        self._mutex = threading.Lock()
        self._synced_cond = threading.Condition(self._mutex)  # leaders waiting for an fsync
        self._settle = threading.Condition(self._mutex)  # the syncer waiting for commits
        self._queue: list[_Append] = []
        self._leading = False
        self._synced = 0  # commits made durable
        self._syncing = False
        self._failed: tuple[int, int, BaseException] | None = None
        # appends started (enter()) and settled (written, failed or left): the next
        # value of each counter; next() on itertools.count is atomic, no lock needed
        self._entered = itertools.count(1)
        self._settled = 0
        self._sync_waits = False
        self._arrived = 0  # of those, appends queued or left
        self._gathering = False  # a leader waits for _arrived
        self._gather = threading.Condition(self._mutex)

    def enter(self) -> None:
        """An append starts encoding (no lock taken): an fsync about to start waits
        (briefly) for it to be committed too.  Followed by :meth:`run` or :meth:`leave`."""
        next(self._entered)

    def leave(self) -> None:
        """The append started by :meth:`enter` will not be queued (it failed early)."""
        with self._mutex:
            self._arrived_more()
            self._settled_more(1)

    def _arrived_more(self) -> None:
        self._arrived += 1
        if self._gathering:
            self._gather.notify()

    def _settled_more(self, k: int) -> None:
        self._settled += k
        if self._sync_waits:
            self._settle.notify()

    def run(self, fn: Callable[[bool], Any], entered: bool = True) -> Any:
        """Queue *fn* (an append: writes its rows, store lock held, transaction open;
        called with ``alone=False``) and return its result once the group that ran
        it is committed (and durable with an fsync); raise what *fn* raised, or the
        commit's or fsync's error.  When *fn* raises :class:`RunAlone`, it runs again
        by itself (:meth:`run_alone`).  *entered*: :meth:`enter` was called for it."""
        if not entered:
            next(self._entered)
        req = _Append(fn)
        with self._mutex:
            self._queue.append(req)
            self._arrived_more()
            if self._leading:
                lead = False
            else:
                self._leading = lead = True
        if not lead:
            req.wake.acquire()  # done, or made the next leader
            lead = req.lead
        if lead:
            self._lead()
        if req.alone:
            return self.run_alone(fn)
        if req.error is not None:
            raise req.error
        return req.value

    def run_alone(self, fn: Callable[[bool], Any]) -> Any:
        """Run *fn* (``alone=True``) by itself under the store lock, commit it and
        make it durable as :meth:`run` does, outside any group: it may wait (the store
        lock released meanwhile) without holding up other appends."""
        req = _Append(fn)
        with self._lock:
            try:
                self._begin()
                req.value = fn(True)
            except BaseException:
                self._lost()
                self._commit()  # (what an eviction or a wait for room committed stays)
                raise
            self._commit()
            ticket = self._commits() if self._sync is not None else 0
        if ticket:
            self._flush(ticket, [req])
            if req.error is not None:
                raise req.error
        return req.value

    def _lead(self) -> None:
        """Take every queued append and write, commit and fsync them as one group,
        then wake their owners (this thread's own append is among them)."""
        batch: list[_Append] = []
        try:
            try:
                with self._mutex:
                    goal = next(self._entered)  # (a count of its own, arrived at once)
                    self._arrived += 1
                    self._settled += 1
                    if self._arrived < goal:
                        # the appends being encoded join this group (bounded wait)
                        self._gathering = True
                        self._gather.wait_for(lambda: self._arrived >= goal, GATHER_SECONDS)
                        self._gathering = False
                    batch, self._queue = self._queue, []
                ticket = self._write(batch)
            finally:
                self._hand_over()
            if ticket:
                self._flush(ticket, batch)
        except BaseException as exc:  # the leader itself was interrupted
            for r in batch:
                if r.error is None:
                    r.error = exc
            raise
        finally:
            for r in batch:
                r.done = True
                r.wake.release()  # (the leader's own: nobody waits on it)

    def _hand_over(self) -> None:
        """Leadership goes to the oldest queued append (or to the next one to come)."""
        with self._mutex:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.wake.release()
            else:
                self._leading = False

    def _write(self, batch: list[_Append]) -> int:
        """Run *batch* in queue order in one transaction and commit it (store lock
        held meanwhile); return the commit number an fsync must cover (0: none)."""
        try:
            with self._lock:
                try:
                    self._begin()
                except BaseException as exc:  # busy past the timeout, I/O error: all fail
                    for r in batch:
                        r.error = exc
                    return 0
                for i, r in enumerate(batch):
                    if not self._run_one(r):
                        continue
                    # the transaction went with r: the group's earlier appends not yet
                    # committed are lost too; they run again, in order, in a new one
                    at = self._commits()
                    redo = [p for p in batch[:i] if p.error is None and p.after == at]
                    if redo:
                        try:
                            self._begin()
                        except BaseException as exc:
                            for p in redo:
                                p.error = exc
                            redo = []
                        for p in redo:
                            if self._run_one(p):  # lost again: these all fail
                                for q in redo:
                                    if q.error is None:
                                        q.error = p.error
                                break
                try:
                    self._commit()
                except BaseException as exc:
                    at = self._commits()
                    for r in batch:
                        if r.error is None and r.after == at:  # not made permanent by an earlier commit
                            r.error = exc
                written = sum(1 for r in batch if r.error is None and not r.alone)
                self.groups += 1
                self.appends += written
                return self._commits() if written and self._sync is not None else 0
        finally:
            with self._mutex:
                self._settled_more(len(batch))

    def _run_one(self, r: _Append) -> bool:
        """Run one append (lock held); True when it failed and took the open
        transaction with it (the log has recovered: no transaction is open)."""
        try:
            r.value = r.fn(False)
            r.error = None
        except RunAlone:
            r.alone = True  # nothing written: its owner runs it by itself
            r.after = self._commits()
            return False
        except BaseException as exc:
            r.error = exc
            r.after = self._commits()
            return self._lost()
        r.after = self._commits()
        return False

    def _flush(self, ticket: int, batch: list[_Append]) -> None:
        """Return once commit *ticket* is durable: an fsync that started after it
        finished, run here or by another leader.  A failed fsync fails the appends
        of *batch* it covered."""
        cond = self._synced_cond
        exc: BaseException | None = None
        with self._mutex:
            while True:
                failed = self._failed
                if failed is not None and failed[0] <= ticket <= failed[1]:
                    exc = failed[2]
                    break
                if self._synced >= ticket:
                    return
                if not self._syncing:
                    self._syncing = True
                    break
                cond.wait()
            if exc is None:
                # the appends started before this fsync are committed first by the
                # next leader (bounded wait), so that it covers them too
                goal = next(self._entered)  # (a count of its own, arrived and settled at once)
                self._arrived += 1
                self._settled += 1
                if self._settled < goal:
                    self._sync_waits = True
                    self._settle.wait_for(lambda: self._settled >= goal, GATHER_SECONDS)
                    self._sync_waits = False
                target = self._commits()  # every commit so far is in the WAL: one fsync covers them
        if exc is None:
            assert self._sync is not None
            try:
                self._sync()
            except BaseException as e:
                exc = e
                with self._mutex:
                    self._failed = (self._synced + 1, target, e)
                    self._syncing = False
                    cond.notify_all()
            else:
                with self._mutex:
                    self.fsyncs += 1
                    self._synced = max(self._synced, target)
                    self._syncing = False
                    cond.notify_all()
                return
        for r in batch:
            if r.error is None:
                r.error = exc
