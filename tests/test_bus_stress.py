"""Bus under load: many threads, shutdown accounting, rebalancing, overflow policies."""

from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest

from nova import Bus, Event, RetryPolicy, TopicConfig, errors
from nova.observability.metrics import SimpleMetricsCollector
from nova.testing import ManualClock


def _accounted(s):
    return s.handled + s.failed + s.dead_lettered + s.duplicates + s.evicted + s.discarded + s.pending


def _run_publishers(b, topic, n_threads, per_thread, accepted, stop_on_closed=True):
    barrier = threading.Barrier(n_threads)
    refused = []

    def pub(t):
        barrier.wait()
        rng = random.Random(t)
        for i in range(per_thread):
            try:
                b.publish(topic, Event("x", (t, i)), key=f"k{rng.randrange(64)}")
            except errors.BusClosed:
                refused.append(t)
                return
            accepted[t] += 1

    threads = [threading.Thread(target=pub, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    return threads, refused


def test_many_publishers_many_subscribers_exact_counts():
    clock = ManualClock(auto_advance=True)
    b = Bus(clock=clock, buffer_size=64)
    b.create_topic("t", TopicConfig(partitions=8, retry=RetryPolicy(max_attempts=2, initial_delay=0.001)))
    counts = defaultdict(int)
    lock = threading.Lock()
    seen_per_sub: dict[str, list] = defaultdict(list)

    def make(name, fail_mod):
        def h(e):
            t, i = e.data
            if fail_mod and (t * 7 + i) % fail_mod == 0:
                raise RuntimeError("always fails")  # dead-lettered after 2 attempts
            with lock:
                counts[name] += 1
                seen_per_sub[name].append(e.data)

        return h

    b.subscribe("t", make("a", 0))
    b.subscribe("t", make("b", 13))
    b.subscribe("t", make("g", 0), group="G")
    b.subscribe("t", make("g", 0), group="G")
    accepted = [0] * 6
    threads, refused = _run_publishers(b, "t", 6, 3000, accepted)
    for th in threads:
        th.join(60)
    assert b.flush(60)
    total = sum(accepted)
    assert total == 18000 and not refused
    s = b.stats()
    failing = sum(1 for t in range(6) for i in range(3000) if (t * 7 + i) % 13 == 0)
    assert s.published == total and s.deliveries == 3 * total
    assert s.dead_lettered == failing and s.retried == failing
    assert counts == {"a": total, "b": total - failing, "g": total}
    assert s.handled == 3 * total - failing and s.pending == 0 and _accounted(s) == s.deliveries
    for name in ("a", "g"):
        assert len(set(seen_per_sub[name])) == total  # nothing doubled
    assert b.shutdown(10)


@pytest.mark.parametrize("drained", [True, False], ids=["drained", "timed-out"])
def test_shutdown_under_load_exact_accounting(drained):
    b = Bus(buffer_size=32)
    b.create_topic("load", TopicConfig(partitions=8))
    handled = defaultdict(int)
    lock = threading.Lock()
    gate = threading.Event()
    first = threading.Event()

    def fast(e):
        with lock:
            handled["fast"] += 1

    def gated(e):
        first.set()
        gate.wait(30)
        with lock:
            handled["gated"] += 1

    b.subscribe("load", fast)
    b.subscribe("load", gated, group="slow")
    accepted = [0] * 4
    if drained:
        gate.set()
    b_overflow_block_timeout = 0.05  # publishers must not hang on the gated subscriber

    def pub(t):
        for i in range(5000):
            try:
                b.publish("load", Event("x", (t, i)), key=f"{t}-{i % 50}", timeout=b_overflow_block_timeout)
            except errors.BusClosed:
                return
            except errors.Timeout:
                continue
            accepted[t] += 1
            if accepted[t] == 100:
                loaded.set()

    loaded = threading.Event()
    threads = [threading.Thread(target=pub, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    assert first.wait(30) and loaded.wait(30)  # shut down in the middle of the load
    ok = b.shutdown(timeout=30 if drained else 0.3)
    for th in threads:
        th.join(60)
    gate.set()
    assert ok is drained
    # After shutdown nothing more is accepted
    with pytest.raises(errors.BusClosed):
        b.publish("load", Event("late"))
    total = sum(accepted)
    # an abandoned handler call still running finishes; then the counters are final
    assert b.join(30)
    s = b.stats()
    assert s.published == total and s.deliveries == 2 * total
    assert _accounted(s) == s.deliveries
    assert s.handled == handled["fast"] + handled["gated"]
    assert handled["fast"] == total  # the fast subscriber was never held up by the slow one
    if drained:
        assert s.pending == 0 and s.undelivered == 0 and handled["gated"] == total
    else:
        assert s.undelivered == s.pending > 0
        assert handled["gated"] + s.undelivered == total


def test_shutdown_interrupts_a_real_backoff():
    b = Bus()
    b.create_topic("t", TopicConfig(retry=RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60)))
    calls = []
    failed_once = threading.Event()

    def h(e):
        calls.append(e.data)
        failed_once.set()
        raise RuntimeError("down")

    b.subscribe("t", h)
    b.publish("t", Event("x", 1))
    b.publish("t", Event("x", 2))
    assert failed_once.wait(10)
    assert b.shutdown(timeout=0.2) is False  # the 60 s backoff was cut short
    s = b.stats()
    assert calls == [1]
    assert (s.undelivered, s.pending, s.dead_lettered, s.handled) == (2, 2, 0, 0)


def test_group_rebalancing_under_load_keeps_order_and_single_ownership():
    b = Bus(buffer_size=256)
    b.create_topic("r", TopicConfig(partitions=6, ordering_key=lambda e: e.metadata["k"]))
    active = defaultdict(int)
    violations = []
    per_key = defaultdict(list)
    lock = threading.Lock()

    def make(name):
        def h(e):
            p = e.metadata["p"]
            with lock:
                active[p] += 1
                if active[p] != 1:
                    violations.append((name, p))
            # some work outside the lock, so overlaps would show
            sum(range(50))
            with lock:
                per_key[e.metadata["k"]].append(e.data)
                active[p] -= 1

        return h

    members = [b.subscribe("r", make(f"m{i}"), group="G") for i in range(2)]
    stop = threading.Event()
    n = 20000

    def churn():
        rng = random.Random(5)
        k = 2
        while not stop.is_set():
            if len(members) > 1 and rng.random() < 0.5:
                members.pop(rng.randrange(len(members))).unsubscribe()
            else:
                members.append(b.subscribe("r", make(f"m{k}"), group="G"))
                k += 1

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for i in range(n):
            k = f"key{i % 40}"
            b.publish("r", Event("x", i, metadata={"k": k, "p": str(b.partition_for("r", k))}))
    finally:
        stop.set()
        churner.join(30)
    assert b.flush(60)
    assert violations == []
    got = sorted(i for seq in per_key.values() for i in seq)
    assert got == list(range(n))  # every event once: none lost, none doubled
    for seq in per_key.values():
        assert seq == sorted(seq)  # per-key order survived the rebalances
    s = b.stats()
    assert s.handled == n and s.discarded == 0 and s.pending == 0
    assert b.shutdown(10)


def test_overflow_policies():
    gate = threading.Event()
    started = threading.Event()
    got = []

    def blocked(e):
        started.set()
        gate.wait(30)
        got.append(e.data)

    for overflow in ("error", "block", "drop_newest", "drop_oldest"):
        gate.clear()
        started.clear()
        got.clear()
        metrics = SimpleMetricsCollector()
        b = Bus(buffer_size=3, overflow=overflow, metrics=metrics)
        b.create_topic("t", TopicConfig(partitions=1))
        b.subscribe("t", blocked)
        b.publish("t", Event("x", -1))
        assert started.wait(10)  # the subscriber holds event -1; 3 more fit its buffer
        for i in range(3):
            b.publish("t", Event("x", i))
        if overflow == "error":
            with pytest.raises(errors.BufferFull, match="overflow='error'"):
                b.publish("t", Event("x", 3))
        elif overflow == "block":
            with pytest.raises(errors.Timeout, match="within 0.05 s"):
                b.publish("t", Event("x", 3), timeout=0.05)
        else:
            b.publish("t", Event("x", 3))
        gate.set()
        assert b.flush(10)
        s = b.stats()
        if overflow in ("error", "block"):
            assert (s.published, s.dropped, s.handled) == (4, 0, 4)
            assert got == [-1, 0, 1, 2]
        elif overflow == "drop_newest":
            assert (s.published, s.dropped, s.evicted, s.deliveries, s.handled) == (5, 1, 0, 4, 4)
            assert got == [-1, 0, 1, 2]
        else:
            assert (s.published, s.dropped, s.evicted, s.deliveries, s.handled) == (5, 1, 1, 5, 4)
            assert got == [-1, 1, 2, 3]
        assert _accounted(s) == s.deliveries
        assert metrics.total("nova_events_dropped_total", component="bus:bus") == s.dropped
        assert b.shutdown(10)


def test_handler_publishing_into_its_own_full_buffer_does_not_deadlock():
    errs = []
    done = threading.Event()
    b = Bus(buffer_size=1)
    b.create_topic("t", TopicConfig(partitions=1))

    def h(e):
        if e.data == 0:
            try:
                for i in range(1, 4):
                    b.publish("t", Event("x", i))
            except errors.BufferFull as exc:
                errs.append(str(exc))
            done.set()

    b.subscribe("t", h)
    b.publish("t", Event("x", 0))
    assert done.wait(10)
    assert errs and "deadlock" in errs[0]
    assert b.flush(10)
    assert b.shutdown(10)


def test_concurrent_subscribe_unsubscribe_and_topics():
    b = Bus(default_partitions=4)
    errors_seen = []

    def worker(t):
        try:
            rng = random.Random(t)
            for i in range(150):
                topic = f"t{rng.randrange(5)}"
                sub = b.subscribe(topic, lambda e: None, group=rng.choice([None, "g"]))
                b.publish(topic, Event("x", i))
                if rng.random() < 0.1:
                    try:
                        b.delete_topic(topic)
                    except errors.TopicNotFound:
                        pass
                sub.unsubscribe()
        except Exception as exc:  # pragma: no cover - reported below
            errors_seen.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors_seen == []
    assert b.flush(30)
    s = b.stats()
    assert s.subscriptions == 0 and s.pending == 0 and _accounted(s) == s.deliveries
    assert b.shutdown(10)
