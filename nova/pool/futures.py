"""The pool's futures: real :class:`concurrent.futures.Future` objects that cost almost
nothing until somebody looks at one (see the comment on :class:`_PoolFuture`)."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any

__all__ = ("_DONE_COND", "_PoolFuture", "_notify")


# A pool future is a real ``concurrent.futures.Future`` that costs almost nothing until
# somebody looks at it.  A stock Future builds a threading.Condition and two lists in
# __init__, which costs more than running a trivial task.  Here:
#
# * ``_state``/``_result``/``_exception`` start as class attributes (PENDING, None,
#   None); the lists and the condition are made on first access (``__getattr__``).
# * The claims that matter are single ``dict.setdefault`` calls, atomic under the GIL:
#   the worker starts a task by claiming ``_state`` = RUNNING (``cancel`` claims it =
#   CANCELLED, so exactly one of them wins); after writing the outcome it
#   claims ``_condition`` with the shared ``_DONE_COND``.  If a waiter had already
#   made a real condition (result(), add_done_callback, concurrent.futures.wait...),
#   the worker notifies through it exactly as Future.set_result does; otherwise the
#   future is finished and later callers find the shared condition and a final state.
# * ``_state`` is read through a property: a future whose ``_condition`` is the shared
#   ``_DONE_COND`` (claimed by the worker after it wrote the outcome) reads FINISHED,
#   so claiming it publishes the outcome in one atomic step.  When a waiter made a real
#   condition first, the worker writes FINISHED while holding that condition, as
#   Future.set_result does: ``concurrent.futures.wait`` reads every state twice under
#   the futures' conditions and must see the same value both times (a FINISHED written
#   between its two reads made it count one finished future twice and wait for ever).
_DONE_COND = threading.Condition(threading.RLock())


def _get_state(self: Any) -> str:
    d = self.__dict__
    state: str = d.get("_state", PENDING)
    if state is RUNNING and d.get("_condition") is _DONE_COND:
        return FINISHED  # the worker claimed the shared condition: the outcome is written
    return state


def _set_state(self: Any, value: str) -> None:
    self.__dict__["_state"] = value


class _PoolFuture(Future[Any]):
    _state = property(_get_state, _set_state)
    _result = None
    _exception = None
    __init__ = object.__init__

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not made yet.
        if name == "_condition":
            return self.__dict__.setdefault("_condition", threading.Condition())
        if name == "_waiters" or name == "_done_callbacks":
            return self.__dict__.setdefault(name, [])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def cancel(self) -> bool:
        """Cancel the task if it has not started; True if it is cancelled."""
        # A str equal to CANCELLED but a new object, so we know whether our claim won.
        mark = "".join(("CANC", "ELLED"))
        with self._condition:
            state = self.__dict__.setdefault("_state", mark)
            if state is not mark:
                return state in (CANCELLED, CANCELLED_AND_NOTIFIED)
            self._condition.notify_all()
        self._invoke_callbacks()
        return True


def _notify(fut: _PoolFuture) -> None:
    """After the outcome was written and a real condition found (a waiter made it):
    write FINISHED holding that condition, wake its waiters and run the done-callbacks,
    as Future.set_result/set_exception do."""
    cond = fut._condition
    with cond:
        fut.__dict__["_state"] = FINISHED
        for waiter in fut._waiters:
            if fut._exception is None:
                waiter.add_result(fut)
            else:
                waiter.add_exception(fut)
        cond.notify_all()
    fut._invoke_callbacks()
