"""Issue 7 ratios: the success-path overhead of a managed listener, and the
100,000-event 30%-failure run on an injected clock."""

from __future__ import annotations

import time
import zlib
from collections import Counter

from _timing import Row, per_call_ns

from nova.emitter import Emitter
from nova.events import Event
from nova.listener import (
    CircuitConfig,
    DeadLetterConfig,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.observability.metrics import SimpleMetricsCollector
from nova.testing import ManualClock


def _noop(event):
    return None


def _pair_ns(bare, managed, ev, number, reps):
    """(bare ns, managed ns): best of interleaved runs, so both see the same machine."""
    best_b = best_m = float("inf")
    for _ in range(reps):
        best_b = min(best_b, per_call_ns(lambda: bare(ev), number, 1))
        best_m = min(best_m, per_call_ns(lambda: managed(ev), number, 1))
    return best_b, best_m


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    reps = 5 if quick else 15
    number = 20_000 if quick else 100_000
    ev = Event("bench", 1)
    lm = ListenerManager()
    managed = lm.register(_noop, ListenerConfig(retry=RetryPolicy(max_attempts=3),
                                                circuit=CircuitConfig(failure_threshold=5, window=60)),
                          id="managed").handle
    bare_ns, man_ns = _pair_ns(_noop, managed, ev, number, reps)
    over = man_ns - bare_ns
    rows.append(Row("managed success path (retry+circuit, concurrency 10)", man_ns, "ns/call",
                    "bare listener call", bare_ns, over, "<= 1000 ns more", over <= 1000))

    metrics = SimpleMetricsCollector()
    lm2 = ListenerManager(metrics=metrics)
    with_metrics = lm2.register(_noop, ListenerConfig(), id="metered").handle
    bare_ns2, met_ns = _pair_ns(_noop, with_metrics, ev, number // 4, reps)
    rows.append(Row("managed success path + SimpleMetricsCollector", met_ns, "ns/call",
                    "bare listener call", bare_ns2, met_ns - bare_ns2, "info", None))

    # through an Emitter: emit() to one bare vs one managed subscriber
    em_b, em_m = Emitter(), Emitter()
    em_b.subscribe("bench", _noop)
    em_m.subscribe("bench", lm.register(_noop, ListenerConfig(), id="via-emitter"))
    b_ns, m_ns = _pair_ns(em_b.emit, em_m.emit, ev, number // 4, reps)
    rows.append(Row("Emitter.emit, managed subscriber", m_ns, "ns/emit",
                    "Emitter.emit, bare subscriber", b_ns, m_ns - b_ns, "info (ns more)", None))
    em_b.shutdown(timeout=5)
    em_m.shutdown(timeout=5)
    lm.stop(timeout=0)
    lm2.stop(timeout=0)

    # 100,000 events, 30% of calls fail, retries scheduled on a ManualClock
    n = 100_000
    clock = ManualClock()
    lm3 = ListenerManager(clock=clock)
    calls: Counter[str] = Counter()
    ok: Counter[str] = Counter()
    dead: Counter[str] = Counter()

    def flaky(e):
        calls[e.id] += 1
        if zlib.crc32(f"{e.id}:{calls[e.id]}".encode()) % 10 < 3:
            raise ConnectionError("flaky")
        ok[e.id] += 1

    m3 = lm3.register(flaky, ListenerConfig(
        concurrency=1,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=1.0),
        circuit=CircuitConfig(enabled=False),
        dead_letter=DeadLetterConfig(handler=lambda dl: dead.update([dl.event.id]))))
    events = [Event("tick", i) for i in range(n)]
    t0 = time.perf_counter()
    for e in events:
        m3.handle(e)
    while lm3.stats().pending:
        clock.advance(0.1)
        lm3.wait_idle(60)
    secs = time.perf_counter() - t0
    lm3.stop(timeout=0)
    clock.advance(1e9)
    exact = (len(ok) + len(dead) == n and all(v == 1 for v in ok.values())
             and all(v == 1 for v in dead.values()) and not (set(ok) & set(dead)))
    rows.append(Row("100k events, 30% failing calls, retries (ManualClock)", secs, "s",
                    "handled + dead-lettered == 100k", float(len(ok) + len(dead)), float(exact),
                    "exact, none twice", exact))
    return rows
