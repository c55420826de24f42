"""The Bus: topics with partitions, delivery modes, consumer groups and patterns.

The in-process equivalent of a Kafka topic, with the same partitioning (so a service that
later moves to a broker keeps its ordering):

* a topic has ``partitions``; an event with a key (``publish(..., key=k)`` or the topic's
  ``ordering_key(event)``) goes to ``partition_for(k, partitions)``, the partition Kafka's
  default partitioner picks; events without a key go round robin;
* each *subscriber* (an ungrouped subscription, or a consumer group) processes each
  partition one event at a time, in publish (offset) order;
* a consumer group spreads the partitions over its members: each partition has exactly
  one owner at a time, and partitions move when members join or leave;
* the delivery mode of a topic says what a failing handler leads to
  (:class:`DeliveryMode`).

Each subscription (or group member) has its own delivery thread; it serves the
partitions it owns in turn, in batches.  One slow subscriber delays only itself (its
buffer fills, then the topic's overflow policy applies to publishers).

Where partitions live is behind :mod:`nova.transport.base` (in-process by default).

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from nova import _core
from nova._util import atexit as _exit
from nova.errors import (
    BusClosed,
    SubscriptionNotFound,
    Timeout,
    TopicExists,
    TopicNotFound,
    ValidationError,
    type_name,
)
from nova.events import Event, Subscription, as_listener, is_async_listener, now_ns
from nova.listener import DEAD_LETTER_STREAM, DeadLetter, DeadLetterConfig, RetryPolicy, dead_letter_event
from nova.observability.metrics import NoOpMetricsCollector
from nova.testing import SYSTEM_CLOCK, to_seconds
from nova.transport.base import OVERFLOW_POLICIES, Transport
from nova.transport.inprocess import InProcessTransport, current_consumer

__all__ = (
    "Bus",
    "BusStats",
    "TopicConfig",
    "DeliveryMode",
    "DedupWindow",
    "PublishReceipt",
    "DEFAULT_DEDUP_WINDOW",
    "MAX_TOPIC_NAME",
)

_log = logging.getLogger("nova.bus")

_partition_for = _core.partition_for
_tuple_new = tuple.__new__
_WS = re.compile(r"\s")
_PCACHE_SIZE = 16384  # keys remembered per topic by publish (cleared when full)
_PCACHE_MAX_KEY = 256  # longer keys are not remembered (the cache must not hold big caller data)
_PCACHE_TYPES = (str, bytes)  # only keys of exactly these types are remembered (see publish)

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


def _check_mode(value: object, name: str) -> DeliveryMode:
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


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int >= {minimum}, got {type_name(value)}")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum}, got {value!r}")
    return value


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
            _check_int(self.max_ids, "max_ids", 1)
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
        dead_letter: a :class:`~nova.DeadLetterConfig` (default: enabled, counted only).

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
            _check_int(self.partitions, "partitions", 1)
        if self.delivery is not None:
            object.__setattr__(self, "delivery", _check_mode(self.delivery, "delivery"))
        if self.ordering_key is not None and not callable(self.ordering_key):
            raise TypeError(
                f"Expected ordering_key as a callable(event) -> key or None, got {type_name(self.ordering_key)}"
            )
        if self.buffer_size is not None:
            _check_int(self.buffer_size, "buffer_size", 1)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"Expected retry as a RetryPolicy, got {type_name(self.retry)}")
        dw = self.dedup_window
        if dw is not None and not isinstance(dw, DedupWindow):
            if isinstance(dw, bool) or not isinstance(dw, int):
                raise TypeError(f"Expected dedup_window as an int or a DedupWindow, got {type_name(dw)}")
            object.__setattr__(self, "dedup_window", DedupWindow(max_ids=_check_int(dw, "dedup_window", 1)))
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


def _check_topic_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"Expected a str topic name, got {type_name(name)}")
    if len(name) > MAX_TOPIC_NAME:
        raise ValidationError(
            f"Expected a topic name of at most {MAX_TOPIC_NAME} characters, got {len(name)} characters"
        )
    if not name or _WS.search(name):
        raise ValidationError(f"Expected a non-empty topic name without whitespace, got {name!r}")
    return name


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    return to_seconds(timeout, "timeout")  # type: ignore[arg-type]


# -- internal records --------------------------------------------------------------

_SYNC, _ASYNC, _MANAGED = 0, 1, 2
_HANDLED, _SETTLED, _ABANDONED = 0, 1, 2
# what a handler call may raise and still count as a failed call: anything.  Handlers
# run on delivery threads (never the main thread), where a BaseException (an async
# handler's CancelledError, a SystemExit or KeyboardInterrupt raised by the handler)
# would otherwise kill the thread: the batch would be counted as settled without being
# handled and the subscriber would never be served again.  Hooks likewise.
_HANDLER_ERRORS = BaseException


class _Member:
    """One Subscription: a listener with its own delivery thread (consumer)."""

    __slots__ = (
        "sub",
        "listener",
        "listener_id",
        "handle",
        "kind",
        "on_error",
        "group",
        "pattern",
        "slots",
        "consumer",
    )

    def __init__(self, listener: Any, group: str | None, pattern: re.Pattern[str] | None) -> None:
        self.listener = listener
        self.listener_id: str = listener.id
        self.handle = listener.handle
        if getattr(listener, "managed", False):
            self.kind = _MANAGED
        elif is_async_listener(listener):
            self.kind = _ASYNC
        else:
            self.kind = _SYNC
        self.on_error = getattr(listener, "on_error", None)
        self.group = group
        self.pattern = pattern
        self.slots: dict[str, _Slot] = {}
        self.sub: Subscription = None  # type: ignore[assignment]
        self.consumer: Any = None


class _Topic:
    __slots__ = (
        "name",
        "partitions",
        "delivery",
        "ordering_key",
        "buffer_size",
        "retry",
        "dedup",
        "dead_letter",
        "log",
        "append",
        "rr",
        "pcache",
        "slots",
        "groups",
    )

    def __init__(self, name: str, cfg: TopicConfig, bus: Bus) -> None:
        self.name = name
        self.partitions: int = cfg.partitions if cfg.partitions is not None else bus._default_partitions
        self.delivery: DeliveryMode = (
            cfg.delivery if cfg.delivery is not None else bus._default_delivery  # type: ignore[assignment]
        )
        self.ordering_key = cfg.ordering_key
        self.buffer_size: int = cfg.buffer_size if cfg.buffer_size is not None else bus._buffer_size
        self.retry = cfg.retry if cfg.retry is not None else RetryPolicy()
        dw = cfg.dedup_window
        self.dedup: DedupWindow = dw if isinstance(dw, DedupWindow) else DEFAULT_DEDUP_WINDOW
        self.dead_letter = cfg.dead_letter if cfg.dead_letter is not None else DeadLetterConfig()
        self.log = bus._transport.open_topic(name, self.partitions, self.buffer_size, bus._overflow)
        if bus._metrics_on and hasattr(self.log, "on_drop"):
            metrics = bus._metrics
            self.log.on_drop = lambda reason, n: metrics.inc_events_dropped(f"bus:{bus.name}", reason, n)
        self.append = self.log.append
        self.rr = itertools.count()
        self.pcache: dict[Any, int] = {}  # recent key -> partition (keys repeat: customers, ...)
        self.slots: list[_Slot] = []  # ungrouped: one per member
        self.groups: dict[str, _Slot] = {}

    def all_slots(self) -> list[_Slot]:
        return self.slots + list(self.groups.values())


def _own_id(eid: str) -> str:
    """An exact ``str`` equal to *eid* (a ``str`` subclass instance): the dedup window
    keeps ids for a long time and must not keep a caller's object (and what its
    attributes reference) alive."""
    return str.__str__(eid)


class _Dedup:
    """The ids one subscriber has seen on one topic (see :class:`DedupWindow`).

    A count-only window is generational: ids go into ``cur``; when it holds
    ``max_ids`` it becomes ``prev`` (the older ``prev`` is dropped whole).  So the last
    ``max_ids`` ids are always remembered and at most ``2 * max_ids`` are kept, with no
    per-id eviction work.  A window with ``max_age`` keeps ids in arrival order with
    their time and forgets them one by one (exactly ``max_ids`` at most)."""

    __slots__ = ("cur", "prev", "seen", "order", "tokens", "max_ids", "max_age", "lock", "clock")

    def __init__(self, window: DedupWindow, clock: Any) -> None:
        self.cur: set[str] = set()
        self.prev: set[str] = set()
        self.seen: dict[str, int] = {}
        self.order: deque[tuple[float, int, str]] = deque()
        self.tokens = itertools.count()
        self.max_ids = window.max_ids
        self.max_age = window.max_age
        self.lock = threading.Lock()
        self.clock = clock

    def claim(self, eid: str) -> bool:
        """True if *eid* is new (and now remembered); False for a duplicate."""
        if type(eid) is not str:
            eid = _own_id(eid)
        with self.lock:
            max_age = self.max_age
            if max_age is None:
                if eid in self.cur or eid in self.prev:
                    return False
                self.cur.add(eid)
                if len(self.cur) >= self.max_ids:  # type: ignore[operator]
                    self.prev = self.cur
                    self.cur = set()
                return True
            now = self.clock.monotonic()
            horizon = now - max_age
            order, seen = self.order, self.seen
            while order and order[0][0] <= horizon:
                _, tok, old = order.popleft()
                if seen.get(old) == tok:
                    del seen[old]
            if eid in seen:
                return False
            tok = next(self.tokens)
            seen[eid] = tok
            order.append((now, tok, eid))
            if self.max_ids is not None and len(order) > self.max_ids:
                _, tok, old = order.popleft()
                if seen.get(old) == tok:
                    del seen[old]
            return True

    def release(self, eid: str) -> None:
        """Forget the claim of an event abandoned before it was processed."""
        if type(eid) is not str:
            eid = _own_id(eid)
        with self.lock:
            self.cur.discard(eid)
            self.prev.discard(eid)
            self.seen.pop(eid, None)


def _metric(lane: Any, fn: Callable[..., Any], *args: Any) -> None:
    """Call a metrics collector method on a delivery thread.  A collector that raises
    is counted in ``hook_errors``: it must neither kill the thread nor turn a handled
    event into a failed (and retried) one."""
    try:
        fn(*args)
    except _HANDLER_ERRORS:
        lane.hook_errors += 1


class _Slot:
    """One subscriber (ungrouped subscription or group) of one topic: the Bus's sink."""

    __slots__ = ("bus", "topic", "group", "members", "tslot", "dedup", "fast_dedup")

    def __init__(self, bus: Bus, topic: _Topic, group: str | None) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.members: list[_Member] = []
        self.tslot: Any = None
        self.dedup = _Dedup(topic.dedup, bus._clock) if topic.delivery is DeliveryMode.EXACTLY_ONCE else None
        # one thread per ungrouped slot and a count-only window: no lock needed
        self.fast_dedup = self.dedup is not None and group is None and topic.dedup.max_age is None

    # -- delivery (called on the lane owner's thread) ---------------------------------
    def deliver(self, lane: Any, consumer: Any, batch: deque[Any]) -> int:
        """Process *batch* (events of one partition, in order) for *consumer*'s listener.
        Returns how many were settled; stops early when the lane changes owner."""
        m: _Member = consumer.owner
        if m.kind != _SYNC or self.bus._metrics_on:
            return self._deliver_general(lane, consumer, m, batch)
        handle = m.handle
        before = lane.failed + lane.dead
        i = 0
        if self.dedup is None:
            for ev in batch:
                if lane.consumer is not consumer:
                    break
                try:
                    handle(ev)
                except _HANDLER_ERRORS as exc:
                    if self._failed(lane, consumer, m, ev, exc) == _ABANDONED:
                        break
                i += 1
            lane.handled += i - (lane.failed + lane.dead - before)
            return i
        if not self.fast_dedup:
            return self._deliver_general(lane, consumer, m, batch)
        dd = self.dedup
        cur, prev = dd.cur, dd.prev
        cap: int = dd.max_ids  # type: ignore[assignment]  # fast_dedup: a count-only window
        dups = 0
        for ev in batch:
            if lane.consumer is not consumer:
                break
            eid = ev.id
            if type(eid) is not str:
                eid = _own_id(eid)
            if eid in cur or eid in prev:
                dups += 1
                i += 1
                continue
            cur.add(eid)
            if len(cur) >= cap:
                dd.prev = prev = cur
                dd.cur = cur = set()
            try:
                handle(ev)
            except _HANDLER_ERRORS as exc:
                if self._failed(lane, consumer, m, ev, exc) == _ABANDONED:
                    dd.release(eid)
                    break
            i += 1
        lane.dups += dups
        lane.handled += i - dups - (lane.failed + lane.dead - before)
        return i

    def _deliver_general(self, lane: Any, consumer: Any, m: _Member, batch: deque[Any]) -> int:
        bus = self.bus
        metrics = bus._metrics if bus._metrics_on else None
        dd = self.dedup
        kind = m.kind
        topic_name = self.topic.name
        i = 0
        for ev in batch:
            if lane.consumer is not consumer:
                break
            if dd is not None and not dd.claim(ev.id):
                lane.dups += 1
                if metrics is not None:
                    _metric(lane, metrics.inc_events_processed, m.listener_id, "duplicate")
                i += 1
                continue
            t0 = time.perf_counter() if metrics is not None else 0.0
            try:
                if kind == _MANAGED:
                    ok = m.listener.run_inline(ev, topic=topic_name)
                    if ok:
                        lane.handled += 1
                    else:
                        lane.dead += 1
                    if metrics is not None:
                        _metric(lane, metrics.inc_events_processed, m.listener_id, "ok" if ok else "dead_letter")
                else:
                    if kind == _ASYNC:
                        consumer.run_coroutine(m.handle(ev))
                    else:
                        m.handle(ev)
                    lane.handled += 1
                    if metrics is not None:
                        _metric(lane, metrics.inc_events_processed, m.listener_id, "ok")
            except _HANDLER_ERRORS as exc:
                if kind == _MANAGED:
                    # run_inline applies the listener's own policy and should not raise;
                    # if it does, the event is dead-lettered through the topic's config.
                    self._hooks(lane, m, ev, exc)
                    if self.topic.delivery is DeliveryMode.AT_MOST_ONCE:
                        lane.failed += 1
                    else:
                        self._dead_letter(lane, m, ev, exc, 1)
                else:
                    outcome = self._failed(lane, consumer, m, ev, exc)
                    if outcome == _ABANDONED:
                        if dd is not None:
                            dd.release(ev.id)
                        break
                    if outcome == _HANDLED:
                        lane.handled += 1
            if metrics is not None:
                _metric(lane, metrics.observe_listener_duration, m.listener_id, time.perf_counter() - t0)
            i += 1
        return i

    def _call(self, consumer: Any, m: _Member, ev: Any) -> None:
        if m.kind == _ASYNC:
            consumer.run_coroutine(m.handle(ev))
        else:
            m.handle(ev)

    def _failed(self, lane: Any, consumer: Any, m: _Member, ev: Any, exc: BaseException) -> int:
        """The first call for *ev* raised *exc*.  Apply the delivery mode.

        Returns ``_HANDLED`` (a retry succeeded; not counted here), ``_SETTLED`` (counted
        as failed or dead-lettered) or ``_ABANDONED`` (the consumer was stopped during a
        backoff: the event stays pending for the lane's next owner)."""
        self._hooks(lane, m, ev, exc)
        topic = self.topic
        metrics = self.bus._metrics if self.bus._metrics_on else None
        if topic.delivery is DeliveryMode.AT_MOST_ONCE:
            lane.failed += 1
            if metrics is not None:
                _metric(lane, metrics.inc_events_processed, m.listener_id, "error")
            return _SETTLED
        policy = topic.retry
        attempt = 1
        while True:
            try:
                again = policy.should_retry(exc, attempt)
            except _HANDLER_ERRORS:  # a retry_if predicate that raised: no retry
                lane.hook_errors += 1
                again = False
            if not again:
                break
            delay = policy.delay(attempt)
            if delay > 0 and self.bus._sleep(consumer, delay):
                return _ABANDONED
            attempt += 1
            lane.retried += 1
            if metrics is not None:
                _metric(lane, metrics.inc_events_processed, m.listener_id, "retry")
            try:
                self._call(consumer, m, ev)
            except _HANDLER_ERRORS as exc2:
                exc = exc2
                self._hooks(lane, m, ev, exc)
                continue
            if metrics is not None:
                _metric(lane, metrics.inc_events_processed, m.listener_id, "ok")
            return _HANDLED
        self._dead_letter(lane, m, ev, exc, attempt)
        return _SETTLED

    def _hooks(self, lane: Any, m: _Member, ev: Any, exc: BaseException) -> None:
        if m.on_error is not None:
            try:
                m.on_error(ev, exc)
            except _HANDLER_ERRORS:
                lane.hook_errors += 1
        hook = self.bus._on_error
        if hook is not None:
            try:
                hook(ev, exc, m.listener)
            except _HANDLER_ERRORS:
                lane.hook_errors += 1

    def _dead_letter(self, lane: Any, m: _Member, ev: Any, exc: BaseException, attempts: int) -> None:
        lane.dead += 1
        bus = self.bus
        if bus._metrics_on:
            _metric(lane, bus._metrics.inc_events_processed, m.listener_id, "dead_letter")
        cfg = self.topic.dead_letter
        if not cfg.enabled or (cfg.handler is None and cfg.store is None):
            return
        dl = DeadLetter(ev, exc, attempts, m.listener_id, self.topic.name, now_ns())
        if cfg.handler is not None:
            try:
                cfg.handler(dl)
            except _HANDLER_ERRORS:
                lane.dl_errors += 1
        if cfg.store is not None:
            try:
                cfg.store.append(DEAD_LETTER_STREAM, dead_letter_event(dl))
            except _HANDLER_ERRORS:
                lane.dl_errors += 1


