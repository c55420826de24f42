"""Metrics collectors.

The :class:`MetricsCollector` protocol has the operations nova's components report.
Metric names (Prometheus style) are:

=====================================  =====================  ==========================
name                                   labels                 operation
=====================================  =====================  ==========================
``nova_events_emitted_total``          ``type``, ``result``   :meth:`inc_events_emitted`
``nova_events_processed_total``        ``listener``,          :meth:`inc_events_processed`
                                       ``result``
``nova_events_dropped_total``          ``component``,         :meth:`inc_events_dropped`
                                       ``reason``
``nova_listener_duration_seconds``     ``listener``           :meth:`observe_listener_duration`
``nova_store_append_duration_seconds`` ``store``              :meth:`observe_store_append_duration`
``nova_store_read_duration_seconds``   ``store``              :meth:`observe_store_read_duration`
``nova_queue_size``                    ``component``          :meth:`set_queue_size`
``nova_active_listeners``              ``emitter``            :meth:`set_active_listeners`
``nova_circuit_transitions_total``     ``listener``,          :meth:`inc_circuit_transitions`
                                       ``state``
=====================================  =====================  ==========================

* :class:`NoOpMetricsCollector` does nothing; its ``enabled`` attribute is ``False`` so
  components skip even the call (a component holding it pays nothing measurable).
* :class:`SimpleMetricsCollector` keeps everything in memory, thread-safe, with labels;
  :meth:`SimpleMetricsCollector.snapshot` returns plain dicts.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
import threading
from typing import Any, Protocol, runtime_checkable

__all__ = (
    "MetricsCollector",
    "NoOpMetricsCollector",
    "SimpleMetricsCollector",
    "EVENTS_EMITTED",
    "EVENTS_PROCESSED",
    "EVENTS_DROPPED",
    "LISTENER_DURATION",
    "STORE_APPEND_DURATION",
    "STORE_READ_DURATION",
    "QUEUE_SIZE",
    "ACTIVE_LISTENERS",
    "CIRCUIT_TRANSITIONS",
)

EVENTS_EMITTED = "nova_events_emitted_total"
EVENTS_PROCESSED = "nova_events_processed_total"
EVENTS_DROPPED = "nova_events_dropped_total"
LISTENER_DURATION = "nova_listener_duration_seconds"
STORE_APPEND_DURATION = "nova_store_append_duration_seconds"
STORE_READ_DURATION = "nova_store_read_duration_seconds"
QUEUE_SIZE = "nova_queue_size"
ACTIVE_LISTENERS = "nova_active_listeners"
CIRCUIT_TRANSITIONS = "nova_circuit_transitions_total"


@runtime_checkable
class MetricsCollector(Protocol):
    """What nova reports to. Implement it to bridge nova to your metrics system.

    ``enabled`` tells components whether to report at all.
    """

    enabled: bool

    def inc_events_emitted(self, event_type: str, result: str, n: int = 1) -> None:
        """Count *n* events emitted of *event_type* with *result* (e.g. ``"ok"``, ``"error"``)."""

    def inc_events_processed(self, listener: str, result: str, n: int = 1) -> None:
        """Count *n* events handled by *listener* with *result*."""

    def inc_events_dropped(self, component: str, reason: str, n: int = 1) -> None:
        """Count *n* events dropped by *component* for *reason* (e.g. ``"drop_oldest"``)."""

    def observe_listener_duration(self, listener: str, seconds: float) -> None:
        """Record how long one call of *listener* took."""

    def observe_store_append_duration(self, seconds: float, store: str = "memory") -> None:
        """Record how long one store append took."""

    def observe_store_read_duration(self, seconds: float, store: str = "memory") -> None:
        """Record how long one store read took."""

    def set_queue_size(self, component: str, size: int) -> None:
        """Set the current queue size of *component*."""

    def set_active_listeners(self, emitter: str, count: int) -> None:
        """Set the number of active listeners of *emitter*."""

    def inc_circuit_transitions(self, listener: str, state: str, n: int = 1) -> None:
        """Count a circuit breaker of *listener* entering *state* (``"open"``,
        ``"half-open"`` or ``"closed"``)."""


class NoOpMetricsCollector:
    """A collector that records nothing (the default). ``enabled`` is ``False``."""

    enabled = False

    def inc_events_emitted(self, event_type: str, result: str, n: int = 1) -> None:
        """Do nothing."""

    def inc_events_processed(self, listener: str, result: str, n: int = 1) -> None:
        """Do nothing."""

    def inc_events_dropped(self, component: str, reason: str, n: int = 1) -> None:
        """Do nothing."""

    def observe_listener_duration(self, listener: str, seconds: float) -> None:
        """Do nothing."""

    def observe_store_append_duration(self, seconds: float, store: str = "memory") -> None:
        """Do nothing."""

    def observe_store_read_duration(self, seconds: float, store: str = "memory") -> None:
        """Do nothing."""

    def set_queue_size(self, component: str, size: int) -> None:
        """Do nothing."""

    def set_active_listeners(self, emitter: str, count: int) -> None:
        """Do nothing."""

    def inc_circuit_transitions(self, listener: str, state: str, n: int = 1) -> None:
        """Do nothing."""


class _Summary:
    __slots__ = ("count", "sum", "min", "max")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, v: float) -> None:
        self.count += 1
        self.sum += v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "sum": self.sum, "min": self.min, "max": self.max}


_LabelKey = tuple[tuple[str, str], ...]


class SimpleMetricsCollector:
    """An in-memory, thread-safe collector that keeps labels.

    >>> m = SimpleMetricsCollector()
    >>> m.inc_events_emitted("user.created", "ok")
    >>> m.value("nova_events_emitted_total", type="user.created", result="ok")
    1

    ``snapshot()`` returns ``{metric name: [{"labels": {...}, "value": v}, ...]}`` where a
    counter or gauge value is a number and a duration is a dict with ``count``, ``sum``,
    ``min`` and ``max``.
    """

    enabled = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[_LabelKey, int]] = {}
        self._gauges: dict[str, dict[_LabelKey, float]] = {}
        self._summaries: dict[str, dict[_LabelKey, _Summary]] = {}

    def _inc(self, name: str, key: _LabelKey, n: int) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + n

    def _set(self, name: str, key: _LabelKey, v: float) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[key] = v

    def _observe(self, name: str, key: _LabelKey, v: float) -> None:
        with self._lock:
            series = self._summaries.setdefault(name, {})
            s = series.get(key)
            if s is None:
                s = series[key] = _Summary()
            s.add(v)

    def inc_events_emitted(self, event_type: str, result: str, n: int = 1) -> None:
        """Count *n* events emitted (``nova_events_emitted_total{type,result}``)."""
        self._inc(EVENTS_EMITTED, (("type", event_type), ("result", result)), n)

    def inc_events_processed(self, listener: str, result: str, n: int = 1) -> None:
        """Count *n* events handled (``nova_events_processed_total{listener,result}``)."""
        self._inc(EVENTS_PROCESSED, (("listener", listener), ("result", result)), n)

    def inc_events_dropped(self, component: str, reason: str, n: int = 1) -> None:
        """Count *n* dropped events (``nova_events_dropped_total{component,reason}``)."""
        self._inc(EVENTS_DROPPED, (("component", component), ("reason", reason)), n)

    def observe_listener_duration(self, listener: str, seconds: float) -> None:
        """Record a listener call duration (``nova_listener_duration_seconds{listener}``)."""
        self._observe(LISTENER_DURATION, (("listener", listener),), seconds)

    def observe_store_append_duration(self, seconds: float, store: str = "memory") -> None:
        """Record a store append duration (``nova_store_append_duration_seconds{store}``)."""
        self._observe(STORE_APPEND_DURATION, (("store", store),), seconds)

    def observe_store_read_duration(self, seconds: float, store: str = "memory") -> None:
        """Record a store read duration (``nova_store_read_duration_seconds{store}``)."""
        self._observe(STORE_READ_DURATION, (("store", store),), seconds)

    def set_queue_size(self, component: str, size: int) -> None:
        """Set ``nova_queue_size{component}``."""
        self._set(QUEUE_SIZE, (("component", component),), size)

    def set_active_listeners(self, emitter: str, count: int) -> None:
        """Set ``nova_active_listeners{emitter}``."""
        self._set(ACTIVE_LISTENERS, (("emitter", emitter),), count)

    def inc_circuit_transitions(self, listener: str, state: str, n: int = 1) -> None:
        """Count breaker transitions (``nova_circuit_transitions_total{listener,state}``)."""
        self._inc(CIRCUIT_TRANSITIONS, (("listener", listener), ("state", state)), n)

    def value(self, name: str, **labels: str) -> Any:
        """Return one series' value (0 for a counter never incremented, ``None`` for an
        unknown gauge or duration)."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            for store in (self._counters, self._gauges, self._summaries):
                series = store.get(name)
                if series is None:
                    continue
                for k, v in series.items():
                    if tuple(sorted(k)) == key:
                        return v.as_dict() if isinstance(v, _Summary) else v
        if name.endswith("_total"):
            return 0
        return None

    def total(self, name: str, **labels: str) -> int:
        """Sum a counter over every series whose labels include *labels*."""
        want = set(labels.items())
        with self._lock:
            series = self._counters.get(name, {})
            return sum(v for k, v in series.items() if want <= set(k))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Return every series as plain dicts (a consistent copy)."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for name, series in self._counters.items():
                out[name] = [{"labels": dict(k), "value": v} for k, v in series.items()]
            for name, gseries in self._gauges.items():
                out[name] = [{"labels": dict(k), "value": v} for k, v in gseries.items()]
            for name, sseries in self._summaries.items():
                out[name] = [{"labels": dict(k), "value": s.as_dict()} for k, s in sseries.items()]
        return out

    def reset(self) -> None:
        """Forget every series."""
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._summaries.clear()
