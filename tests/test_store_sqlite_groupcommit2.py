"""SQLiteStore group commit, second file (nova.store.sqlite_commit): every append
commits its own transaction in its own thread; with durability="full" one appender
at a time fsyncs the WAL for every append committed before that fsync started, wakes
them in one pass and hands the syncer role to the oldest one left waiting.

16 threads with exact counts, a failing append among good ones (fails alone), the
fsync sharing itself (a failed fsync fails exactly the appends it covered; an
interrupted syncer fails nobody else), close in the middle of a load, and fork()
while appends are in flight (child interpreters, killed on timeout).  In-process
store tests run on both kernel twins.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from nova.errors import StoreClosed
from nova.events import Event
from nova.store.sqlite import SQLiteStore
from nova.store.sqlite_commit import GroupCommit

from childproc import run_code
from store_conformance import T0, ev
from waiting import wait_until as _wait_until



@pytest.fixture
def kernel(core: Any) -> Any:
    return core.ColumnLog


def _rows(store: SQLiteStore) -> dict[tuple[str, int], Any]:
    """(stream, position) -> data of every stored event; positions contiguous per
    stream, sequences unique."""
    b = store.window()
    by: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for i, e in enumerate(b):
        by[b.streams[b.stream_codes[i]]].append((int(b.positions[i]), e.data))
    seqs = b.sequences.tolist()
    assert len(set(seqs)) == len(seqs)
    for name, rs in by.items():
        assert sorted(p for p, _ in rs) == list(range(1, len(rs) + 1)), name
        assert store.stream_info(name).last_position == len(rs)
    return {(name, p): d for name, rs in by.items() for p, d in rs}


def _run_threads(n: int, target: Any) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(k: int) -> None:
        try:
            start.wait(20)
            target(k)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    return errors


# ---------------------------------------------------------------------------- stores
@pytest.mark.stress
@pytest.mark.parametrize("durability", ["full", "normal"])
def test_sixteen_threads_exact_counts(tmp_path: Path, kernel: Any, durability: str) -> None:
    path = tmp_path / "g.db"
    threads, per = 16, 60
    returned: dict[int, list[tuple[str, int, int, int]]] = defaultdict(list)
    with SQLiteStore(path, durability=durability, kernel=kernel) as s:
        group = s._sqlite_log.group
        covered: list[bool] = []
        real_wait = group.wait_durable

        def checked_wait(ticket: int) -> None:
            real_wait(ticket)
            covered.append(group._synced >= ticket)  # an fsync after its commit finished

        group.wait_durable = checked_wait  # type: ignore[method-assign]

        def append(k: int) -> None:
            for i in range(per):
                stream = f"s{(k + i) % 5}"
                if i % 7 == 6:
                    pos = s.append_many(stream, [ev(i, data=[k, i, j]) for j in range(3)])
                    returned[k].append((stream, pos, i, 3))
                else:
                    pos = s.append(stream, ev(i, data=[k, i, 0]))
                    returned[k].append((stream, pos, i, 1))

        assert _run_threads(threads, append) == []
        total = threads * (per + 2 * (per // 7))
        assert s.stats().events == total
        assert group.appends == threads * per
        if durability == "full":
            assert len(covered) == threads * per and all(covered)
            assert 1 <= group.fsyncs <= threads * per
        else:
            assert covered == [] and group.fsyncs == 0
        assert not group._waiting and not group._syncing  # nobody left waiting or syncing
        have = _rows(s)
        assert len(have) == total
        for k, appends in returned.items():
            last: dict[str, int] = {}
            for stream, pos, i, n in appends:  # each returned position holds its own rows
                assert [have[(stream, pos - n + 1 + j)] for j in range(n)] == [[k, i, j] for j in range(n)]
                assert pos - n + 1 > last.get(stream, 0)  # a thread's order is kept
                last[stream] = pos
    with SQLiteStore(path, kernel=kernel) as s2:  # the file holds the same
        assert _rows(s2) == have


@pytest.mark.stress
@pytest.mark.parametrize("durability", ["full", "normal"])
def test_failing_appends_among_sixteen_threads_fail_alone(tmp_path: Path, kernel: Any, durability: str) -> None:
    path = tmp_path / "g.db"
    s = SQLiteStore(path, durability=durability, kernel=kernel)
    s.append("s0", ev(0, data="first"))
    other = sqlite3.connect(path)  # a real refusal by the database, of one row
    other.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.id LIKE 'poison%' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    )
    other.commit()
    other.close()
    failed: dict[int, list[int]] = defaultdict(list)
    stored: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    other_errors: list[BaseException] = []

    def append(k: int) -> None:
        for i in range(40):
            stream = f"s{k % 4}"
            try:
                if i % 5 == 2:  # a batch whose second row the database refuses
                    s.append_many(stream, [ev(i, data=[k, i]), Event("t", "x", timestamp=T0, id=f"poison-{k}-{i}")])
                elif i % 5 == 4:
                    stored[k].append((stream, s.append_many(stream, [ev(i, data=[k, i]), ev(i, data=[k, i])]), i))
                else:
                    stored[k].append((stream, s.append(stream, ev(i, data=[k, i])), i))
            except sqlite3.IntegrityError as exc:
                assert "poisoned row" in str(exc)
                failed[k].append(i)
            except BaseException as exc:  # reported below
                other_errors.append(exc)

    assert _run_threads(16, append) == []
    assert other_errors == []
    assert {k: v for k, v in failed.items()} == {k: [i for i in range(40) if i % 5 == 2] for k in range(16)}
    have = _rows(s)
    assert len(have) == 1 + 16 * (24 + 2 * 8)  # nothing of a refused batch, all of the others
    for k, items in stored.items():
        for stream, pos, i in items:
            assert have[(stream, pos)] == [k, i]
    assert s._sqlite_log.group.appends == 1 + 16 * 32
    s.close()
    with SQLiteStore(path, kernel=kernel) as s2:
        assert _rows(s2) == have


@pytest.mark.stress
def test_close_in_the_middle_of_a_load(tmp_path: Path, kernel: Any) -> None:
    path = tmp_path / "g.db"
    s = SQLiteStore(path, durability="full", kernel=kernel)
    returned: list[tuple[str, int, int, int]] = []
    ended = [0]
    unexpected: list[BaseException] = []

    def append(k: int) -> None:
        i = 0
        while True:
            stream = f"s{k % 4}"
            try:
                if i % 4 == 3:
                    pos = s.append_many(stream, [ev(i, data=[k, i, 0]), ev(i, data=[k, i, 1])])
                    n = 2
                else:
                    pos = s.append(stream, ev(i, data=[k, i, 0]))
                    n = 1
            except StoreClosed:
                ended[0] += 1
                return
            except BaseException as exc:  # reported below
                unexpected.append(exc)
                return
            returned.append((stream, pos, k * 100_000 + i, n))
            i += 1

    closer = threading.Thread(
        target=lambda: (_wait_until(lambda: len(returned) >= 300, "appends before the close"), s.close()),
        daemon=True,
    )
    closer.start()
    assert _run_threads(16, append) == []
    closer.join(30)
    assert not closer.is_alive()
    assert unexpected == []
    assert ended[0] == 16  # every thread got StoreClosed, none hung
    assert s._sqlite_log._wal_fd is None  # (the WAL descriptor is closed with the store)
    with SQLiteStore(path, kernel=kernel) as s2:
        have = _rows(s2)
        for stream, pos, ki, n in returned:  # every append that returned is in the file
            k, i = divmod(ki, 100_000)
            assert [have[(stream, pos - n + 1 + j)] for j in range(n)] == [[k, i, j] for j in range(n)]
        assert len(have) == sum(n for *_, n in returned)  # and nothing else


# ---------------------------------------------------------------------------- fsync sharing
class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt in the syncer thread."""


