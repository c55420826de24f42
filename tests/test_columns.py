"""The columns kernel: ColumnLog and WindowSlice (both twins, and differential)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova.errors import ValidationError
from nova.events import Event


def make(core: Any, capacity: int = 0) -> tuple[Any, int]:
    log = core.ColumnLog(capacity)
    return log, log.stream_code("s")


def cols(sl: Any) -> list[tuple[int, int, int, int, int]]:
    return list(zip(sl.ts.tolist(), sl.seq.tolist(), sl.pos.tolist(), sl.stream.tolist(), sl.type.tolist()))


def test_append_event_and_window(core: Any) -> None:
    log, s = make(core)
    e1, e2 = Event("a", 1, timestamp=10), Event("b", 2, timestamp=20)
    assert log.append_event(s, e1) == 1
    assert log.append_event(s, e2) == 2
    assert len(log) == 2 and log.last_seq == 2 and log.is_sorted
    sl = log.window(None, None)
    assert cols(sl) == [(10, 1, 1, 0, 0), (20, 2, 2, 0, 1)]
    assert sl.events() == [e1, e2] and sl.events()[0] is e1
    assert sl.event(1) is e2
    assert sl.data() == [1, 2] and sl.ids() == [e1.id, e2.id]
    assert sl.metadata() == [{}, {}]
    assert len(log.window(11, 20)) == 0
    assert cols(log.window(10, 11)) == [(10, 1, 1, 0, 0)]
    with pytest.raises(IndexError, match=r"Expected a row index in \[0, 2\), got 2"):
        sl.event(2)


def test_window_views_share_memory(core: Any) -> None:
    log, s = make(core)
    log.append_columns(s, "t", np.arange(100, dtype=np.int64))
    a, b = log.window(10, 50), log.window(20, 90)
    assert np.shares_memory(a.ts, b.ts)
    assert a.ts.tolist() == list(range(10, 50))
    for arr in (a.ts, a.seq, a.pos, a.stream, a.type):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1


def test_slice_survives_growth(core: Any) -> None:
    log, s = make(core)
    log.append_columns(s, "t", np.arange(20, dtype=np.int64), data=list(range(20)))
    sl = log.window(None, None)
    for i in range(20, 2000):
        log.append_event(s, Event("t", i, timestamp=i))
    assert sl.ts.tolist() == list(range(20)) and sl.data() == list(range(20))


def test_late_rows_order_by_timestamp_then_sequence(core: Any) -> None:
    log, s = make(core)
    for ts in (5, 3, 5, 1, 3, 9):
        log.append_event(s, Event("t", ts, timestamp=ts))
    assert not log.is_sorted
    sl = log.window(None, None)
    assert list(zip(sl.ts.tolist(), sl.seq.tolist())) == [(1, 4), (3, 2), (3, 5), (5, 1), (5, 3), (9, 6)]
    assert log.window(3, 6).seq.tolist() == [2, 5, 1, 3]
    # in-order appends after disorder go to the index tail
    log.append_columns(s, "t", [9, 10, 11])
    assert log.window(9, None).seq.tolist() == [6, 7, 8, 9]
    assert log.time_bounds() == (1, 11)


def test_column_rows_become_events(core: Any) -> None:
    log, s = make(core)
    log.append_columns(s, ["x", "y"], [1, 2], data=["p", "q"], ids=["i1", "i2"])
    log.append_columns(s, np.array(["z"]), [3])
    log.append_columns(s, np.array([b"w"], dtype="S1"), [4])
    evs = log.window(None, None).events()
    assert [(e.type, e.data, e.timestamp) for e in evs] == [("x", "p", 1), ("y", "q", 2), ("z", None, 3), ("w", None, 4)]
    assert [e.id for e in evs[:2]] == ["i1", "i2"]
    assert evs[2].id == log.window(3, 4).ids()[0]
    assert evs[2].id != evs[3].id


def test_append_errors(core: Any) -> None:
    log, s = make(core)
    with pytest.raises(TypeError, match="Expected an Event, got int"):
        log.append_event(s, 5)
    with pytest.raises(ValueError, match=r"Expected a stream code in \[0, 1\), got 7"):
        log.append_event(7, Event("t"))
    with pytest.raises(TypeError, match="Expected an Event at index 1, got str"):
        log.append_events(s, [Event("t"), "x"])
    with pytest.raises(TypeError, match="Expected events as a list or tuple, got set"):
        log.append_events(s, set())
    with pytest.raises(ValidationError, match=r"Expected 2 types \(one per event\), got 1"):
        log.append_columns(s, ["a"], [1, 2])
    with pytest.raises(ValidationError, match="Expected a non-empty str stream name, got ''"):
        log.stream_code("")
    with pytest.raises(ValidationError, match="Expected a non-empty str event type, got int"):
        log.type_code(5)
    with pytest.raises(TypeError, match="Expected capacity as an int, got str"):
        core.ColumnLog("1")
    with pytest.raises(ValueError, match="Expected capacity >= 0, got -1"):
        core.ColumnLog(-1)
    with pytest.raises(TypeError, match="Expected start as an int of nanoseconds or None, got float"):
        log.window(1.0, None)
    with pytest.raises(ValidationError, match="Expected end within the int64 nanosecond range"):
        log.window(None, 2**63)
    assert len(log) == 0 and log.last_seq == 0


def test_names(core: Any) -> None:
    log, s = make(core)
    assert log.stream_code("s") == s
    assert log.stream_code("other", False) == -1
    assert log.stream_code("other") == 1 and log.n_streams == 2
    assert log.type_code("t", False) == -1
    assert log.type_code("t") == 0
    assert log.stream_names() == ["s", "other"] and log.type_names() == ["t"]
    names = log.name_lists()
    log.stream_code("third")
    assert names[0][-1] == "third"


def test_evict_before_and_compaction(core: Any) -> None:
    log, s = make(core)
    log.append_columns(s, "t", np.arange(1000, dtype=np.int64), data=list(range(1000)))
    snap = log.window(None, None)
    assert log.evict_before(600) == 600
    assert len(log) == 400
    assert log.window(None, None).data() == list(range(600, 1000))
    assert log.stream_info(s) == (400, 601, 1000, 600)
    assert snap.data() == list(range(1000))
    assert log.evict_before(600) == 0
    log.compact()
    assert log.window(None, 700).data() == list(range(600, 700))
    assert log.window(None, None).pos.tolist()[:2] == [601, 602]


def test_evict_oldest_skips_dead_rows(core: Any) -> None:
    log, s = make(core)
    t = log.stream_code("t")
    for i in range(10):
        log.append_event(s if i % 2 else t, Event("e", i, timestamp=i))
    assert log.evict_oldest(s, 2) == 2  # rows 1 and 3
    assert log.window(None, None).data() == [0, 2, 4, 5, 6, 7, 8, 9]
    assert log.evict_oldest(s, 100) == 3
    assert log.stream_info(s) == (0, 0, 5, 5)
    assert log.stream_slice(s, 0).data() == []
    assert log.stream_slice(t, 1, 2).data() == [2, 4]
    assert log.since_sequence(3).data() == [4, 6, 8]
    assert log.since_sequence(0, 2).data() == [0, 2]
    with pytest.raises(ValueError, match="Expected count >= 0"):
        log.evict_oldest(s, -1)


def test_unsorted_eviction(core: Any) -> None:
    log, s = make(core)
    for ts in (50, 10, 40, 20, 30):
        log.append_event(s, Event("t", ts, timestamp=ts))
    assert log.evict_before(25) == 2
    assert log.window(None, None).data() == [30, 40, 50]
    assert log.stream_slice(s, 0).data() == [50, 40, 30]
    log.append_event(s, Event("t", 5, timestamp=5))
    assert log.window(None, None).data() == [5, 30, 40, 50]


def test_filters(core: Any) -> None:
    log, s = make(core)
    t = log.stream_code("t")
    log.append_columns(s, ["a", "b", "a"], [1, 2, 3], data=[1, 2, 3])
    log.append_columns(t, ["b", "a"], [4, 5], data=[4, 5])
    assert log.window(None, None, [t], None).data() == [4, 5]
    assert log.window(None, None, None, [log.type_code("a")]).data() == [1, 3, 5]
    assert log.window(2, None, [s], [1]).data() == [2]
    assert log.window(None, None, [], None).data() == []


def test_memory_bytes_counts_storage(core: Any) -> None:
    log, s = make(core, 1000)
    before = log.memory_bytes()
    log.append_columns(s, "t", np.arange(10_000, dtype=np.int64))
    assert log.memory_bytes() - before >= 10_000 * 33


def test_try_append_respects_fast_flag_and_mutex(core: Any) -> None:
    log, s = make(core)
    e = Event("t", 1, timestamp=1)
    log.fast = True
    assert log.try_append("s", e) == 0  # empty stream: ordinary path first
    log.append_event(s, e)
    assert log.try_append("s", e) == 2
    assert log.try_append("unknown", e) == 0
    with log.mutex:
        assert log.try_append("s", e) == 0
    log.fast = False
    assert log.try_append("s", e) == 0
    log.fast = True
    with pytest.raises(TypeError, match="Expected an Event"):
        log.try_append("s", object())
    assert log.try_append("s", e) == 3


def test_appender_falls_back(core: Any) -> None:
    log, s = make(core)
    calls: list[tuple[Any, ...]] = []

    def fallback(stream: str, *events: Any) -> int:
        calls.append((stream, len(events)))
        if events:
            return log.append_events(log.stream_code(stream), list(events))
        return 0

    ap = log.appender(fallback)
    e = Event("t", 1, timestamp=1)
    log.fast = True
    assert ap("s", e) == 1  # empty stream: fallback
    assert ap("s", e) == 2  # fast path
    assert ap(stream="s") == 0  # no events: fallback
    assert ap("s", e, e) == 4
    log.fast = False
    assert ap("s", e) == 5
    assert calls == [("s", 1), ("s", 0), ("s", 2), ("s", 1)]


@pytest.mark.stress
def test_mutex_excludes_and_works_with_condition(core: Any) -> None:
    log, s = make(core)
    m = log.mutex
    cond = threading.Condition(m)
    counter = [0]
    n_threads, per = 8, 2000
    start = threading.Barrier(n_threads)

    def work() -> None:
        start.wait(10)
        for _ in range(per):
            with m:
                v = counter[0]
                counter[0] = v + 1
            with cond:
                cond.notify_all()

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    with cond:
        assert cond.wait_for(lambda: counter[0] == n_threads * per, timeout=60)
    for t in threads:
        t.join(60)
    assert counter[0] == n_threads * per
    assert m.acquire(False) is True
    assert m.acquire(True, 0.01) is False
    m.release()


# ---------------------------------------------------------------------- differential
_op = st.one_of(
    st.tuples(st.just("event"), st.integers(0, 2), st.integers(0, 60), st.sampled_from("xyz")),
    st.tuples(st.just("columns"), st.integers(0, 2), st.lists(st.integers(0, 60), max_size=6), st.sampled_from("xyz")),
    st.tuples(st.just("evict_before"), st.integers(0, 40)),
    st.tuples(st.just("evict_oldest"), st.integers(0, 2), st.integers(0, 4)),
    st.tuples(st.just("compact"),),
)


def _run(core: Any, ops: list[tuple[Any, ...]]) -> list[Any]:
    log = core.ColumnLog(0)
    for name in ("a", "b", "c"):
        log.stream_code(name)
    out: list[Any] = []
    n = 0
    for op in ops:
        kind = op[0]
        if kind == "event":
            n += 1
            out.append(log.append_event(op[1], Event(op[3], n, id=f"id{n}", timestamp=op[2])))
        elif kind == "columns":
            k = len(op[2])
            out.append(log.append_columns(op[1], op[3], op[2], data=list(range(n + 1, n + k + 1)), ids=[f"id{n + i + 1}" for i in range(k)]))
            n += k
        elif kind == "evict_before":
            out.append(log.evict_before(op[1]))
        elif kind == "evict_oldest":
            out.append(log.evict_oldest(op[1], op[2]))
        else:
            log.compact()
    w = log.window(None, None)
    out.append((cols(w), w.data(), w.ids()))
    w = log.window(10, 40, [0, 2], [0, 1])
    out.append((cols(w), w.data()))
    for code in range(3):
        sl = log.stream_slice(code, 1, 3)
        out.append((cols(sl), log.stream_info(code)))
    out.append(cols(log.since_sequence(2, 5)))
    out.append((len(log), log.last_seq, log.time_bounds(), log.is_sorted))
    return out


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(_op, max_size=25))
def test_twins_agree(core_pair: Any, ops: list[tuple[Any, ...]]) -> None:
    c, py = core_pair
    assert _run(c, ops) == _run(py, ops)


@pytest.mark.parametrize("big", [2**63 - 1, 2**63, 2**70])
def test_slices_accept_keys_and_limits_beyond_int64(core: Any, big: int) -> None:
    # The compiled twin raised OverflowError ("Python int too large to convert to C
    # long") where the pure one returned the rows; reachable through read(cursor, limit).
    log, s = make(core)
    log.append_columns(s, "t", np.arange(3, dtype=np.int64))
    assert len(log.stream_slice(s, big)) == 0
    assert len(log.since_sequence(big)) == 0
    assert cols(log.stream_slice(s, -big)) == cols(log.stream_slice(s, 0))
    assert cols(log.since_sequence(-big)) == cols(log.since_sequence(0))
    assert log.stream_slice(s, 1, big).pos.tolist() == [2, 3]
    assert log.since_sequence(1, big).seq.tolist() == [2, 3]
    log.evict_oldest(s, 1)  # with evicted rows: the collecting path
    assert log.stream_slice(s, 0, big).pos.tolist() == [2, 3]
    assert log.since_sequence(0, big).seq.tolist() == [2, 3]


@pytest.mark.parametrize("huge", [2**63, 2**70])
def test_capacity_beyond_int64_bytes_is_a_value_error(core: Any, huge: int) -> None:
    # Was OverflowError (compiled) / numpy's "Maximum allowed dimension exceeded" (pure).
    with pytest.raises(ValueError, match=r"Expected capacity <= \d+ rows, got " + str(huge)):
        core.ColumnLog(huge)
