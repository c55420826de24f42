"""Issue 10 hardening of MemoryStore: bounded memory under bounded retention, and a
store left open at interpreter exit (both twins of the ColumnLog kernel)."""

from __future__ import annotations

import gc
import subprocess
import tracemalloc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from childproc import run_code

from nova._core import kernel
from nova.store import MemoryStore

T0 = 1_700_000_000_000_000_000


def make_store(core: SimpleNamespace, **kw: Any) -> MemoryStore:
    return MemoryStore(kernel=kernel("columns", pure=core.pure).ColumnLog, **kw)


def growth(store: MemoryStore, step: Callable[[MemoryStore, int], None], warm: int, n: int) -> int:
    """Bytes still allocated after *n* more calls of *step* (after *warm* calls)."""
    for i in range(warm):
        step(store, i)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(warm, warm + n):
            step(store, i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


# Unbounded, the cases below grew 85-150 B per call: 20 000 calls = 1.7-3 MB.  Bounded,
# what is left is the storage's position in its grow/compact cycle (a few KB).
N = 20_000
LIMIT = 120_000  # bytes for N calls, i.e. < 6 B per call


def _columns_no_ids(s: MemoryStore, i: int) -> None:
    s.append_columns("s", types="t", timestamps=[T0 + i])


def _event_new_type(s: MemoryStore, i: int) -> None:
    s.append("s", s_event(f"type-{i}", T0 + i))


def _columns_new_type(s: MemoryStore, i: int) -> None:
    s.append_columns("s", types=f"ty-{i}", timestamps=[T0 + i], ids=[f"id-{i}"])


def _columns_types_array(s: MemoryStore, i: int) -> None:
    s.append_columns("s", types=np.array([f"a{i}", f"b{i}"]), timestamps=[T0 + i, T0 + i])


def s_event(type_: str, ts: int) -> Any:
    from nova import Event

    return Event(type_, None, timestamp=ts)


@pytest.mark.parametrize(
    "step", [_columns_no_ids, _event_new_type, _columns_new_type, _columns_types_array],
    ids=["columns-no-ids", "event-new-type", "columns-new-type", "columns-types-array"],
)
def test_memory_bounded_under_max_events_per_stream(core: SimpleNamespace, step: Any) -> None:
    # append_columns without ids kept one auto-id run per call for ever (~88 B) and
    # every distinct type name was interned for ever (~145 B): both now go when the
    # rows that used them are compacted away.
    s = make_store(core, max_events_per_stream=100)
    grew = growth(s, step, 2_000, N)
    assert grew < LIMIT, f"{grew} bytes for {N} calls"
    assert len(s._log.type_names()) <= 2 * 100 + 256 + 2 * 100  # live + uncompacted
    s.close()


def test_memory_bounded_under_time_retention(core: SimpleNamespace) -> None:
    now = [T0]
    s = make_store(core, retention=1.0, now_ns=lambda: now[0], sweep_interval=None)

    def step(st: MemoryStore, i: int) -> None:
        now[0] += 10**8
        st.append_columns("s", types=f"t{i}", timestamps=[now[0]])
        if i % 3 == 0:
            st.append("s", s_event(f"e{i}", now[0] - 5 * 10**8))  # late, still in retention
        st.sweep()

    grew = growth(s, step, 2_000, N)
    assert grew < LIMIT, f"{grew} bytes for {N} calls"
    s.close()


def test_streams_are_bounded_by_max_streams(core: SimpleNamespace) -> None:
    # A stream is remembered for ever (its positions are never reused, streams() lists
    # it): max_streams is the documented cap, with a clear error past it.
    from nova.errors import StreamFull

    s = make_store(core, max_streams=3, max_events_per_stream=1)
    for name in ("a", "b", "c"):
        s.append(name, s_event("t", T0))
    with pytest.raises(StreamFull, match="Expected at most max_streams=3 streams"):
        s.append("d", s_event("t", T0))
    s.close()


def test_compaction_renumbers_types_and_keeps_earlier_batches(core: SimpleNamespace) -> None:
    s = make_store(core, max_events_per_stream=300)
    for i in range(300):
        s.append_columns("s", types=f"old-{i % 7}", timestamps=[T0 + i], data=[i])
    before = s.window()
    before_types = [before.types[c] for c in before.type_codes]
    before_ids = before.ids
    for i in range(300, 900):
        s.append_columns("s", types=f"new-{i % 5}", timestamps=[T0 + i], data=[i])
    # the earlier batch is unchanged, whatever the log renumbered since
    assert [before.types[c] for c in before.type_codes] == before_types
    assert before.ids == before_ids
    assert [e.type for e in before] == before_types
    after = s.window()
    assert len(after) == 300
    assert sorted(set(after.types[c] for c in after.type_codes)) == [f"new-{k}" for k in range(5)]
    assert all(n.startswith("new-") for n in s._log.type_names())
    assert [e.type for e in s.replay(types="new-3")] == ["new-3"] * 60
    assert list(s.replay(types="old-1")) == []
    # auto ids of the rows kept are the same before and after their runs were pruned
    ids_now = {e.data: e.id for e in s.replay()}
    assert len(set(ids_now.values())) == 300
    again = {e.data: e.id for e in s.replay()}
    assert ids_now == again
    s.close()


def test_auto_ids_survive_run_pruning(core: SimpleNamespace) -> None:
    s = make_store(core, max_events_per_stream=50)
    seen: dict[int, str] = {}
    for i in range(2_000):
        s.append_columns("s", types="t", timestamps=[T0 + i], data=[i])
        if i % 97 == 0:
            for e in s.replay():
                assert seen.setdefault(e.data, e.id) == e.id
    ids = [e.id for e in s.replay()]
    assert len(set(ids)) == len(ids) == 50
    s.close()


# ---------------------------------------------------------------- interpreter exit


def run_child(core: SimpleNamespace, code: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return run_code(core, code, timeout)

def test_store_left_open_at_exit_does_not_hang(core: SimpleNamespace) -> None:
    # Sweeper threads (system clock and a ManualClock that never advances), a
    # subscription blocked in get() in a daemon thread, an async waiter and a blocked
    # appender: the interpreter exits at once, and the store is closed by the exit hook.
    res = run_child(core, """
        import asyncio, threading, time
        from nova import MemoryStore, Event
        from nova.testing import ManualClock
        s = MemoryStore(retention=60.0, sweep_interval=0.05)
        manual = MemoryStore(retention=60.0, clock=ManualClock())
        s.append("a", Event("t"))
        sub = s.subscribe("a")
        assert sub.get(timeout=1).type == "t"
        ready = threading.Event()
        ended = []
        def blocked():
            ready.set()
            try:
                sub.get()
            except Exception as exc:
                ended.append(type(exc).__name__)
        threading.Thread(target=blocked, daemon=True).start()
        ready.wait()
        full = manual.subscribe("b", buffer=1)  # block: a second append waits for room
        manual.append("b", Event("t"))
        threading.Thread(target=lambda: manual.append("b", Event("t")), daemon=True).start()
        loop = asyncio.new_event_loop()
        asub = manual.subscribe("c")
        threading.Thread(target=lambda: loop.run_until_complete(asub.__anext__()), daemon=True).start()
        time.sleep(0.2)
        import nova._util.atexit as hooks
        print("registered", sorted(k for k in hooks._hooks) == sorted({id(s), id(manual)}), flush=True)
        print("leaving", flush=True)
    """)
    assert res.returncode == 0, res.stderr
    assert "registered True" in res.stdout and "leaving" in res.stdout, res.stdout + res.stderr


def test_exit_hook_closes_the_store_and_wakes_its_waiters(core: SimpleNamespace) -> None:
    res = run_child(core, """
        import asyncio, threading, time
        from nova import MemoryStore, Event
        from nova.errors import StoreClosed
        import nova._util.atexit as hooks
        s = MemoryStore(retention=60.0, sweep_interval=0.05)
        sub = s.subscribe("a")
        got = []
        def blocked_get():
            try:
                sub.get()
            except StoreClosed as exc:
                got.append("get")
        full = s.subscribe("b", buffer=1)
        s.append("b", Event("t"))
        def blocked_append():
            try:
                s.append("b", Event("t"))
            except StoreClosed:
                got.append("append")
        threads = [threading.Thread(target=f) for f in (blocked_get, blocked_append)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        hooks.run_exit_hooks(5.0)
        for t in threads:
            t.join(5)
        assert s.closed and sorted(got) == ["append", "get"], got
        assert not s._sweeper.is_alive()
        print("OK", round(time.monotonic() - t0, 3))
    """)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr


def test_close_at_exit_is_bounded_when_the_lock_is_held(core: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    import threading
    import time

    s = make_store(core, retention=60.0, sweep_interval=None)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with s._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="nova.store"):
        s.close_at_exit(0.2)
    assert time.monotonic() - t0 < 5
    assert "not closed at interpreter exit" in caplog.text
    assert not s.closed
    release.set()
    t.join(5)
    s.close_at_exit(1.0)
    assert s.closed
