"""Compatibility re-export: the EventStore protocol and its value types now live in
:mod:`nova.store.protocol`, :class:`EventBatch` in :mod:`nova.store.batch`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from nova.store.batch import EventBatch
from nova.store.protocol import (
    ON_FULL_POLICIES,
    OVERFLOW_POLICIES,
    Cursor,
    EventStore,
    StoreStats,
    StreamInfo,
    SubscriptionStats,
)

__all__ = (
    "Cursor",
    "EventBatch",
    "EventStore",
    "StreamInfo",
    "StoreStats",
    "SubscriptionStats",
    "OVERFLOW_POLICIES",
    "ON_FULL_POLICIES",
)
