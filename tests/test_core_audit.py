"""The ``call_rows`` kernel (nova/_core/audit.pyx and its twin audit_py.py): the short
rows an AuditTrail stores for an Emitter worker's successful calls, their start
timestamps, bad input (clear errors, nothing appended), and the two twins agreeing
bit for bit."""

from __future__ import annotations

import gc
import random
import time

import numpy as np
import pytest

from nova import Event
from nova.observability.audit_rows import FIELDS, as_dict, as_record


def _run(seed: int, batches: int, per: int) -> list[tuple]:
    rng = random.Random(seed)
    t = 1000.0 + rng.random()
    run = []
    for b in range(batches):
        start = t
        evs, lids, ends = [], [], []
        for i in range(per):
            t += rng.random() * 1e-5
            evs.append(Event(f"t{i % 3}", i, id=f"id-{b}-{i}"))
            lids.append(f"l{i % 2}")
            ends.append(t)
        run.append((start, evs, lids, ends, None))
        t += 1e-6
    return run


def test_rows_and_timestamps(core):
    run = _run(1, 3, 5)
    rows: list = ["before"]
    ts = core.call_rows(run, 1_700_000_000_000_000_000, 1000.0, rows)
    assert rows[0] == "before" and len(rows) == 16
    assert ts.dtype == np.int64 and ts.shape == (15,)
    k = 0
    for start, evs, lids, ends, _ in run:
        prev = start
        for ev, lid, end in zip(evs, lids, ends):
            assert rows[1 + k] == (ev.id, ev.type, lid, end - prev)
            assert ts[k] == 1_700_000_000_000_000_000 + int((prev - 1000.0) * 1e9)
            prev = end
            k += 1
    assert all(type(r[3]) is float for r in rows[1:])


def test_empty_run_and_empty_batches(core):
    rows: list = []
    assert core.call_rows([], 5, 0.0, rows).tolist() == [] and rows == []
    run = [(1.0, [], [], [], None)] + _run(2, 1, 2) + [(9.0, [], [], [], None)]
    ts = core.call_rows(run, 0, 0.0, rows)
    assert len(rows) == len(ts) == 2
    assert rows[0][3] == run[1][3][0] - run[1][0]


def test_twins_agree_exactly(core_pair):
    c, py = core_pair
    run = _run(3, 40, 64)
    rc: list = []
    rp: list = []
    tc = c.call_rows(run, 1_733_000_000_123_456_789, 999.5, rc)
    tp = py.call_rows(run, 1_733_000_000_123_456_789, 999.5, rp)
    assert rc == rp  # durations compared as exact floats
    assert tc.tolist() == tp.tolist()


@pytest.mark.parametrize(
    "run, rows, exc, msg",
    [
        ((), [], TypeError, "Expected run as a list of call batches, got tuple"),
        ([], (), TypeError, "Expected rows as a list, got tuple"),
        ([[1.0, [], [], []]], [], TypeError, "Expected a call batch (start, events, listener_ids, ends, ...), got list"),
        ([(1.0, [], [])], [], TypeError, "Expected a call batch (start, events, listener_ids, ends, ...), got tuple"),
        ([(1, [], [], [], None)], [], TypeError, "Expected start as a float (a perf_counter reading), got int"),
        ([(1.0, (), [], [], None)], [], TypeError, "Expected events as a list, got tuple"),
        ([(1.0, [], [], (), None)], [], TypeError, "Expected ends as a list or an array('d'), got tuple"),
        ([(1.0, [Event("x")], [], [2.0], None)], [], ValueError,
         "Expected events, listener_ids and ends of one length, got 1, 0, 1"),
    ],
)
def test_bad_arguments(core, run, rows, exc, msg):
    with pytest.raises(exc) as info:
        core.call_rows(run, 0, 0.0, rows)
    assert str(info.value) == msg


def test_a_bad_value_mid_run_appends_nothing(core):
    run = _run(4, 2, 3)
    run[1][3][1] = 5  # an int end, not a perf_counter reading
    rows: list = ["keep"]
    with pytest.raises(TypeError, match=r"^Expected ends as floats \(perf_counter readings\), got int$"):
        core.call_rows(run, 0, 0.0, rows)
    assert rows == ["keep"]
    run = _run(5, 2, 3)
    run[1][1][2] = object()  # not an Event: no id
    with pytest.raises(AttributeError):
        core.call_rows(run, 0, 0.0, rows)
    assert rows == ["keep"]


def test_short_rows_read_back_as_full_records(core):
    run = _run(6, 1, 2)
    rows: list = []
    ts = core.call_rows(run, 10**18, 1000.0, rows)
    ev = run[0][1][0]
    r = as_record(rows[0], int(ts[0]))
    assert r == (ev.id, ev.type, ev.type, None, "l0", None, 1, "ok", rows[0][3], None, None, int(ts[0]), "emitter")
    assert as_record(list(rows[0]), 7).timestamp == 7  # a list after a JSON round trip
    d = as_dict(rows[1], int(ts[1]))
    assert list(d) == list(FIELDS) and d["listener"] == "l1" and d["timestamp"] == int(ts[1])
    assert as_record((1, 2, 3)) is None and as_dict((1, 2, 3)) == (1, 2, 3)


def test_note_call_reads_the_perf_counter_clock(core):
    evs: list = []
    lids: list = []
    ends: list = []
    ev = Event("x")
    before = time.perf_counter()
    core.note_call(evs, lids, ends, ev, "l1")
    core.note_call(evs, lids, ends, ev, "l2")
    after = time.perf_counter()
    assert evs == [ev, ev] and lids == ["l1", "l2"]
    assert all(type(t) is float for t in ends)
    assert before <= ends[0] <= ends[1] <= after  # the same clock as perf_counter
    rows: list = []
    ts = core.call_rows([(before, evs, lids, ends, None)], 0, 0.0, rows)
    assert [r[2] for r in rows] == ["l1", "l2"] and len(ts) == 2


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_note_call_bad_lists_append_nothing(core, bad):
    lists: list = [[], [], []]
    lists[bad] = ()
    with pytest.raises(TypeError) as info:
        core.note_call(*lists, Event("x"), "l")
    names = ["list", "list", "list"]
    names[bad] = "tuple"
    assert str(info.value) == ("Expected events and listener_ids as lists and ends as a list or an array('d'), got "
                               + ", ".join(names))
    assert all(x in ([], ()) for x in lists)


def test_rows_of_strings_and_a_float_end_up_untracked_by_the_gc(core):
    # the compiled twin untracks them when made, the pure one's tuples are untracked
    # by the collector's first pass: either way a long trail adds nothing to collections
    run = _run(7, 2, 4)
    run[1][2][3] = ["not a str"]  # a row holding a list stays tracked
    rows: list = []
    core.call_rows(run, 0, 0.0, rows)
    gc.collect()
    assert [gc.is_tracked(r) for r in rows] == [False] * 7 + [True]
