"""Issue 10 hardening of the kernels: hostile input to GIL-free code, fork, time range.

Crashes and fork behaviour run in child interpreters (bounded, killed on timeout), on
both twins: each child is started with ``NOVA_NO_EXTENSIONS`` set for the pure twin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nova.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 30.0


def run_child(core: SimpleNamespace, code: str, timeout: float = CHILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter on *core*'s twin; kill it after *timeout* s."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("NOVA_NO_EXTENSIONS", None)
    env.pop("NOVA_REQUIRE_EXTENSIONS", None)
    if core.pure:
        env["NOVA_NO_EXTENSIONS"] = "1"
    else:
        env["NOVA_REQUIRE_EXTENSIONS"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child did not finish within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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
