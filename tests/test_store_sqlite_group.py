"""SQLiteStore group commit (nova.store.sqlite_commit): every append commits its own
transaction; with durability="full" the appends committed meanwhile share one fsync.

Exact counts with 8+ threads, a failing append among good ones queued together (it
fails alone), a transaction SQLite rolls back (only that append fails), close during
load, and kill -9 of a child process under load with durability="full" (no append
that returned is lost).  In-process tests run on both kernel twins; child processes
are killed on timeout.  More (16 threads, failing fsyncs, fork): test_store_sqlite_groupcommit2.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nova.errors import StoreClosed, StreamFull, ValidationError
from nova.events import Event
from nova.store import EventBatch
from nova.store.sqlite import SQLiteStore

from store_conformance import T0, ev
from waiting import wait_until as _wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def kernel(core: Any) -> Any:
    return core.ColumnLog


def _check_contiguous(store: SQLiteStore) -> dict[str, list[tuple[int, Any]]]:
    b = store.window()
    rows: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for i, e in enumerate(b):
        rows[b.streams[b.stream_codes[i]]].append((int(b.positions[i]), e.data))
    seqs = b.sequences.tolist()
    assert len(set(seqs)) == len(seqs)
    for name, rs in rows.items():
        rs.sort(key=lambda r: r[0])
        assert [r[0] for r in rs] == list(range(1, len(rs) + 1)), name
        assert store.stream_info(name).last_position == len(rs)
    return rows


def _check_returned(store: SQLiteStore, out: dict[int, Any], good: dict[int, tuple[str, list[Any]]]) -> None:
    """Each call of *good* returned the last position of its rows, which hold its data."""
    rows = _check_contiguous(store)
    have = {(name, pos): data for name, rs in rows.items() for pos, data in rs}
    for i, (stream, datas) in good.items():
        pos = out[i]
        assert isinstance(pos, int), (i, pos)
        assert [have[(stream, pos - len(datas) + 1 + j)] for j in range(len(datas))] == datas, i


@pytest.mark.stress
@pytest.mark.parametrize("durability", ["full", "normal"])
def test_many_threads_exact_counts_and_order(tmp_path: Path, kernel: Any, durability: str) -> None:
    path = tmp_path / "g.db"
    threads, per = 10, 150
    with SQLiteStore(path, durability=durability, kernel=kernel) as s:
        start = threading.Barrier(threads)
        errors: list[BaseException] = []
        returned: dict[int, list[tuple[str, int, int]]] = defaultdict(list)

        def run(k: int) -> None:
            try:
                start.wait(20)
                for i in range(per):
                    stream = f"s{(k + i) % 3}"
                    if i % 10 == 9:  # a batch now and then, among the single appends
                        pos = s.append_many(stream, [ev(i, data=[k, i, j]) for j in range(3)])
                        returned[k].append((stream, pos, 3))
                    else:
                        pos = s.append(stream, ev(i, data=[k, i, 0]))
                        returned[k].append((stream, pos, 1))
            except BaseException as exc:  # reported below
                errors.append(exc)

        ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not any(t.is_alive() for t in ts)
        assert not errors
        total = threads * (per + 2 * (per // 10))
        assert s.stats().events == total
        group = s._sqlite_log.group
        assert group.appends == threads * per
        if durability == "full":
            assert 1 <= group.fsyncs <= group.appends
        else:
            assert group.fsyncs == 0
        rows = _check_contiguous(s)
        have = {(name, pos): data for name, rs in rows.items() for pos, data in rs}
        for k, appends in returned.items():
            # each returned position holds that thread's event(s); a thread's own
            # appends to one stream got increasing positions (its order is kept)
            last: dict[str, int] = {}
            for stream, pos, n in appends:
                assert have[(stream, pos)][0] == k
                assert pos - n + 1 > last.get(stream, 0)
                last[stream] = pos
    with SQLiteStore(path, kernel=kernel) as s:  # the file holds the same
        assert s.stats().events == total
        _check_contiguous(s)


def _blocked_in_commit_path(t: threading.Thread) -> bool:
    """Whether thread *t* is inside GroupCommit.run (its append checked and encoded:
    all that is left is taking the store lock, which the test holds)."""
    frame = sys._current_frames().get(t.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "run" and frame.f_code.co_filename.endswith("sqlite_commit.py"):
            return True
        frame = frame.f_back
    return False


def _queue_behind_a_held_lock(s: SQLiteStore, calls: list[Any]) -> dict[int, Any]:
    """Start one thread per call while the store lock is held, so that they all wait
    for it together, then release it; return each call's result or exception."""
    out: dict[int, Any] = {}

    def run(i: int, fn: Any) -> None:
        try:
            out[i] = fn()
        except BaseException as exc:  # the outcome checked by the test
            out[i] = exc

    ts = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    with s._lock:
        for t in ts:
            t.start()
        _wait_until(lambda: all(_blocked_in_commit_path(t) for t in ts), "the appends to wait for the lock")
    for t in ts:
        t.join(30)
    assert not any(t.is_alive() for t in ts)
    return out


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_a_failing_append_among_good_ones_fails_alone(tmp_path: Path, kernel: Any, durability: str) -> None:
    path = tmp_path / "g.db"
    s = SQLiteStore(path, durability=durability, kernel=kernel, max_streams=3)
    s.append("a", ev(0, data="a0"))
    s.append("b", ev(0, data="b0"))
    s.append("c", ev(0, data="c0"))
    # a real database refusal of one row: a trigger aborting the statement
    other = sqlite3.connect(path)
    other.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.id = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    )
    other.commit()
    other.close()
    restored = EventBatch.from_events([ev(1, data="dup")], streams=["a"], positions=[1], sequences=[1])
    calls = [
        lambda: s.append("a", ev(1, data="a1")),  # the first leader's own group
        lambda: s.append("a", ev(2, data="a2")),
        lambda: s.append("new", ev(3, data="refused")),  # StreamFull: max_streams=3
        lambda: s.append("b", ev(4, data="b1")),
        lambda: s.append_many("c", [ev(5, data="c1"), Event("t", "bad", timestamp=T0 + 6, id="poison")]),
        lambda: s.append_many("c", [ev(7, data="c1"), ev(8, data="c2")]),
        lambda: s.append_batch(restored),  # ValidationError: position and sequence taken
        lambda: s.append("a", ev(9, data="a3")),
        lambda: s.append_columns("b", types="t", timestamps=[T0 + 10, T0 + 11], data=["b2", "b3"]),
    ]
    out = _queue_behind_a_held_lock(s, calls)
    assert isinstance(out[2], StreamFull)
    assert isinstance(out[4], sqlite3.IntegrityError) and "poisoned row" in str(out[4])
    assert isinstance(out[6], ValidationError)
    # the good ones stored (in the order they took the lock): each returned position
    # holds that call's own rows
    _check_returned(s, out, {0: ("a", ["a1"]), 1: ("a", ["a2"]), 3: ("b", ["b1"]), 5: ("c", ["c1", "c2"]),
                             7: ("a", ["a3"]), 8: ("b", ["b2", "b3"])})
    assert out[5] == 3  # after the refused batch: c1, c2 at positions 2 and 3
    group = s._sqlite_log.group
    assert group.appends == 3 + 6
    # with "full": an fsync per append at most, one at least for the queued ones
    assert (4 <= group.fsyncs <= 9) if durability == "full" else group.fsyncs == 0
    expect = {"a": ["a0", "a1", "a2", "a3"], "b": ["b0", "b1", "b2", "b3"], "c": ["c0", "c1", "c2"]}

    def check(store: SQLiteStore) -> None:
        got = {n: sorted(e.data for e in store.read(n)[0]) for n in store.streams()}
        assert got == expect
        _check_contiguous(store)

    check(s)
    s.close()
    with SQLiteStore(path, kernel=kernel) as s2:
        check(s2)


