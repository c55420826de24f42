"""Issue 12 ratios: SQLiteStore, each against raw ``sqlite3`` doing the same work in the
same process (same row shape: a ~200-byte JSON payload, the same columns).

The raw baseline table has the store's columns (names as text) and an index on ``ts``
(what a raw window query needs):

    raw(seq INTEGER PRIMARY KEY, stream TEXT, pos INTEGER, ts INTEGER, type TEXT,
        id TEXT, meta TEXT, data BLOB) + INDEX raw(ts)

Both use WAL.  ``python asv_benchmarks/ratios.py store_sqlite`` (``--quick``: 200 k
events instead of 1 M for the size-dependent rows);
``python asv_benchmarks/ratio_store_sqlite.py --group``: the group-commit rows only.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _timing import Row, best_seconds

from nova import _core
from nova.events import Event
from nova.store.sqlite import SQLiteStore

T0 = 1_700_000_000_000_000_000
_RAW = """CREATE TABLE raw(seq INTEGER PRIMARY KEY, stream TEXT, pos INTEGER, ts INTEGER, type TEXT,
                           id TEXT, meta TEXT, data BLOB)"""


def _payload(i: int) -> dict[str, object]:
    # ~200 bytes of JSON
    return {"order": i, "customer": f"customer-{i % 977:05d}", "amount": i * 0.25, "currency": "EUR",
            "items": [{"sku": f"sku-{i % 101:04d}", "qty": 1 + i % 5}, {"sku": f"sku-{i % 53:04d}", "qty": 2}],
            "note": "standard delivery to the registered address"}


def _events(n: int) -> list[Event]:
    return [Event("order.placed", _payload(i), timestamp=T0 + i * 1000) for i in range(n)]


def _raw_connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute(f"PRAGMA synchronous = {synchronous}")
    return c


def _raw_load(path: Path, events: list[Event]) -> float:
    """Seconds for raw executemany of the events (payloads JSON-encoded in the same loop)."""
    c = _raw_connect(path)
    c.execute(_RAW)
    c.execute("CREATE INDEX raw_ts ON raw(ts)")
    dumps = json.dumps
    t0 = time.perf_counter()
    c.execute("BEGIN")
    c.executemany(
        "INSERT INTO raw VALUES (?,?,?,?,?,?,?,?)",
        ((i + 1, "orders", i + 1, e.timestamp, e.type, e.id, None,
          dumps(e.data, separators=(",", ":")).encode()) for i, e in enumerate(events)),
    )
    c.execute("COMMIT")
    dt = time.perf_counter() - t0
    c.close()
    return dt


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


class _Threads(NamedTuple):
    """One ``_threads_rate`` run: appends per second, CPU per append (user + system,
    whole process, ``os.times``) and appends per fsync of the WAL."""

    rate: float
    cpu_us: float
    per_fsync: float


def _threads_rate(path: Path, threads: int, per: int, kernel: object) -> _Threads:
    s = SQLiteStore(path, durability="full", kernel=kernel)
    start = threading.Barrier(threads + 1)

    def run(k: int) -> None:
        start.wait()
        for i in range(per):
            s.append(f"s{k}", Event("t", _payload(i), timestamp=T0 + i))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    group = s._sqlite_log.group
    start.wait()
    c0 = os.times()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    c1 = os.times()
    n = threads * per
    assert s.stats().events == n
    fsyncs = group.fsyncs
    s.close()
    cpu = (c1.user - c0.user + c1.system - c0.system) / n * 1e6
    return _Threads(n / dt, cpu, n / max(fsyncs, 1))


def _group_commit(tmp: Path, per: int, kernel: object, rounds: int = 5) -> list[Row]:
    """8 threads vs 1 appending single events with ``durability="full"``: interleaved
    rounds (fsync latency on a shared disk moves by 10x between seconds), best of
    *rounds* each, plus the spread of the per-round ratios and what an append costs."""
    ones: list[_Threads] = []
    eights: list[_Threads] = []
    for k in range(rounds):
        ones.append(_threads_rate(tmp / f"g1-{k}.db", 1, per * 2, kernel))
        eights.append(_threads_rate(tmp / f"g8-{k}.db", 8, per, kernel))
    one = max(ones, key=lambda r: r.rate)
    eight = max(eights, key=lambda r: r.rate)
    ratios = [e.rate / o.rate for o, e in zip(ones, eights)]
    return [
        Row("8 threads x single appends, full", eight.rate, "ev/s", "1 thread, full", one.rate,
            eight.rate / one.rate, ">= 5x", eight.rate / one.rate >= 5),
        Row("  per-round ratio 8 threads / 1 (min..max)", min(ratios), "x", "max", max(ratios),
            max(ratios), "info", None),
        Row("  CPU per append, best 8-thread run", eight.cpu_us, "us", "best 1-thread run", one.cpu_us,
            eight.cpu_us / one.cpu_us, "info", None),
        Row("  appends per fsync, best 8-thread run", eight.per_fsync, "", "best 1-thread run", one.per_fsync,
            eight.per_fsync / one.per_fsync, "info", None),
    ]


def _tail_latency(path: Path, kernel: object) -> list[float]:
    """Seconds from another connection's append returning to a waiting subscriber
    getting it (the ``PRAGMA data_version`` poll; two stores = two processes)."""
    reader = SQLiteStore(path, kernel=kernel)
    writer = SQLiteStore(path, kernel=kernel)
    sub = reader.subscribe("s")
    got: list[float] = []

    def consume() -> None:
        for _ in range(40):
            sub.get(timeout=10)
            got.append(time.perf_counter())

    t = threading.Thread(target=consume)
    t.start()
    sent: list[float] = []
    for i in range(40):
        time.sleep(0.02)
        writer.append("s", Event("t", i, timestamp=T0 + i))
        sent.append(time.perf_counter())
        while len(got) <= i and t.is_alive():
            time.sleep(0.001)
    t.join(30)
    sub.close()
    reader.close()
    writer.close()
    return [g - s for g, s in zip(got, sent)]


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    kernel = _core.ColumnLog
    n = 200_000 if quick else 1_000_000
    tmp = Path(tempfile.mkdtemp(prefix="nova-ratio-sqlite-"))
    try:
        events = _events(n)
        # -- append_many vs raw executemany -------------------------------------------
        raw_s = min(_raw_load(tmp / f"raw{k}.db", events) for k in range(2))
        nova_s = float("inf")
        for k in range(2):
            p = tmp / f"nova{k}.db"
            s = SQLiteStore(p, durability="normal", kernel=kernel)
            gc.collect()
            t0 = time.perf_counter()
            s.append_many("orders", events)
            nova_s = min(nova_s, time.perf_counter() - t0)
            s.close()
        rows.append(Row(f"append_many {n // 1000}k events (json)", n / nova_s / 1e3, "k ev/s",
                        "raw executemany + json, 1 txn", n / raw_s / 1e3, raw_s / nova_s, ">= 0.8x",
                        raw_s / nova_s >= 0.8))
        for k in range(1, 2):
            for f in tmp.glob(f"raw{k}.db*"):
                f.unlink()
            for f in tmp.glob(f"nova{k}.db*"):
                f.unlink()
        raw_p, nova_p = tmp / "raw0.db", tmp / "nova0.db"
        for p in (raw_p, nova_p):  # checkpoint the WAL into the file before measuring
            c = sqlite3.connect(p)
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.close()
        raw_size, nova_size = _size(raw_p), _size(nova_p)
        rows.append(Row("file size", nova_size / n, "B/event", "raw table + ts index", raw_size / n,
                        nova_size / raw_size, "<= 1.2x", nova_size / raw_size <= 1.2))
        del events
        gc.collect()

        # -- open (index rebuild) + memory ----------------------------------------------
        SQLiteStore(nova_p, kernel=kernel).close()  # a clean close leaves the index snapshot
        open_s = best_seconds(lambda: SQLiteStore(nova_p, kernel=kernel).close(), 3)
        rows.append(Row(f"open a {n // 1000}k-event file (index rebuild)", open_s, "s", "target", 1.5 * n / 1e6,
                        open_s, "<= 1.5 s per 1M", open_s <= 1.5 * n / 1e6))
        scan_p = tmp / "scan.db"  # after a crash (no snapshot): the index is read from the table
        shutil.copy(nova_p, scan_p)

        def open_scan() -> None:
            c = sqlite3.connect(scan_p)
            c.execute("DELETE FROM snapshot")
            c.commit()
            c.close()
            t = time.perf_counter()
            s = SQLiteStore(scan_p, kernel=kernel)
            times.append(time.perf_counter() - t)
            s._sqlite_log.closed = True  # no snapshot: measure the scan again next time
            s._conn.close()

        times: list[float] = []
        for _ in range(3):
            open_scan()
        scan_s = min(times)
        rows.append(Row(f"open {n // 1000}k without snapshot (table scan)", scan_s, "s", "target", 1.5 * n / 1e6,
                        scan_s, "<= 1.5 s per 1M", scan_s <= 1.5 * n / 1e6))
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        s = SQLiteStore(nova_p, kernel=kernel)
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rows.append(Row("index memory (tracemalloc, after open)", held / n, "B/event", "target", 64.0,
                        held / n, "<= 64 B/event", held / n <= 64))

        # -- window 1% as columns vs raw indexed range query --------------------------
        t0, t1 = T0 + (n // 2) * 1000, T0 + (n // 2 + n // 100) * 1000
        assert len(s.window(t0, t1)) == n // 100
        win_s = best_seconds(lambda: [s.window(t0, t1) for _ in range(200)], 5) / 200
        raw = _raw_connect(raw_p)
        q = "SELECT seq, stream, pos, ts, type, id, meta, data FROM raw WHERE ts >= ? AND ts < ? ORDER BY ts"
        assert len(raw.execute(q, (t0, t1)).fetchall()) == n // 100
        raw_q = best_seconds(lambda: raw.execute(q, (t0, t1)).fetchall(), 5)
        rows.append(Row("window 1% as columns", win_s * 1e6, "us", "raw indexed range + fetchall", raw_q * 1e6,
                        raw_q / win_s, ">= 100x faster", raw_q / win_s >= 100))

        # -- replay of that window as Events vs raw fetchall + decode ------------------
        loads = json.loads

        def raw_decode() -> None:
            [loads(r[7]) for r in raw.execute(q, (t0, t1)).fetchall()]

        rep_s = best_seconds(lambda: list(s.replay(t0, t1)), 5)
        raw_d = best_seconds(raw_decode, 5)
        rows.append(Row("replay 1% as Events (decoded)", rep_s * 1e3, "ms", "raw fetchall + json.loads", raw_d * 1e3,
                        raw_d / rep_s, ">= 1x", raw_d / rep_s >= 1))
        raw.close()
        s.close()

        # -- group commit: 8 threads vs 1, durability="full" ---------------------------
        per = 100 if quick else 400
        group = _group_commit(tmp, per, kernel)
        rows.extend(group)
        one = group[0].baseline
        raw_full = _raw_connect(tmp / "rawfull.db", "FULL")
        raw_full.execute(_RAW)
        payload = json.dumps(_payload(1)).encode()

        def one_commit_each() -> None:
            for i in range(per):
                raw_full.execute("INSERT INTO raw VALUES (NULL,'s',?,?,'t','id',NULL,?)", (i, i, payload))

        raw_rate = per / best_seconds(one_commit_each, 3)
        rows.append(Row("1 thread single appends, full", one, "ev/s", "raw sqlite3 commit per row, FULL",
                        raw_rate, one / raw_rate, "info", None))
        raw_full.close()

        # -- another connection's appends reach a waiting subscriber (info) -----------
        lat = _tail_latency(tmp / "tail.db", kernel)
        rows.append(Row("subscriber sees another connection's append", float(np.median(lat)) * 1e3, "ms",
                        "max of 40", max(lat) * 1e3, float(np.median(lat)) * 1e3, "~50 ms", max(lat) <= 0.05))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def run_group(rounds: int = 5) -> list[Row]:
    """Only the group-commit rows (``--group``: quick repeated measurements)."""
    tmp = Path(tempfile.mkdtemp(prefix="nova-ratio-sqlite-"))
    try:
        return _group_commit(tmp, 400, _core.ColumnLog, rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import sys

    for r in run_group() if "--group" in sys.argv else run("--quick" in sys.argv):
        print(r.format())
