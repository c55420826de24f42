"""The Bus's table of topics and subscriptions.

Creating and deleting topics, matching pattern subscriptions against new topic names,
attaching a subscription to a topic (alone, or as a member of a consumer group),
rebalancing a group's partitions over its members, and detaching.  Every change happens
under :attr:`Registry.lock` (the bus lock); the transport is told through its lane
interface (:mod:`nova.transport.base`).

.. versionadded:: 0.2
"""

from __future__ import annotations

import dataclasses
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any

from nova.bus.config import DeliveryMode, TopicConfig, check_topic_name
from nova.bus.delivery import Delivery, Member
from nova.bus.fastpath import FastDelivery
from nova.bus.ledger import Ledger
from nova.bus.topics import Topic
from nova.errors import SubscriptionNotFound, TopicExists, TopicNotFound
from nova.events import Subscription
from nova.transport.base import Consumer, Lane, Transport

__all__ = ("Registry",)


class Registry:
    """Topics and subscriptions of one bus (see the module docstring).

    Args:
        bus_name: names delivery threads and metric labels.
        transport: where partitions live.
        partitions / delivery / buffer_size / overflow: the bus defaults.
        auto_create: whether publish/subscribe create missing topics.
        metrics: the bus's collector, ``None`` when metrics are off.
        on_error / clock: passed to each :class:`~nova.bus.delivery.Delivery`.
        check_open: raises if the bus no longer accepts topics or subscriptions.
        is_closed: True once the bus was shut down (or inherited through ``fork()``).
        is_forked: True in a child that inherited the bus through ``fork()``.
        on_first_consumer: called (under the lock) when the first delivery thread starts.
    """

    def __init__(
        self,
        bus_name: str,
        transport: Transport,
        *,
        partitions: int,
        delivery: DeliveryMode,
        buffer_size: int,
        overflow: str,
        auto_create: bool,
        metrics: Any,
        on_error: Any,
        clock: Any,
        check_open: Callable[[], None],
        is_closed: Callable[[], bool],
        is_forked: Callable[[], bool],
        on_first_consumer: Callable[[], None],
    ) -> None:
        self.bus_name = bus_name
        self.transport = transport
        self.defaults = (partitions, delivery, buffer_size)  # of Topic(...)
        self.overflow = overflow
        self.auto_create = auto_create
        self.metrics = metrics
        self.sink_settings = (metrics, on_error, clock)  # of Delivery(...)
        self.delivery_class: type[Delivery] = Delivery if metrics is not None else FastDelivery
        self.obs: Any = None  # the bus's Observers (tracing, audit) or None
        # the bus's state, asked when needed
        self.check_open, self.is_closed, self.is_forked = check_open, is_closed, is_forked
        self.on_first_consumer = on_first_consumer
        self.lock = threading.RLock()
        self.topics: dict[str, Topic] = {}
        self.members: dict[str, Member] = {}
        self.patterns: list[Member] = []
        self.issued: weakref.WeakValueDictionary[str, Subscription] = weakref.WeakValueDictionary()
        self.ledger = Ledger()  # counters of the lanes of removed subscribers
        self.deleted_published = 0  # events published to topics deleted since
        self.started = False  # a delivery thread was started

    # -- topics ---------------------------------------------------------------------------
    def get(self, name: str) -> Topic:
        """The topic *name* (checked).  Raises TopicNotFound."""
        check_topic_name(name)
        t = self.topics.get(name)
        if t is None:
            raise TopicNotFound(f"Expected an existing topic, got {name!r}")
        return t

    def create(self, name: str, config: TopicConfig | None) -> Topic:
        """Create topic *name* (checked) with *config*, or with the defaults when
        *config* is None (publish/subscribe: then an existing topic is returned, and a
        missing one is created only if the bus auto-creates topics).

        The pattern subscriptions' regexes are matched against the new name *outside*
        the bus lock (names may be untrusted and a regex slow): only this caller waits
        for them.  The topic is inserted, with the matching patterns attached, in one
        locked step once every pattern subscribed meanwhile has been tested too."""
        tested: set[Member] = set()
        matched: list[Member] = []
        while True:
            with self.lock:
                self.check_open()
                t = self.topics.get(name)
                if t is not None:
                    if config is None:
                        return t
                    raise TopicExists(f"Expected a new topic name, got existing topic {name!r}")
                if config is None and not self.auto_create:
                    raise TopicNotFound(
                        f"Expected an existing topic (the bus has auto_create_topics=False), got {name!r}"
                    )
                fresh = [m for m in self.patterns if m not in tested]
                if not fresh:
                    t = self._new_topic(name, config if config is not None else TopicConfig(), config is not None)
                    self.topics[name] = t
                    for m in matched:
                        if self.members.get(m.sub.id) is m:
                            self._attach(m, t)
                    return t
            for m in fresh:
                tested.add(m)
                if m.pattern is not None and m.pattern.fullmatch(name):
                    matched.append(m)

    def _new_topic(self, name: str, config: TopicConfig, explicit: bool = True) -> Topic:
        # Caller holds the lock.  The transport may hold the topic's settings for other
        # processes too (first creator wins): a topic made by publish/subscribe takes
        # them, an explicit create_topic must match them.
        t = Topic(name, config, *self.defaults)
        settings = {"partitions": t.partitions, "delivery": t.delivery.value, "dedup_age": t.dedup.max_age}
        got = self.transport.declare_topic(name, settings, explicit)
        if got != settings:
            t.adopt(got)
        if t.dead_letter.enabled and t.dead_letter.store is None:
            store = self.transport.dead_letter_store(name)
            if store is not None:
                t.dead_letter = dataclasses.replace(t.dead_letter, store=store)
        t.open(self.transport.open_topic(name, t.partitions, t.buffer_size, self.overflow))
        metrics = self.metrics
        if metrics is not None:
            label = f"bus:{self.bus_name}"
            t.log.on_drop = lambda reason, n: metrics.inc_events_dropped(label, reason, n)
        return t

    def delete(self, name: str) -> list[Consumer]:
        """Delete topic *name* (see :meth:`nova.Bus.delete_topic`); returns the
        consumers of its direct subscriptions, to be stopped outside the lock."""
        stop: list[Consumer] = []
        with self.lock:
            t = self.topics.pop(name, None)
            if t is None:
                raise TopicNotFound(f"Expected an existing topic, got {name!r}")
            t.log.close(deleted=True)
            for slot in t.all_slots():
                self.transport.remove_slot(slot.tslot)
                self.ledger.retire(slot.tslot.lanes)
                for m in slot.members:
                    m.slots.pop(name, None)
                    if m.pattern is None:
                        self.members.pop(m.sub.id, None)
                        m.sub._end("topic deleted")
                        stop.append(m.consumer)
            t.slots = []
            t.groups = {}
            # Only the count of the log is kept (the log itself would be kept for ever).
            # An append to a partition without subscribers racing with this deletion may
            # be counted by the log after this point, and so be missing from published.
            self.deleted_published += sum(t.log.offsets())
            self.transport.close_topic(t.log)
        return stop

    def live_lanes(self) -> list[Lane]:
        """Every lane of every subscriber of every topic."""
        with self.lock:
            return [lane for t in self.topics.values() for s in t.all_slots() for lane in s.tslot.lanes]

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, topic: str, listener: Any, group: str | None) -> Subscription:
        """Attach *listener* (checked) to *topic* (created if missing and allowed)."""
        while True:
            t = self.create(topic, None)
            with self.lock:
                self.check_open()
                if self.topics.get(topic) is not t:
                    continue  # deleted (and maybe re-created) meanwhile
                m = self._new_member(listener, topic, group, None)
                self._attach(m, t)
                return m.sub

    def subscribe_pattern(self, rx: re.Pattern[str], listener: Any, group: str | None) -> Subscription:
        """Attach *listener* to every topic, now and later, whose name fully matches *rx*."""
        with self.lock:
            self.check_open()
            m = self._new_member(listener, rx.pattern, group, rx)
            self.patterns.append(m)  # topics created from now on test it (see create)
            existing = sorted(self.topics.items())
        # Outside the lock: a slow regex must not stall the other threads.
        matched = [t for name, t in existing if rx.fullmatch(name)]
        with self.lock:
            if self.members.get(m.sub.id) is m and not self.is_closed():
                for t in matched:
                    if self.topics.get(t.name) is t:
                        self._attach(m, t)
        return m.sub

    def _new_member(self, listener: Any, topic: str, group: str | None, pattern: re.Pattern[str] | None) -> Member:
        # Caller holds the lock.
        m = Member(listener, group, pattern)
        sub = Subscription(topic, listener, self._detach)
        m.sub = sub
        m.consumer = self.transport.new_consumer(m, f"nova-{self.bus_name}-{sub.id}")
        self.members[sub.id] = m
        self.issued[sub.id] = sub
        if not self.started:  # the first delivery thread
            self.started = True
            self.on_first_consumer()
        return m

    def observe(self, obs: Any) -> None:
        """Deliver through *obs* (tracing, audit) from now on: new subscribers and the
        existing ones take the general delivery path (a FastDelivery becomes a plain
        Delivery: same slots, so its class can change; a batch running on the old
        class finishes as it started)."""
        with self.lock:
            self.obs = obs
            self.delivery_class = Delivery
            for t in self.topics.values():
                for slot in t.all_slots():
                    slot.obs = obs
                    if type(slot) is FastDelivery:
                        slot.__class__ = Delivery  # type: ignore[assignment]

    def _attach(self, m: Member, t: Topic) -> None:
        # Caller holds the lock.
        slot = None if m.group is None else t.groups.get(m.group)
        if slot is None:
            slot = self.delivery_class(t, m.group, *self.sink_settings)
            slot.obs = self.obs
            slot.members.append(m)
            slot.tslot = self.transport.add_slot(t.log, slot, [m.consumer])
            if m.group is None:
                t.slots.append(slot)
            else:
                t.groups[m.group] = slot
        else:
            slot.members.append(m)
            self._rebalance(slot)
        m.slots[t.name] = slot

    def _rebalance(self, slot: Delivery) -> None:
        # Caller holds the lock.  In-process, partition p goes to member p % len(members)
        # (members in join order); a transport across processes decides with leases.
        self.transport.rebalance(slot.tslot, [m.consumer for m in slot.members])

    def _detach(self, sub: Subscription) -> None:
        with self.lock:
            m = self.members.pop(sub.id, None)
            if m is None or self.is_forked():
                return  # forked child: the lanes and threads are the parent's
            if m.pattern is not None:
                self.patterns.remove(m)
            for name, slot in list(m.slots.items()):
                t = self.topics.get(name)
                slot.members.remove(m)
                if slot.members:
                    self._rebalance(slot)
                else:
                    self.transport.remove_slot(slot.tslot)
                    self.ledger.retire(slot.tslot.lanes)
                    if t is not None:
                        if slot.group is None:
                            t.slots.remove(slot)
                        else:
                            t.groups.pop(slot.group, None)
            m.slots.clear()
        m.consumer.stop()

    def assignment(self, topic: str, group: str) -> dict[str, list[int]]:
        """See :meth:`nova.Bus.assignment` (arguments checked by the caller)."""
        t = self.get(topic)
        with self.lock:
            slot = t.groups.get(group)
            if slot is None:
                raise SubscriptionNotFound(f"Expected a consumer group of topic {topic!r}, got {group!r}")
            out: dict[str, list[int]] = {m.sub.id: [] for m in slot.members}
            for lane in slot.tslot.lanes:
                c = lane.consumer
                if c is not None:
                    out[c.owner.sub.id].append(lane.index)
            return out
