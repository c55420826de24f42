"""What both ColumnLog twins now take from nova._core._columns_common (name tables,
limit and slice-argument checks, the alive mask, window filters, chunked alive-row
collection, tombstoning, the time index after compaction), checked through each twin
against a plain-Python model of the log."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova._core import _columns_common as common
from nova.errors import ValidationError
from nova.events import Event

TYPES = ("a", "b", "c")

op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 2), st.sampled_from(TYPES), st.integers(0, 60)),
    st.tuples(st.just("evict_before"), st.integers(0, 60)),
    st.tuples(st.just("evict_oldest"), st.integers(0, 2), st.integers(0, 4)),
    st.tuples(st.just("compact")),
)


class Model:
    """Every row ever appended: [seq, ts, stream, type, pos, data, alive]."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.last_pos = [0, 0, 0]

    def append(self, c: int, t: str, ts: int, data: int) -> None:
        self.last_pos[c] += 1
        self.rows.append([len(self.rows) + 1, ts, c, t, self.last_pos[c], data, True])

    def alive(self) -> list[list[Any]]:
        return [r for r in self.rows if r[6]]

    def evict_before(self, cutoff: int) -> int:
        gone = [r for r in self.alive() if r[1] < cutoff]
        for r in gone:
            r[6] = False
        return len(gone)

    def evict_oldest(self, c: int, count: int) -> int:
        gone = sorted((r for r in self.alive() if r[2] == c), key=lambda r: r[4])[:count]
        for r in gone:
            r[6] = False
        return len(gone)


def run(core: Any, ops: list[tuple[Any, ...]]) -> tuple[Any, Model]:
    log = core.ColumnLog(0)
    codes = [log.stream_code(f"s{i}") for i in range(3)]
    assert codes == [0, 1, 2]
    model = Model()
    for n, o in enumerate(ops):
        if o[0] == "append":
            _, c, t, ts = o
            log.append_event(c, Event(t, n, timestamp=ts))
            model.append(c, t, ts, n)
        elif o[0] == "evict_before":
            assert log.evict_before(o[1]) == model.evict_before(o[1])
        elif o[0] == "evict_oldest":
            assert log.evict_oldest(o[1], o[2]) == model.evict_oldest(o[1], o[2])
        else:
            log.compact()
    return log, model


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(op, max_size=40), start=st.integers(0, 60), span=st.integers(0, 60),
       streams=st.none() | st.lists(st.integers(0, 2), max_size=2),
       types=st.none() | st.lists(st.sampled_from(TYPES), max_size=2))
def test_windows_match_the_model(core: Any, ops: list[tuple[Any, ...]], start: int, span: int,
                                 streams: list[int] | None, types: list[str] | None) -> None:
    log, model = run(core, ops)
    tcodes = None if types is None else [log.type_code(t, create=False) for t in types]
    got = log.window(start, start + span, streams, tcodes).data()
    want = [r[5] for r in sorted(model.alive(), key=lambda r: (r[1], r[0]))
            if start <= r[1] < start + span and (streams is None or r[2] in streams)
            and (types is None or r[3] in types)]
    assert got == want
    assert len(log) == len(model.alive())


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(op, max_size=40), code=st.integers(0, 2), after=st.integers(0, 20),
       limit=st.none() | st.integers(0, 8))
def test_stream_slices_and_sequence_reads_match_the_model(core: Any, ops: list[tuple[Any, ...]], code: int,
                                                          after: int, limit: int | None) -> None:
    log, model = run(core, ops)
    alive = model.alive()
    by_pos = [r[5] for r in sorted(alive, key=lambda r: r[4]) if r[2] == code and r[4] > after]
    assert log.stream_slice(code, after, limit).data() == by_pos[:limit]
    by_seq = [r[5] for r in alive if r[0] > after]
    assert log.since_sequence(after, limit).data() == by_seq[:limit]


