"""Metrics collectors."""

from __future__ import annotations

import threading

from nova.observability.metrics import (
    EVENTS_DROPPED,
    EVENTS_EMITTED,
    EVENTS_PROCESSED,
    LISTENER_DURATION,
    QUEUE_SIZE,
    MetricsCollector,
    NoOpMetricsCollector,
    SimpleMetricsCollector,
)


def test_protocol_conformance():
    assert isinstance(SimpleMetricsCollector(), MetricsCollector)
    assert isinstance(NoOpMetricsCollector(), MetricsCollector)
    assert NoOpMetricsCollector.enabled is False
    assert SimpleMetricsCollector.enabled is True


def test_noop_records_nothing_and_accepts_every_call():
    m = NoOpMetricsCollector()
    assert m.inc_events_emitted("t", "ok") is None
    assert m.inc_events_processed("l", "ok") is None
    assert m.inc_events_dropped("c", "r") is None
    assert m.observe_listener_duration("l", 0.1) is None
    assert m.observe_store_append_duration(0.1) is None
    assert m.observe_store_read_duration(0.1) is None
    assert m.set_queue_size("c", 1) is None
    assert m.set_active_listeners("e", 1) is None
    assert m.inc_circuit_transitions("l", "open") is None


def test_simple_keeps_labels():
    m = SimpleMetricsCollector()
    m.inc_events_emitted("a", "ok")
    m.inc_events_emitted("a", "ok", 2)
    m.inc_events_emitted("a", "error")
    m.inc_events_processed("l1", "ok")
    m.inc_events_dropped("emitter", "drop_oldest", 4)
    m.observe_listener_duration("l1", 0.5)
    m.observe_listener_duration("l1", 1.5)
    m.set_queue_size("emitter", 7)
    m.set_active_listeners("em", 3)
    m.observe_store_append_duration(0.01)
    m.observe_store_read_duration(0.02, store="sqlite")
    m.inc_circuit_transitions("l1", "open")
    assert m.value(EVENTS_EMITTED, type="a", result="ok") == 3
    assert m.value(EVENTS_EMITTED, result="error", type="a") == 1
    assert m.value(EVENTS_EMITTED, type="b", result="ok") == 0
    assert m.total(EVENTS_EMITTED, type="a") == 4
    assert m.value(EVENTS_DROPPED, component="emitter", reason="drop_oldest") == 4
    assert m.value(LISTENER_DURATION, listener="l1") == {"count": 2, "sum": 2.0, "min": 0.5, "max": 1.5}
    assert m.value(QUEUE_SIZE, component="emitter") == 7
    assert m.value(QUEUE_SIZE, component="nope") is None
    assert m.value("nova_circuit_transitions_total", listener="l1", state="open") == 1
    snap = m.snapshot()
    assert {"labels": {"listener": "l1", "result": "ok"}, "value": 1} in snap[EVENTS_PROCESSED]
    assert snap["nova_store_read_duration_seconds"][0]["labels"] == {"store": "sqlite"}
    m.reset()
    assert m.snapshot() == {}


def test_simple_thread_safe_exact_counts():
    m = SimpleMetricsCollector()
    n_threads, per = 8, 5000
    barrier = threading.Barrier(n_threads)

    def work(i):
        barrier.wait()
        for _ in range(per):
            m.inc_events_emitted("t", "ok")
            m.inc_events_processed(f"l{i % 2}", "ok")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert m.value(EVENTS_EMITTED, type="t", result="ok") == n_threads * per
    assert m.total(EVENTS_PROCESSED) == n_threads * per
