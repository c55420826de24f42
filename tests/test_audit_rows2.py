"""Issue 11, the AuditTrail ratio: an Emitter worker's audited batch loop runs in the
``deliver_noted`` kernel (nova/_core/audit.pyx and its twin audit_py.py), its end times
noted as C doubles in an ``array('d')``, and the writer builds no types column while
every record is ok.

What is recorded must not change: every field of every record from the batch path
equals the record of the same attempt taken by the general observed path (the trail
without its batch form), with heterogeneous listeners, failures, managed retries, dead
letters and overflow.  Kernel tests run on both twins (the ``core`` fixture); the
emitter tests run under ``NOVA_NO_EXTENSIONS=1`` too.
"""

from __future__ import annotations

import gc
import threading
import time
from array import array
from types import SimpleNamespace

import numpy as np
import pytest
from waiting import wait_until

from nova import (CircuitConfig, DeadLetterConfig, Emitter, Event, ListenerConfig, ListenerManager, MemoryStore, RetryPolicy,
                  as_listener)
from nova.observability import AuditTrail
from nova.observability.audit_rows import TYPES, columns

# -- the deliver_noted kernel ------------------------------------------------------------


class _Stop(BaseException):
    """Not an Exception: the kernel hands it back too (workers report everything)."""


def _route(*entries, all_sync=True, checked=False):
    ticks = []
    return SimpleNamespace(entries=tuple(entries), all_sync=all_sync, checked=checked,
                           wtick=lambda: ticks.append(1), ticks=ticks)


def _entry(lid, fn):
    return SimpleNamespace(call=fn, lid=lid)


def test_deliver_noted_delivers_a_batch_in_pop_order_and_notes_every_call(core):
    seen = []
    a = _route(_entry("l1", lambda ev: seen.append(("l1", ev.data))), _entry("l2", lambda ev: seen.append(("l2", ev.data))))
    d = _route(_entry("ld", lambda ev: seen.append(("ld", ev.data))))
    batch = [Event("a", 0), Event("zzz", 1), Event("a", 2)]
    evs, lids, ends = [], [], array("d")
    before = time.perf_counter()
    out = core.deliver_noted(batch, {"a": a}, d, evs, lids, ends)
    after = time.perf_counter()
    assert out == (3, None, None, None) and batch == []
    assert seen == [("l1", 2), ("l2", 2), ("ld", 1), ("l1", 0), ("l2", 0)]  # popped from the end
    assert [e.data for e in evs] == [2, 2, 1, 0, 0]
    assert lids == ["l1", "l2", "ld", "l1", "l2"]
    assert type(ends) is array and ends.typecode == "d" and len(ends) == 5
    assert before <= ends[0] and list(ends) == sorted(ends) and ends[-1] <= after  # perf_counter's clock
    assert (len(a.ticks), len(d.ticks)) == (2, 1)  # one wtick per event


def test_deliver_noted_notes_in_a_list_of_floats_too(core):
    r = _route(_entry("l", lambda ev: None))
    evs, lids, ends = [], [], []
    assert core.deliver_noted([Event("a"), Event("a")], {"a": r}, r, evs, lids, ends) == (2, None, None, None)
    assert len(evs) == 2 and lids == ["l", "l"] and all(type(t) is float for t in ends) and ends[0] <= ends[1]


@pytest.mark.parametrize("kind", ["checked", "async"])
def test_deliver_noted_returns_an_event_of_a_route_it_does_not_take(core, kind):
    called = []
    plain = _route(_entry("p", called.append))
    other = _route(_entry("o", called.append), checked=kind == "checked", all_sync=kind == "checked")
    e0, e1, e2 = Event("p", 0), Event("o", 1), Event("p", 2)
    batch = [e0, e1, e2]
    evs, lids, ends = [], [], array("d")
    out = core.deliver_noted(batch, {"p": plain, "o": other}, plain, evs, lids, ends)
    assert out[0] == 2 and out[1] is e1 and out[2] is other and out[3] is None
    assert batch == [e0]  # taken, not delivered; the rest left for the next call
    assert called == [e2] and evs == [e2] and lids == ["p"] and len(ends) == 1
    assert other.ticks == []
    assert core.deliver_noted(batch, {"p": plain, "o": other}, plain, evs, lids, ends) == (1, None, None, None)
    assert evs == [e2, e0]


