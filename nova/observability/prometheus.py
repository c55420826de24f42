"""A :class:`~nova.observability.metrics.MetricsCollector` exported to Prometheus.

:class:`PrometheusMetricsCollector` keeps nova's series in plain Python structures (one
lock, a dict lookup and an add per report: cheaper than ``prometheus_client``'s own
``labels().inc()``) and registers itself in a ``prometheus_client`` registry as a custom
collector, so a scrape (``generate_latest(registry)``, :func:`nova.observability.serve`,
or ``prometheus_client.start_http_server``) renders them in the text format.

Label values that come from outside (event types, listener ids, topics, component and
store names) are *bounded*: past ``max_label_values`` distinct values of one label, new
values are reported as ``"other"``, so whoever controls the event types cannot grow the
process's memory (or the Prometheus server's) without bound.

:meth:`PrometheusMetricsCollector.watch` adds the counters a Bus, an EventStore or a
ListenerManager keeps (per topic for a bus), read at scrape time.

Needs the optional extra: ``pip install 'nova-events[prometheus]'``.

.. versionadded:: 0.3
"""

from __future__ import annotations

import itertools
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from nova._util.counters import count_value
from nova.errors import type_name

__all__ = ("PrometheusMetricsCollector", "DEFAULT_BUCKETS", "OTHER", "require_prometheus")

#: Histogram buckets (seconds): sub-millisecond resolution from 10 us up to 10 s.
DEFAULT_BUCKETS: tuple[float, ...] = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: The label value that stands for every value past the cardinality limit.
OTHER = "other"


def _read(kind: str, cell: list[Any]) -> tuple[Any, Any]:
    if kind == "counter":
        return count_value(cell[0]) + cell[1], None
    if kind == "gauge":
        return cell[0], None
    return [count_value(c) for c in cell[0]], cell[1][0]


def require_prometheus() -> Any:
    """Import ``prometheus_client`` or raise an ImportError naming the extra."""
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - exercised in a child interpreter
        raise ImportError(
            "Expected prometheus_client to be installed for nova's Prometheus support, got it missing: "
            "pip install 'nova-events[prometheus]'"
        ) from exc
    return prometheus_client


class _Bound:
    """Maps label values to themselves up to *limit* distinct ones, then to ``"other"``."""

    __slots__ = ("seen", "limit", "lock", "collapsed")

    def __init__(self, limit: int) -> None:
        self.seen: dict[str, str] = {}
        self.limit = limit
        self.lock = threading.Lock()
        self.collapsed = 0  # reports whose value was collapsed into "other"

    def __call__(self, value: Any) -> str:
        v = self.seen.get(value)  # a dict read is atomic: no lock on the common path
        if v is not None:
            return v
        with self.lock:
            v = self.seen.get(value)
            if v is not None:
                return v
            if len(self.seen) < self.limit:
                v = value if type(value) is str else str(value)
                self.seen[value] = v
                return v
            self.collapsed += 1
            return OTHER


class _Family:
    __slots__ = ("name", "doc", "labels", "kind", "series", "cache")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], kind: str) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.kind = kind  # "counter", "gauge" or "histogram"
        self.series: dict[tuple[str, ...], list[Any]] = {}
        self.cache: dict[tuple[Any, ...], list[Any]] = {}  # raw label values -> series cell


