"""The Bus facade: topics, publishing, subscriptions, groups, completion and stats.

See :mod:`nova.bus` for the model.  The pieces live beside it: value types in
:mod:`nova.bus.config`, what a subscriber does with a batch in
:mod:`nova.bus.delivery`, exactly-once dedup in :mod:`nova.bus.dedup`, counters in
:mod:`nova.bus.ledger`; partitions, lanes and delivery threads behind the lane
interface of :mod:`nova.transport.base`.  Over ~600 lines only by the :class:`Bus`
docstrings: it holds the public API and nothing else.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from nova import _core
from nova._util import atexit as _exit
from nova._util.checks import check_clock, check_int, check_opt_callable, check_timeout
from nova.bus.config import (
    BusStats,
    DeliveryMode,
    PublishReceipt,
    TopicConfig,
    check_group,
    check_mode,
    check_topic_name,
)
from nova.bus.registry import Registry
from nova.bus.topics import Topic
from nova.errors import BusClosed, PatternError, SubscriptionNotFound, Timeout, type_name
from nova.events import EVENT_CLASSES, Event, Subscription, as_listener
from nova.observability.metrics import NoOpMetricsCollector
from nova.observability.observers import check as check_observer
from nova.observability.observers import plus as observers_plus
from nova.transport import default_transport
from nova.transport.base import OVERFLOW_POLICIES, Consumer, Transport

if TYPE_CHECKING:
    from nova.resilience.redrive import RedriveReport

__all__ = ("Bus",)

_log = logging.getLogger("nova.bus")

_partition_for = _core.partition_for
_tuple_new = tuple.__new__
# publish's partition cache (benchmark: ratio_bus.py "publish with key, no subscribers")
_PCACHE_SIZE = 16384  # keys remembered per topic by publish (cleared when full)
_PCACHE_MAX_KEY = 256  # longer keys are not remembered (the cache must not hold big caller data)
_PCACHE_TYPES = (str, bytes)  # only keys of exactly these types are remembered (see publish)


class Bus:
    """Topics with partitions, delivery modes, consumer groups and pattern subscriptions.

    (Size: one facade, the whole documented public API; each mechanism is a sibling module.)

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
        transport: where partitions live, a :class:`~nova.transport.base.Transport`
            (``nova.transport.default_transport(pool)``, in-process, by default).
        auto_create_topics: when True (default), ``publish`` and ``subscribe`` create a
            missing topic with the defaults; when False they raise
            :class:`~nova.errors.TopicNotFound` and only :meth:`create_topic` makes
            topics (use it when topic names come from untrusted input).
        tracing: a :class:`~nova.observability.Tracing` to trace every publish and
            delivery attempt with OpenTelemetry (``None``: no tracing, and no cost).

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

    Size: the public Bus API and its docstrings only; the work is in sibling modules.
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
        tracing: Any = None,
    ) -> None:
        if tracing is not None:
            check_observer(tracing)
        if not isinstance(auto_create_topics, bool):
            raise TypeError(f"Expected auto_create_topics as a bool, got {type_name(auto_create_topics)}")
        self._default_partitions = check_int(default_partitions, "default_partitions", 1)
        self._default_delivery = check_mode(default_delivery, "default_delivery")
        self._buffer_size = check_int(buffer_size, "buffer_size", 1)
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
        self._on_error = check_opt_callable(on_error, "on_error(event, exc, listener)")
        self._clock = check_clock(clock)
        if metrics is None:
            metrics = NoOpMetricsCollector()
        elif not callable(getattr(metrics, "inc_events_processed", None)):
            raise TypeError(f"Expected a MetricsCollector or None, got {type_name(metrics)}")
        self._metrics = metrics
        self._metrics_on = bool(getattr(metrics, "enabled", True))
        self._sink_metrics = metrics if self._metrics_on else None  # what delivery reports to
        if pool is not None and not callable(getattr(pool, "submit", None)):
            raise TypeError(f"Expected pool as a WorkerPool or None, got {type_name(pool)}")
        self._pool = pool
        if transport is None:
            transport = default_transport(pool)
        elif not isinstance(transport, Transport):
            raise TypeError(f"Expected a nova.transport.base.Transport, got {type_name(transport)}")
        self._transport = transport
        self._registry = Registry(
            name,
            transport,
            partitions=self._default_partitions,
            delivery=self._default_delivery,
            buffer_size=self._buffer_size,
            overflow=overflow,
            auto_create=auto_create_topics,
            metrics=self._sink_metrics,
            on_error=self._on_error,
            clock=self._clock,
            check_open=self._check_open,
            is_closed=lambda: self._closed,
            is_forked=lambda: self._forked_from is not None,
            on_first_consumer=self._register_exit,
        )
        self._lock = self._registry.lock
        self._topics = self._registry.topics  # read by publish without the lock
        self._closed = False
        self._shutdown_result: bool | None = None
        self._abandoned = False
        self._stopped_consumers: list[Consumer] = []
        self._forked_from: int | None = None  # the parent's pid in a forked child
        self._obs: Any = None  # tracing / audit trail: an observer or Observers (nova.observability.observers)
        _BUSES.add(self)
        if tracing is not None:
            self._add_observer(tracing)

    def _add_observer(self, observer: Any) -> None:
        """Let *observer* (a Tracing or an AuditTrail) see every publish and delivery
        attempt from now on.  The instance's ``publish`` becomes the observed one when
        an observer wants sends (tracing; unobserved, ``publish`` stays the class's,
        without even a check), and every subscriber delivers on the general path."""
        with self._lock:
            self._obs = observers_plus(self._obs, observer)
            if self._obs.producer:
                self.publish = self._publish_observed  # type: ignore[method-assign]
            self._registry.observe(self._obs)

    def _publish_observed(self, topic: str, event: Event, *, key: str | bytes | None = None,
                          timeout: Any = None) -> PublishReceipt:
        obs = self._obs
        assert obs is not None
        if not isinstance(event, EVENT_CLASSES):
            raise TypeError(f"Expected an Event, got {type_name(event)}")
        dest = topic if isinstance(topic, str) else "?"
        tokens = obs.send(event, dest, "bus")
        try:
            r = Bus.publish(self, topic, event, key=key, timeout=timeout)
        except BaseException as exc:
            obs.sent(tokens, None, exc)
            raise
        obs.sent(tokens, r.partition, None)
        return r

    # -- topics ------------------------------------------------------------------------
    def create_topic(self, name: str, config: TopicConfig | None = None) -> None:
        """Create topic *name* with *config* (``None`` fields take the bus defaults).
        Existing pattern subscriptions that match it are attached at once.

        Raises:
            TopicExists: the topic exists (also if it was made by a publish/subscribe).
            TypeError / ValidationError: a bad name or config.
            BusClosed: the bus was shut down.
        """
        check_topic_name(name)
        if config is None:
            config = TopicConfig()
        elif not isinstance(config, TopicConfig):
            raise TypeError(f"Expected a TopicConfig or None, got {type_name(config)}")
        self._registry.create(name, config)

    def delete_topic(self, name: str) -> None:
        """Delete topic *name*.  Events still waiting for its subscribers are discarded
        (counted in ``stats().discarded``); its direct subscriptions end (inactive, with
        ``end_reason == "topic deleted"``); pattern subscriptions stay for other topics.

        Raises:
            TopicNotFound: no such topic.
            TypeError / ValidationError: a bad name.
        """
        check_topic_name(name)
        self._check_not_forked()
        for c in self._registry.delete(name):
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
        return self._registry.get(name).config()

    def partition_for(self, topic: str, key: str | bytes) -> int:
        """The partition of *topic* that events with *key* go to (Kafka's choice).

        Raises:
            TopicNotFound: no such topic.
            TypeError: *key* is not ``str``/``bytes``.
        """
        return int(_partition_for(key, self._registry.get(topic).partitions))

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
            Exception: whatever ``ordering_key`` raises.
        """
        try:
            t = self._topics.get(topic)
        except TypeError:  # unhashable: not a topic name
            t = None
        if t is None or self._closed:
            t = self._intake_topic(topic, event, key, timeout)
        if not isinstance(event, EVENT_CLASSES):
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
            timeout = check_timeout(timeout)
        off = t.append(p, event, timeout)
        if self._metrics_on:
            self._metrics.inc_events_emitted(event.type, "ok")
        return _tuple_new(PublishReceipt, (topic, p, off))

    def _intake_topic(self, name: object, event: object = None, key: object = None, timeout: object = None) -> Topic:
        # The slow path of publish: a new topic (or a closed bus).  The other arguments
        # are checked first, so a bad publish does not leave a topic behind.
        check_topic_name(name)
        assert isinstance(name, str)
        if not isinstance(event, EVENT_CLASSES):
            raise TypeError(f"Expected an Event, got {type_name(event)}")
        if key is not None:
            _partition_for(key, 1)  # raises TypeError for a key that is not str/bytes
        check_timeout(timeout)
        return self._registry.create(name, None)

    def publish_many(
        self, topic: str, events: Iterable[Event], *, key: str | bytes | None = None, timeout: Any = None
    ) -> list[PublishReceipt]:
        """Publish each of *events* in order (as :meth:`publish`); *timeout* bounds the
        whole call.  Returns their receipts.  On an error, the events before the
        failing one stay published (the error says nothing about them).

        Raises:
            TypeError: *events* is not iterable (or as :meth:`publish`).
        """
        if isinstance(events, (str, bytes, *EVENT_CLASSES)) or not isinstance(events, Iterable):
            raise TypeError(f"Expected an iterable of Events, got {type_name(events)}")
        deadline = None
        seconds = check_timeout(timeout)
        if self._transport.blocking_io and (self._obs is None or not self._obs.producer):
            return self._publish_batch(topic, list(events), key, seconds)
        if seconds is not None:
            deadline = time.monotonic() + seconds
        out = []
        publish = self.publish
        for ev in events:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(publish(topic, ev, key=key, timeout=remaining))
        return out

    def _publish_batch(self, topic: str, events: list[Event], key: Any, timeout: float | None) -> list[PublishReceipt]:
        # publish_many on a transport that batches its appends (network round trips):
        # every event is checked and given its partition first, as publish does.
        t = self._topics.get(topic) if isinstance(topic, str) else None
        if t is None or self._closed:
            if not events:
                check_topic_name(topic)
                return []
            t = self._intake_topic(topic, events[0], key, timeout)
        parts: list[int] = []
        n = t.partitions
        ok = t.ordering_key
        try:
            for ev in events:
                if not isinstance(ev, EVENT_CLASSES):
                    raise TypeError(f"Expected an Event, got {type_name(ev)}")
                k = key if key is not None or ok is None else ok(ev)
                parts.append(int(_partition_for(k, n)) if k is not None else (next(t.rr) % n if n > 1 else 0))
        except BaseException:
            t.log.append_many(parts, events[:len(parts)], timeout)  # the ones before stay published
            raise
        offsets = t.log.append_many(parts, events, timeout)
        if self._metrics_on:
            for ev in events:
                self._metrics.inc_events_emitted(ev.type, "ok")
        return [_tuple_new(PublishReceipt, (topic, p, off)) for p, off in zip(parts, offsets)]

    async def apublish(
        self, topic: str, event: Event, *, key: str | bytes | None = None, timeout: Any = None
    ) -> PublishReceipt:
        """:meth:`publish` for asyncio code: never blocks the event loop (a publish that
        would wait for buffer room waits on a worker thread instead).  Cancelling it
        while it waits for room withdraws it: the event is not published later (the
        worker stops trying within about 50 ms; an event that landed just before the
        cancellation stays published).

        Raises the same exceptions as :meth:`publish`.
        """
        if self._transport.blocking_io:  # an append is a network round trip
            return await asyncio.to_thread(self.publish, topic, event, key=key, timeout=timeout)
        if self._overflow != "block":
            return self.publish(topic, event, key=key, timeout=timeout)
        timeout = check_timeout(timeout)  # at the call, even when the first try lands
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
        check_topic_name(topic)
        group = check_group(group)
        return self._registry.subscribe(topic, as_listener(listener), group)

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
            PatternError: *pattern* does not compile (a :class:`ValueError` and a
                :class:`re.error`).
            TypeError: *pattern* is not a str or compiled pattern; bad listener/group.
            BusClosed: the bus was shut down.
        """
        if isinstance(pattern, re.Pattern):
            rx = pattern
        elif isinstance(pattern, str):
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                raise PatternError(
                    f"Expected a valid regular expression, got {pattern!r} ({exc})", exc.pattern, exc.pos
                ) from exc
        else:
            raise TypeError(f"Expected a str regex or a compiled re.Pattern, got {type_name(pattern)}")
        if not isinstance(rx.pattern, str):
            raise TypeError("Expected a str regex, got a bytes pattern")
        group = check_group(group)
        return self._registry.subscribe_pattern(rx, as_listener(listener), group)

    def _register_exit(self) -> None:
        # The first delivery thread started: finish at interpreter exit.
        _exit.register(self.close_at_exit, _exit.STAGE_ROUTER)

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
        if self._registry.issued.get(subscription.id) is not subscription:
            raise SubscriptionNotFound(f"Expected a subscription of bus {self.name!r}, got {subscription!r}")
        return subscription.unsubscribe()

    def assignment(self, topic: str, group: str) -> dict[str, list[int]]:
        """The partitions of *topic* each member (by subscription id) of *group* owns.

        Raises:
            TopicNotFound: no such topic.  SubscriptionNotFound: no such group on it.
        """
        self._registry.get(topic)
        check_group(group)
        return self._registry.assignment(topic, group)

    # -- completion --------------------------------------------------------------------
    def flush(self, timeout: Any = None) -> bool:
        """Wait until every event published before this call has been handled,
        failed (at-most-once), dead-lettered or skipped as a duplicate by every
        subscriber (or discarded because its subscriber left).  Returns False if
        *timeout* seconds passed first.

        Raises:
            RuntimeError: called from a handler of this bus (it would wait for itself).
            BusClosed: the bus was inherited through ``fork()`` (in the child).
        """
        timeout = check_timeout(timeout)
        self._check_not_forked()
        self._refuse_from_handler("flush")
        with self._lock:
            lanes = self._registry.live_lanes() + self._registry.ledger.pending_retired()
        targets = [(lane, lane.enqueued) for lane in lanes]
        return self._transport.wait_settled(targets, timeout)

    def _drain(self, timeout: float | None) -> bool:
        # shutdown's wait: what the transport says this bus accepted (in-process: every
        # event enqueued, as flush; across processes: see the transport's drain).
        with self._lock:
            lanes = self._registry.live_lanes() + self._registry.ledger.pending_retired()
        return self._transport.drain(lanes, timeout)

    def redrive(
        self,
        store: Any,
        *,
        topic: str | None = None,
        listener_id: str | None = None,
        start: Any = None,
        end: Any = None,
        dry_run: bool = False,
        on_open: str = "stop",
    ) -> RedriveReport:
        """Re-deliver the Bus dead letters stored in *store* (stream
        ``"nova.deadletter"``, written by a topic's ``DeadLetterConfig(store=...)``) to
        the subscriber that dead-lettered each one: all topics or only *topic*, all
        subscribers or only *listener_id*, entries with timestamps in ``[start, end)``.
        Not re-published: other subscribers and groups do not see the event again (see
        :mod:`nova.bus.redrive`; re-publish ``redrive(store, dry_run=True).events``
        yourself for that).

        Each entry runs on the calling thread (concurrently with the subscriber's
        delivery thread), with the delivery pipeline: handler, hooks, the topic's retry
        policy, then the topic's dead-letter config (a ManagedListener subscriber
        applies its own policy and breaker).  Entries of a subscriber no longer
        subscribed to the entry's topic are skipped and stay to be redriven.
        Idempotent as :meth:`nova.ListenerManager.redrive` is (acks in stream
        ``"nova.deadletter.ack"``); a ManagedListener's open breaker stops the redrive
        (``on_open="stop"``) or is waited for on the bus clock (``"wait"``);
        ``dry_run=True`` runs nothing and lists the events.  Outcomes are reported in
        the returned :class:`~nova.resilience.redrive.RedriveReport`, not in
        :meth:`stats` (which counts deliveries from the partitions).

        Raises:
            TypeError: *store* is not an EventStore, or a bad *listener_id*.
            ValidationError: a bad topic name.  TopicNotFound: *topic* does not exist.
            ValueError: *on_open* is not ``"stop"`` or ``"wait"``.
            BusClosed: the bus was shut down.

        .. versionadded:: 0.2
        """
        from nova.bus.redrive import redrive_bus

        self._check_open()
        if not callable(getattr(store, "replay", None)) or not callable(getattr(store, "append", None)):
            raise TypeError(f"Expected an EventStore (with replay and append) to redrive from, got {type_name(store)}")
        if topic is not None:
            self._registry.get(topic)
        if listener_id is not None and not isinstance(listener_id, str):
            raise TypeError(f"Expected listener_id as a str or None, got {type_name(listener_id)}")
        return redrive_bus(self._registry, self._clock, store, topic=topic, listener_id=listener_id,
                           start=start, end=end, dry_run=dry_run, on_open=on_open)

    def _refuse_from_handler(self, what: str) -> None:
        if self._transport.in_delivery():
            raise RuntimeError(f"Expected {what}() from outside this bus's handlers, got a call from a handler")

    def shutdown(self, timeout: Any = None) -> bool:
        """Stop intake (``publish``/``subscribe`` raise :class:`~nova.errors.BusClosed`),
        deliver every accepted event (retries included), then stop the delivery
        threads.  If *timeout* seconds pass first, the rest is abandoned:
        ``stats().undelivered`` says how many deliveries, and False is returned.
        Subscriptions end (``end_reason == "bus shut down"``).  Idempotent: a second
        call returns the first result.
        """
        timeout = check_timeout(timeout)
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
        drained = self._drain(timeout)
        with self._lock:
            if not drained:
                self._abandoned = True
                for lane in self._registry.live_lanes():
                    self._transport.assign(lane, None)
            members = list(self._registry.members.values())
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
        self._lock = self._registry.lock = threading.RLock()  # another thread may have held it at fork
        self._forked_from = parent
        self._closed = True

    def join(self, timeout: Any = None) -> bool:
        """After :meth:`shutdown`, wait until every delivery thread has ended (after a
        shutdown that timed out, a handler call that was running then finishes first).
        Returns False if *timeout* passed first.

        Raises:
            RuntimeError: the bus was not shut down.
        """
        timeout = check_timeout(timeout)
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

    def stats(self) -> BusStats:
        """Counters (see :class:`BusStats`)."""
        with self._lock:
            sums, pending = self._registry.ledger.totals(self._registry.live_lanes())
            published = self._registry.deleted_published + sum(sum(t.log.offsets()) for t in self._topics.values())
            if self._metrics_on:
                self._metrics.set_queue_size(f"bus:{self.name}", pending)
            return BusStats(
                topics=len(self._topics),
                subscriptions=len(self._registry.members),
                published=published,
                deliveries=sums.enqueued,
                handled=sums.handled,
                failed=sums.failed,
                retried=sums.retried,
                dead_lettered=sums.dead,
                duplicates=sums.dups,
                dropped=sums.dropped + sums.evicted,
                evicted=sums.evicted,
                discarded=sums.discarded,
                pending=pending,
                undelivered=pending if self._abandoned else 0,
                hook_errors=sums.hook_errors,
                dead_letter_errors=sums.dl_errors,
            )

    def topic_counts(self) -> dict[str, list[int]]:
        """Per live topic: ``[published, handled, failed, retried, dead_lettered,
        duplicates, dropped, pending]`` summed over its current subscribers' lanes (what
        :meth:`nova.observability.PrometheusMetricsCollector.watch` reports).  Counts of
        removed subscribers and deleted topics are in :meth:`stats` only."""
        out: dict[str, list[int]] = {}
        with self._lock:
            for name, t in self._topics.items():
                row = [sum(t.log.offsets()), 0, 0, 0, 0, 0, 0, 0]
                for s in t.all_slots():
                    for lane in s.tslot.lanes:
                        c = lane.counts()
                        row[1] += c.handled
                        row[2] += c.failed
                        row[3] += c.retried
                        row[4] += c.dead
                        row[5] += c.dups
                        row[6] += c.dropped + c.evicted
                        row[7] += lane.pending()
                out[name] = row
        return out

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
        return f"<Bus {self.name!r} {state} topics={len(self._topics)} subscriptions={len(self._registry.members)}>"


#: Every Bus of this process, for the fork handler below.
_BUSES: weakref.WeakSet[Bus] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    parent = os.getppid()
    for bus in list(_BUSES):
        bus._after_fork_in_child(parent)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