@pytest.mark.parametrize("exc", [ValueError("v"), _Stop("stop")])
def test_deliver_noted_hands_back_a_failed_call_noted_and_stops_there(core, exc):
    called = []

    def bad(ev):
        called.append("bad")
        raise exc

    first, failing, after = _entry("l1", lambda ev: called.append("l1")), _entry("lb", bad), _entry("l3", called.append)
    r = _route(first, failing, after)
    e0, e1 = Event("a", 0), Event("a", 1)
    batch = [e0, e1]
    evs, lids, ends = [], [], array("d")
    taken, ev, route, failed = core.deliver_noted(batch, {"a": r}, r, evs, lids, ends)
    assert (taken, ev, route) == (1, e1, r) and failed[0] is failing and failed[1] is exc
    assert called == ["l1", "bad"]  # the entry after the failing one is not called
    assert evs == [e1, e1] and lids == ["l1", "lb"] and len(ends) == 2  # the failed call is noted
    assert batch == [e0] and len(r.ticks) == 1


def test_deliver_noted_hands_back_a_routing_error(core):
    class Broken:
        @property
        def type(self):
            raise LookupError("no type")

    r = _route(_entry("l", lambda ev: None))
    b = Broken()
    evs, lids, ends = [], [], array("d")
    taken, ev, route, failed = core.deliver_noted([b], {"a": r}, r, evs, lids, ends)
    assert (taken, ev, route) == (1, b, None) and failed[0] is None and isinstance(failed[1], LookupError)
    assert evs == [] and lids == [] and len(ends) == 0


@pytest.mark.parametrize(
    "args, msg",
    [
        (((), {}, None, [], [], array("d")), "Expected batch as a list, got tuple"),
        (([], [], None, [], [], array("d")), "Expected routes as a dict, got list"),
        (([], {}, None, (), [], array("d")),
         "Expected events and listener_ids as lists and ends as a list or an array('d'), got tuple, list, array('d')"),
        (([], {}, None, [], [], array("f")),
         "Expected events and listener_ids as lists and ends as a list or an array('d'), got list, list, array('f')"),
        (([], {}, None, [], [], ()),
         "Expected events and listener_ids as lists and ends as a list or an array('d'), got list, list, tuple"),
    ],
)
def test_deliver_noted_bad_arguments_take_nothing(core, args, msg):
    batch = [Event("a")]
    args = (batch if args[0] == [] else args[0], *args[1:])
    with pytest.raises(TypeError) as info:
        core.deliver_noted(*args)
    assert str(info.value) == msg
    assert args[0] is not batch or len(batch) == 1


def test_note_call_takes_an_array_of_doubles(core):
    evs, lids, ends = [], [], array("d")
    e = Event("x")
    core.note_call(evs, lids, ends, e, "l")
    core.note_call(evs, lids, ends, e, "m")
    assert evs == [e, e] and lids == ["l", "m"] and len(ends) == 2 and ends[0] <= ends[1]
    with pytest.raises(TypeError, match=r"got list, list, array\('i'\)$"):
        core.note_call(evs, lids, array("i"), e, "l")
    assert len(evs) == 2


def test_deliver_noted_twins_agree(core_pair):
    c, py = core_pair
    out = []
    for impl in (c, py):
        log = []

        def bad(ev, log=log):
            log.append(("bad", ev.data))
            if ev.data % 5 == 0:
                raise KeyError(ev.data)

        a = _route(_entry("l1", lambda ev, log=log: log.append(("l1", ev.data))), _entry("lb", bad))
        o = _route(_entry("o", lambda ev: None), checked=True)
        batch = [Event("o" if i % 7 == 0 else "a", i) for i in range(1, 60)]
        evs, lids, ends = [], [], array("d")
        steps = []
        while True:
            taken, ev, route, failed = impl.deliver_noted(batch, {"a": a, "o": o}, a, evs, lids, ends)
            steps.append((taken, None if ev is None else ev.data, route is o,
                          None if failed is None else (failed[0].lid, repr(failed[1]))))
            if ev is None:
                break
        out.append((steps, log, [e.data for e in evs], lids, len(ends), len(a.ticks)))
    assert out[0] == out[1]


# -- call_rows with an array of doubles --------------------------------------------------


