"""Issue 5 ratios: the Emitter against a bare loop, pyee, blinker and queue.Queue, all in
this process (the machine is shared and noisy: only same-run ratios mean anything)."""

from __future__ import annotations

import asyncio
import gc
import statistics
import threading
import time

from _timing import Row, best_seconds
from benchmarks.latency import latency_nova as _latency_nova
from benchmarks.latency import latency_queue as _latency_queue

from nova import Event
from nova.emitter import Emitter
from nova.observability.metrics import NoOpMetricsCollector


def _noop(ev):
    return None


def _distinct_listeners(k: int) -> list:
    """*k* distinct trivial listener functions, as real code subscribes (the baseline
    loop calls the very same objects)."""
    out = []
    for _ in range(k):
        def fn(ev):
            return None
        out.append(fn)
    return out


def _best_cpu(body, reps: int) -> float:
    """Best CPU time (this thread's, in seconds) of *reps* calls of *body*, gc off.

    Single-threaded paths are timed in thread CPU time: on a shared machine, time spent
    descheduled is not the code's cost (wall-clock throughput rows use perf_counter)."""
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


def _loop_ns(call, arg, number: int, reps: int) -> float:
    """ns per ``call(arg)``, timed as a plain ``for`` loop (no lambda in between)."""

    def body():
        for _ in range(number):
            call(arg)

    return _best_cpu(body, reps) / number * 1e9


def _bare_ns(listeners, ev, number: int, reps: int) -> float:
    """ns per event of the bare baseline ``for l in listeners: l(ev)``."""

    def body():
        for _ in range(number):
            for fn in listeners:
                fn(ev)

    return _best_cpu(body, reps) / number * 1e9


def _paired(a, b, reps: int) -> tuple[float, float]:
    """Measure *a* and *b* (each returns ns) alternately *reps* times; best of each, so
    a burst of load on the shared machine hits both sides alike."""
    a_best = b_best = float("inf")
    for _ in range(reps):
        a_best = min(a_best, a())
        b_best = min(b_best, b())
    return a_best, b_best


