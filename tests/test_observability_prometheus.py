"""Issue 16 part 1: PrometheusMetricsCollector, tested by scraping the registry's text."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nova import Bus, Emitter, Event, ListenerManager, ListenerConfig, MemoryStore, RetryPolicy
from nova.observability import MetricsCollector, PrometheusMetricsCollector

ROOT = Path(__file__).resolve().parents[1]


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's text output: (name, sorted labels) -> value."""
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def reg():
    return CollectorRegistry()


def test_is_a_metrics_collector(reg):
    m = PrometheusMetricsCollector(reg)
    assert isinstance(m, MetricsCollector)
    assert m.enabled is True


def test_emitter_series_scraped(reg):
    m = PrometheusMetricsCollector(reg)
    em = Emitter(metrics=m, name="em1", error_policy="continue", on_error=lambda e, x, l: None)
    seen = []
    em.subscribe("user.created", seen.append)

    def bad(ev):
        raise RuntimeError("boom")

    em.subscribe("user.deleted", bad)
    for _ in range(3):
        em.emit(Event("user.created"))
    em.emit(Event("user.deleted"))
    s = scrape(reg)
    assert s[("nova_events_emitted_total", (("result", "ok"), ("type", "user.created")))] == 3
    assert s[("nova_events_emitted_total", (("result", "error"), ("type", "user.deleted")))] == 1
    lid = em.listeners("user.created")[0].id
    bid = em.listeners("user.deleted")[0].id
    assert s[("nova_events_processed_total", (("listener", lid), ("result", "ok")))] == 3
    assert s[("nova_events_processed_total", (("listener", bid), ("result", "error")))] == 1
    assert s[("nova_listener_duration_seconds_count", (("listener", lid),))] == 3
    # sub-millisecond buckets from 10 us
    assert ("nova_listener_duration_seconds_bucket", (("le", "1e-05"), ("listener", lid))) in s
    assert s[("nova_listener_duration_seconds_bucket", (("le", "+Inf"), ("listener", lid)))] == 3
    assert s[("nova_active_listeners", (("emitter", "em1"),))] == 2
    em.shutdown()


def test_histogram_buckets_are_cumulative(reg):
    m = PrometheusMetricsCollector(reg, buckets=(0.001, 0.01, 0.1))
    for v in (0.0005, 0.001, 0.005, 0.05, 5.0):
        m.observe_listener_duration("l", v)
    s = scrape(reg)
    b = {le: s[("nova_listener_duration_seconds_bucket", (("le", le), ("listener", "l")))]
         for le in ("0.001", "0.01", "0.1", "+Inf")}
    assert b == {"0.001": 2, "0.01": 3, "0.1": 4, "+Inf": 5}
    assert s[("nova_listener_duration_seconds_sum", (("listener", "l"),))] == pytest.approx(5.0565)


def test_label_cardinality_is_bounded(reg):
    m = PrometheusMetricsCollector(reg, max_label_values=5)
    em = Emitter(metrics=m)
    em.subscribe("*", lambda ev: None)
    for i in range(1000):
        em.emit(Event(f"attacker.{i}"))
    s = scrape(reg)
    types = {dict(k[1])["type"] for k in s if k[0] == "nova_events_emitted_total"}
    assert len(types) == 6 and "other" in types
    assert s[("nova_events_emitted_total", (("result", "ok"), ("type", "other")))] == 995
    assert s[("nova_label_values_collapsed_total", (("label", "type"),))] == 995
    assert len(m._bound["type"].seen) == 5  # memory stays bounded
    em.shutdown()


