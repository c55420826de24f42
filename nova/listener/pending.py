"""A scheduled retry of a managed listener (:class:`Retry`) and the states it moves through."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from typing import TYPE_CHECKING, Any

from nova.resilience.scheduler import Entry

if TYPE_CHECKING:
    from nova.listener.retries import ListenerRetries

__all__ = ("Retry", "IN_TASK", "PENDING", "CALLING", "DECIDING", "LETTERING", "DELIVERING", "DONE", "CLAIMED",
           "CLAIMABLE")

#: The scheduled task (a :class:`Retry`) that runs in this thread or asyncio task.
IN_TASK: contextvars.ContextVar[Any] = contextvars.ContextVar("nova_listener_task", default=None)

# The life of one scheduled retry (an accepted event with attempts left).  Every change
# happens under the manager's ``_rcond``, so that stop() and the thread running the retry
# never both decide its outcome: whoever moves it out of a claimable state owns it.
PENDING = 0  # scheduled (in the timer heap, or handed to a runner, pool or loop, not started)
CALLING = 1  # its listener call runs
DECIDING = 2  # the call failed; retry_if / the next delay are being worked out
LETTERING = 3  # its dead letter is made; the thread that ran it has not begun delivering it
DELIVERING = 6  # that thread runs the dead-letter path (on_error, handler, store) now
DONE = 4  # handled, rescheduled as a new retry, or dead-lettered
CLAIMED = 5  # taken by stop(): dead-lettered there; whatever the call does later is ignored
CLAIMABLE = (PENDING, CALLING, DECIDING)
# When its time is up, stop() also takes over a LETTERING retry's dead letter and delivers
# it itself, so no dead-letter call of a retry it covered starts after it returned.


class Retry:
    """One scheduled retry of *event* by *managed*; the scheduler's entry calls it.

    ``attempts`` and ``error`` describe the calls made so far (updated when a call
    fails); ``due`` is its time on the manager's clock; ``fut`` the future of an async
    attempt's task (cancelled when stop() claims it mid-call); ``letter`` its dead letter
    once it is LETTERING."""

    __slots__ = ("managed", "event", "attempts", "error", "topic", "loop", "state", "due", "entry", "fut",
                 "letter")

    def __init__(self, managed: ListenerRetries, event: Any, attempts: int, error: BaseException,
                 topic: str | None, loop: asyncio.AbstractEventLoop | None, due: float) -> None:
        self.managed = managed
        self.event = event
        self.attempts = attempts
        self.error = error
        self.topic = topic
        self.loop = loop
        self.state = PENDING
        self.due = due
        self.entry: Entry | None = None
        self.fut: concurrent.futures.Future[Any] | None = None
        self.letter: Any = None  # its DeadLetter once LETTERING

    def __call__(self) -> Any:
        return self.managed._run_retry(self)


