"""nova: a fast, trustworthy event system for Python, on a Cython core.

Emit events to listeners in-process (:class:`Emitter`), route them over topics with
partitions and delivery guarantees (:class:`Bus`), make listeners resilient
(:class:`ListenerManager`), and keep a columnar event store that replays any timestamp
window fast (:class:`MemoryStore`).

Public names are imported lazily on first use, so ``import nova`` stays cheap.

``nova.USING_EXTENSIONS`` tells whether the compiled kernels are active;
``nova.show_versions()`` prints the versions and the active implementation.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from nova import errors
from nova._core import USING_EXTENSIONS
from nova._util.lazy import lazy_dir, load_lazy
from nova._version import __version__

__all__ = (
    "Event",
    "Listener",
    "Subscription",
    "as_listener",
    "Emitter",
    "Bus",
    "TopicConfig",
    "DeliveryMode",
    "DedupWindow",
    "PublishReceipt",
    "BusStats",
    "ListenerManager",
    "ListenerConfig",
    "RetryPolicy",
    "Backoff",
    "CircuitConfig",
    "DeadLetterConfig",
    "DeadLetter",
    "Health",
    "HealthDetail",
    "RedriveReport",
    "EventStore",
    "MemoryStore",
    "SQLiteStore",
    "RedisStore",
    "RedisTransport",
    "open_store",
    "Cursor",
    "EventBatch",
    "WorkerPool",
    "Semaphore",
    "RateLimiter",
    "RingQueue",
    "TokenBucket",
    "MetricsCollector",
    "AuditTrail",
    "NoOpMetricsCollector",
    "SimpleMetricsCollector",
    "murmur2",
    "partition_for",
    "partition_many",
    "errors",
    "USING_EXTENSIONS",
    "show_versions",
    "__version__",
)

_LAZY: dict[str, str] = {
    "Event": "nova.events",
    "Listener": "nova.events",
    "Subscription": "nova.events",
    "as_listener": "nova.events",
    "Emitter": "nova.emitter",
    "Bus": "nova.bus",
    "TopicConfig": "nova.bus",
    "DeliveryMode": "nova.bus",
    "DedupWindow": "nova.bus",
    "PublishReceipt": "nova.bus",
    "BusStats": "nova.bus",
    "ListenerManager": "nova.listener",
    "ListenerConfig": "nova.listener",
    "RetryPolicy": "nova.listener",
    "Backoff": "nova.listener",
    "CircuitConfig": "nova.listener",
    "DeadLetterConfig": "nova.listener",
    "DeadLetter": "nova.listener",
    "Health": "nova.listener",
    "HealthDetail": "nova.listener",
    "RedriveReport": "nova.listener",
    "EventStore": "nova.store",
    "MemoryStore": "nova.store",
    "SQLiteStore": "nova.store",
    "RedisStore": "nova.store",
    "RedisTransport": "nova.transport.redis",
    "open_store": "nova.store",
    "Cursor": "nova.store",
    "EventBatch": "nova.store",
    "WorkerPool": "nova.pool",
    "Semaphore": "nova.pool",
    "RateLimiter": "nova.pool",
    "RingQueue": "nova._core",
    "TokenBucket": "nova._core",
    "MetricsCollector": "nova.observability.metrics",
    "AuditTrail": "nova.observability.audit",
    "NoOpMetricsCollector": "nova.observability.metrics",
    "SimpleMetricsCollector": "nova.observability.metrics",
    "murmur2": "nova._core",
    "partition_for": "nova._core",
    "partition_many": "nova._core",
}

if TYPE_CHECKING:  # pragma: no cover - type checkers see the real classes, not Any
    from nova._core.bucket_py import TokenBucket
    from nova._core.hashing_py import murmur2, partition_for, partition_many
    from nova._core.ring_py import RingQueue
    from nova.bus import BusStats, DedupWindow, DeliveryMode, PublishReceipt, TopicConfig
    from nova.bus import Bus
    from nova.emitter import Emitter
    from nova.events import Event, Listener, Subscription, as_listener
    from nova.listener import (
        Backoff,
        CircuitConfig,
        DeadLetter,
        DeadLetterConfig,
        Health,
        HealthDetail,
        ListenerConfig,
        ListenerManager,
        RedriveReport,
        RetryPolicy,
    )
    from nova.observability.audit import AuditTrail
    from nova.observability.metrics import (
        MetricsCollector,
        NoOpMetricsCollector,
        SimpleMetricsCollector,
    )
    from nova.pool import RateLimiter, Semaphore, WorkerPool
    from nova.store import Cursor, EventBatch, EventStore, MemoryStore, SQLiteStore
    from nova.transport.redis import RedisTransport


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return lazy_dir(globals(), __all__)


def show_versions(file: Any = None) -> dict[str, str]:
    """Print (to *file*, default stdout) and return the versions nova runs with:
    nova, Python, numpy, the Cython and numpy used at build time, and which
    implementation of the kernels is active."""
    import platform

    import numpy

    from nova import _core

    try:
        from nova._core import _build_info

        cython_build = _build_info.CYTHON_VERSION
        numpy_build = _build_info.NUMPY_VERSION
        build_kind = "debug" if _build_info.DEBUG else "release"
    except ImportError:
        cython_build = numpy_build = build_kind = "not built"
    if USING_EXTENSIONS:
        active = "compiled (Cython)"
    elif _core.IMPORT_ERROR is not None:
        active = f"pure Python (compiled kernels failed to import: {_core.IMPORT_ERROR})"
    else:
        active = "pure Python (NOVA_NO_EXTENSIONS or not CPython)"
    info = {
        "nova": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "cython (build)": cython_build,
        "numpy (build)": numpy_build,
        "build": build_kind,
        "implementation": active,
    }
    out = file if file is not None else sys.stdout
    width = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{width}} : {v}", file=out)
    return info
