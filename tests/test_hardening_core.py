"""Issue 10 hardening of the kernels: hostile input to GIL-free code, fork, time range.

Crashes and fork behaviour run in child interpreters (bounded, killed on timeout), on
both twins: each child is started with ``NOVA_NO_EXTENSIONS`` set for the pure twin.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest
from childproc import CHILD_TIMEOUT, run_code

from nova.errors import ValidationError



def run_child(core: SimpleNamespace, code: str, timeout: float = CHILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter on *core*'s twin; kill it after *timeout* s."""
    return run_code(core, code, timeout)

def check_child(core: SimpleNamespace, code: str, expect: str = "OK") -> str:
    res = run_child(core, code)
    assert res.returncode == 0, f"child exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert expect in res.stdout, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res.stdout


# ---------------------------------------------------------------- item 2: nogil inputs


def test_partition_many_over_a_list_cleared_by_another_thread(core: SimpleNamespace) -> None:
    # The compiled kernel hashed the caller's list items with the GIL released without
    # owning them: another thread's keys.clear() freed them under it (SIGSEGV 3/3).
    size = (4 << 10) if core.pure else (4 << 20)  # the pure twin hashes in Python
    check_child(core, f"""
        import threading
        import nova
        from nova._core import partition_many, partition_for, USING_EXTENSIONS
        assert USING_EXTENSIONS == (not nova._core.NO_EXTENSIONS)
        for round in range(6):
            keys = [bytes([65 + i]) * {size} for i in range(48)]
            expected = [partition_for(k, 7) for k in keys]
            go = threading.Event()
            def clear():
                go.wait()
                keys.clear()
            t = threading.Thread(target=clear)
            t.start()
            go.set()
            out = partition_many(keys, 7)
            t.join()
            # the keys taken before the clear (all or none on the compiled twin)
            assert out.tolist() == expected[:len(out)], (round, out.tolist())
        print("OK")
    """)


def test_partition_many_over_a_list_shrunk_and_mutated_in_place(core: SimpleNamespace) -> None:
    # Same class: items replaced (not just removed) while hashing.
    size = (1 << 8) if core.pure else (1 << 18)
    check_child(core, f"""
        import threading
        from nova._core import partition_many, partition_for
        keys = [b"k%d" % i * {size} for i in range(64)]
        expected = [partition_for(k, 13) for k in keys]
        stop = threading.Event()
        def churn():
            while not stop.is_set():
                for i in range(len(keys)):
                    try:
                        keys[i] = keys[i][:-1] + b"x"
                    except IndexError:
                        pass
        t = threading.Thread(target=churn)
        saved = list(keys)
        t.start()
        for _ in range(20):
            out = partition_many(keys, 13)
            assert len(out) in range(0, 65)
        stop.set()
        t.join()
        assert partition_many(saved, 13).tolist() == expected
        print("OK")
    """)


@pytest.mark.parametrize(
    "args",
    [(0, 1 << 40, None), (-1, 0, None), (5, 2, None), (0, 0, [7]), (0, 0, [-1]),
     (0, 0, [[0]]), (0, 0, [0.5]), (True, 1, None), (0, 1 << 70, None)],
)
def test_window_slice_refuses_bounds_it_did_not_compute(core: SimpleNamespace, args: tuple) -> None:
    # WindowSlice(log, 0, 1 << 40, None) read far past the log's rows (crash). Checked
    # in a child: a regression must not take the test run down.
    check_child(core, f"""
        from nova._core import kernel, USING_EXTENSIONS
        cols = kernel("columns")
        from nova._core import Event
        log = cols.ColumnLog()
        code = log.stream_code("s")
        log.append_event(code, Event("t", 1, timestamp=1))
        log.append_event(code, Event("t", 2, timestamp=2))
        try:
            sl = cols.WindowSlice(log, *{args!r})
        except ValueError as exc:
            assert str(exc).startswith("Expected"), exc
            print("OK", exc)
        else:
            raise SystemExit(f"accepted {{len(sl)}} rows")
    """)


