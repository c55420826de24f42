"""Where the partitions of a :class:`nova.Bus` live.

* :mod:`nova.transport.base` — the lane interface the Bus talks to (topic logs, slots,
  lanes with their counters, consumers, the transport).
* :mod:`nova.transport.inprocess` — the default: partitions, lanes and delivery
  threads in this process.
* :mod:`nova.transport.redis` — :class:`RedisTransport`: partitions on Redis Streams,
  shared by the processes of many machines (consumer groups with leases,
  :mod:`~nova.transport.redis_groups`; delivery threads,
  :mod:`~nova.transport.redis_consumer`; entries, :mod:`~nova.transport.redis_codec`).
  Imported on first use (it needs redis-py).

The Bus never names a concrete transport: it takes one, or asks
:func:`default_transport` for the default.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import Any

from nova.transport.base import Consumer, Lane, LaneCounts, Slot, TopicLog, Transport
from nova.transport.inprocess import InProcessTransport

__all__ = (
    "Transport",
    "TopicLog",
    "Slot",
    "Lane",
    "LaneCounts",
    "Consumer",
    "InProcessTransport",
    "RedisTransport",
    "default_transport",
)


def __getattr__(name: str) -> Any:
    if name == "RedisTransport":  # lazily: redis-py is an optional dependency
        from nova.transport.redis import RedisTransport

        return RedisTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_transport(pool: Any = None) -> Transport:
    """The transport a :class:`~nova.Bus` uses when given none: in-process, its
    delivery loops on *pool* (a :class:`~nova.WorkerPool`) or, for ``None``, on a
    daemon thread per consumer."""
    return InProcessTransport(pool)
