"""Observability: metrics collectors, Prometheus export, tracing, health endpoint, audit.

* :class:`MetricsCollector` (the protocol every component reports to),
  :class:`NoOpMetricsCollector`, :class:`SimpleMetricsCollector`;
* :class:`PrometheusMetricsCollector` (extra ``nova-events[prometheus]``);
* :func:`serve`: ``GET /healthz`` and ``GET /metrics`` over HTTP;
* :func:`health_report`: the same health as plain data.

See ``docs/observability.md``.
"""

from nova.observability.health import health_report
from nova.observability.http import Server, serve
from nova.observability.metrics import (
    MetricsCollector,
    NoOpMetricsCollector,
    SimpleMetricsCollector,
)
from nova.observability.prometheus import PrometheusMetricsCollector

__all__ = (
    "MetricsCollector",
    "NoOpMetricsCollector",
    "SimpleMetricsCollector",
    "PrometheusMetricsCollector",
    "serve",
    "Server",
    "health_report",
)