class Bus:
    """Topics with partitions, delivery modes, consumer groups and pattern subscriptions.

    Args:
        pool: a :class:`~nova.WorkerPool` whose workers run the delivery loops as
            drain tasks (at most one task per subscription or group member at a time,
            so each stays serial; a task yields its worker after 16 lanes, but a slow
            handler holds the worker while it runs); ``None`` (default) gives each
            subscription or group member its own daemon thread.
        default_partitions: partitions of topics created without a count (int >= 1).
        default_delivery: the :class:`DeliveryMode` of topics created without one.
        buffer_size: events that may wait per subscriber and partition (int >= 1).
        overflow: what ``publish`` does when a subscriber's buffer is full:
            ``"block"`` (wait, up to the publish timeout, then
            :class:`~nova.errors.Timeout`), ``"error"``
            (:class:`~nova.errors.BufferFull` at once), ``"drop_newest"`` (the full
            subscriber misses this event; counted in ``stats().dropped``) or
            ``"drop_oldest"`` (its oldest waiting event is evicted; counted).
        metrics: a :class:`~nova.MetricsCollector`, ``None`` for none.
        name: the bus name (thread names, metric labels).
        on_error: ``on_error(event, exc, listener)``, called on the delivery thread
            after each failed handler call (as is the listener's own ``on_error``); an
            exception it raises is counted in ``stats().hook_errors``.
        clock: the clock retry backoffs sleep on (``monotonic()``/``sleep()``) and
            dedup ages are measured with; the system clock by default (then a backoff
            sleep is cut short by a shutdown or unsubscribe).
        transport: where partitions live (:class:`~nova.transport.inprocess.InProcessTransport`
            by default).
        auto_create_topics: when True (default), ``publish`` and ``subscribe`` create a
            missing topic with the defaults; when False they raise
            :class:`~nova.errors.TopicNotFound` and only :meth:`create_topic` makes
            topics (use it when topic names come from untrusted input).

    Raises:
        TypeError / ValueError: a bad argument.

    At interpreter exit, a bus still open is shut down within nova's exit budget
    (``NOVA_EXIT_TIMEOUT``, 5 s by default, see :mod:`nova._util.atexit`): what can be
    delivered in that time is, and the deliveries left (a handler still running or
    blocked, events waiting behind it, retries waiting for their backoff) are reported
    on the ``nova.bus`` logger at WARNING; they are not dead-lettered.  A bus inherited
    by a child process through ``fork()`` is closed in the child: its intake and
    :meth:`flush` raise :class:`~nova.errors.BusClosed`, :meth:`shutdown` returns at once
    (see docs/bus.md).

    .. versionchanged:: 0.2 ``auto_create_topics``; the exit and fork behaviour.

    Thread-safe: every method may be called from any thread.  Use it as a context
    manager (``with Bus() as bus:``) to shut it down on exit.
    """

    def __init__(
        self,
        *,
        pool: Any = None,
        default_partitions: int = 1,
        default_delivery: DeliveryMode | str = DeliveryMode.AT_LEAST_ONCE,
        buffer_size: int = 1000,
        overflow: str = "block",
        metrics: Any = None,
        name: str = "bus",
        on_error: Callable[[Any, BaseException, Any], Any] | None = None,
        clock: Any = None,
        transport: Transport | None = None,
        auto_create_topics: bool = True,
    ) -> None:
        if not isinstance(auto_create_topics, bool):
            raise TypeError(f"Expected auto_create_topics as a bool, got {type_name(auto_create_topics)}")
        self._auto_create = auto_create_topics
        self._default_partitions = _check_int(default_partitions, "default_partitions", 1)
        self._default_delivery = _check_mode(default_delivery, "default_delivery")
        self._buffer_size = _check_int(buffer_size, "buffer_size", 1)
        if not isinstance(overflow, str):
            raise TypeError(f"Expected overflow as a str, got {type_name(overflow)}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Expected overflow among {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}")
        self._overflow = overflow
        if not isinstance(name, str):
            raise TypeError(f"Expected a str name, got {type_name(name)}")
        if not name:
            raise ValueError("Expected a non-empty name, got ''")
        self.name = name
        if on_error is not None and not callable(on_error):
            raise TypeError(f"Expected on_error as a callable(event, exc, listener) or None, got {type_name(on_error)}")
        self._on_error = on_error
        if clock is None:
            clock = SYSTEM_CLOCK
        elif not (callable(getattr(clock, "monotonic", None)) and callable(getattr(clock, "sleep", None))):
            raise TypeError(f"Expected a clock with monotonic() and sleep(), got {type_name(clock)}")
        self._clock = clock
        if metrics is None:
            metrics = NoOpMetricsCollector()
        elif not callable(getattr(metrics, "inc_events_processed", None)):
            raise TypeError(f"Expected a MetricsCollector or None, got {type_name(metrics)}")
        self._metrics = metrics
        self._metrics_on = bool(getattr(metrics, "enabled", True))
        if pool is not None and not callable(getattr(pool, "submit", None)):
            raise TypeError(f"Expected pool as a WorkerPool or None, got {type_name(pool)}")
        self._pool = pool
        if transport is None:
            transport = InProcessTransport(pool)
        elif not isinstance(transport, Transport):
            raise TypeError(f"Expected a nova.transport.base.Transport, got {type_name(transport)}")
        self._transport = transport
        self._lock = threading.RLock()
        self._topics: dict[str, _Topic] = {}
        self._members: dict[str, _Member] = {}
        self._patterns: list[_Member] = []
        self._issued: weakref.WeakValueDictionary[str, Subscription] = weakref.WeakValueDictionary()
        self._retired: list[Any] = []  # lanes of removed slots with a batch still in flight
        self._folded = {k: 0 for k in _LANE_COUNTERS}  # counters of removed lanes
        self._deleted_published = 0  # events published to topics deleted since
        self._closed = False
        self._shutdown_result: bool | None = None
        self._abandoned = False
        self._stopped_consumers: list[Any] = []
        self._exit_registered = False
        self._forked_from: int | None = None  # the parent's pid in a forked child
        _BUSES.add(self)

    # -- topics ------------------------------------------------------------------------
    def create_topic(self, name: str, config: TopicConfig | None = None) -> None:
        """Create topic *name* with *config* (``None`` fields take the bus defaults).
        Existing pattern subscriptions that match it are attached at once.

        Raises:
            TopicExists: the topic exists (also if it was made by a publish/subscribe).
            TypeError / ValidationError: a bad name or config.
            BusClosed: the bus was shut down.
        """
        _check_topic_name(name)
        if config is None:
            config = TopicConfig()
        elif not isinstance(config, TopicConfig):
            raise TypeError(f"Expected a TopicConfig or None, got {type_name(config)}")
        self._create(name, config)

    def _create(self, name: str, config: TopicConfig | None) -> _Topic:
        """Create topic *name* (checked) with *config*, or with the defaults when
        *config* is None (publish/subscribe: then an existing topic is returned, and a
        missing one is created only if the bus auto-creates topics).

        The pattern subscriptions' regexes are matched against the new name *outside*
        the bus lock (names may be untrusted and a regex slow): only this caller waits
        for them.  The topic is inserted, with the matching patterns attached, in one
        locked step once every pattern subscribed meanwhile has been tested too."""
        tested: set[_Member] = set()
        matched: list[_Member] = []
        while True:
            with self._lock:
                self._check_open()
                t = self._topics.get(name)
                if t is not None:
                    if config is None:
                        return t
                    raise TopicExists(f"Expected a new topic name, got existing topic {name!r}")
                if config is None and not self._auto_create:
                    raise TopicNotFound(
                        f"Expected an existing topic (the bus has auto_create_topics=False), got {name!r}"
                    )
                fresh = [m for m in self._patterns if m not in tested]
                if not fresh:
                    t = _Topic(name, config if config is not None else TopicConfig(), self)
                    self._topics[name] = t
                    for m in matched:
                        if self._members.get(m.sub.id) is m:
                            self._attach(m, t)
                    return t
            for m in fresh:
                tested.add(m)
                if m.pattern is not None and m.pattern.fullmatch(name):
                    matched.append(m)

    def delete_topic(self, name: str) -> None:
        """Delete topic *name*.  Events still waiting for its subscribers are discarded
        (counted in ``stats().discarded``); its direct subscriptions end (inactive, with
        ``end_reason == "topic deleted"``); pattern subscriptions stay for other topics.

        Raises:
            TopicNotFound: no such topic.
            TypeError / ValidationError: a bad name.
        """
        _check_topic_name(name)
        self._check_not_forked()
        stop: list[Any] = []
        with self._lock:
            t = self._topics.pop(name, None)
            if t is None:
                raise TopicNotFound(f"Expected an existing topic, got {name!r}")
            t.log.close(deleted=True)
            for slot in t.all_slots():
                self._transport.remove_slot(slot.tslot)
                self._retire(slot.tslot.lanes)
                for m in slot.members:
                    m.slots.pop(name, None)
                    if m.pattern is None:
                        self._members.pop(m.sub.id, None)
                        m.sub._end("topic deleted")
                        stop.append(m.consumer)
            t.slots = []
            t.groups = {}
            # Only the count of the log is kept (the log itself would be kept for ever).
            # An append to a partition without subscribers racing with this deletion may
            # be counted by the log after this point, and so be missing from published.
            self._deleted_published += sum(t.log.offsets())
            self._transport.close_topic(t.log)
        for c in stop:
            c.stop()

    def topics(self) -> list[str]:
        """The topic names, sorted."""
        with self._lock:
            return sorted(self._topics)

    def topic_config(self, name: str) -> TopicConfig:
        """The effective configuration of topic *name* (defaults filled in).

        Raises:
            TopicNotFound: no such topic.
        """
        t = self._get_topic(name)
        return TopicConfig(
            partitions=t.partitions,
            delivery=t.delivery,
            ordering_key=t.ordering_key,
            buffer_size=t.buffer_size,
            retry=t.retry,
            dedup_window=t.dedup,
            dead_letter=t.dead_letter,
        )

    def partition_for(self, topic: str, key: str | bytes) -> int:
        """The partition of *topic* that events with *key* go to (Kafka's choice).

        Raises:
            TopicNotFound: no such topic.
            TypeError: *key* is not ``str``/``bytes``.
        """
        t = self._get_topic(topic)
        return int(_partition_for(key, t.partitions))

    def _get_topic(self, name: str) -> _Topic:
        _check_topic_name(name)
        t = self._topics.get(name)
        if t is None:
            raise TopicNotFound(f"Expected an existing topic, got {name!r}")
        return t

    def _check_open(self) -> None:
        if self._closed:
            self._check_not_forked()
            raise BusClosed(f"Expected an open bus, got bus {self.name!r} shut down")

    def _check_not_forked(self) -> None:
        if self._forked_from is not None:
            raise BusClosed(
                f"Expected a bus created in this process, got bus {self.name!r} inherited through "
                f"fork() from process {self._forked_from} (its delivery threads stayed there; "
                "create a new Bus in the child)"
            )

    # -- publishing --------------------------------------------------------------------
    def publish(self, topic: str, event: Event, *, key: str | bytes | None = None, timeout: Any = None) -> PublishReceipt:
        """Publish *event* to *topic* (created with the defaults if missing, unless the
        bus has ``auto_create_topics=False``).

        The partition is ``partition_for(key, partitions)`` for a key (``key`` or the
        topic's ``ordering_key(event)``), else round robin.  Returns a
        :class:`PublishReceipt` (topic, partition, offset).  Every subscriber attached
        now gets the event; delivery happens on their threads.

        Raises:
            TypeError: *event* is not an :class:`~nova.Event`, a key is not str/bytes.
            ValidationError: a bad topic name.
            BusClosed: the bus was shut down.
            Timeout: overflow ``"block"`` and a buffer stayed full for *timeout* seconds.
            BufferFull: overflow ``"error"`` and a buffer is full (or a handler would
                wait for its own buffer).
            TopicNotFound: the topic was deleted while this call was publishing to it, or
                it does not exist and the bus has ``auto_create_topics=False``.
            Whatever ``ordering_key`` raises.
        """
        try:
            t = self._topics.get(topic)
        except TypeError:  # unhashable: not a topic name
            t = None
        if t is None or self._closed:
            t = self._intake_topic(topic, event, key, timeout)
        if not isinstance(event, Event):
            raise TypeError(f"Expected an Event, got {type_name(event)}")
        if key is None:
            ok = t.ordering_key
            if ok is not None:
                key = ok(event)
        n = t.partitions
        p: int | None
        if key is None:
            p = next(t.rr) % n if n > 1 else 0
        else:
            cache = t.pcache
            try:
                p = cache.get(key)
            except (TypeError, ValueError):  # unhashable (bytearray, writable memoryview)
                p = _partition_for(key, n)
            else:
                if p is None:
                    p = _partition_for(key, n)
                    # Only small keys the cache can own: an exact str/bytes.  A memoryview
                    # (or a subclass instance) would keep its caller's buffer alive.
                    if type(key) in _PCACHE_TYPES and len(key) <= _PCACHE_MAX_KEY:
                        if len(cache) >= _PCACHE_SIZE:
                            cache.clear()
                        cache[key] = p
        if timeout is not None:
            timeout = _check_timeout(timeout)
        off = t.append(p, event, timeout)
        if self._metrics_on:
            self._metrics.inc_events_emitted(event.type, "ok")
        return _tuple_new(PublishReceipt, (topic, p, off))

    def _intake_topic(self, name: object, event: object = None, key: object = None, timeout: object = None) -> _Topic:
        # The slow path of publish: a new topic (or a closed bus).  The other arguments
        # are checked first, so a bad publish does not leave a topic behind.
        _check_topic_name(name)
        assert isinstance(name, str)
        if not isinstance(event, Event):
            raise TypeError(f"Expected an Event, got {type_name(event)}")
        if key is not None:
            _partition_for(key, 1)  # raises TypeError for a key that is not str/bytes
        _check_timeout(timeout)
        return self._create(name, None)

    def publish_many(
        self, topic: str, events: Iterable[Event], *, key: str | bytes | None = None, timeout: Any = None
    ) -> list[PublishReceipt]:
        """Publish each of *events* in order (as :meth:`publish`); *timeout* bounds the
        whole call.  Returns their receipts.  On an error, the events before the
        failing one stay published (the error says nothing about them).

        Raises:
            TypeError: *events* is not iterable (or as :meth:`publish`).
        """
        if isinstance(events, (str, bytes, Event)) or not isinstance(events, Iterable):
            raise TypeError(f"Expected an iterable of Events, got {type_name(events)}")
        deadline = None
        if timeout is not None:
            deadline = time.monotonic() + _check_timeout(timeout)  # type: ignore[operator]
        out = []
        publish = self.publish
        for ev in events:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(publish(topic, ev, key=key, timeout=remaining))
        return out

    async def apublish(
        self, topic: str, event: Event, *, key: str | bytes | None = None, timeout: Any = None
    ) -> PublishReceipt:
        """:meth:`publish` for asyncio code: never blocks the event loop (a publish that
        would wait for buffer room waits on a worker thread instead).  Cancelling it
        while it waits for room withdraws it: the event is not published later (the
        worker stops trying within about 50 ms; an event that landed just before the
        cancellation stays published).

        Raises:
            as :meth:`publish`.
        """
        if self._overflow != "block":
            return self.publish(topic, event, key=key, timeout=timeout)
        timeout = _check_timeout(timeout)  # at the call, even when the first try lands
        try:
            return self.publish(topic, event, key=key, timeout=0)
        except Timeout:
            pass
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._publish_until, cancelled, topic, event, key, timeout)
        except asyncio.CancelledError:
            cancelled.set()  # the worker thread gives up instead of publishing later
            raise

    def _publish_until(self, cancelled: threading.Event, topic: str, event: Event, key: Any, timeout: float | None) -> PublishReceipt:
        # apublish's wait for room, in steps so that a cancellation is seen.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
            try:
                return self.publish(topic, event, key=key, timeout=step)
            except Timeout:
                if cancelled.is_set():
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(
                        f"Expected room in topic {topic!r} within {timeout} s, got a subscriber buffer still full"
                    ) from None

    # -- subscribing -------------------------------------------------------------------
    def subscribe(self, topic: str, listener: Any, *, group: str | None = None) -> Subscription:
        """Subscribe *listener* (a callable, an ``async def`` or a Listener) to *topic*
        (created with the defaults if missing).  It gets every event published from now
        on, or, with *group*, the events of the partitions the group gives it (the
        group as a whole gets every event).  Returns the :class:`~nova.Subscription`.

        Raises:
            TypeError: *listener* is not callable, *group* not a str.
            ValidationError: a bad topic or group name.
            TopicNotFound: no such topic and the bus has ``auto_create_topics=False``.
            BusClosed: the bus was shut down.
        """
        _check_topic_name(topic)
        group = self._check_group(group)
        lst = as_listener(listener)
        while True:
            t = self._create(topic, None)
            with self._lock:
                self._check_open()
                if self._topics.get(topic) is not t:
                    continue  # deleted (and maybe re-created) meanwhile
                m = self._new_member(lst, topic, group, None)
                self._attach(m, t)
                return m.sub

    def subscribe_pattern(self, pattern: str | re.Pattern[str], listener: Any, *, group: str | None = None) -> Subscription:
        """Subscribe *listener* to every topic whose name fully matches *pattern*
        (:func:`re.fullmatch`), now and created later.  A listener subscribed directly
        and by pattern gets one delivery per subscription.

        The regex runs on every new topic name, and topic names may come from
        untrusted input (``publish`` creates topics).  It is matched outside the bus
        lock, so nothing waits for the lock meanwhile, but CPython's :mod:`re` holds
        the GIL for the whole of one match: a regex that backtracks catastrophically
        stalls every thread of the process.  Write patterns whose repetitions are
        unambiguous, or use atomic groups ``(?>...)`` and possessive quantifiers
        ``*+``/``++`` (Python 3.11+), and create topics yourself with
        ``Bus(auto_create_topics=False)`` when names come from outside.  Names are at
        most :data:`MAX_TOPIC_NAME` characters.

        Raises:
            re.error: *pattern* does not compile.
            TypeError: *pattern* is not a str or compiled pattern; bad listener/group.
            BusClosed: the bus was shut down.
        """
        if isinstance(pattern, re.Pattern):
            rx = pattern
        elif isinstance(pattern, str):
            rx = re.compile(pattern)
        else:
            raise TypeError(f"Expected a str regex or a compiled re.Pattern, got {type_name(pattern)}")
        if not isinstance(rx.pattern, str):
            raise TypeError("Expected a str regex, got a bytes pattern")
        group = self._check_group(group)
        lst = as_listener(listener)
        with self._lock:
            self._check_open()
            m = self._new_member(lst, rx.pattern, group, rx)
            self._patterns.append(m)  # topics created from now on test it (see _create)
            existing = sorted(self._topics.items())
        # Outside the lock: a slow regex must not stall the other threads.
        matched = [t for name, t in existing if rx.fullmatch(name)]
        with self._lock:
            if self._members.get(m.sub.id) is m and not self._closed:
                for t in matched:
                    if self._topics.get(t.name) is t:
                        self._attach(m, t)
        return m.sub

    @staticmethod
    def _check_group(group: object) -> str | None:
        if group is None:
            return None
        if not isinstance(group, str):
            raise TypeError(f"Expected group as a str or None, got {type_name(group)}")
        if not group or _WS.search(group):
            raise ValidationError(f"Expected a non-empty group name without whitespace, got {group!r}")
        return group

    def _new_member(self, listener: Any, topic: str, group: str | None, pattern: re.Pattern[str] | None) -> _Member:
        # Caller holds the lock.
        m = _Member(listener, group, pattern)
        sub = Subscription(topic, listener, self._detach)
        m.sub = sub
        m.consumer = self._transport.new_consumer(m, f"nova-{self.name}-{sub.id}")
        self._members[sub.id] = m
        self._issued[sub.id] = sub
        if not self._exit_registered:  # the first delivery thread: finish at exit
            self._exit_registered = True
            _exit.register(self.close_at_exit, _exit.STAGE_ROUTER)
        return m

    def _attach(self, m: _Member, t: _Topic) -> None:
        # Caller holds the lock.
        if m.group is None:
            slot = _Slot(self, t, None)
            slot.members.append(m)
            slot.tslot = self._transport.add_slot(t.log, slot, [m.consumer])
            t.slots.append(slot)
        else:
            slot = t.groups.get(m.group)  # type: ignore[assignment]
            if slot is None:
                slot = _Slot(self, t, m.group)
                slot.members.append(m)
                slot.tslot = self._transport.add_slot(t.log, slot, [m.consumer])
                t.groups[m.group] = slot
            else:
                slot.members.append(m)
                self._rebalance(slot)
        m.slots[t.name] = slot

    def _rebalance(self, slot: _Slot) -> None:
        # Caller holds the lock.  Partition p goes to member p % len(members) (members
        # in join order).
        members = slot.members
        for lane in slot.tslot.lanes:
            self._transport.assign(lane, members[lane.index % len(members)].consumer)

    def _detach(self, sub: Subscription) -> None:
        with self._lock:
            m = self._members.pop(sub.id, None)
            if m is None or self._forked_from is not None:
                return  # forked child: the lanes and threads are the parent's
            if m.pattern is not None:
                self._patterns.remove(m)
            for name, slot in list(m.slots.items()):
                t = self._topics.get(name)
                slot.members.remove(m)
                if slot.members:
                    self._rebalance(slot)
                else:
                    self._transport.remove_slot(slot.tslot)
                    self._retire(slot.tslot.lanes)
                    if t is not None:
                        if slot.group is None:
                            t.slots.remove(slot)
                        else:
                            t.groups.pop(slot.group, None)
            m.slots.clear()
        m.consumer.stop()

    def unsubscribe(self, subscription: Subscription) -> bool:
        """End *subscription* (same as ``subscription.unsubscribe()``).  Events waiting
        for it are discarded (counted); in a group its partitions move to the other
        members, with their waiting events.  A handler call in progress finishes.
        Returns True if this call ended it, False if it had ended already.

        Raises:
            SubscriptionNotFound: it was not made by this bus.
        """
        if not isinstance(subscription, Subscription):
            raise TypeError(f"Expected a Subscription, got {type_name(subscription)}")
        if self._issued.get(subscription.id) is not subscription:
            raise SubscriptionNotFound(f"Expected a subscription of bus {self.name!r}, got {subscription!r}")
        return subscription.unsubscribe()

    def assignment(self, topic: str, group: str) -> dict[str, list[int]]:
        """The partitions of *topic* each member (by subscription id) of *group* owns.

        Raises:
            TopicNotFound: no such topic.  SubscriptionNotFound: no such group on it.
        """
        t = self._get_topic(topic)
        self._check_group(group)
        with self._lock:
            slot = t.groups.get(group)
            if slot is None:
                raise SubscriptionNotFound(f"Expected a consumer group of topic {topic!r}, got {group!r}")
            out: dict[str, list[int]] = {m.sub.id: [] for m in slot.members}
            for lane in slot.tslot.lanes:
                c = lane.consumer
                if c is not None:
                    out[c.owner.sub.id].append(lane.index)
            return out

    # -- completion --------------------------------------------------------------------
    def _live_lanes(self) -> list[Any]:
        with self._lock:
            return [lane for t in self._topics.values() for s in t.all_slots() for lane in s.tslot.lanes]

    def flush(self, timeout: Any = None) -> bool:
        """Wait until every event published before this call has been handled,
        failed (at-most-once), dead-lettered or skipped as a duplicate by every
        subscriber (or discarded because its subscriber left).  Returns False if
        *timeout* seconds passed first.

        Raises:
            RuntimeError: called from a handler of this bus (it would wait for itself).
            BusClosed: the bus was inherited through ``fork()`` (in the child).
        """
        timeout = _check_timeout(timeout)
        self._check_not_forked()
        self._refuse_from_handler("flush")
        with self._lock:
            lanes = self._live_lanes() + [lane for lane in self._retired if lane.pending()]
        targets = [(lane, lane.enqueued) for lane in lanes]
        return self._transport.wait_settled(targets, timeout)

    def _refuse_from_handler(self, what: str) -> None:
        c = current_consumer()
        if c is not None and getattr(c, "transport", None) is self._transport:
            raise RuntimeError(f"Expected {what}() from outside this bus's handlers, got a call from a handler")

    def shutdown(self, timeout: Any = None) -> bool:
        """Stop intake (``publish``/``subscribe`` raise :class:`~nova.errors.BusClosed`),
        deliver every accepted event (retries included), then stop the delivery
        threads.  If *timeout* seconds pass first, the rest is abandoned:
        ``stats().undelivered`` says how many deliveries, and False is returned.
        Subscriptions end (``end_reason == "bus shut down"``).  Idempotent: a second
        call returns the first result.
        """
        timeout = _check_timeout(timeout)
        if self._forked_from is not None:
            with self._lock:  # the child has nothing of its own to deliver
                if self._shutdown_result is None:
                    self._shutdown_result = True
                return self._shutdown_result
        self._refuse_from_handler("shutdown")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._shutdown_result is not None:
                return self._shutdown_result
            self._closed = True
            for t in self._topics.values():
                t.log.close()  # publishes racing with this either land or raise BusClosed
        drained = self.flush(timeout)
        with self._lock:
            if not drained:
                self._abandoned = True
                for lane in self._live_lanes():
                    self._transport.assign(lane, None)
            members = list(self._members.values())
            for m in members:
                m.sub._end("bus shut down")
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._stopped_consumers = [m.consumer for m in members]
        stopped = self._transport.close(self._stopped_consumers, remaining if drained else min(remaining or 0.0, 1.0))
        result = drained and stopped
        with self._lock:
            self._shutdown_result = result
        _exit.unregister(self)
        return result

    close = shutdown

    def close_at_exit(self, timeout: float) -> None:
        """Shut the bus down at interpreter exit within *timeout* seconds (called by
        :mod:`nova._util.atexit`, stage ``STAGE_ROUTER``; not for direct use).

        Delivers what it can in the time; the deliveries left undelivered (a handler
        still running or blocked, events waiting behind it, retries waiting for their
        backoff) are logged on the ``nova.bus`` logger at WARNING, with their count,
        and abandoned (not dead-lettered: a dead-letter handler is user code that
        could block the exit too).  The delivery threads are daemons: one stuck in a
        handler cannot hold the interpreter.  Does nothing in a forked child or for a
        bus already shut down."""
        if self._forked_from is not None or self._shutdown_result is not None:
            return
        try:
            ok = self.shutdown(max(0.0, timeout))
        except RuntimeError:  # called from one of this bus's handlers (exit in a handler)
            return
        if not ok:
            undelivered = self.stats().undelivered
            if undelivered:
                _log.warning(
                    "nova: bus %r left open at interpreter exit: %d accepted deliveries were not "
                    "delivered within the %.3g s exit budget (waiting for a subscriber, waiting "
                    "for a retry, or in a batch whose handler call was still running or blocked); "
                    "they are abandoned",
                    self.name,
                    undelivered,
                    timeout,
                )

    def _after_fork_in_child(self, parent: int) -> None:
        # In the child just forked: only the forking thread exists; the delivery
        # threads and whatever other threads held stayed in the parent.
        self._lock = threading.RLock()  # another thread may have held it at fork
        self._forked_from = parent
        self._closed = True

    def join(self, timeout: Any = None) -> bool:
        """After :meth:`shutdown`, wait until every delivery thread has ended (after a
        shutdown that timed out, a handler call that was running then finishes first).
        Returns False if *timeout* passed first.

        Raises:
            RuntimeError: the bus was not shut down.
        """
        timeout = _check_timeout(timeout)
        if self._shutdown_result is None:
            raise RuntimeError("Expected a shut-down bus, got an open one (call shutdown() first)")
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for c in self._stopped_consumers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = c.join(remaining) and ok
        return ok

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._closed

    def _sleep(self, consumer: Any, seconds: float) -> bool:
        """Backoff sleep on a delivery thread; True if the consumer was stopped."""
        if self._clock is SYSTEM_CLOCK:
            return bool(consumer.wait_stop(seconds))
        self._clock.sleep(seconds)
        return bool(consumer.stopping)

    # -- stats -------------------------------------------------------------------------
    def _retire(self, lanes: Iterable[Any]) -> None:
        # Caller holds the lock.  Lanes of removed slots: their counters are folded
        # into the bus totals as soon as nothing of theirs is in flight (the lane, its
        # slot and dedup window are then let go); a lane with a batch still in flight
        # (its handler running) is kept until a later call finds it settled.  So what
        # is kept is bounded by the handler calls running, not by the churn.
        keep = []
        folded = self._folded
        for lane in itertools.chain(self._retired, lanes):
            if lane.pending() == 0:
                for k in _LANE_COUNTERS:
                    folded[k] += getattr(lane, k)
            else:
                keep.append(lane)
        self._retired = keep

    def stats(self) -> BusStats:
        """Counters (see :class:`BusStats`)."""
        with self._lock:
            live = self._live_lanes()
            self._retire(())
            keep = self._retired
            sums = dict(self._folded)
            for lane in live + keep:
                for k in _LANE_COUNTERS:
                    sums[k] += getattr(lane, k)
            published = self._deleted_published + sum(sum(t.log.offsets()) for t in self._topics.values())
            pending = sum(lane.pending() for lane in live + keep)
            if self._metrics_on:
                self._metrics.set_queue_size(f"bus:{self.name}", pending)
            return BusStats(
                topics=len(self._topics),
                subscriptions=len(self._members),
                published=published,
                deliveries=sums["enqueued"],
                handled=sums["handled"],
                failed=sums["failed"],
                retried=sums["retried"],
                dead_lettered=sums["dead"],
                duplicates=sums["dups"],
                dropped=sums["dropped"] + sums["evicted"],
                evicted=sums["evicted"],
                discarded=sums["discarded"],
                pending=pending,
                undelivered=pending if self._abandoned else 0,
                hook_errors=sums["hook_errors"],
                dead_letter_errors=sums["dl_errors"],
            )

    # -- context managers --------------------------------------------------------------
    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.shutdown)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Bus {self.name!r} {state} topics={len(self._topics)} subscriptions={len(self._members)}>"


#: Every Bus of this process, for the fork handler below.
_BUSES: weakref.WeakSet[Bus] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    parent = os.getppid()
    for bus in list(_BUSES):
        bus._after_fork_in_child(parent)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_LANE_COUNTERS = (
    "enqueued",
    "evicted",
    "discarded",
    "dropped",
    "settled",
    "handled",
    "failed",
    "dead",
    "dups",
    "retried",
    "hook_errors",
    "dl_errors",
)
