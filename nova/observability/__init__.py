"""Observability: metrics collectors, Prometheus export, tracing, health endpoint, audit.

* :class:`MetricsCollector` (the protocol every component reports to),
  :class:`NoOpMetricsCollector`, :class:`SimpleMetricsCollector`;
* :class:`PrometheusMetricsCollector` (extra ``nova-events[prometheus]``);
* :class:`Tracing`: OpenTelemetry spans and W3C trace context in events (extra
  ``nova-events[otel]``);
* :func:`serve`: ``GET /healthz`` and ``GET /metrics`` over HTTP; :func:`health_report`;
* :class:`AuditTrail`: every delivery attempt recorded in an EventStore stream.

Names are imported on first use (``import nova.emitter`` does not pull in the HTTP
server).  See ``docs/observability.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nova._util.lazy import lazy_dir, load_lazy
from nova.observability.metrics import (
    MetricsCollector,
    NoOpMetricsCollector,
    SimpleMetricsCollector,
)

__all__ = (
    "MetricsCollector",
    "NoOpMetricsCollector",
    "SimpleMetricsCollector",
    "PrometheusMetricsCollector",
    "Tracing",
    "AuditTrail",
    "AuditRecord",
    "serve",
    "Server",
    "health_report",
)

_LAZY = {
    "PrometheusMetricsCollector": "nova.observability.prometheus",
    "Tracing": "nova.observability.tracing",
    "AuditTrail": "nova.observability.audit",
    "AuditRecord": "nova.observability.audit",
    "serve": "nova.observability.http",
    "Server": "nova.observability.http",
    "health_report": "nova.observability.health",
}

if TYPE_CHECKING:
    from nova.observability.audit import AuditRecord, AuditTrail
    from nova.observability.health import health_report
    from nova.observability.http import Server, serve
    from nova.observability.prometheus import PrometheusMetricsCollector
    from nova.observability.tracing import Tracing


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return lazy_dir(globals(), __all__)
