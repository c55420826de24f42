"""The Bus's record of one topic: its effective settings, its log and its subscribers.

.. versionadded:: 0.2
"""

from __future__ import annotations

import itertools
from typing import Any

from nova.bus.config import DEFAULT_DEDUP_WINDOW, DedupWindow, DeliveryMode, TopicConfig
from nova.bus.delivery import Delivery
from nova.resilience.policy import DeadLetterConfig, RetryPolicy
from nova.transport.base import TopicLog

__all__ = ("Topic",)


class Topic:
    """One topic: *cfg* with the bus defaults filled in, the transport's *log*, the
    ungrouped subscribers (``slots``) and the consumer groups (``groups``)."""

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

    def __init__(self, name: str, cfg: TopicConfig, partitions: int, delivery: DeliveryMode, buffer_size: int) -> None:
        self.name = name
        self.partitions: int = cfg.partitions if cfg.partitions is not None else partitions
        self.delivery: DeliveryMode = cfg.delivery if cfg.delivery is not None else delivery  # type: ignore[assignment]
        self.ordering_key = cfg.ordering_key
        self.buffer_size: int = cfg.buffer_size if cfg.buffer_size is not None else buffer_size
        self.retry = cfg.retry if cfg.retry is not None else RetryPolicy()
        dw = cfg.dedup_window
        self.dedup: DedupWindow = dw if isinstance(dw, DedupWindow) else DEFAULT_DEDUP_WINDOW
        self.dead_letter = cfg.dead_letter if cfg.dead_letter is not None else DeadLetterConfig()
        self.log: TopicLog = None  # type: ignore[assignment]  # set by open()
        self.append: Any = None
        self.rr = itertools.count()
        self.pcache: dict[Any, int] = {}  # recent key -> partition (keys repeat: customers, ...)
        self.slots: list[Delivery] = []  # ungrouped: one per member
        self.groups: dict[str, Delivery] = {}

    def adopt(self, settings: dict[str, Any]) -> None:
        """Take the *settings* a transport holds for this topic (another process
        created it first): ``partitions``, ``delivery``, ``dedup_age``."""
        self.partitions = int(settings["partitions"])
        self.delivery = DeliveryMode(settings["delivery"])
        age = settings.get("dedup_age")
        if age != self.dedup.max_age:
            ids = self.dedup.max_ids
            self.dedup = DedupWindow(ids if ids is not None or age is not None else DEFAULT_DEDUP_WINDOW.max_ids, age)

    def open(self, log: TopicLog) -> None:
        """Attach the transport's *log* for this topic."""
        self.log = log
        self.append = log.append

    def config(self) -> TopicConfig:
        """The effective configuration (defaults filled in)."""
        return TopicConfig(
            partitions=self.partitions,
            delivery=self.delivery,
            ordering_key=self.ordering_key,
            buffer_size=self.buffer_size,
            retry=self.retry,
            dedup_window=self.dedup,
            dead_letter=self.dead_letter,
        )

    def all_slots(self) -> list[Delivery]:
        """Every subscriber: ungrouped ones, then groups."""
        return self.slots + list(self.groups.values())
