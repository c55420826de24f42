"""The Bus's value types: delivery modes, topic settings, receipts and counters.

.. versionadded:: 0.1
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from nova._util.checks import check_int
from nova.errors import ValidationError, type_name
from nova.resilience.policy import DeadLetterConfig, RetryPolicy
from nova.testing import to_seconds

__all__ = (
    "DeliveryMode",
    "DedupWindow",
    "DEFAULT_DEDUP_WINDOW",
    "TopicConfig",
    "PublishReceipt",
    "BusStats",
    "MAX_TOPIC_NAME",
    "check_mode",
    "check_topic_name",
    "check_group",
)

_WS = re.compile(r"\s")

#: The longest topic name (characters) a Bus accepts, as Kafka's limit.  Topic names
#: may come from untrusted input (``publish`` creates topics), and every
#: ``subscribe_pattern`` regex is matched against each new name: the cap bounds that work.
MAX_TOPIC_NAME = 249


class DeliveryMode(str, enum.Enum):
    """What happens when a subscriber's handler raises.

    * ``AT_MOST_ONCE`` (``"at-most-once"``): the failure is counted (``stats().failed``)
      and the error hooks run; the event is not retried.  Each subscriber calls its
      handler at most once per published event.
    * ``AT_LEAST_ONCE`` (``"at-least-once"``): the failing subscriber alone is called
      again under the topic's :class:`~nova.RetryPolicy`; its partition waits meanwhile,
      so order holds.  When attempts run out (or the error is not retryable) the event
      goes to the topic's dead-letter handler/store and is counted
      (``stats().dead_lettered``).  Never dropped silently; a handler may see an event
      more than once (once per attempt).
    * ``EXACTLY_ONCE`` (``"exactly-once"``): at-least-once, plus dedup by event id per
      subscriber over a bounded window (:class:`DedupWindow`): an id published twice
      (within the window) is processed once; a handler that succeeded for an id is never
      called again for it.  "Exactly once" means exactly one *outcome* per id and
      subscriber in this process: handled, or dead-lettered after its attempts.
    """

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"

    def __str__(self) -> str:
        return self.value


def check_mode(value: object, name: str) -> DeliveryMode:
    """A :class:`DeliveryMode`, or its string value (any case, ``_`` for ``-``)."""
    if isinstance(value, DeliveryMode):
        return value
    if isinstance(value, str):
        try:
            return DeliveryMode(value.lower().replace("_", "-"))
        except ValueError:
            pass
        raise ValueError(
            f"Expected {name} 'at-most-once', 'at-least-once' or 'exactly-once', got {value!r}"
        )
    raise TypeError(f"Expected {name} as a DeliveryMode, got {type_name(value)}")


@dataclass(frozen=True, slots=True)
class DedupWindow:
    """How many / how long event ids are remembered for ``EXACTLY_ONCE`` dedup.

    Args:
        max_ids: a count bound per subscriber.  Alone (``max_age=None``) the window is
            generational: the last ``max_ids`` ids are always remembered, and at most
            ``2 * max_ids`` are kept (older ones are forgotten a generation at a time,
            which keeps the per-event cost to two set lookups).  With ``max_age`` too,
            at most ``max_ids`` are kept, the oldest forgotten first.  ``None`` for no
            count bound.
        max_age: forget ids first seen more than this many seconds ago (float or
            ``timedelta``, measured on the bus clock); ``None`` for no age bound.

    At least one bound must be given.  An id forgotten by the window is treated as new.

    Raises:
        TypeError: a bound has the wrong type.
        ValueError: ``max_ids < 1``, ``max_age <= 0``, or both are ``None``.
    """

    max_ids: int | None = 10_000
    max_age: float | None = None

    def __post_init__(self) -> None:
        if self.max_ids is not None:
            check_int(self.max_ids, "max_ids", 1)
        if self.max_age is not None:
            age = to_seconds(self.max_age, "max_age")
            if not age > 0 or age == float("inf"):
                raise ValueError(f"Expected a finite max_age > 0 seconds, got {self.max_age!r}")
            object.__setattr__(self, "max_age", age)
        if self.max_ids is None and self.max_age is None:
            raise ValueError("Expected a dedup window bounded by max_ids and/or max_age, got neither")


#: The dedup window when a topic names none: the last 10,000 ids per subscriber.
DEFAULT_DEDUP_WINDOW = DedupWindow(max_ids=10_000)


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """The settings of one topic.  ``None`` fields take the bus's defaults.

    Args:
        partitions: number of partitions (int >= 1); bus default if ``None``.
        delivery: a :class:`DeliveryMode` (or its string value); bus default if ``None``.
        ordering_key: ``ordering_key(event) -> str | bytes | None``; events with the same
            key go to the same partition (Kafka's partition for that key).  ``None``
            from it means "no key" (round robin).  An explicit ``publish(key=...)`` wins.
        buffer_size: events waiting per subscriber and partition (int >= 1); bus default
            if ``None``.
        retry: the :class:`~nova.RetryPolicy` for ``AT_LEAST_ONCE``/``EXACTLY_ONCE``
            (default ``RetryPolicy()``: 3 calls, exponential backoff).
        dedup_window: for ``EXACTLY_ONCE``: an int (ids kept) or a :class:`DedupWindow`;
            ``None`` for :data:`DEFAULT_DEDUP_WINDOW`.
        dead_letter: a :class:`~nova.DeadLetterConfig` (default: enabled, no handler
            and no store: each dead letter is counted and logged at WARNING on the
            ``nova.bus`` logger, as the ListenerManager does).

    Raises:
        TypeError: a field has the wrong type.
        ValueError: ``partitions < 1``, ``buffer_size < 1``, a bad delivery string.
    """

    partitions: int | None = None
    delivery: DeliveryMode | str | None = None
    ordering_key: Callable[[Any], Any] | None = None
    buffer_size: int | None = None
    retry: RetryPolicy | None = None
    dedup_window: DedupWindow | int | None = None
    dead_letter: DeadLetterConfig | None = None

    def __post_init__(self) -> None:
        if self.partitions is not None:
            check_int(self.partitions, "partitions", 1)
        if self.delivery is not None:
            object.__setattr__(self, "delivery", check_mode(self.delivery, "delivery"))
        if self.ordering_key is not None and not callable(self.ordering_key):
            raise TypeError(
                f"Expected ordering_key as a callable(event) -> key or None, got {type_name(self.ordering_key)}"
            )
        if self.buffer_size is not None:
            check_int(self.buffer_size, "buffer_size", 1)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"Expected retry as a RetryPolicy, got {type_name(self.retry)}")
        dw = self.dedup_window
        if dw is not None and not isinstance(dw, DedupWindow):
            if isinstance(dw, bool) or not isinstance(dw, int):
                raise TypeError(f"Expected dedup_window as an int or a DedupWindow, got {type_name(dw)}")
            object.__setattr__(self, "dedup_window", DedupWindow(max_ids=check_int(dw, "dedup_window", 1)))
        if self.dead_letter is not None and not isinstance(self.dead_letter, DeadLetterConfig):
            raise TypeError(f"Expected dead_letter as a DeadLetterConfig, got {type_name(self.dead_letter)}")


class PublishReceipt(NamedTuple):
    """Where a published event went: ``offset`` is its position in the partition."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class BusStats:
    """Counters of a bus (a consistent-enough snapshot; exact once the bus is idle).

    Per published event, each subscriber that was attached to its topic gets one
    *delivery*; every delivery ends in exactly one of ``handled``, ``failed``
    (at-most-once), ``dead_lettered``, ``duplicates`` (exactly-once), ``dropped``
    (overflow ``drop_oldest``: evicted), ``discarded`` (its subscriber left or its
    topic was deleted first) or is still ``pending``::

        deliveries == handled + failed + dead_lettered + duplicates + evicted + discarded + pending

    ``dropped`` also counts ``drop_newest`` refusals (those never became deliveries).
    After a shutdown that timed out, ``undelivered`` = the pending ones that were
    abandoned.
    """

    topics: int
    subscriptions: int
    published: int
    deliveries: int
    handled: int
    failed: int
    retried: int
    dead_lettered: int
    duplicates: int
    dropped: int
    evicted: int
    discarded: int
    pending: int
    undelivered: int
    hook_errors: int
    dead_letter_errors: int


def check_topic_name(name: object) -> str:
    """A topic name: a non-empty str without whitespace, at most :data:`MAX_TOPIC_NAME`."""
    if not isinstance(name, str):
        raise TypeError(f"Expected a str topic name, got {type_name(name)}")
    if len(name) > MAX_TOPIC_NAME:
        raise ValidationError(
            f"Expected a topic name of at most {MAX_TOPIC_NAME} characters, got {len(name)} characters"
        )
    if not name or _WS.search(name):
        raise ValidationError(f"Expected a non-empty topic name without whitespace, got {name!r}")
    return name


def check_group(group: object) -> str | None:
    """``None`` or a consumer group name: a non-empty str without whitespace."""
    if group is None:
        return None
    if not isinstance(group, str):
        raise TypeError(f"Expected group as a str or None, got {type_name(group)}")
    if not group or _WS.search(group):
        raise ValidationError(f"Expected a non-empty group name without whitespace, got {group!r}")
    return group
