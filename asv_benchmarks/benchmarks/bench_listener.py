"""ListenerManager: success-path overhead of a managed listener, retry throughput on an
injected clock, and circuit-breaker bookkeeping."""

import zlib

from nova.events import Event
from nova.listener import (
    CircuitBreaker,
    CircuitConfig,
    DeadLetterConfig,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.testing import ManualClock


def _noop(event):
    return None


class ManagedSuccessPath:
    """One call of a listener that never fails: bare function vs managed (retry + circuit)."""

    params = (["bare", "managed", "managed_no_circuit", "managed_unbounded"],)
    param_names = ["kind"]

    def setup(self, kind):
        self.lm = ListenerManager()
        self.event = Event("bench", 1)
        if kind == "bare":
            self.call = _noop
            return
        cfg = {
            "managed": ListenerConfig(retry=RetryPolicy(), circuit=CircuitConfig()),
            "managed_no_circuit": ListenerConfig(circuit=CircuitConfig(enabled=False)),
            "managed_unbounded": ListenerConfig(concurrency=None),
        }[kind]
        self.call = self.lm.register(_noop, cfg, id=kind).handle

    def teardown(self, kind):
        self.lm.stop(timeout=0)

    def time_call_x1000(self, kind):
        call, ev = self.call, self.event
        for _ in range(1000):
            call(ev)


class RetryThroughput:
    """10,000 events through a listener failing 30% of calls, retries on a ManualClock."""

    params = (["run_inline", "handle_scheduled"],)
    param_names = ["path"]
    timeout = 120

    def setup(self, path):
        self.events = [Event("bench", i) for i in range(10_000)]

    def _listener(self):
        counts = {}

        def flaky(ev):
            n = counts.get(ev.id, 0) + 1
            counts[ev.id] = n
            if zlib.crc32(f"{ev.id}:{n}".encode()) % 10 < 3:
                raise ConnectionError("flaky")

        return flaky

    def time_10k_events_30pct_failures(self, path):
        cfg = ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=1.0),
                             circuit=CircuitConfig(enabled=False),
                             dead_letter=DeadLetterConfig(handler=lambda dl: None))
        if path == "run_inline":
            clock = ManualClock(auto_advance=True)
            lm = ListenerManager(clock=clock)
            m = lm.register(self._listener(), cfg, id="flaky")
            for ev in self.events:
                m.run_inline(ev)
            lm.stop()
            return
        clock = ManualClock()
        lm = ListenerManager(clock=clock)
        m = lm.register(self._listener(), cfg, id="flaky")
        for ev in self.events:
            m.handle(ev)
        while lm.stats().pending:
            clock.advance(0.1)
            lm.wait_idle(30)
        lm.stop(timeout=0)
        clock.advance(1e9)


class BreakerBookkeeping:
    """allow() + record_success() on a closed breaker, and a full open/half-open/close cycle."""

    def setup(self):
        self.clock = ManualClock()
        self.breaker = CircuitBreaker(CircuitConfig(failure_threshold=5, success_threshold=1, timeout=1.0),
                                      self.clock)

    def time_allow_record_success_x1000(self):
        b = self.breaker
        for _ in range(1000):
            b.allow()
            b.record_success()

    def time_open_half_open_close_cycle_x100(self):
        b, clock = self.breaker, self.clock
        for _ in range(100):
            for _ in range(5):
                b.allow()
                b.record_failure()
            clock.advance(1.0)
            b.allow()
            b.record_success()


class OverheadTrack:
    """Managed minus bare per-call time, in ns (target <= 1000)."""

    unit = "ns"

    def setup(self):
        self.lm = ListenerManager()
        self.managed = self.lm.register(_noop, ListenerConfig(), id="track").handle
        self.event = Event("bench", 1)

    def teardown(self):
        self.lm.stop(timeout=0)

    def track_success_overhead_ns(self):
        import time

        ev, bare, managed = self.event, _noop, self.managed
        best_b = best_m = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(20_000):
                bare(ev)
            t1 = time.perf_counter()
            for _ in range(20_000):
                managed(ev)
            t2 = time.perf_counter()
            best_b = min(best_b, t1 - t0)
            best_m = min(best_m, t2 - t1)
        return (best_m - best_b) / 20_000 * 1e9
