"""Bus delivery modes: order under retries, exactly-once dedup, dead letters, managed listeners."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict

import pytest

from nova import Bus, DedupWindow, DeliveryMode, Event, RetryPolicy, TopicConfig
from nova.listener import DeadLetter, DeadLetterConfig, ListenerConfig, ListenerManager
from nova.testing import ManualClock


class RecordingStore:
    """The part of the EventStore protocol dead letters use."""

    def __init__(self):
        self.appended = []
        self.lock = threading.Lock()

    def append(self, stream, *events):
        with self.lock:
            self.appended.extend((stream, e) for e in events)
            return len(self.appended)


def test_per_key_order_with_random_failures_and_retries_100k(bus_transport):
    # 100,000 in-process; 20,000 on Redis (each event is a network round trip there:
    # the full size would add a minute to the suite)
    n_events, n_keys = (20_000 if bus_transport.redis else 100_000), 1000
    clock = ManualClock(auto_advance=True)
    b = Bus(transport=bus_transport(), clock=clock, buffer_size=4096)
    b.create_topic(
        "orders",
        TopicConfig(
            partitions=8,
            delivery=DeliveryMode.AT_LEAST_ONCE,
            ordering_key=lambda e: e.metadata["k"],
            retry=RetryPolicy(max_attempts=4, initial_delay=0.01),
        ),
    )
    keys = [f"customer-{i % n_keys}" for i in range(n_events)]
    rng = random.Random(7)
    # fail the first 1..2 calls of about 5% of the events (always below max_attempts)
    plan = {i: rng.choice((1, 2)) for i in range(n_events) if rng.random() < 0.05}
    handled: dict[str, dict[str, list[int]]] = {"solo": defaultdict(list), "group": defaultdict(list)}
    calls: dict[tuple[str, int], int] = defaultdict(int)

    def make(name):
        out = handled[name]

        def h(e):
            i = e.data
            calls[(name, i)] += 1
            if calls[(name, i)] <= plan.get(i, 0):
                raise RuntimeError(f"transient failure of {i}")
            out[e.metadata["k"]].append(i)

        return h

    b.subscribe("orders", make("solo"))
    b.subscribe("orders", make("group"), group="g")
    b.subscribe("orders", make("group"), group="g")
    events = [Event("order", i, metadata={"k": keys[i]}) for i in range(n_events)]
    publish = b.publish
    for e in events:
        publish("orders", e)
    assert b.flush(60)
    expected: dict[str, list[int]] = defaultdict(list)
    for i in range(n_events):
        expected[keys[i]].append(i)
    for name in ("solo", "group"):
        assert handled[name] == expected, name
    s = b.stats()
    retries = sum(plan.values()) * 2
    assert (s.handled, s.retried, s.dead_lettered, s.failed, s.pending) == (2 * n_events, retries, 0, 0, 0)
    # backoff happened on the manual clock: 0.01 after a first failure, 0.02 after a second
    expected_sleep = 2 * sum(0.01 if k == 1 else 0.03 for k in plan.values())
    assert clock.monotonic() == pytest.approx(expected_sleep)
    assert b.shutdown(10)


def test_retry_holds_the_partition_and_only_the_failing_subscriber_retries(bus_transport):
    clock = ManualClock(auto_advance=True)
    with Bus(transport=bus_transport(), clock=clock) as b:
        b.create_topic("t", TopicConfig(partitions=1, retry=RetryPolicy(max_attempts=3, initial_delay=1)))
        flaky, steady = [], []
        attempts = defaultdict(int)

        def flaky_h(e):
            attempts[e.data] += 1
            if e.data == 3 and attempts[3] < 3:
                raise ValueError("not yet")
            flaky.append(e.data)

        b.subscribe("t", flaky_h)
        b.subscribe("t", lambda e: steady.append(e.data))
        for i in range(6):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        assert flaky == steady == list(range(6))
        assert attempts[3] == 3 and sum(attempts.values()) == 8
        assert clock.monotonic() == pytest.approx(1 + 2)  # exponential: 1 then 2
        assert b.stats().retried == 2


def test_dead_letter_after_the_last_attempt_handler_and_store(bus_transport):
    clock = ManualClock(auto_advance=True)
    letters: list[DeadLetter] = []
    store = RecordingStore()
    with Bus(transport=bus_transport(), clock=clock) as b:
        b.create_topic(
            "pay",
            TopicConfig(
                partitions=2,
                retry=RetryPolicy(max_attempts=3, initial_delay=0.5),
                dead_letter=DeadLetterConfig(handler=letters.append, store=store),
            ),
        )
        calls = defaultdict(int)
        ok = []

        def h(e):
            calls[e.data] += 1
            if e.data % 10 == 0:
                raise ConnectionError(f"down for {e.data}")
            ok.append(e.data)

        sub = b.subscribe("pay", h)
        for i in range(50):
            b.publish("pay", Event("payment", i), key=str(i))
        assert b.flush(10)
        dead = sorted(dl.event.data for dl in letters)
        assert dead == [0, 10, 20, 30, 40]
        assert sorted(ok) == [i for i in range(50) if i % 10]
        assert all(calls[i] == 3 for i in dead)
        dl = next(d for d in letters if d.event.data == 10)
        assert (dl.attempts, dl.topic, dl.listener_id) == (3, "pay", sub.listener.id)
        assert isinstance(dl.error, ConnectionError) and str(dl.error) == "down for 10"
        assert isinstance(dl.timestamp, int) and dl.timestamp > 0
        assert len(store.appended) == 5
        stream, stored = next(x for x in store.appended if x[1].data == 10)
        assert stream == "nova.deadletter"
        assert stored.id == dl.event.id
        md = stored.metadata
        assert md["nova.error.type"].endswith("ConnectionError")
        assert md["nova.error.message"] == "down for 10"
        assert md["nova.attempts"] == "3"
        assert md["nova.listener"] == sub.listener.id
        assert md["nova.topic"] == "pay"
        s = b.stats()
        assert (s.dead_lettered, s.handled, s.retried, s.dead_letter_errors) == (5, 45, 10, 0)
        assert clock.monotonic() == pytest.approx(5 * (0.5 + 1.0))


def test_non_retryable_errors_and_dead_letter_edge_cases(bus_transport):
    clock = ManualClock(auto_advance=True)
    with Bus(transport=bus_transport(), clock=clock) as b:
        letters = []
        b.create_topic(
            "a",
            TopicConfig(
                retry=RetryPolicy(max_attempts=5, retry_on=(ConnectionError,)),
                dead_letter=DeadLetterConfig(handler=letters.append),
            ),
        )

        def h(e):
            raise KeyError("bad data")

        b.subscribe("a", h)
        b.publish("a", Event("x"))
        b.create_topic("off", TopicConfig(dead_letter=DeadLetterConfig(enabled=False, handler=letters.append)))
        b.subscribe("off", h)
        b.publish("off", Event("x"))

        def broken(dl):
            raise RuntimeError("dead-letter handler broke")

        b.create_topic("broken", TopicConfig(retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=broken)))
        b.subscribe("broken", h)
        b.publish("broken", Event("x"))
        assert b.flush(10)
        assert len(letters) == 1 and letters[0].attempts == 1 and letters[0].topic == "a"
        s = b.stats()
        assert (s.dead_lettered, s.retried, s.dead_letter_errors) == (3, 2, 1)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once", "at-most-once"])
@pytest.mark.parametrize("kind", ["sync", "async", "metrics"])
@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt, asyncio.CancelledError])
def test_a_base_exception_from_a_handler_is_a_failure_not_a_dead_thread(delivery, kind, raised, bus_transport):
    # A handler raising a BaseException killed the delivery thread: its whole batch was
    # counted as settled without being handled, and later events were never delivered
    # (flush returned True over the loss, then hung).
    from nova.observability.metrics import SimpleMetricsCollector

    clock = ManualClock(auto_advance=True)
    letters, calls, hooks = [], [], []
    metrics = SimpleMetricsCollector() if kind == "metrics" else None
    b = Bus(transport=bus_transport(), clock=clock, metrics=metrics, on_error=lambda e, exc, lst: hooks.append(type(exc)))
    try:
        b.create_topic("t", TopicConfig(delivery=delivery, dead_letter=DeadLetterConfig(handler=letters.append)))

        def sync_h(e):
            calls.append(e.data)
            if e.data == 1:
                raise raised()

        async def async_h(e):
            sync_h(e)

        b.subscribe("t", async_h if kind == "async" else sync_h)
        for i in range(3):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        for i in range(3, 5):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        s = b.stats()
    finally:
        b.shutdown(5)  # bounded: the old code's dead thread never drained
    assert calls == [0, 1, 2, 3, 4]  # not retried: the default retry_on is Exception
    assert hooks == [raised]
    if delivery == "at-most-once":
        assert (s.handled, s.failed, s.dead_lettered, s.pending) == (4, 1, 0, 0)
        assert letters == []
    else:
        assert (s.handled, s.failed, s.dead_lettered, s.pending) == (4, 0, 1, 0)
        assert len(letters) == 1 and isinstance(letters[0].error, raised)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_metrics_collector_that_raises_is_counted_not_fatal(delivery, bus_transport):
    # A collector raising on the delivery thread killed it (the batch counted as settled,
    # later events never delivered); raising right after a successful call made the
    # handled event a failure, so the handler was called again.
    from nova.observability.metrics import SimpleMetricsCollector

    class Broken(SimpleMetricsCollector):
        def inc_events_processed(self, listener, result, n=1):
            raise RuntimeError("metrics down")

        def observe_listener_duration(self, listener, seconds):
            raise SystemExit("metrics down")

    calls = []
    b = Bus(transport=bus_transport(), clock=ManualClock(auto_advance=True), metrics=Broken())
    try:
        b.create_topic("t", TopicConfig(delivery=delivery))
        b.subscribe("t", lambda e: calls.append(e.data))
        for i in range(3):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        for i in range(3, 5):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        s = b.stats()
    finally:
        b.shutdown(5)
    assert calls == [0, 1, 2, 3, 4]
    assert (s.handled, s.retried, s.dead_lettered, s.pending, s.hook_errors) == (5, 0, 0, 0, 10)


def test_a_base_exception_from_a_hook_is_counted(bus_transport):
    clock = ManualClock(auto_advance=True)

    def hook(e, exc, lst):
        raise SystemExit("hook")

    def dl(letter):
        raise KeyboardInterrupt

    b = Bus(transport=bus_transport(), clock=clock, on_error=hook)
    try:
        b.create_topic("t", TopicConfig(retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=dl)))
        b.subscribe("t", lambda e: 1 / 0)
        b.publish("t", Event("x"))
        b.publish("t", Event("x"))
        assert b.flush(10)
        s = b.stats()
    finally:
        b.shutdown(5)
    assert (s.dead_lettered, s.hook_errors, s.dead_letter_errors, s.pending) == (2, 2, 2, 0)


def test_at_most_once_never_retries(bus_transport):
    clock = ManualClock(auto_advance=True)
    errors_seen = []

    class L:
        id = "amo"

        def __init__(self):
            self.calls = 0

        def handle(self, e):
            self.calls += 1
            raise RuntimeError("nope")

        def on_error(self, e, exc):
            errors_seen.append((e.data, str(exc)))

    lst = L()
    with Bus(transport=bus_transport(), clock=clock, default_delivery="at-most-once") as b:
        b.subscribe("t", lst)
        for i in range(10):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        s = b.stats()
        assert (s.failed, s.retried, s.dead_lettered, s.handled) == (10, 0, 0, 0)
    assert lst.calls == 10
    assert errors_seen == [(i, "nope") for i in range(10)]
    assert clock.monotonic() == 0


def _eo_bus(clock, window=None, partitions=8, transport=None):
    b = Bus(clock=clock, transport=transport)
    b.create_topic(
        "eo",
        TopicConfig(
            partitions=partitions,
            delivery=DeliveryMode.EXACTLY_ONCE,
            retry=RetryPolicy(max_attempts=3, initial_delay=0.1),
            dedup_window=window,
        ),
    )
    return b


def test_exactly_once_with_duplicate_publishes_and_retries(bus_transport):
    clock = ManualClock(auto_advance=True)
    b = _eo_bus(clock, transport=bus_transport())
    rng = random.Random(3)
    n = 3000
    originals = [Event("o", i) for i in range(n)]
    succeeded: dict[str, dict[str, int]] = {"solo": defaultdict(int), "group": defaultdict(int)}
    after_success: list[tuple[str, str]] = []
    calls = defaultdict(int)
    lock = threading.Lock()

    def make(name):
        def h(e):
            with lock:
                if succeeded[name][e.id]:
                    after_success.append((name, e.id))
                calls[(name, e.id)] += 1
                c = calls[(name, e.id)]
            if e.data % 7 == 0 and c == 1:
                raise TimeoutError("transient")
            with lock:
                succeeded[name][e.id] += 1

        return h

    b.subscribe("eo", make("solo"))
    for _ in range(3):
        b.subscribe("eo", make("group"), group="workers")
    published = 0
    for e in originals:
        b.publish("eo", e, key=str(e.data))
        published += 1
        r = rng.random()
        if r < 0.3:  # same event again, same key (same partition)
            b.publish("eo", e, key=str(e.data))
            published += 1
        elif r < 0.5:  # a copy with the same id on another partition (no key)
            b.publish("eo", e.replace(data=e.data))
            published += 1
    assert b.flush(30)
    for name in ("solo", "group"):
        assert len(succeeded[name]) == n
        assert set(succeeded[name].values()) == {1}, name
    assert after_success == []
    s = b.stats()
    dup_count = published - n
    assert s.duplicates == 2 * dup_count
    assert s.handled == 2 * n
    assert s.retried == 2 * len([e for e in originals if e.data % 7 == 0])
    assert s.pending == 0 and s.dead_lettered == 0
    assert b.shutdown(10)


def test_exactly_once_dead_letter_is_the_one_outcome(bus_transport):
    clock = ManualClock(auto_advance=True)
    letters = []
    b = Bus(transport=bus_transport(), clock=clock)
    b.create_topic("eo", TopicConfig(delivery="exactly-once", retry=RetryPolicy(max_attempts=2),
                                     dead_letter=DeadLetterConfig(handler=letters.append)))
    calls = []

    def h(e):
        calls.append(e.id)
        raise RuntimeError("always")

    b.subscribe("eo", h)
    e = Event("x")
    for _ in range(4):
        b.publish("eo", e)
    assert b.flush(10)
    assert calls == [e.id, e.id] and len(letters) == 1
    s = b.stats()
    assert (s.dead_lettered, s.duplicates) == (1, 3)
    assert b.shutdown(5)


def test_dedup_window_by_count_and_by_age():
    clock = ManualClock()
    b = _eo_bus(clock, window=2, partitions=1)
    got = []
    b.subscribe("eo", lambda e: got.append(e.data))
    a, bb, c, d = Event("x", "a"), Event("x", "b"), Event("x", "c"), Event("x", "d")
    # the last 2 ids are always remembered (b after c); at most 4 are kept, so a is
    # forgotten once b, c and d came
    for e in (a, bb, a, c, bb, d, a):
        b.publish("eo", e)
    assert b.flush(10)
    assert got == ["a", "b", "c", "d", "a"]
    b.shutdown(5)

    clock = ManualClock()
    b = _eo_bus(clock, window=DedupWindow(max_ids=None, max_age=10), partitions=2)
    got = []
    b.subscribe("eo", lambda e: got.append(e.data))
    b.subscribe("eo", lambda e: got.append(e.data), group="g")  # the locked path too
    b.publish("eo", a)
    b.publish("eo", a)
    assert b.flush(10)
    clock.advance(5)
    b.publish("eo", a)
    assert b.flush(10)
    assert got == ["a", "a"]
    clock.advance(6)  # 11 s after the first sighting: forgotten
    b.publish("eo", a)
    assert b.flush(10)
    assert got == ["a"] * 4
    assert b.stats().duplicates == 4
    b.shutdown(5)


def test_managed_listener_uses_its_own_policy(bus_transport):
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    letters = []
    calls = defaultdict(int)

    def h(e):
        calls[e.data] += 1
        if e.data == "bad":
            raise RuntimeError("bad")

    managed = lm.register(h, ListenerConfig(
        retry=RetryPolicy(max_attempts=2, initial_delay=0.0),
        dead_letter=DeadLetterConfig(handler=letters.append),
    ))
    topic_letters = []
    with Bus(transport=bus_transport(), clock=clock) as b:
        b.create_topic("m", TopicConfig(retry=RetryPolicy(max_attempts=5),
                                        dead_letter=DeadLetterConfig(handler=topic_letters.append)))
        b.subscribe("m", managed)
        for d in ("ok", "bad", "ok2"):
            b.publish("m", Event("x", d))
        assert b.flush(10)
        s = b.stats()
        assert (s.handled, s.dead_lettered, s.retried) == (2, 1, 0)
    assert calls == {"ok": 1, "bad": 2, "ok2": 1}  # the listener's 2 attempts, not the topic's 5
    assert len(letters) == 1 and letters[0].topic == "m" and topic_letters == []
    lm_close = getattr(lm, "close", None) or getattr(lm, "stop", None)
    if lm_close is not None:
        lm_close()


def test_async_listener_retries(bus_transport):
    clock = ManualClock(auto_advance=True)
    calls = defaultdict(int)
    done = []

    async def h(e):
        calls[e.data] += 1
        if calls[e.data] == 1:
            raise RuntimeError("first call fails")
        done.append(e.data)

    with Bus(transport=bus_transport(), clock=clock) as b:
        b.create_topic("t", TopicConfig(partitions=2, retry=RetryPolicy(max_attempts=2, initial_delay=0)))
        b.subscribe("t", h)
        for i in range(20):
            b.publish("t", Event("x", i), key=str(i % 3))
        assert b.flush(10)
        assert sorted(done) == list(range(20))
        assert b.stats().retried == 20
