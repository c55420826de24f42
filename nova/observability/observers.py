"""The one seam tracing and the audit trail hook into: :class:`Observers`.

An *observer* (a :class:`~nova.observability.tracing.Tracing`, an
:class:`~nova.observability.audit.AuditTrail`) sees:

* ``send(event, destination, component) -> token`` (only if its ``producer``
  attribute is true or missing): an event entering an Emitter
  (``emit``/``emit_async``/``aemit``; destination = event type) or a Bus (``publish``;
  destination = topic), in the sending thread; ``sent(token, partition, exc)`` when the
  intake returned.
* ``begin(event, listener_id, destination, partition, group, attempt) -> token``: one
  listener call (one delivery attempt) is about to start, on the calling thread;
  ``end(token, exc)`` right after it (``exc`` is ``None`` on success);
  ``settle(token, outcome)`` once what happens to a failed attempt is known
  (``retry_scheduled``, ``dead_lettered``, ``error``, ``dropped``...); a successful
  attempt is settled ``ok`` by ``end``.

Optional, the batch form: an observer with ``record_calls(start, events, listener_ids,
ends, errors=None)`` (the AuditTrail; not Tracing, which needs a span around each call)
that observes an Emitter alone takes its workers' calls on plain sync routes in one call
per worker batch instead of ``begin``/``end`` per call: call *i* called
``listener_ids[i]`` with ``events[i]`` and ended at ``ends[i]`` (``perf_counter``
readings, a list or an ``array('d')``), it
started where the call before it ended (the first at *start*), and *errors* lists the
``(i, exc)`` of the calls that raised (see ``Dispatcher.deliver_batch_recorded``).
:class:`Observers` has no batch form: with two observers every call is observed singly.

Components hold ``None`` when nothing observes them: their fast paths (chosen when the
observers change, never per event) stay exactly as they are.  :class:`Observers`
fans one call out to several observers; an observer that raises is logged on
``nova.observability`` and never disturbs delivery.

.. versionadded:: 0.3
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ("Observers", "OUTCOMES", "plus", "check")

_log = logging.getLogger("nova.observability")

#: The outcomes of one delivery attempt.
OUTCOMES = ("ok", "error", "retry_scheduled", "dead_lettered", "rejected_by_circuit", "timeout", "dropped")


class Observers:
    """A fixed tuple of observers behind the observer calls (see the module)."""

    __slots__ = ("items", "producer")

    def __init__(self, items: tuple[Any, ...]) -> None:
        self.items = items
        #: Whether any of them wants ``send``/``sent`` (an AuditTrail does not).
        self.producer = any(getattr(o, "producer", True) for o in items)

    def send(self, event: Any, destination: str, component: str) -> list[Any]:
        """An event enters *component* for *destination*; returns the tokens for :meth:`sent`."""
        out = []
        for o in self.items:
            try:
                out.append(o.send(event, destination, component))
            except Exception:
                _log.exception("nova: observer %r failed in send", o)
                out.append(None)
        return out

    def sent(self, tokens: list[Any], partition: int | None, exc: BaseException | None) -> None:
        """The intake of the event of *tokens* returned (or raised *exc*)."""
        for o, t in zip(self.items, tokens):
            if t is not None:
                try:
                    o.sent(t, partition, exc)
                except Exception:
                    _log.exception("nova: observer %r failed in sent", o)

    def begin(self, event: Any, listener_id: str, destination: str, partition: int | None,
              group: str | None, attempt: int) -> list[Any]:
        """One delivery attempt starts; returns the tokens for :meth:`end`."""
        out = []
        for o in self.items:
            try:
                out.append(o.begin(event, listener_id, destination, partition, group, attempt))
            except Exception:
                _log.exception("nova: observer %r failed in begin", o)
                out.append(None)
        return out

    def end(self, tokens: list[Any], exc: BaseException | None, outcome: str | None = None) -> None:
        """The attempt of *tokens* returned (``exc is None``: it is settled ``ok``) or
        raised *exc* (settled now with *outcome* if given, else by :meth:`settle`)."""
        for o, t in zip(self.items, tokens):
            if t is not None:
                try:
                    o.end(t, exc, "ok" if exc is None else outcome)
                except Exception:
                    _log.exception("nova: observer %r failed in end", o)

    def settle(self, tokens: list[Any], outcome: str) -> None:
        """What happened to a failed attempt is known: *outcome*."""
        for o, t in zip(self.items, tokens):
            if t is not None:
                try:
                    o.settle(t, outcome)
                except Exception:
                    _log.exception("nova: observer %r failed in settle", o)

    def __repr__(self) -> str:
        return f"<Observers {self.items!r}>"


def check(observer: Any) -> Any:
    """*observer* if it has the observer calls, else TypeError."""
    for name in ("send", "sent", "begin", "end", "settle"):
        if not callable(getattr(observer, name, None)):
            from nova.errors import type_name

            raise TypeError(f"Expected a Tracing or an AuditTrail, got {type_name(observer)}")
    return observer


def plus(current: Any, observer: Any) -> Any:
    """*current* (None, one observer or an :class:`Observers`) with *observer* added,
    once (adding it again changes nothing).  A lone observer is returned as is: the
    components call it directly, without the fan-out."""
    check(observer)
    if current is None:
        return observer
    items = current.items if isinstance(current, Observers) else (current,)
    if any(o is observer for o in items):
        return current
    return Observers((*items, observer))