def test_call_rows_reads_an_array_of_doubles_exactly_as_a_list(core):
    t = 5000.0
    run_list, run_arr = [], []
    for b in range(4):
        evs = [Event(f"t{i % 2}", i, id=f"e{b}-{i}") for i in range(9)]
        lids = [f"l{i % 3}" for i in range(9)]
        ends = [t + (i + 1) * 1.25e-6 + b * 1e-3 for i in range(9)]
        start = t + b * 1e-3
        run_list.append((start, evs, lids, ends, None))
        run_arr.append((start, evs, lids, array("d", ends), None))
    rl, ra = [], []
    tl = core.call_rows(run_list, 1_700_000_000_000_000_000, 4999.0, rl)
    ta = core.call_rows(run_arr, 1_700_000_000_000_000_000, 4999.0, ra)
    assert rl == ra and len(ra) == 36
    assert tl.tolist() == ta.tolist()
    with pytest.raises(TypeError, match=r"^Expected ends as a list or an array\('d'\), got array\('l'\)$"):
        core.call_rows([(t, [], [], array("l"), None)], 0, 0.0, [])


# -- columns: the types column -----------------------------------------------------------


def _items(pattern):
    """Buffered items: 'B' an ok call batch, 'E' a call batch with a failed call, 'o' an
    ok record, 'x' a record of outcome error, 'r' retry_scheduled."""
    t = 100.0
    items = []
    for k, p in enumerate(pattern):
        if p in "BE":
            evs = [Event("a", i, id=f"{k}-{i}") for i in range(3)]
            ends = array("d", [t + 1e-6, t + 2e-6, t + 3e-6])
            errors = [(1, ValueError("v"))] if p == "E" else None
            items.append((t, evs, ["l1", "l2", "l3"], ends, errors))
        else:
            ev = Event("b", k, id=f"s{k}")
            outcome = {"o": "ok", "x": "error", "r": "retry_scheduled"}[p]
            tok = [t, ev, "ls", "b", None, None, 1, "app"]
            items.append((tok, 1e-6, None if p == "o" else RuntimeError("r"), outcome))
        t += 1e-3
    return items


def _outcome(row):
    return "ok" if len(row) == 4 else row[7]


@pytest.mark.parametrize("pattern", ["B", "BB", "o", "oBo", "Bx", "xB", "BBr", "oE", "EB", "BoBEBxo", "rrB", "BEo"])
def test_columns_types_match_every_row(pattern):
    items = _items(pattern)
    types, ts, rows = columns(items, 1_000, 0.0)
    n = sum(len(i[3]) if len(i) == 5 else 1 for i in items)
    assert len(rows) == len(ts) == n
    outcomes = [_outcome(r) for r in rows]
    if isinstance(types, str):
        assert types == TYPES["ok"] and set(outcomes) == {"ok"}
    else:
        assert types == [TYPES[o] for o in outcomes]
        assert set(outcomes) != {"ok"} or "E" in pattern
    assert ts.tolist() == sorted(ts.tolist())


# -- the records themselves: batch path == general path ------------------------------------


class _Unbatched(AuditTrail):
    """The trail without its batch form: an Emitter observes each call with begin/end."""

    record_calls = None  # type: ignore[assignment]


def _fields(r):
    # every field but the two clock readings (timestamp, duration), checked apart
    return (r.event_id, r.event_type, r.destination, r.partition, r.listener, r.group, r.attempt, r.outcome,
            r.error_type, r.error_message, r.component)


