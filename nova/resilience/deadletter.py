"""The one dead-letter path: handler, store stream and logging, for every caller.

The Bus and the ListenerManager both send dead letters through :func:`send`, so a dead
letter behaves identically wherever it happens:

* a disabled config drops the event (the caller still counts it);
* the handler is called once with the :class:`~nova.DeadLetter`; an exception it raises
  (any, ``BaseException`` included: a sink must never kill a delivery thread) is logged
  on the caller's logger and counted;
* with a store, the event is appended to stream :data:`DEAD_LETTER_STREAM` with the
  dead-letter metadata (:func:`dead_letter_event`); a failing append is logged and
  counted the same way;
* with neither a handler nor a store, a WARNING is logged for each dead letter, so an
  event is never dropped without a trace.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ("DEAD_LETTER_STREAM", "METADATA_KEYS", "dead_letter_event", "qualified_name", "send")

#: The EventStore stream dead letters are appended to.
DEAD_LETTER_STREAM = "nova.deadletter"

#: The metadata keys :func:`dead_letter_event` adds (a redrive removes them again).
METADATA_KEYS = ("nova.error.type", "nova.error.message", "nova.attempts", "nova.listener",
                 "nova.topic", "nova.deadletter.timestamp")


def qualified_name(exc: BaseException) -> str:
    """``module.QualName`` of *exc*'s class (``builtins`` left out)."""
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_event(dl: Any) -> Any:
    """The event stored for *dl*: its event with the dead-letter metadata added.

    Keys: ``nova.error.type`` (qualified class name), ``nova.error.message``,
    ``nova.attempts``, ``nova.listener``, ``nova.deadletter.timestamp`` (ns) and, when
    known, ``nova.topic``.  Id, type, data and timestamp are the event's own.
    """
    ev = dl.event
    meta = dict(ev.metadata)
    meta["nova.error.type"] = qualified_name(dl.error)
    meta["nova.error.message"] = str(dl.error)
    meta["nova.attempts"] = str(dl.attempts)
    meta["nova.listener"] = dl.listener_id
    meta["nova.deadletter.timestamp"] = str(dl.timestamp)
    if dl.topic is not None:
        meta["nova.topic"] = dl.topic
    return ev.replace(metadata=meta)


def send(config: Any, dl: Any, log: logging.Logger, owner: str) -> int:
    """Deliver dead letter *dl* to the sinks of *config* (a DeadLetterConfig).

    *owner* names the caller in log lines (``"listener 'x'"``, ``"topic 'orders'"``).
    Returns the number of sinks that failed (0, 1 or 2); never raises what a sink
    raised.
    """
    if not config.enabled:
        return 0
    errors = 0
    handler = config.handler
    store = config.store
    if handler is not None:
        try:
            handler(dl)
        except BaseException:  # noqa: BLE001 - counted and logged, never propagated
            errors += 1
            log.exception("nova: dead-letter handler of %s raised", owner)
    if store is not None:
        try:
            store.append(DEAD_LETTER_STREAM, dead_letter_event(dl))
        except BaseException:  # noqa: BLE001
            errors += 1
            log.exception("nova: could not store a dead letter of %s", owner)
    if handler is None and store is None:
        log.warning("nova: event %s dead-lettered by %s after %d attempt(s): %r",
                    getattr(dl.event, "id", dl.event), owner, dl.attempts, dl.error)
    return errors