class PrometheusMetricsCollector:
    """nova's metrics as Prometheus series.

    Args:
        registry: the ``prometheus_client`` ``CollectorRegistry`` to register in
            (``None``: the global ``REGISTRY``).
        namespace: the metric name prefix (``"nova"`` gives ``nova_events_emitted_total``).
        max_label_values: distinct values kept per label (event type, listener, topic,
            component, store) before new ones collapse into ``"other"``.
        buckets: the histogram bucket bounds in seconds (increasing).

    Series (with ``namespace="nova"``): ``nova_events_emitted_total{type,result}``,
    ``nova_events_processed_total{listener,result}``,
    ``nova_events_dropped_total{component,reason}``,
    ``nova_listener_duration_seconds{listener}`` (histogram),
    ``nova_store_append_duration_seconds{store}``, ``nova_store_read_duration_seconds{store}``,
    ``nova_queue_size{component}``, ``nova_active_listeners{emitter}``,
    ``nova_circuit_transitions_total{listener,state}``,
    ``nova_label_values_collapsed_total{label}``, and those of :meth:`watch`.

    Thread-safe.

    Raises:
        ImportError: ``prometheus_client`` is not installed (the message names the extra).
        TypeError / ValueError: a bad argument.
    """

    enabled = True

    def __init__(self, registry: Any = None, namespace: str = "nova", *, max_label_values: int = 100,
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        pc = require_prometheus()
        if registry is None:
            registry = pc.REGISTRY
        elif not callable(getattr(registry, "register", None)):
            raise TypeError(f"Expected a prometheus_client CollectorRegistry or None, got {type_name(registry)}")
        if not isinstance(namespace, str):
            raise TypeError(f"Expected namespace as a str, got {type_name(namespace)}")
        if not namespace.replace("_", "a").isalnum() or namespace[0].isdigit():
            raise ValueError(f"Expected a namespace of letters, digits and '_', got {namespace!r}")
        if type(max_label_values) is not int:
            raise TypeError(f"Expected max_label_values as an int, got {type_name(max_label_values)}")
        if max_label_values < 1:
            raise ValueError(f"Expected max_label_values >= 1, got {max_label_values}")
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"Expected increasing bucket bounds, got {tuple(buckets)!r}")
        self._pc = pc
        self.registry = registry
        self.namespace = namespace
        self._bounds = bounds
        self._lock = threading.Lock()
        self._limit = max_label_values
        self._bound: dict[str, _Bound] = {}
        self._families: list[_Family] = []
        self._watched: list[weakref.ref[Any]] = []
        ns = namespace
        b = self._label_bound
        self._emitted = self._family(f"{ns}_events_emitted_total", "Events emitted or published.", ("type", "result"), "counter")
        self._processed = self._family(f"{ns}_events_processed_total", "Listener outcomes per event.", ("listener", "result"), "counter")
        self._dropped = self._family(f"{ns}_events_dropped_total", "Events dropped.", ("component", "reason"), "counter")
        self._ldur = self._family(f"{ns}_listener_duration_seconds", "Listener call duration.", ("listener",), "histogram")
        self._sadur = self._family(f"{ns}_store_append_duration_seconds", "Store append duration.", ("store",), "histogram")
        self._srdur = self._family(f"{ns}_store_read_duration_seconds", "Store read duration.", ("store",), "histogram")
        self._qsize = self._family(f"{ns}_queue_size", "Events waiting in a queue.", ("component",), "gauge")
        self._active = self._family(f"{ns}_active_listeners", "Subscriptions of an emitter.", ("emitter",), "gauge")
        self._circuit = self._family(f"{ns}_circuit_transitions_total", "Circuit breaker transitions.", ("listener", "state"), "counter")
        self._bt, self._bres, self._blis = b("type"), b("result"), b("listener")
        self._bcomp, self._breason, self._bstore = b("component"), b("reason"), b("store")
        self._bem, self._bstate = b("emitter"), b("state")
        registry.register(self)

    # -- internals ---------------------------------------------------------------------
    # A series is a cell: a counter is [itertools.count (the +1 reports, lock-free: one
    # C call under the GIL), extra (other increments, under the lock)]; a gauge is
    # [value]; a histogram is [per-bucket counts, sum] (under the lock).  Each family
    # caches the cell of the label values it was given (the raw values, so a report is
    # one tuple and one dict lookup): only values that were kept, so the cache is
    # bounded like the series; a collapsed value takes the bounded path every time.
    def _label_bound(self, label: str) -> _Bound:
        bd = self._bound.get(label)
        if bd is None:
            bd = self._bound[label] = _Bound(self._limit)
        return bd

    def _family(self, name: str, doc: str, labels: tuple[str, ...], kind: str) -> _Family:
        f = _Family(name, doc, labels, kind)
        self._families.append(f)
        return f

    def _cell(self, f: _Family, raw: tuple[Any, ...], bounds: tuple[_Bound, ...]) -> list[Any]:
        key = tuple(b(v) for b, v in zip(bounds, raw))
        with self._lock:
            cell = f.series.get(key)
            if cell is None:
                if f.kind == "counter":
                    cell = [itertools.count(), 0]
                elif f.kind == "gauge":
                    cell = [0]
                else:  # a lock-free count per bucket, [sum] (under the lock)
                    cell = [[itertools.count() for _ in range(len(self._bounds) + 1)], [0.0]]
                f.series[key] = cell
            if all(k == v for k, v in zip(key, raw)):  # nothing collapsed: cache it
                f.cache[raw] = cell
        return cell

    def _add(self, cell: list[Any], n: float) -> None:
        if n == 1:
            next(cell[0])
        else:
            with self._lock:
                cell[1] += n

    def _hist(self, f: _Family, raw: tuple[Any, ...], bound: _Bound, v: float) -> None:
        cell = f.cache.get(raw)
        if cell is None:
            cell = self._cell(f, raw, (bound,))
        next(cell[0][bisect_left(self._bounds, v)])
        with self._lock:
            cell[1][0] += v

    # -- the MetricsCollector protocol ---------------------------------------------------
    def inc_events_emitted(self, event_type: str, result: str, n: int = 1) -> None:
        """``nova_events_emitted_total{type,result}`` += *n*."""
        f = self._emitted
        cell = f.cache.get((event_type, result))
        if cell is None:
            cell = self._cell(f, (event_type, result), (self._bt, self._bres))
        if n == 1:
            next(cell[0])
        else:
            self._add(cell, n)

    def inc_events_processed(self, listener: str, result: str, n: int = 1) -> None:
        """``nova_events_processed_total{listener,result}`` += *n*."""
        f = self._processed
        cell = f.cache.get((listener, result))
        if cell is None:
            cell = self._cell(f, (listener, result), (self._blis, self._bres))
        if n == 1:
            next(cell[0])
        else:
            self._add(cell, n)

    def inc_events_dropped(self, component: str, reason: str, n: int = 1) -> None:
        """``nova_events_dropped_total{component,reason}`` += *n*."""
        f = self._dropped
        cell = f.cache.get((component, reason)) or self._cell(f, (component, reason), (self._bcomp, self._breason))
        self._add(cell, n)

    def observe_listener_duration(self, listener: str, seconds: float) -> None:
        """One observation of ``nova_listener_duration_seconds{listener}``."""
        f = self._ldur
        cell = f.cache.get((listener,))
        if cell is None:
            cell = self._cell(f, (listener,), (self._blis,))
        next(cell[0][bisect_left(self._bounds, seconds)])  # lock-free +1 of its bucket
        with self._lock:
            cell[1][0] += seconds

    def observe_store_append_duration(self, seconds: float, store: str = "memory") -> None:
        """One observation of ``nova_store_append_duration_seconds{store}``."""
        self._hist(self._sadur, (store,), self._bstore, seconds)

    def observe_store_read_duration(self, seconds: float, store: str = "memory") -> None:
        """One observation of ``nova_store_read_duration_seconds{store}``."""
        self._hist(self._srdur, (store,), self._bstore, seconds)

    def set_queue_size(self, component: str, size: int) -> None:
        """Set ``nova_queue_size{component}``."""
        f = self._qsize
        cell = f.cache.get((component,)) or self._cell(f, (component,), (self._bcomp,))
        cell[0] = size

    def set_active_listeners(self, emitter: str, count: int) -> None:
        """Set ``nova_active_listeners{emitter}``."""
        f = self._active
        cell = f.cache.get((emitter,)) or self._cell(f, (emitter,), (self._bem,))
        cell[0] = count

    def inc_circuit_transitions(self, listener: str, state: str, n: int = 1) -> None:
        """``nova_circuit_transitions_total{listener,state}`` += *n*."""
        f = self._circuit
        cell = f.cache.get((listener, state)) or self._cell(f, (listener, state), (self._blis, self._bstate))
        self._add(cell, n)

    # -- components read at scrape time ---------------------------------------------------
    def watch(self, *components: Any) -> None:
        """Report the counters of each of *components* (a :class:`~nova.Bus`, an
        EventStore, a :class:`~nova.ListenerManager`) at every scrape.  Held weakly:
        a component that is garbage-collected stops being reported.

        Series: ``nova_bus_published_total{bus,topic}``, ``nova_bus_delivered_total{bus,topic}``
        (handled), ``nova_bus_failed_total``, ``nova_bus_retries_total``,
        ``nova_bus_dead_lettered_total``, ``nova_bus_duplicates_total``,
        ``nova_bus_dropped_total`` (each ``{bus,topic}``), ``nova_bus_pending{bus,topic}``;
        ``nova_store_appended_total{store}``, ``nova_store_events{store}``,
        ``nova_store_evicted_total{store}``, ``nova_store_memory_bytes{store}``;
        ``nova_listener_calls_total{manager}``, ``nova_listener_retries_total{manager}``,
        ``nova_listener_dead_lettered_total{manager}``, ``nova_listener_pending_retries{manager}``,
        ``nova_health{component}`` (0 healthy, 1 degraded, 2 unhealthy, 3 circuit open).

        Raises:
            TypeError: a component of none of these kinds.
        """
        for c in components:
            if not (callable(getattr(c, "stats", None))):
                raise TypeError(f"Expected a Bus, an EventStore or a ListenerManager, got {type_name(c)}")
        with self._lock:
            self._watched.extend(weakref.ref(c) for c in components)

    def _watched_families(self) -> Iterator[Any]:
        from nova.observability.health import component_kind, health_code

        from prometheus_client.core import CounterMetricFamily as C, GaugeMetricFamily as G

        ns = self.namespace
        with self._lock:
            comps = [c for c in (r() for r in self._watched) if c is not None]
        bus_c = {k: C(f"{ns}_bus_{k}", f"Bus {k.replace('_', ' ')} per topic.", labels=("bus", "topic"))
                 for k in ("published", "delivered", "failed", "retries", "dead_lettered", "duplicates", "dropped")}
        bus_pending = G(f"{ns}_bus_pending", "Bus deliveries pending per topic.", labels=("bus", "topic"))
        st = {k: (C if k in ("appended", "evicted") else G)(f"{ns}_store_{k}", f"Store {k.replace('_', ' ')}.", labels=("store",))
              for k in ("appended", "events", "evicted", "memory_bytes")}
        lm = {k: (G if k == "pending_retries" else C)(f"{ns}_listener_{k}", f"ListenerManager {k.replace('_', ' ')}.", labels=("manager",))
              for k in ("calls", "retries", "dead_lettered", "pending_retries")}
        health = G(f"{ns}_health", "0 healthy, 1 degraded, 2 unhealthy, 3 circuit open.", labels=("component",))
        seen = {"bus": False, "store": False, "manager": False}
        for i, c in enumerate(comps):
            kind = component_kind(c)
            if kind == "bus":
                seen["bus"] = True
                bname = self._label_bound("bus")(c.name)
                btopic = self._label_bound("topic")
                merged: dict[str, list[int]] = {}
                for topic, row in c.topic_counts().items():
                    t = btopic(topic)
                    acc = merged.get(t)
                    merged[t] = row if acc is None else [a + b for a, b in zip(acc, row)]
                for t, row in merged.items():
                    for fam, v in zip(bus_c.values(), row):
                        fam.add_metric((bname, t), v)
                    bus_pending.add_metric((bname, t), row[-1])
            elif kind == "store":
                seen["store"] = True
                s = c.stats()
                name = self._bstore(getattr(c, "name", None) or f"{type(c).__name__.lower()}{i}")
                st["appended"].add_metric((name,), s.appended)
                st["events"].add_metric((name,), s.events)
                st["evicted"].add_metric((name,), s.evicted)
                st["memory_bytes"].add_metric((name,), s.memory_bytes)
            elif kind == "manager":
                seen["manager"] = True
                s = c.stats()
                name = self._bcomp(getattr(c, "name", None) or f"manager{i}")
                lm["calls"].add_metric((name,), s.calls)
                lm["retries"].add_metric((name,), s.retried)
                lm["dead_lettered"].add_metric((name,), s.dead_lettered)
                lm["pending_retries"].add_metric((name,), s.pending)
                health.add_metric((self._bcomp(f"manager:{name}"),), health_code(c.health()))
        if seen["bus"]:
            yield from bus_c.values()
            yield bus_pending
        if seen["store"]:
            yield from st.values()
        if seen["manager"]:
            yield from lm.values()
            yield health

    # -- the prometheus_client Collector interface -----------------------------------------
    def describe(self) -> list[Any]:
        """No description: the registry calls :meth:`collect` to learn the names."""
        return []

    def collect(self) -> Iterator[Any]:
        """Render every series (called by the registry at each scrape)."""
        from prometheus_client import core
        from prometheus_client.utils import floatToGoString
        bounds = self._bounds
        les = [*(str(floatToGoString(b)) for b in bounds), "+Inf"]  # type: ignore[no-untyped-call]
        with self._lock:
            snap = [(f, {k: _read(f.kind, v) for k, v in list(f.series.items())}) for f in self._families]
            collapsed = {label: bd.collapsed for label, bd in self._bound.items() if bd.collapsed}
        for f, series in snap:
            if f.kind == "counter":
                fam: Any = core.CounterMetricFamily(f.name[: -len("_total")], f.doc, labels=f.labels)
                for key, (v, _) in series.items():
                    fam.add_metric(key, v)
            elif f.kind == "gauge":
                fam = core.GaugeMetricFamily(f.name, f.doc, labels=f.labels)
                for key, (v, _) in series.items():
                    fam.add_metric(key, v)
            else:
                fam = core.HistogramMetricFamily(f.name, f.doc, labels=f.labels)
                for key, (counts, total) in series.items():
                    cum, acc = [], 0
                    for le, n in zip(les, counts):
                        acc += n
                        cum.append((le, acc))
                    fam.add_metric(key, cum, total)
            yield fam
        fam = core.CounterMetricFamily(f"{self.namespace}_label_values_collapsed",
                                       "Reports whose label value was collapsed into 'other'.", labels=("label",))
        for label, n in sorted(collapsed.items()):
            fam.add_metric((label,), n)
        yield fam
        yield from self._watched_families()

    def unregister(self) -> None:
        """Remove this collector from its registry (idempotent)."""
        try:
            self.registry.unregister(self)
        except KeyError:
            pass

    def __repr__(self) -> str:
        return f"<PrometheusMetricsCollector namespace={self.namespace!r}>"
