"""Child processes for tests/test_store_sqlite_procs.py (run as a script; not a test
module).  Every mode prints one line per fact the parent checks, flushed at once.

    python sqlite_child.py load PATH DURABILITY SEED        # appends forever, reports each
    python sqlite_child.py produce PATH PROC N              # 2 threads x N appends
    python sqlite_child.py write PATH NAME N                # N events in batches of 50
    python sqlite_child.py tail PATH TOTAL TIMEOUT          # subscribe(None), report order
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time

from nova.events import Event
from nova.store.sqlite import SQLiteStore

T0 = 1_700_000_000_000_000_000


def load(path: str, durability: str, seed: int) -> None:
    rng = random.Random(seed)
    s = SQLiteStore(path, durability=durability)
    print("ready", flush=True)
    batch = seed * 1_000_000
    while True:
        batch += 1
        stream = f"s{rng.randrange(3)}"
        k = rng.choice([1, 1, 1, 2, 5, 20])
        evs = [Event("t", {"b": batch, "i": i, "k": k}, timestamp=T0 + rng.randrange(10**6)) for i in range(k)]
        if k == 1 and rng.random() < 0.5:
            pos = s.append(stream, evs[0])
        elif rng.random() < 0.5:
            pos = s.append_many(stream, evs)
        else:
            pos = s.append_columns(stream, types="t", timestamps=[e.timestamp for e in evs], data=[e.data for e in evs])
        sys.stdout.write(f"{stream} {pos} {k} {batch}\n")
        sys.stdout.flush()


def produce(path: str, proc: int, n: int) -> None:
    s = SQLiteStore(path)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            start.wait(30)
            i = 0
            while i < n:
                stream = f"s{(i // 7) % 2}"
                k = 1 if i % 3 else min(3, n - i)
                s.append_many(stream, [Event("t", {"p": proc, "t": t, "i": i + j}, timestamp=T0 + i + j) for j in range(k)])
                i += k
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    s.close()
    print(json.dumps({"errors": [repr(e) for e in errors]}), flush=True)


def write(path: str, name: str, n: int) -> None:
    s = SQLiteStore(path)
    for first in range(0, n, 50):
        s.append_many(name, [Event("t", {"w": name, "i": i}, timestamp=T0 + i) for i in range(first, min(n, first + 50))])
    s.close()
    print("done", flush=True)


def tail(path: str, total: int, timeout: float) -> None:
    s = SQLiteStore(path)
    sub = s.subscribe(None, buffer=10 * total)
    print("ready", flush=True)
    seen: dict[str, list[int]] = {}
    ids: set[str] = set()
    dup = 0
    count = 0
    deadline = time.monotonic() + timeout
    while count < total and time.monotonic() < deadline:
        for e in sub.get_many(1000, timeout=0.5):
            count += 1
            if e.id in ids:
                dup += 1
            ids.add(e.id)
            seen.setdefault(e.data["w"], []).append(e.data["i"])
    extra = sub.get_many(10, timeout=0.3)
    sub.close()
    s.close()
    ordered = all(v == sorted(v) for v in seen.values())
    print(json.dumps({"count": count, "dup": dup, "extra": len(extra), "ordered": ordered,
                      "per_writer": {k: len(v) for k, v in seen.items()}}), flush=True)


if __name__ == "__main__":
    mode, path, *rest = sys.argv[1:]
    if mode == "load":
        load(path, rest[0], int(rest[1]))
    elif mode == "produce":
        produce(path, int(rest[0]), int(rest[1]))
    elif mode == "write":
        write(path, rest[0], int(rest[1]))
    elif mode == "tail":
        tail(path, int(rest[0]), float(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode}")