def _bare_group(sync: Any, commits: list[int]) -> GroupCommit:
    """A GroupCommit whose commits are counted in *commits[0]* (its fsync sharing is
    exercised through wait_durable; no database needed for that part)."""
    return GroupCommit(threading.Lock(), lambda: None, lambda: None, lambda: commits[0], lambda: False, sync)


def _in_thread(fn: Any, out: dict[str, Any], key: str) -> threading.Thread:
    def run() -> None:
        try:
            fn()
            out[key] = "ok"
        except BaseException as exc:  # the outcome checked by the test
            out[key] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_failed_fsync_fails_exactly_the_appends_it_covered() -> None:
    commits = [2]  # commits 1 and 2 are made; the first fsync covers both
    gate = threading.Event()
    calls: list[int] = []

    def sync() -> None:
        calls.append(commits[0])
        if len(calls) == 1:
            gate.wait(20)
            raise OSError(5, "injected fsync failure")

    g = _bare_group(sync, commits)
    out: dict[str, Any] = {}
    ta = _in_thread(lambda: g.wait_durable(1), out, "a")  # the syncer (target 2)
    _wait_until(lambda: calls, "the first fsync")
    tb = _in_thread(lambda: g.wait_durable(2), out, "b")  # covered by it: waits
    _wait_until(lambda: len(g._waiting) == 1, "b to wait")
    commits[0] = 3
    tc = _in_thread(lambda: g.wait_durable(3), out, "c")  # committed after it started
    _wait_until(lambda: len(g._waiting) == 2, "c to wait")
    gate.set()
    for t in (ta, tb, tc):
        t.join(20)
    assert isinstance(out["a"], OSError) and isinstance(out["b"], OSError)
    assert out["b"] is out["a"]
    assert out["c"] == "ok"  # handed the syncer role: its own fsync succeeded
    assert calls == [2, 3] and g.fsyncs == 1 and g._synced == 3
    assert not g._syncing and not g._waiting


