"""RedisStore across real processes and a real server restart, bounded in time,
every child killed on timeout:

* 3 writer processes x 10,000 events into shared streams + 1 subscriber process:
  every event stored once, positions contiguous per stream, the subscriber sees
  every event once, in order (global sequence for stream=None, position per stream);
* a writer killed with SIGKILL mid-batch leaves no partial batch;
* the server stopped and restarted (AOF on): clear errors during the outage, appends
  and subscriptions resume after it, nothing acknowledged is lost, nothing that
  raised was stored.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nova.errors import StoreUnavailable
from nova.events import Event
from nova.store import RedisStore

from valkey_server import ValkeyServer

ROOT = Path(__file__).resolve().parents[1]
CHILD = str(Path(__file__).resolve().parent / "redis_child.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _spawn(*args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=ENV,
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
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = p.stdout.readline()
                if not line:
                    raise AssertionError(f"child exited: {p.stderr.read() if p.stderr else ''}")
                return line.strip()
    raise AssertionError("child did not answer in time")


def test_three_writers_and_a_subscriber_process(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    n, writers = 10_000, 3
    total = n * writers
    procs: list[subprocess.Popen[str]] = []
    try:
        tail = _spawn("tail", nova_valkey.url, redis_prefix, total, 25)
        procs.append(tail)
        deadline = time.monotonic() + 30
        assert _readline(tail, deadline) == "ready"
        ws = [_spawn("write", nova_valkey.url, redis_prefix, w, n, 100 + w) for w in range(writers)]
        procs += ws
        for w in ws:
            assert _readline(w, deadline) == "ready"
        for w in ws:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in ws:
            assert _readline(w, deadline) == "done"
        got = json.loads(_readline(tail, deadline + 30))
    finally:
        _reap(procs)
    want = sorted([w, i] for w in range(writers) for i in range(n))
    # the all-streams subscriber: every event once, in global sequence order 1..total
    assert sorted(got["all"]) == want
    assert got["cursor:None"] == [[total]]
    for w in range(writers):  # each writer's events arrive in its order
        assert [i for (ww, i) in got["all"] if ww == w] == list(range(n))
    with RedisStore(nova_valkey.url, prefix=redis_prefix) as s:
        assert s.stats().events == total and s.stats().appended == total
        per_stream = 0
        for name in ("s0", "s1", "s2"):
            evs, cur = s.read(name)
            datas = [e.data for e in evs]
            per_stream += len(evs)
            # positions contiguous from 1, and the per-stream subscriber saw exactly them in order
            assert cur.position == len(evs) == s.stream_info(name).last_position
            assert got[name] == datas
        assert per_stream == total
        seq = s.window().sequences
        assert sorted(seq.tolist()) == list(range(1, total + 1))
        replayed = [e.data for e in s.replay()]
        assert len(replayed) == total and sorted(replayed) == want


def test_sigkill_mid_batch_leaves_no_partial_batch(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    size = 2000
    p = _spawn("batches", nova_valkey.url, redis_prefix, size)
    try:
        deadline = time.monotonic() + 30
        for _ in range(4):  # kill it while batch 4 is being sent or run
            line = _readline(p, deadline)
            assert line.startswith("sent ")
        time.sleep(0.003)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        _reap([p])
    with RedisStore(nova_valkey.url, prefix=redis_prefix) as s:
        evs, _ = s.read("k")
        counts = Counter(e.data[0] for e in evs)
        assert len(counts) >= 3
        assert all(c == size for c in counts.values()), counts
        assert sorted(counts) == list(range(1, len(counts) + 1))
        assert s.stream_info("k").last_position == len(evs) == len(counts) * size


def test_server_restart_with_aof(tmp_path: Path) -> None:
    server = ValkeyServer(aof=True, directory=str(tmp_path)).start()
    stop = threading.Event()
    try:
        s = RedisStore(server.url, prefix="restart", retries=2, timeout=2.0, outcome_timeout=20.0)
        sub = s.subscribe("a", buffer=100_000)
        ok: list[int] = []
        failed: list[int] = []

        def writer() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    s.append("a", Event("t", i, id=f"e{i}"))
                    ok.append(i)
                except StoreUnavailable:
                    failed.append(i)
                    time.sleep(0.01)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        while len(ok) < 200:
            time.sleep(0.01)
        server.stop()  # SIGTERM: the server shuts down (AOF fsync always)
        # during the outage: clear errors, and nothing stored by the calls that raised
        for k in range(3):
            with pytest.raises(StoreUnavailable, match="nothing was stored"):
                s.append("a", Event("t", -1 - k, id=f"outage{k}"))
        with pytest.raises(StoreUnavailable, match="Expected the Redis server at .* to answer"):
            s.read("a")
        with pytest.raises(StoreUnavailable):
            sub.get_many(10, timeout=0.1)  # nothing buffered yet: it asks the server
        server.start()
        deadline = time.monotonic() + 10
        while len(ok) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        t.join(30)
        assert len(ok) >= 400, "appends did not resume after the restart"
        stored = [e.data for e in s.read("a")[0]]
        # an append either is stored or raised: never both, never neither
        assert sorted(stored) == sorted(ok)
        assert not set(stored) & set(failed)
        assert min(stored) > 0  # none of the appends that raised during the outage
        assert [e.data for e in s.read("a")[0]] == stored  # positions contiguous, no hole
        assert s.stream_info("a").last_position == len(stored)
        # the subscription resumes where it was and sees every stored event once
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while len(seen) < len(stored) and time.monotonic() < deadline:
            try:
                seen += [e.data for e in sub.get_many(10_000, timeout=0.5)]
            except StoreUnavailable:  # pragma: no cover - the server is back
                time.sleep(0.05)
        assert seen == stored
        s.close()
    finally:
        stop.set()
        server.close()
