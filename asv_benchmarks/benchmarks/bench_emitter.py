"""The Emitter on each path (emit, emit_async/emit_batch, aemit, middleware, metrics),
with the peers (pyee, blinker) timed in the same run.

The Emitter is a facade over the active kernels (Event, RingQueue), so it is not
parametrized over implementations; the kernels' own benchmarks are.
"""

import asyncio
import threading

from nova import Event
from nova.emitter import Emitter
from nova.observability.metrics import SimpleMetricsCollector

from .latency import latency_nova, latency_queue

N_SYNC = 1000


def _noop(ev):
    return None


def _listeners(k):
    """*k* distinct trivial listeners (what real code subscribes)."""
    out = []
    for _ in range(k):
        def fn(ev):
            return None
        out.append(fn)
    return out


class EmitSync:
    params = ([1, 10],)
    param_names = ["listeners"]

    def setup(self, k):
        self.ev = Event("user.created", {"id": 1})
        self.fns = _listeners(k)
        self.em = Emitter()
        for fn in self.fns:
            self.em.subscribe("user.created", fn)
        self.setup_peers()

    def teardown(self, k):
        self.em.shutdown()

    def time_emit_x1000(self, k):
        emit, ev = self.em.emit, self.ev
        for _ in range(N_SYNC):
            emit(ev)

    def time_bare_loop_x1000(self, k):
        fns, ev = self.fns, self.ev
        for _ in range(N_SYNC):
            for fn in fns:
                fn(ev)

    def time_pyee_emit_x1000(self, k):
        emit, ev = self.pyee.emit, self.ev
        for _ in range(N_SYNC):
            emit("user.created", ev)

    def time_blinker_send_x1000(self, k):
        send, ev = self.signal.send, self.ev
        for _ in range(N_SYNC):
            send(ev)

    def setup_peers(self):
        import blinker
        import pyee

        self.pyee = pyee.EventEmitter()
        self.signal = blinker.Signal()
        for fn in self.fns:
            self.pyee.on("user.created", fn)
            self.signal.connect(lambda sender, _fn=fn, **kw: _fn(sender), weak=False)


class EmitOptions:
    """emit() with middleware, a validator, metrics, an async listener, a failing listener."""

    def setup(self):
        self.ev = Event("a", 1)
        self.plain = Emitter()
        self.plain.subscribe("a", _noop)
        self.mw = Emitter()
        self.mw.use(lambda ev, call_next: call_next(ev))
        self.mw.subscribe("a", _noop)
        self.metrics = Emitter(metrics=SimpleMetricsCollector())
        self.metrics.subscribe("a", _noop)
        self.failing = Emitter(error_policy="continue", on_error=lambda *a: None)

        def bad(ev):
            raise ValueError

        self.failing.subscribe("a", bad)
        self.async_l = Emitter()

        async def alis(ev):
            return None

        self.async_l.subscribe("a", alis)
        self.async_l.emit(self.ev)  # start nova's loop outside the timing

    def teardown(self):
        for em in (self.plain, self.mw, self.metrics, self.failing, self.async_l):
            em.shutdown()

    def time_plain_x1000(self):
        for _ in range(N_SYNC):
            self.plain.emit(self.ev)

    def time_middleware_x1000(self):
        for _ in range(N_SYNC):
            self.mw.emit(self.ev)

    def time_simple_metrics_x1000(self):
        for _ in range(N_SYNC):
            self.metrics.emit(self.ev)

    def time_failing_listener_continue_x1000(self):
        for _ in range(N_SYNC):
            self.failing.emit(self.ev)

    def time_async_listener_on_nova_loop_x100(self):
        for _ in range(100):
            self.async_l.emit(self.ev)


class EmitAsync:
    params = ([1, 4],)
    param_names = ["workers"]
    timeout = 120

    def setup(self, workers):
        self.ev = Event("tick", 1)
        self.events = [self.ev] * 20_000
        self.em = Emitter(workers=workers, buffer_size=1000)
        self.em.subscribe("tick", _noop)
        self.em.emit_async(self.ev)
        self.em.drain()

    def teardown(self, workers):
        self.em.shutdown()

    def time_emit_async_20k_and_drain(self, workers):
        emit_async, ev = self.em.emit_async, self.ev
        for _ in range(20_000):
            emit_async(ev)
        self.em.drain()

    def time_emit_batch_20k_and_drain(self, workers):
        self.em.emit_batch(self.events)
        self.em.drain()

    def track_emit_async_events_per_s(self, workers):
        import time

        emit_async, ev = self.em.emit_async, self.ev
        t0 = time.perf_counter()
        for _ in range(20_000):
            emit_async(ev)
        self.em.drain()
        return 20_000 / (time.perf_counter() - t0)

    track_emit_async_events_per_s.unit = "events/s"


