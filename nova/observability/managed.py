"""Observing a ListenerManager's listeners (tracing, audit) at its one attempt seam.

Every attempt of a :class:`~nova.listener.ManagedListener`, whatever the path (the
Emitter's ``handle``, the Bus's ``run_inline``, a scheduled retry, :meth:`process`),
is one call of its ``_call_sync`` or ``_acall``.  :func:`observe` replaces those two on
the instance by wrappers that run the attempt inside the observers' ``begin``/``end``;
the listener's fast path is turned off while observed (``ListenerState._compute_fast``).

Outcomes: ``ok``; ``rejected_by_circuit`` (the breaker refused the call) and
``timeout`` at once; another failure is settled when what follows is known:
``retry_scheduled`` when the next attempt for that event starts, ``dead_lettered`` (or
``dropped`` with dead letters disabled) by :func:`dead_lettered`, called from the dead-
letter decision.  The attempt number of an event is kept only between a failed attempt
and the next one (or its dead letter): bounded by the retries pending.

.. versionadded:: 0.3
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ("observe", "dead_lettered")


def _outcome(err: BaseException) -> str | None:
    from nova.errors import CircuitOpen, Timeout

    if isinstance(err, CircuitOpen):
        return "rejected_by_circuit"
    if isinstance(err, Timeout):
        return "timeout"
    return None


def observe(m: Any, obs: Any) -> None:
    """Run every attempt of managed listener *m* inside *obs* from now on."""
    lid = m.id
    lock = threading.Lock()
    failed: dict[Any, tuple[int, Any]] = {}  # event id -> (attempts made, tokens of the last failed one)
    call_sync = type(m)._call_sync.__get__(m)
    acall = type(m)._acall.__get__(m)

    def start(event: Any, retry: Any) -> Any:
        with lock:
            prev = failed.pop(event.id, None)
        if prev is not None and prev[1] is not None:
            obs.settle(prev[1], "retry_scheduled")
        attempt = retry.attempts + 1 if retry is not None else (prev[0] + 1 if prev is not None else 1)
        return attempt, obs.begin(event, lid, getattr(event, "type", "?"), None, None, attempt)

    def finish(event: Any, attempt: int, tokens: Any, err: BaseException | None) -> None:
        if err is None:
            obs.end(tokens, None)
            return
        out = _outcome(err)
        obs.end(tokens, err, out)
        with lock:
            failed[event.id] = (attempt, None if out is not None else tokens)

    def observed_call_sync(event: Any, retry: Any = None) -> BaseException | None:
        if m.is_async:  # it runs _acall, observed itself
            inner: BaseException | None = call_sync(event, retry)
            return inner
        attempt, tokens = start(event, retry)
        try:
            err: BaseException | None = call_sync(event, retry)
        except BaseException as exc:
            obs.end(tokens, exc, "error")
            raise
        finish(event, attempt, tokens, err)
        return err

    async def observed_acall(event: Any, retry: Any = None) -> BaseException | None:
        attempt, tokens = start(event, retry)
        try:
            err: BaseException | None = await acall(event, retry)
        except BaseException as exc:
            obs.end(tokens, exc, "error")
            raise
        finish(event, attempt, tokens, err)
        return err

    def settle_dead(event: Any, enabled: bool) -> None:
        with lock:
            prev = failed.pop(getattr(event, "id", None), None)
        if prev is not None and prev[1] is not None:
            obs.settle(prev[1], "dead_lettered" if enabled else "dropped")

    m._call_sync = observed_call_sync
    m._acall = observed_acall
    m._obs_dead = settle_dead
    m._obs = obs
    m._fast = False


def dead_lettered(m: Any, event: Any) -> None:
    """The dead-letter decision for *event* by observed listener *m* was taken."""
    m._obs_dead(event, m.config.dead_letter.enabled)
