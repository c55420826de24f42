"""Kernel locks after ``fork()``: the one registry both twins use.

A child process starts with one thread, the one that forked, and with copies of every
lock and condition variable as they were at that instant: a mutex another parent
thread held stays locked for ever, and glibc's condition variables still count
waiters that do not exist in the child (signalling one can block for ever).  Every
kernel object that owns a lock registers here when it is built (:func:`track`); in
the child, before any Python code of the program runs again, each live one gets
``_after_fork_in_child()``, which re-creates its locks and condition variables in
place and forgets its waiters.  The data stays: an inherited :class:`RingQueue` keeps
its items, capacity, counters and closed state, with nobody waiting on it; a
``TokenBucket`` keeps its tokens; a ``ColumnLog`` keeps its rows.

What the child cannot get back is work another parent thread was doing at the fork:
that thread does not exist in the child.  A queue or bucket is consistent whatever
those threads were doing (their state changes are atomic); a ``ColumnLog`` (a store)
that another thread was appending to at that very instant may miss that append.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol

__all__ = ("track", "reinit_lock")


class _Forkable(Protocol):
    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()


def track(obj: _Forkable) -> None:
    """Have ``obj._after_fork_in_child()`` called in every child forked from now on
    (while *obj* is alive)."""
    _live.add(obj)


def reinit_lock(lock: Any) -> None:
    """Re-create a ``threading.Lock``/``RLock``/``Condition`` in place, free and with
    no waiters (CPython's own after-fork method, as :mod:`threading` uses)."""
    lock._at_fork_reinit()


def _after_fork_in_child() -> None:
    for obj in list(_live):
        obj._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
