"""Observability: metrics collectors (and, in later releases, tracing and health)."""

from nova.observability.metrics import (
    MetricsCollector,
    NoOpMetricsCollector,
    SimpleMetricsCollector,
)

__all__ = ("MetricsCollector", "NoOpMetricsCollector", "SimpleMetricsCollector")