def test_a_transaction_the_database_rolls_back_fails_that_append_only(tmp_path: Path, kernel: Any) -> None:
    path = tmp_path / "g.db"
    s = SQLiteStore(path, durability="full", kernel=kernel)
    s.append("a", ev(0, data="a0"))
    s.append("b", ev(0, data="b0"))
    other = sqlite3.connect(path)
    # RAISE(ROLLBACK) undoes the whole write transaction: the append's own rows only
    # (every append has its own transaction), the others queued with it are kept
    other.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.id = 'poison' "
        "BEGIN SELECT RAISE(ROLLBACK, 'poisoned transaction'); END"
    )
    other.commit()
    other.close()
    calls = [
        lambda: s.append("a", ev(1, data="a1")),
        lambda: s.append("a", ev(2, data="a2")),
        lambda: s.append_many("b", [ev(3, data="b1"), ev(4, data="b2")]),  # savepoint rows
        lambda: s.append("new", ev(5, data="n1")),  # a new stream
        lambda: s.append_many("b", [ev(6, data="x"), Event("t", "bad", timestamp=T0 + 7, id="poison")]),
        lambda: s.append("a", ev(8, data="a3")),
    ]
    out = _queue_behind_a_held_lock(s, calls)
    assert isinstance(out[4], sqlite3.IntegrityError) and "poisoned transaction" in str(out[4])
    _check_returned(s, out, {0: ("a", ["a1"]), 1: ("a", ["a2"]), 2: ("b", ["b1", "b2"]), 3: ("new", ["n1"]),
                             5: ("a", ["a3"])})
    assert out[3] == 1
    expect = {"a": ["a0", "a1", "a2", "a3"], "b": ["b0", "b1", "b2"], "new": ["n1"]}

    def check(store: SQLiteStore) -> None:
        assert {n: sorted(e.data for e in store.read(n)[0]) for n in store.streams()} == expect
        _check_contiguous(store)
        assert sorted(store.window().sequences.tolist()) == list(range(1, 9))  # none reused, none skipped

    check(s)
    s.close()
    with SQLiteStore(path, kernel=kernel) as s2:
        check(s2)