def test_window_slice_from_python_with_valid_bounds(core: SimpleNamespace) -> None:
    from nova._core import kernel

    cols = kernel("columns", pure=core.pure)
    log = cols.ColumnLog()
    code = log.stream_code("s")
    for i in range(3):
        log.append_event(code, core.Event("t", i, timestamp=i))
    assert [e.data for e in cols.WindowSlice(log, 1, 3, None).events()] == [1, 2]
    assert [e.data for e in cols.WindowSlice(log, 0, 0, np.array([2, 0])).events()] == [2, 0]
    assert len(cols.WindowSlice(log, 0, 0, [])) == 0
    sl = cols.WindowSlice(log, 0, 3, None)
    with pytest.raises(IndexError):
        sl.event(1 << 70)
    with pytest.raises(IndexError):
        sl.event(-1)
    assert [e.data for e in sl.events(1, 1 << 70)] == [1, 2]


def test_kernel_objects_made_without_init_do_not_crash(core: SimpleNamespace) -> None:
    # Siblings of WindowSlice: cdef classes reachable from Python with state they did
    # not set up (_Appender(None, f) called through None; __new__ without __init__ left
    # NULL column pointers behind).
    # (On the pure twin such objects raise AttributeError, as any Python object would.)
    check_child(core, f"""
        from nova._core import kernel
        cols = kernel("columns")
        pure = {core.pure!r}
        try:
            log = cols.ColumnLog.__new__(cols.ColumnLog)
            assert len(log) == 0 and log.window(None, None).events() == []
            sl = cols.WindowSlice.__new__(cols.WindowSlice)
            assert (sl.events(), sl.data(), sl.metadata(), sl.ids()) == ([], [], [], [])
        except AttributeError:
            assert pure
        appender = getattr(cols, "_Appender", None)
        if appender is not None:
            try:
                appender(None, print)
            except TypeError as exc:
                print("refused:", exc)
            else:
                raise SystemExit("_Appender accepted None")
        print("OK")
    """)


# ---------------------------------------------------------------- item 4: time range

MAX_NS = 2**63 - 1
MIN_NS = -(2**63)

OUT_OF_RANGE = [
    pytest.param(np.datetime64("2300-01-01"), id="dt64-D-2300"),
    pytest.param(np.datetime64("1600-01-01"), id="dt64-D-1600"),
    pytest.param(np.datetime64("2262-04-11T23:47:17"), id="dt64-s-past-max"),
    pytest.param(np.datetime64(10**18, "s"), id="dt64-s"),
    pytest.param(np.datetime64(-(10**15), "ms"), id="dt64-ms-neg"),
    pytest.param(np.datetime64(400, "Y"), id="dt64-Y"),
    pytest.param(np.datetime64(3, "100Y"), id="dt64-100Y"),
    pytest.param(np.datetime64(5000, "M"), id="dt64-M"),
    pytest.param(np.datetime64(20000, "W"), id="dt64-W"),
    pytest.param(np.datetime64(2**62, "2000000fs"), id="dt64-2000000fs"),
    pytest.param(datetime(2300, 1, 1, tzinfo=timezone.utc), id="aware-2300"),
    pytest.param(datetime(9999, 12, 31, tzinfo=timezone(timedelta(hours=-5))), id="aware-9999"),
    pytest.param(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), id="aware-0001"),
    pytest.param(MAX_NS + 1, id="int-max+1"),
    pytest.param(MIN_NS - 1, id="int-min-1"),
    pytest.param(np.uint64(2**64 - 1), id="uint64"),
]