def test_an_interrupted_syncer_fails_nobody_else() -> None:
    commits = [2]
    gate = threading.Event()
    calls: list[int] = []

    def sync() -> None:
        calls.append(commits[0])
        if len(calls) == 1:
            gate.wait(20)
            raise _Interrupt

    g = _bare_group(sync, commits)
    out: dict[str, Any] = {}
    ta = _in_thread(lambda: g.wait_durable(1), out, "a")
    _wait_until(lambda: calls, "the first fsync")
    tb = _in_thread(lambda: g.wait_durable(2), out, "b")
    _wait_until(lambda: len(g._waiting) == 1, "b to wait")
    gate.set()
    for t in (ta, tb):
        t.join(20)
    assert isinstance(out["a"], _Interrupt)
    assert out["b"] == "ok"  # not failed with the syncer's interrupt: it fsynced itself
    assert calls == [2, 2] and g.fsyncs == 1 and g._synced == 2


def test_one_fsync_serves_every_append_committed_before_it() -> None:
    commits = [1]
    gate = threading.Event()
    calls: list[int] = []

    def sync() -> None:
        calls.append(commits[0])
        if len(calls) == 1:
            gate.wait(20)

    g = _bare_group(sync, commits)
    out: dict[str, Any] = {}
    ts = [_in_thread(lambda: g.wait_durable(1), out, "first")]
    _wait_until(lambda: calls, "the first fsync")
    for i in range(2, 9):  # seven appends commit while it runs
        commits[0] = i
        ts.append(_in_thread(lambda i=i: g.wait_durable(i), out, f"w{i}"))
    _wait_until(lambda: len(g._waiting) == 7, "the appends to wait")
    gate.set()
    for t in ts:
        t.join(20)
    assert set(out.values()) == {"ok"} and len(out) == 8
    assert calls == [1, 8]  # the second fsync covered all seven waiters
    assert g.fsyncs == 2 and g._synced == 8
    assert g.wait_durable(8) is None and calls == [1, 8]  # durable already: no fsync


def test_an_append_returns_only_after_an_fsync_that_started_after_its_commit(tmp_path: Path, kernel: Any) -> None:
    with SQLiteStore(tmp_path / "g.db", durability="full", kernel=kernel) as s:
        log = s._sqlite_log
        seen: list[tuple[int, int]] = []
        real = log.sync_wal

        def sync() -> None:
            seen.append((log.commits, len(log)))  # commits in the WAL when the fsync starts
            real()

        log.group._sync = sync
        for i in range(5):
            s.append("a", ev(i, data=i))
            assert seen[-1] == (i + 1, i + 1)
        assert log.group.fsyncs == 5


