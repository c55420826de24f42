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

Modules: :mod:`~nova.bus.bus` (the :class:`Bus` facade), :mod:`~nova.bus.config`
(:class:`TopicConfig`, :class:`DeliveryMode`, :class:`DedupWindow`,
:class:`PublishReceipt`, :class:`BusStats`), :mod:`~nova.bus.topics` (a topic's
record), :mod:`~nova.bus.delivery` (per-lane delivery: retries and dead letters through
:mod:`nova.resilience`), :mod:`~nova.bus.fastpath` (its benchmarked tight loops),
:mod:`~nova.bus.dedup` (exactly-once ids), :mod:`~nova.bus.ledger` (the counters).

.. versionadded:: 0.1
"""

from __future__ import annotations

from nova.bus.bus import Bus
from nova.bus.config import (
    DEFAULT_DEDUP_WINDOW,
    MAX_TOPIC_NAME,
    BusStats,
    DedupWindow,
    DeliveryMode,
    PublishReceipt,
    TopicConfig,
)

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
