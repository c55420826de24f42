"""SQLiteStore across real processes, bounded in time, every child killed on timeout:
kill -9 in the middle of a load (20 kill points), 4 processes x 2 threads appending to
one file, and a subscriber process tailing two writer processes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from nova.events import Event
from nova.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
CHILD = str(Path(__file__).resolve().parent / "sqlite_child.py")
T0 = 1_700_000_000_000_000_000


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _spawn(*args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(),
    )


def _reap(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a child that ignores SIGKILL
            pass


def _readline(p: subprocess.Popen[str], deadline: float) -> str:
    assert p.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                return p.stdout.readline()
        raise TimeoutError("child did not report in time")
    finally:
        sel.close()


def _check_file(path: Path) -> dict[str, list[tuple[int, int, Any]]]:
    """Rows per stream as (pos, seq, data), with the invariants every test needs."""
    s = SQLiteStore(path)
    try:
        by_stream: dict[str, list[tuple[int, int, Any]]] = defaultdict(list)
        b = s.window()
        for i, e in enumerate(b):
            by_stream[b.streams[b.stream_codes[i]]].append((int(b.positions[i]), int(b.sequences[i]), e.data))
        seqs = b.sequences.tolist()
        assert len(set(seqs)) == len(seqs)
        for name, rows in by_stream.items():
            rows.sort()
            assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), name  # contiguous
            assert all(a[1] < c[1] for a, c in zip(rows, rows[1:])), name  # sequences increase
            assert s.stream_info(name).last_position == len(rows)
        return by_stream
    finally:
        s.close()


def test_kill_9_mid_load_loses_no_returned_append(tmp_path: Path) -> None:
    path = tmp_path / "load.db"
    rng = random.Random(12)
    reported: list[tuple[str, int, int, int]] = []
    for k in range(20):
        durability = "full" if k % 2 == 0 else "normal"
        p = _spawn("load", path, durability, k + 1)
        try:
            assert _readline(p, time.monotonic() + 30).strip() == "ready"
            kill_at = time.monotonic() + rng.uniform(0.02, 0.4)
            while time.monotonic() < kill_at:
                line = _readline(p, time.monotonic() + 30)
                stream, pos, n, batch = line.split()
                reported.append((stream, int(pos), int(n), int(batch)))
            os.kill(p.pid, signal.SIGKILL)
            assert p.wait(10) == -signal.SIGKILL
        finally:
            _reap([p])
        rows = _check_file(path)
        # every append reported as returned is there, whole
        have = {(name, pos): data for name, rs in rows.items() for pos, _seq, data in rs}
        for stream, pos, n, batch in reported:
            for j in range(n):
                assert have[(stream, pos - n + 1 + j)] == {"b": batch, "i": j, "k": n}
        # no partial batch
        counts: dict[int, int] = defaultdict(int)
        sizes: dict[int, int] = {}
        for d in have.values():
            counts[d["b"]] += 1
            sizes[d["b"]] = d["k"]
        assert all(counts[b] == sizes[b] for b in counts)
    assert len(reported) > 20
    # new appends continue without reusing a position
    with SQLiteStore(path) as s:
        last = s.stream_info("s0").last_position
        assert s.append("s0", Event("t", {"b": 0, "i": 0, "k": 1}, timestamp=T0)) == last + 1
    _check_file(path)


def test_four_processes_two_threads_each(tmp_path: Path) -> None:
    path = tmp_path / "multi.db"
    SQLiteStore(path).close()
    n = 300
    procs = [_spawn("produce", path, proc, n) for proc in range(4)]
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert json.loads(out.strip().splitlines()[-1]) == {"errors": []}
    finally:
        _reap(procs)
    rows = _check_file(path)
    seen = [(d["p"], d["t"], d["i"], seq) for rs in rows.values() for _pos, seq, d in rs]
    keys = sorted((p, t, i) for p, t, i, _ in seen)
    assert keys == sorted((p, t, i) for p in range(4) for t in range(2) for i in range(n))  # each once
    per_producer: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for p, t, i, seq in seen:
        per_producer[(p, t)].append((seq, i))
    for order in per_producer.values():
        order.sort()
        assert [i for _seq, i in order] == list(range(n))  # producer order kept


def test_subscriber_process_tails_two_writer_processes(tmp_path: Path) -> None:
    path = tmp_path / "tail.db"
    SQLiteStore(path).close()
    total = 50_000
    tail = _spawn("tail", path, total, 90)
    procs = [tail]
    try:
        assert _readline(tail, time.monotonic() + 30).strip() == "ready"
        writers = [_spawn("write", path, name, total // 2) for name in ("w0", "w1")]
        procs += writers
        for w in writers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0 and out.strip() == "done", err
        out, err = tail.communicate(timeout=120)
        assert tail.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        _reap(procs)
    assert report == {"count": total, "dup": 0, "extra": 0, "ordered": True,
                      "per_writer": {"w0": total // 2, "w1": total // 2}}
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == total
    raw.close()