def _workload(trail_cls, middleware=False):
    """An Emitter with heterogeneous routes (plain functions with a failing one, a
    Listener object, an async listener, a managed listener with retries and a dead
    letter) and a fixed stream of events; returns the records of every event."""
    store = MemoryStore()
    trail = trail_cls(store)
    dead = []
    mgr = ListenerManager()
    em = Emitter(workers=2, buffer_size=16, error_policy="continue", on_error=lambda e, x, l: None)

    def ok(ev):
        return None

    def sometimes(ev):
        if ev.data % 4 == 0:
            raise ValueError(f"bad {ev.data}")

    class Obj:
        id = "obj"

        def handle(self, ev):
            return None

    async def aok(ev):
        return None

    def always(ev):
        raise OSError(f"down {ev.data}")

    managed = mgr.register(always, ListenerConfig(retry=RetryPolicy(max_attempts=2, initial_delay=0, backoff="fixed"),
                                                  circuit=CircuitConfig(failure_threshold=10**6),
                                                  dead_letter=DeadLetterConfig(handler=dead.append)))
    trail.attach(em)
    trail.attach(mgr)
    # the path under test: the batch form is taken (or not) by the Emitter's workers
    assert (em._d.record_calls is not None) == (trail_cls is AuditTrail)
    if middleware:
        em.use(lambda ev, call_next: call_next(ev))
    em.subscribe("a", ok)
    em.subscribe("a", sometimes)
    em.subscribe("a", ok)
    em.subscribe("b", Obj())
    em.subscribe("c", aok)
    em.subscribe("d", managed)
    kinds = "aaabacaadaab"
    evs = [Event(kinds[i % len(kinds)], i, id=f"ev-{i}") for i in range(240)]
    for ev in evs:
        assert em.emit_async(ev)
    assert em.drain(20)
    n_dead = sum(1 for e in evs if e.type == "d")
    wait_until(lambda: len(dead) >= n_dead, f"{n_dead} dead letters")
    assert len(dead) == n_dead
    assert mgr.wait_idle(10)
    assert trail.flush(20)
    out = {ev.id: trail.history(ev.id) for ev in evs}
    st = trail.stats()
    em.shutdown()
    mgr.stop()
    trail.close()
    store.close()
    return out, st, [(e.id, e.type, e.data) for e in evs]


@pytest.mark.parametrize("middleware", [False, True])
def test_batch_path_records_equal_the_general_paths_field_by_field(middleware):
    batched, st_b, evs = _workload(AuditTrail, middleware)
    general, st_g, _ = _workload(_Unbatched, middleware)
    assert (st_b.overflowed, st_b.lost, st_b.pending) == (0, 0, 0)
    assert (st_b.accepted, st_b.written) == (st_g.accepted, st_g.written)
    outcomes = set()
    for eid, etype, data in evs:
        hb, hg = batched[eid], general[eid]
        assert [_fields(r) for r in hb] == [_fields(r) for r in hg], eid
        assert hb, eid
        for r in hb:
            outcomes.add(r.outcome)
            assert type(r.duration) is float and r.duration >= 0 and type(r.timestamp) is int
        assert [r.timestamp for r in hb] == sorted(r.timestamp for r in hb)
        if etype == "a":
            assert [r.outcome for r in hb] == ["ok", "error" if data % 4 == 0 else "ok", "ok"]
    assert {"ok", "error", "retry_scheduled", "dead_lettered"} <= outcomes


def test_batch_path_overflow_counts_exactly_and_keeps_the_first_records():
    """A full buffer (drop) keeps what fits of a worker's batch and counts the rest;
    every accepted record is written with all its fields."""
    gate, entered = threading.Event(), threading.Event()

    class SlowStore(MemoryStore):
        def append_columns(self, *a, **k):
            entered.set()
            gate.wait(10)
            return super().append_columns(*a, **k)

    s = SlowStore()
    trail = AuditTrail(s, buffer_size=6, batch_size=2)
    evs = [Event("x", i, id=f"x{i}") for i in range(5)]
    t = time.perf_counter()
    trail.record_calls(t, evs[:2], ["l", "l"], array("d", [t + 1e-6, t + 2e-6]))
    assert entered.wait(10)
    trail.record_calls(t, list(evs), ["m"] * 5, array("d", [t + i * 1e-6 for i in range(1, 6)]), [(2, KeyError("k"))])
    trail.record_calls(t, list(evs), ["n"] * 5, array("d", [t + i * 1e-6 for i in range(1, 6)]), [(0, KeyError("z"))])
    st = trail.stats()
    assert (st.accepted, st.overflowed) == (2 + 5 + 1, 4)
    gate.set()
    assert trail.close(10)
    st = trail.stats()
    assert (st.written, st.pending, st.lost) == (8, 0, 0)
    got = sorted((r.listener, r.event_id, r.outcome, r.error_type, r.error_message) for e in evs for r in trail.history(e.id))
    assert got == sorted([("l", "x0", "ok", None, None), ("l", "x1", "ok", None, None)]
                         + [("m", f"x{i}", "error" if i == 2 else "ok", "KeyError" if i == 2 else None,
                             "'k'" if i == 2 else None) for i in range(5)]
                         + [("n", "x0", "error", "KeyError", "'z'")])
    for e in evs:
        for r in trail.history(e.id):
            assert r.duration == pytest.approx(1e-6, abs=1e-7)
            assert (r.destination, r.partition, r.group, r.attempt, r.component) == ("x", None, None, 1, "emitter")
    s.close()