def test_compaction_of_a_late_log_sorts_it_again_or_keeps_its_index(core: Any) -> None:
    log = core.ColumnLog(0)
    s = log.stream_code("s")
    for ts in (5, 1, 4, 2, 3):
        log.append_event(s, Event("t", ts, timestamp=ts))
    assert not log.is_sorted
    log.evict_oldest(s, 1)  # ts 5: the kept rows 1, 4, 2, 3 are still out of order
    log.compact()
    assert not log.is_sorted
    assert log.window(None, None).data() == [1, 2, 3, 4]
    log.evict_oldest(s, 2)  # ts 1 and 4: the kept rows 2, 3 are in order
    log.compact()
    assert log.is_sorted
    assert log.window(2, None).data() == [2, 3]
    log.append_event(s, Event("t", 0, timestamp=0))
    assert log.window(None, None).data() == [0, 2, 3]


def test_name_tables(core: Any) -> None:
    log = core.ColumnLog(0)
    assert log.stream_code("x", create=False) == -1
    assert log.stream_code("x") == 0 and log.stream_code("y") == 1 and log.stream_code("x") == 0
    assert log.stream_names() == ["x", "y"]
    assert log.type_code("t", create=False) == -1
    assert log.type_code("t") == 0 and log.type_code("t", create=False) == 0
    for bad, got in (("", "''"), (3, "int"), ([], "list"), (None, "NoneType")):
        with pytest.raises(ValidationError, match=rf"^Expected a non-empty str stream name, got {got}$"):
            log.stream_code(bad)
        with pytest.raises(ValidationError, match=rf"^Expected a non-empty str event type, got {got}$"):
            log.type_code(bad, create=False)
    index: dict[str, int] = {}
    names: list[str] = []
    assert common.name_code(index, names, "p", "thing", True) == 0
    assert common.name_code(index, names, "q", "thing", False) == -1
    assert (index, names) == ({"p": 0}, ["p"])
    with pytest.raises(ValidationError, match=r"^Expected a non-empty str thing, got bytes$"):
        common.name_code(index, names, b"p", "thing", True)


def test_argument_checks_of_slices_and_limits(core: Any) -> None:
    log = core.ColumnLog(0)
    s = log.stream_code("s")
    log.append_columns(s, "t", np.arange(5, dtype=np.int64), data=list(range(5)))
    for call in (lambda: log.stream_slice(s, 0, -1), lambda: log.since_sequence(0, -2)):
        with pytest.raises(ValueError, match=r"^Expected limit >= 0 or None, got -\d$"):
            call()
    ws = type(log.window(None, None))
    assert ws(log, 1, 3, None).data() == [1, 2]
    assert ws(log, np.int64(0), 1, None).data() == [0]
    assert ws(log, 0, 0, [4, 0]).data() == [4, 0]
    with pytest.raises(ValueError, match=r"^Expected rows lo, hi with 0 <= lo <= hi <= 5, got 3, 2$"):
        ws(log, 3, 2, None)
    with pytest.raises(ValueError, match=r"^Expected rows lo, hi with 0 <= lo <= hi <= 5, got True, 2$"):
        ws(log, True, 2, None)
    with pytest.raises(ValueError, match=r"^Expected row indexes in \[0, 5\), got values in \[0, 5\]$"):
        ws(log, 0, 0, [0, 5])


def test_collect_alive_reads_in_doubling_chunks_up_to_the_limit() -> None:
    flags = np.zeros(300, dtype=np.uint8)
    flags[::2] = common.FLAG_DEAD  # every even row is dead
    index = np.arange(299, -1, -1, dtype=np.int64)  # newest first
    got = common.collect_alive(index, 0, 300, 5, 0, flags, 150)
    assert got.tolist() == [299, 297, 295, 293, 291]
    assert common.collect_alive(None, 10, 20, None, 15, flags, 150).tolist() == [15, 17, 19]
    assert common.collect_alive(None, 10, 20, 0, 0, flags, 0).tolist() == []
    assert common.collect_alive(None, 0, 3, 10, 0, flags, 0).tolist() == [0, 1, 2]  # nothing dead: no mask
    assert common.kill_rows(flags, np.array([2, 0, 2, 1], dtype=np.int32), np.array([1, 3]), 3) == [(0, 1), (1, 1)]
    assert int(flags[1]) == int(flags[3]) == common.FLAG_DEAD