@pytest.mark.stress
def test_close_during_load(tmp_path: Path, kernel: Any) -> None:
    path = tmp_path / "g.db"
    s = SQLiteStore(path, durability="full", kernel=kernel)
    returned: list[tuple[str, int, Any]] = []
    unexpected: list[BaseException] = []
    closed = [0]
    started = threading.Barrier(9)

    def run(k: int) -> None:
        started.wait(20)
        i = 0
        while True:
            data = [k, i]
            try:
                pos = s.append(f"s{k % 3}", ev(i, data=data))
            except StoreClosed:
                closed[0] += 1
                return
            except BaseException as exc:  # reported below
                unexpected.append(exc)
                return
            returned.append((f"s{k % 3}", pos, data))
            i += 1

    ts = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    started.wait(20)
    _wait_until(lambda: len(returned) >= 200, "appends before the close")
    s.close()
    for t in ts:
        t.join(30)
    assert not any(t.is_alive() for t in ts)
    assert not unexpected
    assert closed[0] == 8
    with SQLiteStore(path, kernel=kernel) as s2:
        rows = _check_contiguous(s2)
        have = {(name, pos): data for name, rs in rows.items() for pos, data in rs}
        for stream, pos, data in returned:  # every append that returned is in the file
            assert have[(stream, pos)] == data
        assert len(have) == len(returned)  # and nothing else: the others raised StoreClosed


_CHILD = r"""
import sys, threading
from nova.events import Event
from nova.store.sqlite import SQLiteStore
path, rnd = sys.argv[1], int(sys.argv[2])
s = SQLiteStore(path, durability="full")
out = threading.Lock()
print("ready", flush=True)
def run(k):
    i = 0
    while True:
        if i % 5 == 4:
            pos = s.append_many(f"s{k % 3}", [Event("t", [rnd, k, i, j], timestamp=1) for j in range(3)])
            n = 3
        else:
            pos = s.append(f"s{k % 3}", Event("t", [rnd, k, i, 0], timestamp=1))
            n = 1
        with out:
            sys.stdout.write(f"{rnd} {k} {i} {pos} {n}\n")
            sys.stdout.flush()
        i += 1
for k in range(8):
    threading.Thread(target=run, args=(k,), daemon=True).start()
threading.Event().wait()
"""


