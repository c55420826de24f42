"""Issue 16 ratios: what observability costs, measured in this process.

* emit with a PrometheusMetricsCollector vs no collector (ns added per event);
* emit with Tracing on an SDK TracerProvider whose exporter does nothing (ns added,
  reported), and emit with ``tracing=None`` vs a bare loop (the emitter area's
  "emit, 1 sync listener" row: unchanged when tracing is off);
* emit_async throughput with an AuditTrail on a MemoryStore vs without: each timed run
  is 100,000 ``emit_async`` calls from this thread to 4 workers, ``drain()`` and then
  ``trail.flush()``, so the clock stops only when every record is in the store (the
  worker's noting, the hand-off, the writer's conversion and the store append are all
  inside it); wall time, GC off while timing, best of 5 rounds alternating the two
  emitters; the row fails if any record overflowed.

    python asv_benchmarks/ratios.py observability
"""

from __future__ import annotations

import gc
import time

from _timing import Row, best_seconds

from nova import Emitter, Event, MemoryStore


def _noop(ev):
    return None


def _best_cpu(body, reps: int) -> float:
    enabled = gc.isenabled()
    gc.disable()
    best = float("inf")
    try:
        for _ in range(reps):
            t0 = time.thread_time()
            body()
            best = min(best, time.thread_time() - t0)
    finally:
        if enabled:
            gc.enable()
    return best


def _emit_ns(em: Emitter, number: int, reps: int) -> float:
    ev = Event("order.placed", 1)
    emit = em.emit

    def body():
        for _ in range(number):
            emit(ev)

    return _best_cpu(body, reps) / number * 1e9


def _bare_ns(fn, number: int, reps: int) -> float:
    ev = Event("order.placed", 1)
    ls = [fn]

    def body():
        for _ in range(number):
            for l in ls:
                l(ev)

    return _best_cpu(body, reps) / number * 1e9


def _interleaved(fns, reps: int) -> list[float]:
    """Best of *reps* rounds, each round timing every fn once (shared-machine noise
    hits all of them alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, f in enumerate(fns):
            best[i] = min(best[i], f())
    return best


def _emit_rows(quick: bool) -> list[Row]:
    from prometheus_client import CollectorRegistry
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from nova.observability import PrometheusMetricsCollector, Tracing

    class NoOpExporter(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(NoOpExporter()))
    plain = Emitter(name="plain")
    prom = Emitter(name="prom", metrics=PrometheusMetricsCollector(CollectorRegistry()))
    traced = Emitter(name="traced", tracing=Tracing(tp))
    for em in (plain, prom, traced):
        em.subscribe("order.placed", _noop)
    number = 2_000
    reps = 9 if quick else 41
    inner = 3
    base, p, t, bare = _interleaved(
        [lambda: _emit_ns(plain, number, inner), lambda: _emit_ns(prom, number, inner),
         lambda: _emit_ns(traced, number, inner // 3 or 1), lambda: _bare_ns(_noop, number, inner)],
        reps,
    )
    rows = [
        Row("emit, 1 listener, PrometheusMetricsCollector", p, "ns", "emit, metrics=None", base, p - base,
            "<= 1500 ns more", p - base <= 1500),
        Row("emit, 1 listener, Tracing (SDK, no-op exporter)", t, "ns", "emit, tracing=None", base, t - base,
            "info (ns more)", None),
        Row("emit, 1 listener, tracing=None", base, "ns", "bare `for l in ls: l(ev)` (1)", bare, base / bare,
            "<= 4.0x", base / bare <= 4.0),
    ]
    for em in (plain, prom, traced):
        em.shutdown()
    tp.shutdown()
    return rows


def _audit_rows(quick: bool) -> list[Row]:
    from nova.observability import AuditTrail

    n = 20_000 if quick else 100_000
    reps = 3 if quick else 5
    ev = Event("tick", 1)

    def setup(audit: bool):
        em = Emitter(workers=4, buffer_size=1000, name="a" if audit else "p")
        em.subscribe("tick", _noop)
        store = trail = None
        if audit:
            store = MemoryStore()
            trail = AuditTrail(store, buffer_size=1 << 20)
            trail.attach(em)
        em.emit_async(ev)
        em.drain()
        return em, store, trail

    def runner(em, trail):
        emit_async = em.emit_async

        def run():
            for _ in range(n):
                emit_async(ev)
            em.drain()
            if trail is not None:
                trail.flush()

        return run

    em0, _, _ = setup(False)
    em1, store, trail = setup(True)
    r0, r1 = runner(em0, None), runner(em1, trail)
    t0 = t1 = float("inf")
    for _ in range(reps):
        t0 = min(t0, best_seconds(r0, 1))
        t1 = min(t1, best_seconds(r1, 1))
    lost = trail.stats().overflowed
    rate0, rate1 = n / t0, n / t1
    rows = [Row("emit_async -> 4 workers, AuditTrail(MemoryStore)", rate1 / 1e3, "k ev/s", "same, no audit trail",
                rate0 / 1e3, rate1 / rate0, ">= 0.5x", rate1 / rate0 >= 0.5 and lost == 0)]
    em0.shutdown()
    em1.shutdown()
    trail.close()
    store.close()
    return rows


def run(quick: bool) -> list[Row]:
    return _emit_rows(quick) + _audit_rows(quick)
