"""Issue 15 ratios: the Bus on RedisTransport against raw redis-py (with hiredis) on
the same valkey-server, in the same process, same events (a ~200-byte JSON payload):

* ``publish_many`` of 1,000-event batches (keyed, 8 partitions) vs raw pipelined
  ``XADD`` (one pipeline of 1,000 per batch, fields type/id/ts/data, the payload
  JSON-encoded in the loop);
* one consumer, at-least-once, trivial handler: events/s drained by a group member
  (a fresh bus joining a group with the events waiting) vs a raw ``XREADGROUP COUNT
  100`` + ``XACK`` loop over the same number of raw entries (no decoding);
* exactly-once vs at-least-once: the cost per event of the same drain (dedup marks
  checked and set on the server with the acks);
* informational: the same drain with Python's cyclic GC on (every decoded payload is a
  new dict: the GC's passes over them cost as much as the rest; the raw loop decodes
  nothing);
* informational: publish -> handler latency (p50, p99) at 5,000 events/s, the
  publisher in a child process (tests/bus_redis_child.py ``pace``), a group member here.

``python asv_benchmarks/ratios.py bus_redis`` (``--quick``: fewer events).
``python asv_benchmarks/ratio_bus_redis.py --procs`` also runs the issue's full-size
multi-process test (2 x 50,000 events, tests/test_bus_redis_procs.py with
``NOVA_BUS_REDIS_N=50000``) and reports its duration.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
from _timing import Row, best_seconds
from _valkey import Server

from nova import Bus, Event, RedisTransport, TopicConfig

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "bus_redis_child.py"


def _payload(i: int) -> dict[str, object]:
    return {"order": i, "customer": f"customer-{i % 977:05d}", "amount": i * 0.25, "currency": "EUR",
            "items": [{"sku": f"sku-{i % 101:04d}", "qty": 1 + i % 5}, {"sku": f"sku-{i % 53:04d}", "qty": 2}],
            "note": "standard delivery to the registered address"}


def _events(first: int, n: int) -> list[Event]:
    return [Event("order.placed", _payload(i)) for i in range(first, first + n)]


def _raw_batch(r: Any, key: str, events: list[Event]) -> None:
    p = r.pipeline(transaction=False)
    dumps = json.dumps
    for e in events:
        p.xadd(key, {"y": e.type, "i": e.id, "t": e.timestamp, "d": dumps(e.data, separators=(",", ":"))})
    p.execute()


def _drain(url: str, prefix: str, topic: str, mode: str, n: int, events: list[Event], gc_off: bool = True) -> float:
    """Seconds a fresh group member takes to handle *n* events waiting for its group
    (with the cyclic GC off while timing, as every ratio here, unless *gc_off* is False)."""
    setup = RedisTransport(url, prefix=prefix)
    b0 = Bus(transport=setup)
    b0.create_topic(topic, TopicConfig(partitions=1, delivery=mode))
    b0.subscribe(topic, lambda e: None, group="G")  # the group exists from here
    b0.shutdown(10)  # it left the group; the group stays at its position
    pub = Bus(transport=RedisTransport(client=setup.client, prefix=prefix))
    for i in range(0, n, 1000):
        pub.publish_many(topic, events[i:i + 1000])
    pub.shutdown(5)
    done = threading.Event()
    count = [0]

    def h(e: Event) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    t = RedisTransport(url, prefix=prefix)
    bus = Bus(transport=t, buffer_size=1000)
    gc.collect()
    if gc_off:
        gc.disable()  # as _timing.best_seconds does for every ratio (the raw drain too)
    try:
        t0 = time.perf_counter()
        bus.subscribe(topic, h, group="G")
        done.wait(300)
        dt = time.perf_counter() - t0
    finally:
        gc.enable()
    bus.shutdown(10)
    t.client.close()
    setup.client.close()
    assert count[0] == n, count[0]
    return dt


def _raw_drain(r: Any, key: str, n: int) -> float:
    r.xgroup_create(key, "G", id="0", mkstream=True)
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        got = 0
        while got < n:
            reply = r.xreadgroup("G", "c", {key: ">"}, count=100)
            for _k, entries in reply:
                ids = [eid for eid, _f in entries]
                for _eid, _f in entries:
                    pass  # the trivial handler
                r.xack(key, "G", *ids)
                got += len(ids)
        return time.perf_counter() - t0
    finally:
        gc.enable()


def _latency(url: str, quick: bool) -> tuple[float, float, int]:
    rate, seconds = 5000, (2 if quick else 5)
    t = RedisTransport(url, prefix="lat")
    bus = Bus(transport=t)
    bus.create_topic("lat", TopicConfig(partitions=8))
    lat: list[int] = []
    clock = time.clock_gettime_ns
    mono = time.CLOCK_MONOTONIC

    def h(e: Event) -> None:
        lat.append(clock(mono) - e.data)

    bus.subscribe("lat", h, group="G")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, str(CHILD), "pace", url, "lat", str(rate), str(seconds)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=seconds + 60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    sent = int(out.split()[-1])
    assert bus.flush(30), "latency run did not drain"
    bus.shutdown(10)
    t.client.close()
    lat.sort()
    return lat[len(lat) // 2] / 1e6, lat[int(len(lat) * 0.99)] / 1e6, sent


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    server = Server()
    try:
        r = redis.Redis.from_url(server.url)
        t = RedisTransport(server.url, prefix="bench")
        bus = Bus(transport=t)
        # keyed as a service would: the customer is the ordering key (murmur2 per event)
        bus.create_topic("orders", TopicConfig(partitions=8, ordering_key=lambda e: e.data["customer"]))
        nb = 10 if quick else 20
        batches = [_events(i, 1000) for i in range(0, nb * 1000, 1000)]

        def nova_batches() -> None:
            for b in batches:
                bus.publish_many("orders", b)

        def raw_batches() -> None:
            for b in batches:
                _raw_batch(r, "raw-orders", b)

        t_raw = t_nova = float("inf")
        for _ in range(3 if quick else 5):
            t_raw = min(t_raw, best_seconds(raw_batches, 1))
            t_nova = min(t_nova, best_seconds(nova_batches, 1))
        n = nb * 1000
        rows.append(Row("publish_many 1,000-event batches (8 partitions)", n / t_nova, "ev/s",
                        "raw pipelined XADD x1000", n / t_raw, t_raw / t_nova, ">= 0.8", t_raw / t_nova >= 0.8))
        bus.shutdown(10)

        # -- one consumer draining its group's backlog
        m = 20_000 if quick else 50_000
        evs = _events(0, m)
        for i in range(0, m, 1000):
            _raw_batch(r, "raw-drain", evs[i:i + 1000])
        t_rawd = t_alo = t_eo = float("inf")
        for k in range(2 if quick else 3):
            r.delete("raw-drain-copy")
            r.copy("raw-drain", "raw-drain-copy")
            t_rawd = min(t_rawd, _raw_drain(r, "raw-drain-copy", m))
            t_alo = min(t_alo, _drain(server.url, f"alo{k}", "d", "at-least-once", m, evs))
            t_eo = min(t_eo, _drain(server.url, f"eo{k}", "d", "exactly-once", m, evs))
        rows.append(Row("one consumer, at-least-once, trivial handler", m / t_alo, "ev/s",
                        "raw XREADGROUP COUNT 100 + XACK", m / t_rawd, t_rawd / t_alo, ">= 0.6", t_rawd / t_alo >= 0.6))
        t_gc = _drain(server.url, "algc", "d", "at-least-once", m, evs, gc_off=False)
        rows.append(Row("  the same with the cyclic GC on", m / t_gc, "ev/s", "raw drain (GC off)",
                        m / t_rawd, t_rawd / t_gc, "info", None))
        rows.append(Row("exactly-once cost per event", t_eo / m * 1e6, "us", "at-least-once cost per event",
                        t_alo / m * 1e6, t_eo / t_alo, "<= 1.5", t_eo / t_alo <= 1.5))

        p50, p99, sent = _latency(server.url, quick)
        rows.append(Row(f"publish->handler p99 at 5,000 ev/s ({sent:,} events)", p99, "ms",
                        "p50", p50, p99 / p50, "report", None))
        r.close()
        t.client.close()
    finally:
        server.stop()
    if "--procs" in sys.argv:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NOVA_BUS_REDIS_N": "50000"}
        t0 = time.monotonic()
        cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(ROOT / "tests" / "test_bus_redis_procs.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        dt = time.monotonic() - t0
        print(cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else cp.stderr[-2000:])
        rows.append(Row("multi-process tests, 2 x 50,000 events (3 variants)", dt, "s", "pytest exit status",
                        cp.returncode, 0.0, "passes", cp.returncode == 0))
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row.format())