# ---------------------------------------------------------------------------- fork
_FORK_CHILD = r"""
import os, sys, threading, time
from nova.events import Event
from nova.errors import StoreClosed
from nova.store.sqlite import SQLiteStore

path = sys.argv[1]
s = SQLiteStore(path, durability="full")
sub = s.subscribe("s0", overflow="drop_oldest")  # (registers the store with nova's exit hook)
count = [0]
stop = threading.Event()

def run(k):
    i = 0
    while not stop.is_set():
        s.append(f"s{k}", Event("t", [k, i], timestamp=1))
        count[0] += 1
        i += 1

ts = [threading.Thread(target=run, args=(k,)) for k in range(8)]
for t in ts:
    t.start()
while count[0] < 200:
    time.sleep(0.001)
forks = []
for n in range(6):  # fork while appends are in flight (a thread may hold the lock, be in SQLite, sync)
    pid = os.fork()
    if pid == 0:
        try:
            try:
                s.append("child", Event("t", "x", timestamp=1))
                os._exit(3)
            except StoreClosed as exc:
                assert "inherited through fork()" in str(exc), exc
            try:
                s.window()
                os._exit(4)
            except StoreClosed:
                pass
            if n % 2:
                s.close()  # leaves the parent's file alone, does not hang
        except BaseException as exc:
            sys.stderr.write(f"child failed: {exc!r}\n")
            os._exit(5)
        sys.exit(0)  # a normal exit: nova's exit hook and interpreter teardown must not hang
    forks.append(pid)
    time.sleep(0.02)
codes = [os.waitpid(pid, 0)[1] for pid in forks]
stop.set()
for t in ts:
    t.join(30)
sub.close()
s.close()
with SQLiteStore(path) as again:
    n = again.stats().events
    streams = sorted(again.streams())
print(codes, count[0], n, streams)
"""


def test_fork_while_appends_are_in_flight(tmp_path: Path) -> None:
    p = run_code(None, _FORK_CHILD, 30, (str(tmp_path / "f.db"),))  # fails the test if a process hangs
    out, err = p.stdout, p.stderr
    assert p.returncode == 0, err
    codes, rest = out.strip().split("] ", 1)
    count, n, streams = rest.split(" ", 2)
    assert codes == "[0, 0, 0, 0, 0, 0", err  # every child exited 0, none hung
    # every append of the parent is stored exactly once; nothing came from a child
    assert int(n) == int(count)
    assert streams == str([f"s{k}" for k in range(8)])


_FORK_HELD = r"""
import os, sys, time
from nova.events import Event
from nova.errors import StoreClosed
from nova.store.memory import MemoryStore
from nova.store.sqlite import SQLiteStore

def wait(pid):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

s = SQLiteStore(sys.argv[1], durability="full", sweep_interval=0.05, retention=3600)
s.append("a", Event("t", 1))
log = s._sqlite_log
# what parent threads may hold at the instant of a fork: the store lock with a write
# transaction open, the sweeper's stop event, the WAL lock of a running fsync
held = [s._lock, s._stop._cond, log._wal_lock]
for lock in held:
    lock.acquire()
log._begin()
pid = os.fork()
if pid == 0:
    try:
        s.append("a", Event("t", 2))
        os._exit(3)
    except StoreClosed:
        pass
    s.close()
    sys.exit(0)  # nova's exit hook and teardown too
log.commit()
for lock in reversed(held):
    lock.release()
sqlite_child = wait(pid)
s.append("a", Event("t", 3))
n = len(s.read("a")[0])
s.close()
m = MemoryStore(sweep_interval=0.05, retention=3600)  # the sibling: a sweeper's stop event
m.append("a", Event("t", 1))
m._stop._cond.acquire()
pid = os.fork()
if pid == 0:
    m.append("a", Event("t", 2))  # an inherited MemoryStore is usable in the child
    n = len(m.read("a")[0])
    m.close()
    sys.exit(0 if n == 2 else 6)
m._stop._cond.release()
memory_child = wait(pid)
m.close()
print(sqlite_child, n, memory_child)
"""


def test_fork_while_locks_are_held_does_not_hang_the_child(tmp_path: Path) -> None:
    """Deterministic: the parent forks while it holds the store lock with a write
    transaction open, the stop event's lock and the WAL lock (what its other threads
    may hold at any instant).  The SQLite child refuses the inherited store, closes it
    and exits without committing the parent's transaction; the MemoryStore child (the
    sibling: LogStore's stop event) uses and closes its copy."""
    p = run_code(None, _FORK_HELD, 30, (str(tmp_path / "h.db"),))  # fails the test if a process hangs
    out, err = p.stdout, p.stderr
    assert p.returncode == 0, err
    assert out.split() == ["0", "2", "0"], (out, err)  # children exited 0; the parent's own append kept
