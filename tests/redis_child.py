"""Child processes for tests/test_store_redis_procs.py (run as a script; not a test
module).  Every mode prints what the parent checks, flushed at once.

    python redis_child.py write URL PREFIX WRITER N SEED    # N events in calls of 1-20, to 3 streams
    python redis_child.py tail URL PREFIX TOTAL TIMEOUT     # subscribe(None) + per stream, report order
    python redis_child.py batches URL PREFIX SIZE           # batches of SIZE forever, "sent k" before each
"""

from __future__ import annotations

import json
import random
import sys
import time

from nova.events import Event
from nova.store.redis import RedisStore

T0 = 1_700_000_000_000_000_000
STREAMS = ("s0", "s1", "s2")


def write(url: str, prefix: str, writer: int, n: int, seed: int) -> None:
    rng = random.Random(seed)
    s = RedisStore(url, prefix=prefix)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    i = 0
    while i < n:
        k = min(n - i, rng.randrange(1, 21))
        stream = rng.choice(STREAMS)
        # late timestamps on purpose: the event-time order is not the append order
        evs = [Event("w", [writer, i + j], timestamp=T0 + rng.randrange(0, 10**9)) for j in range(k)]
        if k == 1:
            s.append(stream, evs[0])
        else:
            s.append_many(stream, evs)
        i += k
    s.close()
    print("done", flush=True)


def tail(url: str, prefix: str, total: int, timeout: float) -> None:
    s = RedisStore(url, prefix=prefix)
    subs = {None: s.subscribe(None, buffer=100_000)}
    for name in STREAMS:
        subs[name] = s.subscribe(name, buffer=100_000)
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    out: dict[str, list[list[int]]] = {}
    for name, sub in subs.items():
        got: list[list[int]] = []
        want = total if name is None else None
        while time.monotonic() < deadline:
            batch = sub.get_many(10_000, timeout=0.5)
            for e in batch:
                got.append([e.data[0], e.data[1]])
            if want is not None and len(got) >= want:
                break
            if want is None and not batch and len(out.get("all", [])) == total:
                break  # every stream's share of the total is in by now
        out["all" if name is None else name] = got
        out[f"cursor:{name}"] = [[sub.cursor.position]]
    print(json.dumps(out), flush=True)
    s.close()


def batches(url: str, prefix: str, size: int) -> None:
    s = RedisStore(url, prefix=prefix)
    b = 0
    while True:
        b += 1
        print(f"sent {b}", flush=True)
        s.append_many("k", [Event("b", [b, j, size]) for j in range(size)])


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "write":
        write(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif mode == "tail":
        tail(args[0], args[1], int(args[2]), float(args[3]))
    elif mode == "batches":
        batches(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