def test_concurrent_emitters_threads_exact_counts_every_record():
    store = MemoryStore()
    trail = AuditTrail(store, batch_size=64)
    em = Emitter(workers=4, buffer_size=32)
    trail.attach(em)
    counts = [0, 0]
    lock = threading.Lock()

    def one(ev):
        with lock:
            counts[0] += 1

    def two(ev):
        with lock:
            counts[1] += 1

    em.subscribe("t", one)
    em.subscribe("t", two)
    per = 2000

    def produce(k):
        for i in range(per):
            em.emit_async(Event("t", i, id=f"p{k}-{i}"))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert em.drain(30) and trail.flush(30)
    st = trail.stats()
    assert counts == [3 * per, 3 * per]
    assert (st.accepted, st.written, st.overflowed, st.lost, st.pending) == (6 * per, 6 * per, 0, 0, 0)
    batch = trail.window()
    assert len(batch) == 6 * per
    lids = [as_listener(one).id, as_listener(two).id]
    by_event: dict[str, list[str]] = {}
    for d in batch.data:
        assert (d["outcome"], d["attempt"], d["component"], d["destination"]) == ("ok", 1, "emitter", "t")
        by_event.setdefault(d["event_id"], []).append(d["listener"])
    assert len(by_event) == 3 * per and all(sorted(v) == sorted(lids) for v in by_event.values())
    assert np.all(np.diff(batch.timestamps) >= 0)
    em.shutdown()
    trail.close()
    store.close()


def test_call_rows_consecutive_calls_of_one_event_and_gc_tracking(core):
    """The compiled twin reads an event's id and type once for its consecutive calls:
    rows stay exact when events repeat, alternate, or hold non-str ids (such a row
    stays tracked by the collector; rows of strings and a float end up untracked)."""
    e1, e2 = Event("a", 1, id="one"), Event("b", 2, id="two")
    odd = SimpleNamespace(id=["not", "a", "str"], type="c")
    seq = [e1, e1, e2, e1, odd, odd, e2, e2, e1]
    t = 10.0
    ends = array("d", [t + (i + 1) * 1e-6 for i in range(len(seq))])
    lids = [f"l{i}" for i in range(len(seq))]
    rows: list = []
    core.call_rows([(t, list(seq), lids, ends, None)], 0, 0.0, rows)
    assert [(r[0], r[1], r[2]) for r in rows] == [(e.id, e.type, lid) for e, lid in zip(seq, lids)]
    starts = [t, *ends[:-1]]
    assert [r[3] for r in rows] == [end - s for s, end in zip(starts, ends)]
    gc.collect()
    assert [gc.is_tracked(r) for r in rows] == [e is odd for e in seq]


def test_deliver_noted_alternating_routes_call_and_note_each_routes_own_entries(core):
    """The compiled twin reads a route's entries once per route per call: events that
    switch between routes (and the default) still reach exactly their route's
    listeners, in order, each tick counted on its own route."""
    log = []
    a = _route(_entry("a1", lambda ev: log.append(("a1", ev.data))), _entry("a2", lambda ev: log.append(("a2", ev.data))))
    b = _route(_entry("b1", lambda ev: log.append(("b1", ev.data))))
    d = _route()  # the default with no listeners: ticked, nothing called
    kinds = ["a", "b", "a", "a", "x", "b", "a", "x", "x", "b"]
    batch = [Event(k, i) for i, k in enumerate(kinds)]
    evs, lids, ends = [], [], array("d")
    assert core.deliver_noted(batch, {"a": a, "b": b}, d, evs, lids, ends) == (10, None, None, None)
    want = []
    for i in reversed(range(10)):
        want += {"a": [("a1", i), ("a2", i)], "b": [("b1", i)], "x": []}[kinds[i]]
    assert log == want
    assert lids == [w[0] for w in want] and [e.data for e in evs] == [w[1] for w in want] and len(ends) == len(want)
    assert (len(a.ticks), len(b.ticks), len(d.ticks)) == (4, 3, 3)
