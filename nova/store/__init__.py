"""Event stores: append events to named streams, replay any timestamp window, follow
streams live.

* :class:`EventStore` — the protocol every backend implements.
* :class:`MemoryStore` — in memory, columnar (numpy), the fastest.
* :class:`SQLiteStore` — durable, one SQLite file, windows at memory speed.
* :func:`copy` — copy events between any two stores.
* :class:`Cursor`, :class:`EventBatch`, :class:`StreamInfo`, :class:`StoreStats`,
  :class:`SubscriptionStats`, :class:`StoreSubscription` — the values they return.

.. versionadded:: 0.1
"""

from __future__ import annotations

from nova.store.batch import EventBatch
from nova.store.memory import MemoryStore
from nova.store.protocol import (
    Cursor,
    EventStore,
    StoreStats,
    StreamInfo,
    SubscriptionStats,
)
from nova.store.subscription import StoreSubscription
from nova.store.sqlite import SQLiteStore
from nova.store.transfer import copy

__all__ = (
    "EventStore",
    "MemoryStore",
    "SQLiteStore",
    "Cursor",
    "EventBatch",
    "StreamInfo",
    "StoreStats",
    "SubscriptionStats",
    "StoreSubscription",
    "copy",
)
