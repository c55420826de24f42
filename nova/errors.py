"""The nova exception hierarchy.

Every exception nova raises on purpose is a :class:`NovaError`.  Where a builtin
exception means the same thing, the nova class also inherits it, so existing
``except ValueError`` / ``except TimeoutError`` handlers keep working:

* :class:`ValidationError` is a :class:`ValueError`;
* :class:`Timeout` is a :class:`TimeoutError`;
* :class:`BufferFull` and :class:`QueueEmpty` mirror :mod:`queue`'s ``Full``/``Empty``;
* :class:`PatternError` (a regex that does not compile) is a :class:`ValidationError`
  and a :class:`re.error`.

Messages say what was expected and what came, e.g.
``Expected a non-empty str event type, got int``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import queue as _queue
import re as _re

__all__ = (
    "NovaError",
    "ValidationError",
    "ClosedError",
    "EmitterClosed",
    "BusClosed",
    "StoreClosed",
    "QueueClosed",
    "PoolClosed",
    "BufferFull",
    "QueueEmpty",
    "StreamFull",
    "TopicNotFound",
    "TopicExists",
    "SubscriptionNotFound",
    "ListenerNotFound",
    "Timeout",
    "CircuitOpen",
    "RetryLimitExceeded",
    "StoreFileError",
    "EventEvicted",
    "StoreUnavailable",
    "StoreAuthError",
    "StoreLayoutError",
    "PatternError",
    "type_name",
)


def type_name(value: object) -> str:
    """Return the short type name of *value*, for error messages."""
    return type(value).__name__


class NovaError(Exception):
    """Base class of every error nova raises on purpose."""


class ValidationError(NovaError, ValueError):
    """An argument or an event did not have the expected shape or value."""


class ClosedError(NovaError):
    """Base class for 'this object was closed and takes no more work'."""


class EmitterClosed(ClosedError):
    """The emitter was shut down; it accepts no more events."""


class BusClosed(ClosedError):
    """The bus was shut down; it accepts no more events."""


class StoreClosed(ClosedError):
    """The event store was closed."""


class QueueClosed(ClosedError):
    """The queue was closed: no more puts, and gets fail once it is drained."""


class PoolClosed(ClosedError):
    """The worker pool was closed or is draining; it accepts no more tasks."""


class BufferFull(NovaError, _queue.Full):
    """A bounded buffer was full and the caller asked not to wait."""


class QueueEmpty(NovaError, _queue.Empty):
    """A queue was empty and the caller asked not to wait."""


class StreamFull(NovaError):
    """A stream reached ``max_events_per_stream`` with ``on_full="reject"``."""


class TopicNotFound(NovaError, LookupError):
    """The named topic does not exist."""


class TopicExists(NovaError):
    """A topic with that name already exists."""


class SubscriptionNotFound(NovaError, LookupError):
    """The subscription is unknown (already removed, or never made here)."""


class ListenerNotFound(NovaError, LookupError):
    """No listener is registered under that id."""


class Timeout(NovaError, TimeoutError):
    """An operation did not complete within its timeout."""


class CircuitOpen(NovaError):
    """A circuit breaker is open and the call was rejected without running."""


class RetryLimitExceeded(NovaError):
    """Every allowed attempt failed; ``__cause__`` is the last error."""

    def __init__(self, message: str, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts


class StoreFileError(NovaError):
    """A store file cannot be opened as asked: not a nova store, written by a newer
    schema, recorded with another codec, or corrupt.  The file is left untouched."""


class EventEvicted(NovaError, LookupError):
    """A durable store's batch was asked for a payload evicted since it was taken."""


class StoreUnavailable(NovaError, ConnectionError):
    """A networked store (Redis) could not be reached: refused connection, timeout, or
    the server went away and did not come back within the retries.  Retry later."""


class StoreAuthError(NovaError, PermissionError):
    """A networked store refused the credentials (wrong password or user, or none given)."""


class StoreLayoutError(StoreFileError):
    """A networked store's keys are not a nova store's: a key of the wrong type, another
    format, or a codec other than the one recorded.  Nothing was written."""


class PatternError(ValidationError, _re.error):
    """A topic pattern is not a valid regular expression.  Also a :class:`re.error`, with
    its ``pattern`` and ``pos`` attributes, so ``except re.error`` keeps working."""

    def __init__(self, message: str, pattern: str | bytes | None = None, pos: int | None = None) -> None:
        _re.error.__init__(self, message)  # msg, and lineno/colno None
        self.pattern = pattern
        self.pos = pos
