"""Child processes for tests/test_bus_redis_procs.py and asv_benchmarks/ratio_bus_redis.py
(run as a script; not a test module).  Each prints ``ready`` (and, for consumers, its
group member id) once set up, flushed at once.

    python bus_redis_child.py publish URL PREFIX W N DUPS     # N keyed events of publisher W
    python bus_redis_child.py consume URL PREFIX MODE OUT     # a group member until "stop" on stdin
    python bus_redis_child.py fanout URL PREFIX TOTAL TIMEOUT # an ungrouped subscriber: JSON summary
    python bus_redis_child.py pace URL TOPIC RATE SECONDS     # RATE ev/s (data: CLOCK_MONOTONIC ns)

The topic is ``orders``: 8 partitions, created by the parent with the mode.  Event *i*
of publisher *W* has id ``w<W>-<i>`` (a republished copy keeps it: a publisher
retry), data ``[W, i]`` and key ``w<W>-k<i % 64>``.  A consumer appends one line per
handled event to OUT: ``<CLOCK_MONOTONIC ns> <pid> <W> <i>`` (CLOCK_MONOTONIC is
system-wide on Linux: lines of all processes merge in handling order).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time

from nova import Bus, Event, RedisTransport

TOPIC = "orders"
KEYS = 64


def _bus(url: str, prefix: str) -> tuple[Bus, RedisTransport]:
    t = RedisTransport(url, prefix=prefix, session_timeout=1.0, heartbeat=0.1)
    return Bus(transport=t, buffer_size=200), t


def publish(url: str, prefix: str, w: int, n: int, dups: float) -> None:
    bus, _ = _bus(url, prefix)
    rng = random.Random(w)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    batch = 250
    retry: list[Event] = []
    for start in range(0, n, batch):
        evs = [Event("order", [w, i], id=f"w{w}-{i}") for i in range(start, min(n, start + batch))]
        keyed: dict[str, list[Event]] = {}
        for e in evs:
            keyed.setdefault(f"w{w}-k{e.data[1] % KEYS}", []).append(e)
        for k, group in keyed.items():
            bus.publish_many(TOPIC, group, key=k)
        if dups:
            # a publisher retry: the same event (same id, same key) again, a bit later
            again = [e for e in evs if rng.random() < dups]
            for e in retry:
                bus.publish(TOPIC, e, key=f"w{w}-k{e.data[1] % KEYS}")
            retry = again
        time.sleep(0.02)
    for e in retry:
        bus.publish(TOPIC, e, key=f"w{w}-k{e.data[1] % KEYS}")
    bus.shutdown(10)
    print("done", flush=True)


def consume(url: str, prefix: str, mode: str, out: str) -> None:
    bus, t = _bus(url, prefix)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.getpid()
    clock = time.clock_gettime_ns
    mono = time.CLOCK_MONOTONIC

    def handle(e: Event) -> None:
        w, i = e.data
        os.write(fd, f"{clock(mono)} {pid} {w} {i}\n".encode())

    bus.subscribe(TOPIC, handle, group="G")
    member = next(s.member for s in t.slots if s.group == "G")
    print(f"ready {member}", flush=True)
    sys.stdin.readline()  # "stop"
    ok = bus.shutdown(20)
    os.close(fd)
    print("done" if ok else "timeout", flush=True)


def fanout(url: str, prefix: str, total: int, timeout: float) -> None:
    bus, _ = _bus(url, prefix)
    seen: dict[int, list[int]] = {0: [], 1: []}
    ids: set[str] = set()
    done = threading.Event()
    count = [0]

    def handle(e: Event) -> None:
        w, i = e.data
        count[0] += 1
        if e.id not in ids:
            ids.add(e.id)
            seen[w].append(i)
        if len(ids) >= total:
            done.set()

    bus.subscribe(TOPIC, handle)
    print("ready", flush=True)
    done.wait(timeout)
    bus.shutdown(10)
    # per key, the first sightings must be in publish order
    ordered = all(
        [i for i in seen[w] if i % KEYS == k] == sorted(i for i in seen[w] if i % KEYS == k)
        for w in seen for k in range(KEYS)
    )
    print(json.dumps({"distinct": len(ids), "received": count[0], "ordered": ordered}), flush=True)


def pace(url: str, topic: str, rate: int, seconds: float) -> None:
    t = RedisTransport(url, prefix=topic)
    bus = Bus(transport=t)
    clock = time.clock_gettime_ns
    mono = time.CLOCK_MONOTONIC
    n = int(rate * seconds)
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        bus.publish(topic, Event("tick", clock(mono)), key=str(i % 64))
    bus.shutdown(10)
    print(f"sent {n}", flush=True)


if __name__ == "__main__":
    mode, url, prefix, *rest = sys.argv[1:]
    if mode == "publish":
        publish(url, prefix, int(rest[0]), int(rest[1]), float(rest[2]))
    elif mode == "consume":
        consume(url, prefix, rest[0], rest[1])
    elif mode == "pace":
        pace(url, prefix, int(rest[0]), float(rest[1]))
    elif mode == "fanout":
        fanout(url, prefix, int(rest[0]), float(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
