"""Issue 16: the ListenerManager's attempts (scheduled retries, inline Bus retries,
circuit rejections, timeouts) seen by the AuditTrail and by Tracing."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from nova import (Bus, CircuitConfig, DeadLetterConfig, Emitter, Event, ListenerConfig, ListenerManager,
                  MemoryStore, RetryPolicy)
from nova.observability import AuditTrail, Tracing
from nova.testing import ManualClock


def flaky(fail_times):
    calls = []

    def fn(ev):
        calls.append(ev)
        if len(calls) <= fail_times:
            raise ValueError(f"attempt {len(calls)}")

    fn.calls = calls
    return fn


def test_scheduled_retries_then_ok():
    store = MemoryStore()
    trail = AuditTrail(store)
    clock = ManualClock()
    mgr = ListenerManager(clock=clock)
    trail.attach(mgr)
    fn = flaky(2)
    ml = mgr.register(fn, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=1, backoff="fixed")))
    em = Emitter()
    em.subscribe("a", ml)
    ev = Event("a")
    em.emit(ev)
    for _ in range(2):
        clock.advance(1)
        assert mgr.wait_idle(10)
    assert len(fn.calls) == 3
    h = trail.history(ev.id)
    assert [(r.attempt, r.outcome) for r in h] == [(1, "retry_scheduled"), (2, "retry_scheduled"), (3, "ok")]
    assert h[0].listener == ml.id and h[0].error_message == "attempt 1"
    em.shutdown()
    trail.close()


def test_dead_letter_and_bus_inline_retries():
    store = MemoryStore()
    trail = AuditTrail(store)
    mgr = ListenerManager()
    fn = flaky(10)
    ml = mgr.register(fn, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=0, backoff="fixed"),
                                         dead_letter=DeadLetterConfig(handler=lambda dl: None)))
    trail.attach(mgr)  # after register: existing listeners are observed too
    bus = Bus()
    bus.subscribe("t", ml)
    ev = Event("b")
    bus.publish("t", ev)
    assert bus.flush(10)
    h = trail.history(ev.id)
    assert [(r.attempt, r.outcome) for r in h] == [(1, "retry_scheduled"), (2, "retry_scheduled"), (3, "dead_lettered")]
    assert all(r.error_type == "ValueError" for r in h)
    bus.shutdown()
    trail.close()


def test_rejected_by_circuit():
    store = MemoryStore()
    trail = AuditTrail(store)
    mgr = ListenerManager()
    trail.attach(mgr)

    def bad(ev):
        raise RuntimeError("down")

    ml = mgr.register(bad, ListenerConfig(retry=RetryPolicy(max_attempts=1),
                                          circuit=CircuitConfig(failure_threshold=1, timeout=60)))
    e1, e2 = Event("x"), Event("x")
    mgr.process(ml.id, e1)
    mgr.process(ml.id, e2)
    assert [r.outcome for r in trail.history(e1.id)] == ["dead_lettered"]
    (r,) = trail.history(e2.id)
    assert r.outcome == "rejected_by_circuit" and r.error_type == "nova.errors.CircuitOpen"
    trail.close()


def test_tracing_one_span_per_attempt():
    exp = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    tracing = Tracing(tp)
    clock = ManualClock()
    mgr = ListenerManager(clock=clock)
    tracing.attach(mgr)
    em = Emitter(tracing=tracing)
    fn = flaky(1)
    ml = mgr.register(fn, ListenerConfig(retry=RetryPolicy(max_attempts=2, initial_delay=1, backoff="fixed")))
    em.subscribe("a", ml)
    em.emit(Event("a"))
    clock.advance(1)
    assert mgr.wait_idle(10)
    (prod,) = [s for s in exp.get_finished_spans() if s.kind.name == "PRODUCER"]
    attempts = sorted((s for s in exp.get_finished_spans()
                       if s.kind.name == "CONSUMER" and s.attributes["nova.listener.id"] == ml.id
                       and "nova.delivery.attempt" in s.attributes
                       and s.parent is not None and s.parent.span_id == prod.context.span_id),
                      key=lambda s: s.attributes["nova.delivery.attempt"])
    # the emitter's call of the managed listener (never raises) and the manager's two attempts
    assert [s.attributes["nova.delivery.attempt"] for s in attempts] == [1, 1, 2]
    assert sorted(s.status.status_code.name for s in attempts) == ["ERROR", "UNSET", "UNSET"]
    (failed,) = [s for s in attempts if s.status.status_code == StatusCode.ERROR]
    assert failed.attributes["nova.delivery.attempt"] == 1
    assert {s.context.trace_id for s in exp.get_finished_spans()} == {prod.context.trace_id}
    em.shutdown()
    tp.shutdown()


def test_unobserved_manager_keeps_its_fast_path():
    mgr = ListenerManager()
    ml = mgr.register(lambda ev: None)
    assert ml._fast is True and "_call_sync" not in ml.__dict__
    trail = AuditTrail(MemoryStore())
    trail.attach(mgr)
    assert ml._fast is False
    # a breaker transition recomputes the fast flag: it stays off while observed
    assert ml._compute_fast() is False
    trail.close()