IN_RANGE = [
    (np.datetime64("2262-04-11T23:47:16.854775807"), MAX_NS),
    (np.datetime64("1677-09-21T00:12:43.145224193"), MIN_NS + 1),  # MIN_NS itself is NaT
    (np.datetime64("2000-01", "M"), 946_684_800 * 10**9),
    (np.datetime64(30, "Y"), 946_684_800 * 10**9),
    (np.datetime64(-1, "ps"), -1),
    (np.datetime64(1999, "ps"), 1),
    (np.datetime64(3, "1000ps"), 3),
    (np.datetime64(1, "25Y"), 788_918_400 * 10**9),  # 1995-01-01
    (datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc), MAX_NS - 807 + 0),
    (datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 0),
    (MAX_NS, MAX_NS),
    (MIN_NS, MIN_NS),
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_event_timestamp_out_of_range_is_a_validation_error(core: SimpleNamespace, value: object) -> None:
    # np.datetime64("2300-01-01") was stored as 1715-06-13 (numpy wraps silently); an
    # aware datetime out of range was OverflowError (compiled) and accepted (pure).
    with pytest.raises(ValidationError, match="Expected timestamp within the int64 nanosecond range"):
        core.Event("t", timestamp=value)
    with pytest.raises(ValidationError, match="Expected ts within the int64 nanosecond range"):
        core.to_timestamp_ns(value, "ts")


@pytest.mark.parametrize("value, ns", IN_RANGE)
def test_event_timestamp_in_range_exact(core: SimpleNamespace, value: object, ns: int) -> None:
    if isinstance(value, datetime) and value.year == 2262:
        ns = (MAX_NS // 1000) * 1000  # microsecond precision
    assert core.Event("t", timestamp=value).timestamp == ns
    assert core.to_timestamp_ns(value) == ns


def test_naive_datetime_and_nat_refused_alike(core: SimpleNamespace) -> None:
    for bad in (datetime(2300, 1, 1), datetime(2000, 1, 1), np.datetime64("NaT"), np.datetime64("NaT", "s")):
        with pytest.raises(ValidationError, match="Expected timestamp as"):
            core.Event("t", timestamp=bad)


@pytest.mark.parametrize("ns", [-1, -999, -1000, -1001, MIN_NS, MAX_NS, 1, 999])
def test_event_datetime_floors_on_both_twins(core: SimpleNamespace, ns: int) -> None:
    # Compiled truncated (C division): Event(timestamp=-1).datetime was 1970-01-01.
    expect = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)
    assert core.Event("t", timestamp=ns).datetime == expect
    if ns == -1:
        assert core.Event("t", timestamp=ns).datetime == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