def test_bus_store_manager_watch(reg):
    m = PrometheusMetricsCollector(reg)
    bus = Bus(metrics=m, name="b1")
    calls = []

    def flaky(ev):
        calls.append(ev)
        if len(calls) == 1:
            raise ValueError("once")

    from nova import TopicConfig

    bus.create_topic("orders", TopicConfig(partitions=2, retry=RetryPolicy(max_attempts=3, backoff="fixed", initial_delay=0)))
    bus.subscribe("orders", flaky)
    for i in range(4):
        bus.publish("orders", Event("order.placed"), key=str(i))
    assert bus.flush(10)
    store = MemoryStore()
    store.append("s", Event("a"), Event("b"))
    mgr = ListenerManager(metrics=m)
    m.watch(bus, store, mgr)
    s = scrape(reg)
    assert s[("nova_bus_published_total", (("bus", "b1"), ("topic", "orders")))] == 4
    assert s[("nova_bus_delivered_total", (("bus", "b1"), ("topic", "orders")))] == 4
    assert s[("nova_bus_retries_total", (("bus", "b1"), ("topic", "orders")))] == 1
    assert s[("nova_bus_pending", (("bus", "b1"), ("topic", "orders")))] == 0
    assert s[("nova_events_emitted_total", (("result", "ok"), ("type", "order.placed")))] == 4
    got = {dict(k[1])["result"]: v for k, v in s.items() if k[0] == "nova_events_processed_total"}
    assert got == {"ok": 4, "retry": 1}
    store_keys = [k for k in s if k[0] == "nova_store_appended_total"]
    assert len(store_keys) == 1 and s[store_keys[0]] == 2
    assert [k for k in s if k[0] == "nova_health"]
    bus.shutdown()
    store.close()


def test_watch_rejects_other_objects(reg):
    m = PrometheusMetricsCollector(reg)
    with pytest.raises(TypeError, match="Expected a Bus, an EventStore or a ListenerManager, got int"):
        m.watch(3)


def test_threads_exact_counts(reg):
    m = PrometheusMetricsCollector(reg)
    n, k = 8, 2000

    def work():
        for _ in range(k):
            m.inc_events_processed("l", "ok")
            m.observe_listener_duration("l", 1e-4)

    ts = [threading.Thread(target=work) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    s = scrape(reg)
    assert s[("nova_events_processed_total", (("listener", "l"), ("result", "ok")))] == n * k
    assert s[("nova_listener_duration_seconds_count", (("listener", "l"),))] == n * k


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"registry": 3}, TypeError, "Expected a prometheus_client CollectorRegistry or None, got int"),
        ({"namespace": 3}, TypeError, "Expected namespace as a str, got int"),
        ({"namespace": "a-b"}, ValueError, "Expected a namespace of letters"),
        ({"max_label_values": 0}, ValueError, "Expected max_label_values >= 1, got 0"),
        ({"max_label_values": 1.5}, TypeError, "Expected max_label_values as an int, got float"),
        ({"buckets": (1, 0.5)}, ValueError, "Expected increasing bucket bounds"),
    ],
)
def test_bad_arguments(kwargs, exc, msg):
    kwargs = {"registry": CollectorRegistry(), **kwargs}
    with pytest.raises(exc, match=msg):
        PrometheusMetricsCollector(**kwargs)


def test_namespace_and_unregister(reg):
    m = PrometheusMetricsCollector(reg, namespace="app")
    m.inc_events_emitted("t", "ok")
    assert scrape(reg)[("app_events_emitted_total", (("result", "ok"), ("type", "t")))] == 1
    m.unregister()
    m.unregister()
    assert not [k for k in scrape(reg) if k[0].startswith("app_")]


def test_missing_prometheus_client_names_the_extra():
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from nova.observability import PrometheusMetricsCollector\n"
        "try:\n    PrometheusMetricsCollector()\n"
        "except ImportError as e:\n    print('ERR', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "nova-events[prometheus]" in r.stdout


def test_metered_emit_counts_exactly(reg):
    """The metrics-on inline path counts like the fast path (one presumption per
    route, corrected per failure), for Exceptions and for a BaseException."""
    m = PrometheusMetricsCollector(reg)
    em = Emitter(metrics=m, error_policy="continue", on_error=lambda e, x, l: None)
    seen = []
    em.subscribe("a", seen.append)
    em.subscribe("a", lambda ev: 1 / 0)
    em.subscribe("a", seen.append)
    for _ in range(10):
        em.emit(Event("a"))
    st = em.stats()
    assert (st.emitted, st.processed, st.failed) == (10, 20, 10)
    assert len(seen) == 20

    em2 = Emitter(metrics=m)

    def interrupt(ev):
        raise KeyboardInterrupt

    em2.subscribe("b", interrupt)
    em2.subscribe("b", seen.append)
    with pytest.raises(KeyboardInterrupt):
        em2.emit(Event("b"))
    st = em2.stats()
    assert (st.emitted, st.processed, st.failed) == (1, 0, 1)
    s = scrape(reg)
    assert s[("nova_events_emitted_total", (("result", "error"), ("type", "a")))] == 10
    em.shutdown()
    em2.shutdown()
