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

__all__ = ("DEAD_LETTER_STREAM", "DEAD_LETTER_TYPE", "ORIGINAL_TYPE_KEY", "METADATA_KEYS",
           "dead_letter_event", "restore_event", "qualified_name", "send")

#: The EventStore stream dead letters are appended to.
DEAD_LETTER_STREAM = "nova.deadletter"
#: The event type of a stored dead letter (its own type is kept in :data:`ORIGINAL_TYPE_KEY`).
DEAD_LETTER_TYPE = "nova.deadletter"
#: The metadata key holding a stored dead letter's original event type.
ORIGINAL_TYPE_KEY = "nova.original_type"

#: The metadata keys :func:`dead_letter_event` adds (a redrive removes them again).
METADATA_KEYS = ("nova.error.type", "nova.error.message", "nova.attempts", "nova.listener",
                 "nova.topic", "nova.deadletter.timestamp", ORIGINAL_TYPE_KEY)


def qualified_name(exc: BaseException) -> str:
    """``module.QualName`` of *exc*'s class (``builtins`` left out)."""
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_event(dl: Any) -> Any:
    """The event stored for *dl*: its event with the dead-letter metadata added.

    Keys: ``nova.error.type`` (qualified class name), ``nova.error.message``,
    ``nova.attempts``, ``nova.listener``, ``nova.deadletter.timestamp`` (ns),
    ``nova.original_type`` and, when known, ``nova.topic``.  Its type is
    :data:`DEAD_LETTER_TYPE` (``"nova.deadletter"``), so a query by type never mistakes
    it for a business event; id, data and timestamp are the event's own.
    :func:`restore_event` gives the original event back.

    .. versionchanged:: 0.2
        The type is ``"nova.deadletter"``, the original in ``nova.original_type``.
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
    meta[ORIGINAL_TYPE_KEY] = ev.type
    return ev.replace(type=DEAD_LETTER_TYPE, metadata=meta)


def restore_event(stored: Any) -> Any:
    """The original event of a stored dead letter: its type back (entries written
    before 0.2 kept theirs) and the dead-letter metadata removed."""
    meta = stored.metadata
    clean = {k: v for k, v in meta.items() if k not in METADATA_KEYS}
    return stored.replace(type=meta.get(ORIGINAL_TYPE_KEY, stored.type), metadata=clean)


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