def _emit_rows(reps: int, number: int) -> list[Row]:
    rows: list[Row] = []
    ev = Event("user.created", {"id": 1})
    results = {}
    for k in (1, 10):
        listeners = _distinct_listeners(k)
        em = Emitter()
        for fn in listeners:
            em.subscribe("user.created", fn)
        # interleave the two measurements so drift hits both alike
        b_best = e_best = float("inf")
        for _ in range(reps):
            b_best = min(b_best, _bare_ns(listeners, ev, number, 1))
            e_best = min(e_best, _loop_ns(em.emit, ev, number, 1))
        results[k] = e_best
        limit = 4.0 if k == 1 else 1.5
        rows.append(Row(f"emit, {k} sync listener{'s' if k > 1 else ''}", e_best, "ns",
                        f"bare `for l in ls: l(ev)` ({k})", b_best, e_best / b_best,
                        f"<= {limit}x", e_best / b_best <= limit))
        em.shutdown()

    # a NoOp collector must cost (almost) nothing
    em_none = Emitter()
    em_noop = Emitter(metrics=NoOpMetricsCollector())
    for em in (em_none, em_noop):
        em.subscribe("user.created", _noop)
    n_best = o_best = float("inf")
    for _ in range(reps):
        n_best = min(n_best, _loop_ns(em_none.emit, ev, number, 1))
        o_best = min(o_best, _loop_ns(em_noop.emit, ev, number, 1))
    rows.append(Row("emit, 1 listener, NoOp metrics", o_best, "ns", "emit, metrics=None", n_best,
                    o_best / n_best, "<= 1.05x", o_best / n_best <= 1.05))
    em_none.shutdown()
    em_noop.shutdown()

    one = results[1]
    em1 = Emitter()
    em1.subscribe("user.created", _noop)
    try:
        import pyee

        ee = pyee.EventEmitter()
        ee.on("user.created", _noop)

        def pyee_emit(e, emit=ee.emit):
            emit("user.created", e)

        one, p = _paired(lambda: _loop_ns(em1.emit, ev, number, 1),
                         lambda: _loop_ns(pyee_emit, ev, number // 4, 1), reps)
        rows.append(Row("emit, 1 listener", one, "ns", "pyee.EventEmitter.emit", p, p / one,
                        ">= 3x faster", p / one >= 3))
    except ImportError:
        rows.append(Row("emit vs pyee", one, "ns", "pyee missing", float("nan"), float("nan"), ">= 3x faster", None))
    try:
        import blinker

        sig = blinker.Signal()

        def receiver(sender, **kw):
            return None

        sig.connect(receiver)
        one, b = _paired(lambda: _loop_ns(em1.emit, ev, number, 1),
                         lambda: _loop_ns(sig.send, ev, number // 4, 1), reps)
        rows.append(Row("emit, 1 listener", one, "ns", "blinker.Signal.send", b, b / one,
                        ">= 5x faster", b / one >= 5))
    except ImportError:
        rows.append(Row("emit vs blinker", one, "ns", "blinker missing", float("nan"), float("nan"), ">= 5x faster", None))
    em1.shutdown()
    return rows


def _throughput_rows(reps: int, n: int) -> list[Row]:
    rows: list[Row] = []
    ev = Event("tick", 1)
    em = Emitter(workers=4, buffer_size=1000)
    em.subscribe("tick", _noop)
    em.emit_async(ev)
    em.drain()
    emit_async = em.emit_async

    def run_nova():
        for _ in range(n):
            emit_async(ev)
        em.drain()

    nova_rate = n / best_seconds(run_nova, reps)
    rows.append(Row("emit_async -> 4 workers -> trivial listener", nova_rate / 1e6, "M ev/s", "target",
                    1.0, nova_rate / 1e6, ">= 1 M/s", nova_rate >= 1e6))

    events = [ev] * n

    def run_batch():
        em.emit_batch(events)
        em.drain()

    batch_rate = n / best_seconds(run_batch, reps)
    rows.append(Row("emit_batch -> 4 workers -> trivial listener", batch_rate / 1e6, "M ev/s", "emit_async one by one",
                    nova_rate / 1e6, batch_rate / nova_rate, "info", None))
    em.shutdown()
    try:
        from concurrent.futures import ThreadPoolExecutor

        import pyee.executor

        m = max(2000, n // 10)
        done = threading.Semaphore(0)

        def lis(e):
            done.release()

        def run_pyee():
            with ThreadPoolExecutor(4) as ex:
                ee = pyee.executor.ExecutorEventEmitter(executor=ex)
                ee.on("tick", lis)
                for _ in range(m):
                    ee.emit("tick", ev)
                for _ in range(m):
                    done.acquire()

        pyee_rate = m / best_seconds(run_pyee, max(1, reps // 2))
        rows.append(Row("emit_async throughput", nova_rate / 1e3, "k ev/s", "pyee ExecutorEventEmitter (4 threads)",
                        pyee_rate / 1e3, nova_rate / pyee_rate, ">= 10x", nova_rate / pyee_rate >= 10))
    except ImportError:
        rows.append(Row("emit_async vs pyee executor", nova_rate, "ev/s", "pyee missing", float("nan"), float("nan"),
                        ">= 10x", None))
    return rows


def _latency_rows(quick: bool) -> list[Row]:
    # Issue 11: the p99 must not depend on the worker count.  Every nova configuration
    # is held to the baseline, queue.Queue + ONE consumer thread (target
    # <= 1.2x); the like-with-like comparison (as many consumer threads as workers; the
    # default Emitter() has 4) is shown as info.  The machine is shared: one
    # multi-millisecond preemption by another process puts a window's p99 in the
    # milliseconds, whatever runs.  So: many short windows (0.3 s, 15 k events), each
    # nova configuration measured right after a baseline window ("side by side"), and
    # the ratio is the median of those paired ratios; the values shown are the medians
    # of the windows' p99s.  (The best window of each kind, the statistic used before,
    # is an extreme of a heavy-tailed distribution: on this VM it swung from 0.65x to
    # 1.7x between runs of unchanged code; it is shown as info.)
    seconds = 0.3
    rounds = 5 if quick else 31
    kinds = (("workers=1", 1, 1), ("default Emitter()", None, 4), ("workers=4", 4, 4))
    p99s: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    paired: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
    base: dict[int, list[float]] = {1: [], 4: []}
    for _ in range(rounds):
        base[4].append(_latency_queue(50_000, seconds, 4))
        for name, w, _ in kinds:
            q1 = _latency_queue(50_000, seconds, 1)
            base[1].append(q1)
            v = _latency_nova(50_000, seconds, w)
            p99s[name].append(v)
            paired[name].append(v / q1)
    nova200 = statistics.median(_latency_nova(200_000, seconds) for _ in range(rounds))
    med = statistics.median
    rows = []
    one = med(base[1])
    for name, _, _ in kinds:
        r = med(paired[name])
        rows.append(Row(f"emit_async p99 latency at 50 k ev/s, {name}", med(p99s[name]), "us",
                        "queue.Queue(1024) + 1 consumer thread (median of paired windows)", one, r,
                        "<= 1.2x", r <= 1.2))
    for name, _, _ in kinds:
        b = min(base[1])
        rows.append(Row(f"emit_async p99 latency at 50 k ev/s, {name}, best window", min(p99s[name]), "us",
                        "queue.Queue(1024) + 1 consumer thread, best window", b, min(p99s[name]) / b, "info", None))
    for name, _, c in kinds:
        if c > 1:
            b = med(base[c])
            rows.append(Row(f"emit_async p99 latency at 50 k ev/s, {name}", med(p99s[name]), "us",
                            f"queue.Queue(1024) + {c} consumer threads (medians)", b, med(p99s[name]) / b, "info", None))
    rows.append(Row("emit_async p99 latency at 200 k ev/s (median window)", nova200, "us", "target", 1000.0,
                    nova200 / 1000.0, "< 1 ms", nova200 < 1000.0))
    return rows


def _aemit_rows(reps: int, n: int) -> list[Row]:
    ev = Event("a", 1)

    async def alis(e):
        return None

    async def nova_loop():
        em = Emitter()
        em.subscribe("a", alis)
        aemit = em.aemit
        await aemit(ev)
        best = float("inf")
        for _ in range(reps):
            t0 = time.thread_time()
            for _ in range(n):
                await aemit(ev)
            best = min(best, time.thread_time() - t0)
        await em.ashutdown()
        return best / n * 1e9

    nova_ns = asyncio.run(nova_loop())
    try:
        import pyee.asyncio

        async def pyee_loop():
            ee = pyee.asyncio.AsyncIOEventEmitter()
            count = [0]
            done = asyncio.Event()
            m = n

            async def lis(e):
                count[0] += 1
                if count[0] == m:
                    done.set()

            ee.on("a", lis)
            best = float("inf")
            for _ in range(reps):
                count[0] = 0
                done.clear()
                t0 = time.thread_time()
                for _ in range(m):
                    ee.emit("a", ev)
                await done.wait()
                best = min(best, time.thread_time() - t0)
            return best / m * 1e9

        pyee_ns = asyncio.run(pyee_loop())
        return [Row("await aemit, 1 async listener", nova_ns, "ns", "pyee AsyncIOEventEmitter (to completion)",
                    pyee_ns, pyee_ns / nova_ns, ">= 3x faster", pyee_ns / nova_ns >= 3)]
    except ImportError:
        return [Row("aemit vs pyee", nova_ns, "ns", "pyee missing", float("nan"), float("nan"), ">= 3x faster", None)]


def run(quick: bool) -> list[Row]:
    reps = 3 if quick else 9
    # many short interleaved repeats: the best of them is what the code costs when the
    # shared machine lets it run
    rows = _emit_rows(9 if quick else 81, 5_000)
    rows += _aemit_rows(reps, 5_000 if quick else 20_000)
    rows += _throughput_rows(3 if quick else 9, 100_000 if quick else 200_000)
    rows += _latency_rows(quick)
    return rows