UNITS = ["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "10s", "25Y", "3ms"]


@pytest.mark.parametrize("unit", UNITS)
def test_append_columns_datetime64_any_unit(core: SimpleNamespace, unit: str) -> None:
    from nova._core import kernel
    from nova.store import MemoryStore

    cols = kernel("columns", pure=core.pure)
    s = MemoryStore(kernel=cols.ColumnLog)
    small = np.array([0, 1, 2, -3], dtype=f"datetime64[{unit}]")
    expect = [core.to_timestamp_ns(v) for v in small]
    s.append_columns("s", types="t", timestamps=small)
    assert [e.timestamp for e in s.read("s")[0]] == expect
    assert [e.timestamp for e in s.read("s")[0]] == [core.Event("t", timestamp=v).timestamp for v in small]
    # a value out of range anywhere in the array refuses the whole append
    # (a datetime64 of 1 ns or finer is always within the ns range)
    raw = np.iinfo(np.int64).max - 1 if unit not in ("ns", "ps", "fs", "as") else None
    if raw is not None:
        big = np.array([0, raw], dtype="int64").view(f"datetime64[{unit}]")
        with pytest.raises(ValidationError, match="Expected timestamps within the int64 nanosecond range"):
            s.append_columns("s", types="t", timestamps=big)
        with pytest.raises(ValidationError, match="Expected timestamps within the int64 nanosecond range"):
            s.append_columns("s", types="t", timestamps=[np.datetime64(0, unit), big[1]])
    with pytest.raises(ValidationError, match="NaT"):
        s.append_columns("s", types="t", timestamps=np.array([0, "NaT"], dtype=f"datetime64[{unit}]"))
    assert s.stats().events == 4


@pytest.mark.parametrize("bound", OUT_OF_RANGE)
def test_window_and_replay_bounds_out_of_range(core: SimpleNamespace, bound: object) -> None:
    # window(start=np.datetime64("2300-01-01")) returned an event of 1970.
    from nova._core import kernel
    from nova.store import MemoryStore

    s = MemoryStore(kernel=kernel("columns", pure=core.pure).ColumnLog)
    s.append("s", core.Event("t", timestamp=0))
    for call in (lambda: s.window(start=bound), lambda: s.window(end=bound),
                 lambda: s.replay(bound, None), lambda: s.replay(None, bound)):
        with pytest.raises(ValidationError, match="within the int64 nanosecond range"):
            call()


# ---------------------------------------------------------------- item 3: fork


def test_fork_while_threads_wait_in_kernels(core: SimpleNamespace) -> None:
    # A child forked while parent threads were blocked in RingQueue.get() froze (GIL
    # held) at its first put: glibc waited on condition-variable waiters that do not
    # exist in the child (compiled), and locks held by vanished threads were never
    # released (pure twin: a store subscription's consumer lock).  Now every kernel
    # lock is re-created in the child: items kept, waiters gone, everything usable.
    # The child is bounded at 20 s (killed, "child froze") inside a 30 s child.
    out = check_child(core, """
        import os, sys, threading, time
        from nova._core import RingQueue, TokenBucket, USING_EXTENSIONS
        from nova.store import MemoryStore
        from nova import Event
        q = RingQueue(4)
        full = RingQueue(1)
        full.put("f0")
        bucket = TokenBucket(1000.0, 5.0)
        store = MemoryStore(max_events_per_stream=1000)
        store.append("s", Event("t", 0, timestamp=1))
        sub = store.subscribe("s")
        assert sub.get(timeout=5).data == 0
        stop = []
        def getter():
            try:
                while True:
                    item = q.get()
                    if item == "stop":
                        return
                    stop.append(item)
            except Exception:
                pass
        def putter():
            try:
                full.put("f1")
            except Exception:
                pass
        def sub_reader():
            try:
                for ev in sub:
                    pass
            except Exception:
                pass
        threads = [threading.Thread(target=getter, daemon=True) for _ in range(3)]
        threads += [threading.Thread(target=putter, daemon=True), threading.Thread(target=sub_reader, daemon=True)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while (q.stats().getters < 3 or full.stats().putters < 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the subscription reader is blocked in its wait
        assert q.stats().getters == 3 and full.stats().putters == 1, (q.stats(), full.stats())
        q.put("before-fork")  # taken by a parent getter, which then waits again
        deadline = time.monotonic() + 10
        while (len(q) or q.stats().getters < 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                s = q.stats()
                assert s.getters == 0 and s.putters == 0, s
                for i in range(10):
                    q.put(i)              # wakes nobody: no getter exists in the child
                    assert q.get(timeout=5) == i
                q.put("x"); q.put("y")
                assert q.get_many(10, timeout=1) == ["x", "y"]
                assert full.stats().putters == 0
                assert full.get(timeout=5) == "f0"   # items kept
                full.put("child")
                assert full.get_nowait() == "child"
                got = []
                t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
                t.start()
                time.sleep(0.1)
                q.put("to-thread")
                t.join(10)
                assert got == ["to-thread"], got
                assert bucket.try_acquire(1)
                store.append("s", Event("t", 1, timestamp=2))
                assert sub.get(timeout=5).data == 1
                assert [e.data for e in store.read("s")[0]] == [0, 1]
                q.close()
                ok = True
                print("child OK", flush=True)
            except BaseException as exc:
                import traceback; traceback.print_exc()
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                print("child froze", flush=True)
                sys.exit(3)
            time.sleep(0.02)
        code = os.waitstatus_to_exitcode(status)
        print("child exit", code, flush=True)
        for _ in range(3):
            q.put("stop")
        full.get(); store.close()
        for t in threads:
            t.join(5)
        # the parent's queue still works and its waiters were woken normally
        print("parent OK" if code == 0 else "parent saw child failure", flush=True)
        sys.exit(0 if code == 0 else 4)
    """, expect="parent OK")
    assert "child OK" in out
