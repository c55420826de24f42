"""Issue 6 ratios: the Bus end to end against a bare ``queue.Queue`` handoff, exactly-once
against at-least-once, and the no-subscriber publish, all measured in this process
(the machine is shared and noisy: only same-run ratios mean anything)."""

from __future__ import annotations

import gc
import queue
import threading
import time

from _timing import Row

from nova import Bus, DeliveryMode, Event, TopicConfig


def _noop(ev):
    return None


def _queue_handoff_rate(events) -> float:
    """Events/s through a bare ``queue.Queue(maxsize=1024)`` to one consumer thread."""
    q: queue.Queue = queue.Queue(maxsize=1024)
    ready = threading.Event()

    def consumer():
        get = q.get
        ready.set()
        while True:
            x = get()
            if x is None:
                return
            _noop(x)

    t = threading.Thread(target=consumer)
    t.start()
    ready.wait()
    put = q.put
    t0 = time.perf_counter()
    for e in events:
        put(e)
    put(None)
    t.join()
    return len(events) / (time.perf_counter() - t0)


def _bus_rate(events, keys, mode: DeliveryMode, partitions: int = 8) -> float:
    """Events/s: publish with keys over *partitions* to one trivial subscriber, until
    flush() says all were handled."""
    b = Bus(buffer_size=1000)
    b.create_topic("bench", TopicConfig(partitions=partitions, delivery=mode))
    b.subscribe("bench", _noop)
    publish = b.publish
    t0 = time.perf_counter()
    for e, k in zip(events, keys):
        publish("bench", e, key=k)
    ok = b.flush(120)
    dt = time.perf_counter() - t0
    s = b.stats()
    b.shutdown(10)
    if not ok or s.handled != len(events):
        raise RuntimeError(f"bus benchmark lost events: {s}")
    return len(events) / dt


def _publish_ns(number: int, reps: int, *, key: bool) -> float:
    b = Bus()
    b.create_topic("quiet", TopicConfig(partitions=8))
    ev = Event("tick", 1)
    publish = b.publish
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        if key:
            for _ in range(number):
                publish("quiet", ev, key="customer-42")
        else:
            for _ in range(number):
                publish("quiet", ev)
        best = min(best, time.perf_counter() - t0)
    b.shutdown(5)
    return best / number * 1e9


def run(quick: bool) -> list[Row]:
    n = 50_000 if quick else 200_000
    reps = 3 if quick else 5
    events = [Event("order.created", i) for i in range(n)]
    keys = [f"customer-{i % 5000}" for i in range(n)]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        best = {"queue": 0.0, "alo": 0.0, "eo": 0.0, "amo": 0.0}
        for _ in range(reps):  # interleaved, so drift hits all alike
            best["queue"] = max(best["queue"], _queue_handoff_rate(events))
            best["alo"] = max(best["alo"], _bus_rate(events, keys, DeliveryMode.AT_LEAST_ONCE))
            best["eo"] = max(best["eo"], _bus_rate(events, keys, DeliveryMode.EXACTLY_ONCE))
            best["amo"] = max(best["amo"], _bus_rate(events, keys, DeliveryMode.AT_MOST_ONCE))
        nosub = _publish_ns(100_000 if quick else 300_000, reps, key=False)
        nosub_key = _publish_ns(100_000 if quick else 300_000, reps, key=True)
    finally:
        if gc_was:
            gc.enable()
    q, alo, eo, amo = best["queue"], best["alo"], best["eo"], best["amo"]
    return [
        Row("publish keyed/8 partitions -> 1 subscriber, ALO", alo, "ev/s",
            "queue.Queue(1024) handoff, 1 thread", q, alo / q, ">= 0.6x", alo / q >= 0.6),
        Row("publish keyed/8 partitions -> 1 subscriber, ALO", alo, "ev/s",
            "absolute target 500k ev/s", 500_000.0, alo / 500_000, ">= 1x", alo >= 500_000),
        Row("EXACTLY_ONCE cost per event", 1e9 / eo, "ns",
            "AT_LEAST_ONCE, same load", 1e9 / alo, alo / eo, "<= 1.5x", alo / eo <= 1.5),
        Row("AT_MOST_ONCE, same load", amo, "ev/s", "AT_LEAST_ONCE, same load", alo, amo / alo, "info", None),
        Row("publish, no subscribers (round robin)", nosub, "ns", "target 1 us", 1000.0, nosub / 1000,
            "< 1 us", nosub < 1000),
        Row("publish with key, no subscribers", nosub_key, "ns", "publish, no key", nosub,
            nosub_key / nosub, "info", None),
    ]
