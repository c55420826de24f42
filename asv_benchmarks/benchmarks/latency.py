"""Latency under a steady load, shared by the asv benchmarks (``bench_emitter``) and the
ratio report (``ratio_emitter``): a paced producer whose events carry their send time,
and the p99 of send -> listener for nova's ``emit_async`` and for a ``queue.Queue``."""

from __future__ import annotations

import queue
import threading
import time

from nova import Event
from nova.emitter import Emitter


def p99_us(values: list[int]) -> float:
    """The 99th percentile of *values* (ns), in microseconds (sorts *values*)."""
    values.sort()
    return values[min(len(values) - 1, int(len(values) * 0.99))] / 1e3  # us


def paced(put, rate: float, seconds: float) -> int:
    """Send at a steady *rate* events/s for *seconds*: one event whenever it is due (a
    late producer catches up one event at a time), and ``sleep(0)`` (which releases the
    GIL) while none is due.  Each event's data is its send time (perf_counter_ns)."""
    perf = time.perf_counter_ns
    sleep = time.sleep
    interval = 1e9 / rate
    start = perf()
    end = start + int(seconds * 1e9)
    sent = 0
    while True:
        now = perf()
        if now >= end:
            break
        if sent < int((now - start) / interval) + 1:
            put(Event("lat", perf()))
            sent += 1
        else:
            sleep(0)
    return sent


def latency_nova(rate: float, seconds: float, workers: int | None = 1) -> float:
    """p99 (us) of emit_async -> listener at a steady *rate*; *workers* None: the
    default ``Emitter()``."""
    lat: list[int] = []
    perf = time.perf_counter_ns
    em = Emitter() if workers is None else Emitter(workers=workers, buffer_size=1024)
    em.subscribe("lat", lambda ev: lat.append(perf() - ev.data))
    em.emit_async(Event("warm", 0))
    em.drain()
    paced(em.emit_async, rate, seconds)
    em.shutdown()
    return p99_us(lat)


def latency_queue(rate: float, seconds: float, consumers: int = 1) -> float:
    """p99 (us) of ``queue.Queue(1024).put`` -> one of *consumers* threads at *rate*."""
    lat: list[int] = []
    perf = time.perf_counter_ns
    q: queue.Queue = queue.Queue(maxsize=1024)
    stop = object()

    def consumer():
        get = q.get
        while True:
            ev = get()
            if ev is stop:
                return
            lat.append(perf() - ev.data)

    threads = [threading.Thread(target=consumer) for _ in range(consumers)]
    for t in threads:
        t.start()
    paced(q.put, rate, seconds)
    for _ in threads:
        q.put(stop)
    for t in threads:
        t.join()
    return p99_us(lat)