class EmitAsyncLatency:
    """p99 of emit_async -> listener at a steady 50 k events/s (issue 11: it must not
    depend on the worker count), and its ratio to a queue.Queue with one consumer
    thread measured side by side: the median of paired 0.2 s windows (the ratio report,
    ``ratios.py emitter``, uses 31 rounds of 0.3 s)."""

    params = ([1, 4],)
    param_names = ["workers"]
    timeout = 120
    rounds = 3
    seconds = 0.2

    def track_p99_us_at_50k(self, workers):
        import statistics

        return statistics.median(latency_nova(50_000, self.seconds, workers) for _ in range(self.rounds))

    track_p99_us_at_50k.unit = "us"

    def track_p99_ratio_vs_queue_at_50k(self, workers):
        import statistics

        ratios = []
        for _ in range(self.rounds):
            q = latency_queue(50_000, self.seconds)
            ratios.append(latency_nova(50_000, self.seconds, workers) / q)
        return statistics.median(ratios)

    track_p99_ratio_vs_queue_at_50k.unit = "ratio"


class EmitAsyncPeer:
    """pyee's ExecutorEventEmitter over a 4-thread pool, to completion."""

    timeout = 120

    def setup(self):
        from concurrent.futures import ThreadPoolExecutor

        import pyee.executor

        self.ex = ThreadPoolExecutor(4)
        self.ee = pyee.executor.ExecutorEventEmitter(executor=self.ex)
        self.done = threading.Semaphore(0)
        self.ee.on("tick", lambda ev: self.done.release())
        self.ev = Event("tick", 1)

    def teardown(self):
        self.ex.shutdown(wait=True)

    def time_pyee_executor_2k(self):
        for _ in range(2000):
            self.ee.emit("tick", self.ev)
        for _ in range(2000):
            self.done.acquire()


class AEmit:
    def setup(self):
        self.loop = asyncio.new_event_loop()
        self.ev = Event("a", 1)
        self.em = Emitter()

        async def alis(ev):
            return None

        self.em.subscribe("a", alis)
        self.em2 = Emitter()
        self.em2.subscribe("a", alis)
        self.em2.subscribe("a", alis)
        self.em2.subscribe("a", _noop)

    def teardown(self):
        self.loop.close()
        self.em.shutdown()
        self.em2.shutdown()

    def time_aemit_one_async_x1000(self):
        async def run():
            aemit, ev = self.em.aemit, self.ev
            for _ in range(1000):
                await aemit(ev)

        self.loop.run_until_complete(run())

    def time_aemit_two_async_one_sync_x1000(self):
        async def run():
            aemit, ev = self.em2.aemit, self.ev
            for _ in range(1000):
                await aemit(ev)

        self.loop.run_until_complete(run())

    def time_pyee_asyncio_x1000(self):
        import pyee.asyncio

        async def run():
            ee = pyee.asyncio.AsyncIOEventEmitter()
            done = asyncio.Event()
            count = [0]

            async def lis(ev):
                count[0] += 1
                if count[0] == 1000:
                    done.set()

            ee.on("a", lis)
            for _ in range(1000):
                ee.emit("a", self.ev)
            await done.wait()

        self.loop.run_until_complete(run())


class Subscribe:
    def setup(self):
        self.em = Emitter()
        for i in range(50):
            self.em.subscribe(f"t{i}", _noop)

    def teardown(self):
        self.em.shutdown()

    def time_subscribe_unsubscribe_x100(self):
        for _ in range(100):
            self.em.subscribe("t0", _noop).unsubscribe()

    def peakmem_10k_subscriptions(self):
        em = Emitter()
        for i in range(10_000):
            em.subscribe(f"t{i % 100}", _noop)
        em.shutdown()