def test_kill_9_mid_group_loses_no_returned_append(tmp_path: Path) -> None:
    import selectors

    path = tmp_path / "kill.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reported: list[tuple[int, int, int, int, int]] = []
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(round_)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert p.stdout is not None
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            lines: list[str] = []
            want = 300 * (round_ + 1)
            while len(lines) < want:
                assert time.monotonic() < deadline, "the child did not report in time"
                if sel.select(timeout=1.0):
                    line = p.stdout.readline()
                    assert line, p.stderr.read() if p.stderr else "child exited"
                    lines.append(line)
            os.kill(p.pid, signal.SIGKILL)  # mid-group: 8 threads are appending
            assert p.wait(10) == -signal.SIGKILL
            rest = p.stdout.read()  # lines written before the kill
            sel.close()
        finally:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)
        assert lines[0].strip() == "ready"
        for line in lines[1:] + rest.splitlines(keepends=True):
            if line.endswith("\n"):  # (a line cut by the kill was not reported)
                rnd, k, i, pos, n = map(int, line.split())
                reported.append((rnd, k, i, pos, n))
        with SQLiteStore(path) as s:
            rows = _check_contiguous(s)
            have = {(name, pos): data for name, rs in rows.items() for pos, data in rs}
            for rnd, k, i, pos, n in reported:  # every reported append is there, whole
                for j in range(n):
                    assert have[(f"s{k % 3}", pos - n + 1 + j)] == [rnd, k, i, j]
            # no partial batch
            per: dict[tuple[int, int, int], int] = defaultdict(int)
            for data in have.values():
                per[(data[0], data[1], data[2])] += 1
            assert all(c == (3 if i % 5 == 4 else 1) for (_r, _k, i), c in per.items())
    assert len(reported) >= 900
    assert np.unique([r[1] for r in reported]).size == 8


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_an_eviction_the_database_rolls_back_fails_that_append_only(tmp_path: Path, kernel: Any, durability: str) -> None:
    """max_events_per_stream evicts inside the append's transaction; when the database
    rolls the whole transaction back there (a trigger here, an I/O error in life), the
    append fails with the database's error (not "no such savepoint"), nothing of it
    is stored, and the store goes on."""
    path = tmp_path / "g.db"
    s = SQLiteStore(path, durability=durability, kernel=kernel, max_events_per_stream=2)
    s.append("a", ev(0, data=0), ev(1, data=1))
    s.append("b", ev(2, data="b"))
    other = sqlite3.connect(path)
    other.execute("CREATE TRIGGER no_evict BEFORE DELETE ON events BEGIN SELECT RAISE(ROLLBACK, 'no evictions'); END")
    other.commit()
    other.close()
    with pytest.raises(sqlite3.IntegrityError, match="no evictions"):
        s.append("a", ev(3, data=3))
    assert s.append("b", ev(4, data="b2")) == 2  # no eviction needed: stored
    assert [e.data for e in s.read("a")[0]] == [0, 1]
    assert s.stream_info("a").last_position == 2
    other = sqlite3.connect(path)
    other.execute("DROP TRIGGER no_evict")
    other.commit()
    other.close()
    assert s.append("a", ev(5, data=5)) == 3
    assert [e.data for e in s.read("a")[0]] == [1, 5]
    s.close()
    with SQLiteStore(path, kernel=kernel) as s2:
        assert [e.data for e in s2.read("a")[0]] == [1, 5]
        assert [e.data for e in s2.read("b")[0]] == ["b", "b2"]
        assert s2.stream_info("a").last_position == 3


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_an_append_waiting_for_a_blocking_subscriber_holds_up_no_other(
    tmp_path: Path, kernel: Any, durability: str
) -> None:
    """An append that waits for room (overflow="block") commits what it wrote and
    releases the store lock while it waits: the consumer it waits for can itself
    append meanwhile (no deadlock), with both durabilities."""
    s = SQLiteStore(tmp_path / "g.db", durability=durability, kernel=kernel)
    sub = s.subscribe("s", buffer=2, overflow="block")
    got: list[Any] = []
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(8):
                s.append("s", ev(i, data=i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def consume() -> None:
        try:
            while len(got) < 8:
                s.append("log", ev(100, data=len(got)))  # the consumer writes too
                got.append(sub.get(timeout=10).data)
        except BaseException as exc:  # reported below
            errors.append(exc)

    ts = [threading.Thread(target=produce, daemon=True), threading.Thread(target=consume, daemon=True)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    hung = [t for t in ts if t.is_alive()]
    s.close()  # (ends a hang: the waiting append gets StoreClosed)
    for t in ts:
        t.join(10)
    assert not hung and not errors
    assert got == list(range(8))
    assert s.closed
    with SQLiteStore(tmp_path / "g.db", kernel=kernel) as s2:
        assert [e.data for e in s2.read("s")[0]] == list(range(8))
        assert len(s2.read("log")[0]) == 8
