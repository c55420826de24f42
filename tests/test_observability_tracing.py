"""Issue 16 part 2: OpenTelemetry tracing on the Emitter and the Bus, checked with the
SDK's in-memory exporter (parent/child ids, attributes, error status)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nova import Bus, Emitter, Event, MemoryStore, RetryPolicy, TopicConfig
from nova.observability import Tracing

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def otel():
    exp = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    yield Tracing(tp), exp, tp
    tp.shutdown()


def by_name(exp, name):
    return [s for s in exp.get_finished_spans() if s.name == name]


def test_emit_producer_and_consumer_spans(otel):
    tracing, exp, tp = otel
    em = Emitter(tracing=tracing, name="em")
    seen = []
    em.subscribe("order.placed", lambda ev: seen.append(dict(ev.metadata)))
    ev = Event("order.placed")
    em.emit(ev)
    (prod,) = by_name(exp, "publish order.placed")
    (cons,) = by_name(exp, "process order.placed")
    assert prod.kind == SpanKind.PRODUCER and cons.kind == SpanKind.CONSUMER
    assert cons.parent.span_id == prod.context.span_id
    assert cons.context.trace_id == prod.context.trace_id
    assert cons.links and cons.links[0].context.span_id == prod.context.span_id
    tp_header = ev.metadata["traceparent"]
    assert tp_header.split("-")[1] == format(prod.context.trace_id, "032x")
    assert tp_header.split("-")[2] == format(prod.context.span_id, "016x")
    assert seen[0]["traceparent"] == tp_header
    a = cons.attributes
    assert a["messaging.system"] == "nova"
    assert a["messaging.destination.name"] == "order.placed"
    assert a["messaging.message.id"] == ev.id
    assert a["messaging.operation.type"] == "process"
    assert cons.status.status_code == StatusCode.UNSET
    em.shutdown()


def test_error_status_and_exception_event(otel):
    tracing, exp, _ = otel
    em = Emitter(tracing=tracing, error_policy="continue", on_error=lambda e, x, l: None)

    def bad(ev):
        raise KeyError("nope")

    em.subscribe("x", bad)
    em.emit(Event("x"))
    (cons,) = by_name(exp, "process x")
    assert cons.status.status_code == StatusCode.ERROR
    (evt,) = [e for e in cons.events if e.name == "exception"]
    assert evt.attributes["exception.type"] == "KeyError"
    em.shutdown()


def test_spans_inside_a_listener_are_children(otel):
    tracing, exp, tp = otel
    tracer = tp.get_tracer("app")
    em = Emitter(tracing=tracing)

    def work(ev):
        with tracer.start_as_current_span("inner"):
            pass

    em.subscribe("x", work)
    with tracer.start_as_current_span("request") as root:
        em.emit(Event("x"))
    (prod,) = by_name(exp, "publish x")
    (cons,) = by_name(exp, "process x")
    (inner,) = by_name(exp, "inner")
    assert prod.parent.span_id == root.get_span_context().span_id
    assert inner.parent.span_id == cons.context.span_id
    assert len({s.context.trace_id for s in exp.get_finished_spans()}) == 1
    em.shutdown()


def test_emit_async_crosses_to_the_workers(otel):
    tracing, exp, _ = otel
    em = Emitter(tracing=tracing, workers=2)
    em.subscribe("x", lambda ev: None)
    evs = [Event("x") for _ in range(20)]
    for ev in evs:
        assert em.emit_async(ev)
    assert em.drain(10)
    prods = {s.attributes["messaging.message.id"]: s for s in by_name(exp, "publish x")}
    conss = by_name(exp, "process x")
    assert len(prods) == 20 and len(conss) == 20
    for c in conss:
        p = prods[c.attributes["messaging.message.id"]]
        assert c.parent.span_id == p.context.span_id
    em.shutdown()


def test_aemit_async_listener(otel):
    tracing, exp, _ = otel
    em = Emitter(tracing=tracing)

    async def alis(ev):
        await asyncio.sleep(0)

    em.subscribe("x", alis)
    em.subscribe("x", lambda ev: None)
    asyncio.run(em.aemit(Event("x")))
    (prod,) = by_name(exp, "publish x")
    conss = by_name(exp, "process x")
    assert len(conss) == 2
    assert all(c.parent.span_id == prod.context.span_id for c in conss)
    em.shutdown()


def test_bus_one_span_per_attempt_with_partition_and_group(otel):
    tracing, exp, _ = otel
    bus = Bus(tracing=tracing)
    n = []

    def flaky(ev):
        n.append(1)
        if len(n) < 3:
            raise ValueError(f"attempt {len(n)}")

    bus.create_topic("orders", TopicConfig(partitions=4, retry=RetryPolicy(max_attempts=3, initial_delay=0, backoff="fixed")))
    bus.subscribe("orders", flaky, group="billing")
    rc = bus.publish("orders", Event("order"), key="k1")
    assert bus.flush(10)
    (prod,) = by_name(exp, "publish orders")
    conss = sorted(by_name(exp, "process orders"), key=lambda s: s.attributes["nova.delivery.attempt"])
    assert [c.attributes["nova.delivery.attempt"] for c in conss] == [1, 2, 3]
    assert [c.status.status_code for c in conss] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    for c in conss:
        assert c.parent.span_id == prod.context.span_id
        assert c.attributes["messaging.destination.partition.id"] == str(rc.partition)
        assert c.attributes["messaging.consumer.group.name"] == "billing"
    assert prod.attributes["messaging.destination.partition.id"] == str(rc.partition)
    bus.shutdown()


def test_attached_after_subscribe(otel):
    tracing, exp, _ = otel
    bus = Bus()
    bus.subscribe("t", lambda ev: None)
    em = Emitter()
    em.subscribe("t", lambda ev: None)
    tracing.attach(bus)
    tracing.attach(em)
    tracing.attach(em)  # once only
    bus.publish("t", Event("t"))
    assert bus.flush(10)
    em.emit(Event("t"))
    assert len(by_name(exp, "process t")) == 2
    assert len(by_name(exp, "publish t")) == 2
    with pytest.raises(TypeError, match="Expected an Emitter or a Bus, got int"):
        tracing.attach(1)
    bus.shutdown()
    em.shutdown()


def test_store_round_trip_keeps_the_trace(otel):
    tracing, exp, tp = otel
    store = MemoryStore()
    em = Emitter(tracing=tracing)
    em.subscribe("x", lambda ev: store.append("s", ev))
    with tp.get_tracer("app").start_as_current_span("origin") as origin:
        em.emit(Event("x"))
    trace_id = origin.get_span_context().trace_id
    (replayed,) = list(store.replay())
    assert replayed.metadata["traceparent"].split("-")[1] == format(trace_id, "032x")
    exp.clear()
    em2 = Emitter(tracing=tracing)
    em2.subscribe("x", lambda ev: None)
    em2.emit(replayed)  # outside any span: the replayed event keeps its trace
    assert {s.context.trace_id for s in exp.get_finished_spans()} == {trace_id}
    store.close()
    em.shutdown()
    em2.shutdown()


def test_off_keeps_the_fast_paths():
    em = Emitter()
    em.subscribe("x", lambda ev: None)
    assert "x" in em._fast
    assert "publish" not in Bus().__dict__
    import nova.emitter.dispatch as d

    assert "invoke" not in em._d.__dict__ and em._d.invoke.__func__ is d.Dispatcher.invoke
    em.shutdown()


def test_bad_tracer_provider():
    with pytest.raises(TypeError, match="Expected an OpenTelemetry TracerProvider or None, got int"):
        Tracing(3)


def test_emitter_rejects_a_non_observer():
    with pytest.raises(TypeError, match="Expected a Tracing or an AuditTrail, got str"):
        Emitter(tracing="yes")


def test_missing_otel_names_the_extra():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from nova.observability import Tracing\n"
        "try:\n    Tracing()\n"
        "except ImportError as e:\n    print('ERR', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "nova-events[otel]" in r.stdout
