"""Issue 16 part 4, the cheap recording path: an Emitter's workers hand an AuditTrail
their calls in batches (``record_calls``), the writer stores each record as a row in
FIELDS order, and the queries read rows (and the dicts older versions stored) back.

Both twins: the suite runs under ``NOVA_NO_EXTENSIONS=1`` too (the emitter's buffer is
the RingQueue kernel, the MemoryStore the ColumnLog kernel).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nova import Bus, Emitter, Event, MemoryStore, SQLiteStore, as_listener
from nova.observability import AuditTrail
from nova.observability.audit import FIELDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store():
    s = MemoryStore()
    yield s
    s.close()


def test_worker_batches_record_every_call_in_order(store):
    trail = AuditTrail(store)
    em = Emitter(workers=4, buffer_size=64, name="w")
    trail.attach(em)
    first, second = [], []
    em.subscribe("tick", first.append)
    em.subscribe("tick", second.append)
    events = [Event("tick", i) for i in range(3000)]
    for ev in events:
        assert em.emit_async(ev)
    assert em.drain(20)
    assert trail.flush(20)
    st = trail.stats()
    assert (st.accepted, st.written, st.overflowed, st.lost, st.pending) == (6000, 6000, 0, 0, 0)
    assert len(first) == len(second) == 3000
    lid1, lid2 = as_listener(first.append).id, as_listener(second.append).id
    for ev in events[::97]:
        h = trail.history(ev.id)
        assert [r.listener for r in h] == [lid1, lid2]  # subscription order
        for r in h:
            assert (r.event_id, r.event_type, r.destination, r.outcome) == (ev.id, "tick", "tick", "ok")
            assert (r.partition, r.group, r.attempt, r.component) == (None, None, 1, "emitter")
            assert (r.error_type, r.error_message) == (None, None)
            assert r.duration >= 0
        assert h[0].timestamp <= h[1].timestamp
        assert h[0].timestamp + int(h[0].duration * 1e9) <= h[1].timestamp + 1
    batch = trail.window()
    assert len(batch) == 6000
    assert all(set(d) == set(FIELDS) for d in batch.data)
    assert sorted(d["timestamp"] for d in batch.data) == list(batch.timestamps)
    em.shutdown()
    trail.close()


def test_worker_failures_and_general_path_events_are_recorded(store):
    """A failing call in a worker batch is recorded ``error`` with its exception, the
    calls after it (the general path) too; events of a route the batch path does not
    take (a Listener object) interleave without losing or reordering records."""
    trail = AuditTrail(store)
    em = Emitter(workers=2, error_policy="continue", on_error=lambda e, x, l: None)
    trail.attach(em)
    calls = []

    def ok(ev):
        calls.append(ev)

    def bad(ev):
        if ev.data % 3 == 0:
            raise ValueError(f"bad {ev.data}")

    class Obj:
        id = "obj"

        def handle(self, ev):
            calls.append(ev)

    em.subscribe("a", ok)
    em.subscribe("a", bad)
    em.subscribe("a", ok)
    em.subscribe("b", Obj())
    evs = [Event("a" if i % 4 else "b", i) for i in range(400)]
    for ev in evs:
        em.emit_async(ev)
    assert em.drain(20)
    assert trail.flush(20)
    n_a = sum(1 for e in evs if e.type == "a")
    n_fail = sum(1 for e in evs if e.type == "a" and e.data % 3 == 0)
    s = em.stats()
    assert (s.emitted, s.processed, s.failed) == (400, 3 * n_a + (400 - n_a) - n_fail, n_fail)
    st = trail.stats()
    assert st.accepted == st.written == 3 * n_a + (400 - n_a)
    lid_ok, lid_bad = as_listener(ok).id, as_listener(bad).id
    for ev in evs:
        h = trail.history(ev.id)
        if ev.type == "b":
            assert [(r.listener, r.outcome) for r in h] == [("obj", "ok")]
            continue
        failed = ev.data % 3 == 0
        assert [(r.listener, r.outcome) for r in h] == [(lid_ok, "ok"), (lid_bad, "error" if failed else "ok"),
                                                         (lid_ok, "ok")]
        assert [r.timestamp for r in h] == sorted(r.timestamp for r in h)
        if failed:
            assert (h[1].error_type, h[1].error_message) == ("ValueError", f"bad {ev.data}")
    em.shutdown()
    trail.close()


def test_record_calls_drop_overflow_counts_the_rest_exactly(store):
    gate, entered = threading.Event(), threading.Event()

    class SlowStore(MemoryStore):
        def append_columns(self, *a, **k):
            entered.set()
            gate.wait(10)
            return super().append_columns(*a, **k)

    s = SlowStore()
    trail = AuditTrail(s, buffer_size=5, batch_size=2)
    evs = [Event("x", i) for i in range(4)]
    t = time.perf_counter()
    trail.record_calls(t, evs[:2], ["l", "l"], [t + 1e-6, t + 2e-6])  # the writer takes these, blocks
    assert entered.wait(10)  # the writer took them and waits in the store
    trail.record_calls(t, list(evs), ["l"] * 4, [t + i * 1e-6 for i in range(1, 5)], [(1, KeyError("k"))])
    trail.record_calls(t, list(evs), ["m"] * 4, [t + i * 1e-6 for i in range(1, 5)], [(0, ValueError("v")), (3, OSError())])
    st = trail.stats()
    # 2 taken by the writer, 4 buffered, then room for 1 of the next 4
    assert (st.accepted, st.overflowed) == (7, 3)
    gate.set()
    assert trail.close(10)
    st = trail.stats()
    assert (st.written, st.pending, st.lost) == (7, 0, 0)
    rows = [r for e in evs for r in trail.history(e.id)]
    assert sorted((r.listener, r.event_id, r.outcome, r.error_type) for r in rows) == sorted(
        [("l", evs[0].id, "ok", None), ("l", evs[1].id, "ok", None),
         ("l", evs[0].id, "ok", None), ("l", evs[1].id, "error", "KeyError"), ("l", evs[2].id, "ok", None),
         ("l", evs[3].id, "ok", None),
         ("m", evs[0].id, "error", "ValueError")])
    for r in rows:
        assert r.duration == pytest.approx(1e-6, abs=1e-7)
    s.close()


def test_worker_batches_with_block_overflow_keep_everything(store):
    trail = AuditTrail(store, buffer_size=8, batch_size=4, overflow="block")
    em = Emitter(workers=4, buffer_size=32)
    trail.attach(em)
    em.subscribe("t", lambda ev: None)
    for i in range(5000):
        em.emit_async(Event("t", i))
    assert em.drain(30)
    assert trail.flush(30)
    st = trail.stats()
    assert (st.accepted, st.written, st.overflowed) == (5000, 5000, 0)
    em.shutdown()
    trail.close()


def test_a_raising_batch_observer_never_stops_delivery(store, caplog):
    class Broken(AuditTrail):
        def record_calls(self, *a, **k):
            raise RuntimeError("observer broke")

    trail = Broken(store)
    em = Emitter(workers=2)
    trail.attach(em)
    seen = []
    em.subscribe("t", seen.append)
    with caplog.at_level(logging.ERROR, logger="nova.observability"):
        for i in range(200):
            em.emit_async(Event("t", i))
        assert em.drain(10)
    assert len(seen) == 200
    s = em.stats()
    assert (s.processed, s.failed) == (200, 0)
    assert "failed in record_calls" in caplog.text
    em.shutdown()
    trail.close()


def test_concurrent_recorders_exact_counts(store):
    """Workers' batches, a Bus's begin/end records and direct records from several
    threads into one trail: every record is written once."""
    trail = AuditTrail(store, buffer_size=1 << 16, batch_size=512)
    em = Emitter(workers=4)
    bus = Bus()
    trail.attach(em)
    trail.attach(bus)
    em.subscribe("e", lambda ev: None)
    bus.subscribe("topic", lambda ev: None)
    n = 1500

    def emit():
        for i in range(n):
            em.emit_async(Event("e", i))

    def publish():
        for i in range(n):
            bus.publish("topic", Event("p", i))

    def direct():
        ev = Event("d")
        for _ in range(n):
            trail.record(ev, "me", "ok")

    threads = [threading.Thread(target=f) for f in (emit, emit, publish, direct, direct)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert em.drain(30) and bus.flush(30)
    assert trail.flush(30)
    st = trail.stats()
    assert (st.accepted, st.written, st.overflowed, st.pending) == (5 * n, 5 * n, 0, 0)
    raw = store.window(streams=["nova.audit"])
    assert len(raw) == 5 * n
    # the worker's successful calls are short rows (event_id, event_type, listener,
    # duration), every other record a full row; each full row's timestamp is its
    # event's (rows of call batches and single records mixed in one write keep their
    # columns aligned), and the type names its outcome
    short = [(row, c) for row, c in zip(raw.data, raw.type_codes) if len(row) == 4]
    full = [(row, t, c) for row, t, c in zip(raw.data, raw.timestamps.tolist(), raw.type_codes) if len(row) == 13]
    assert (len(short), len(full)) == (2 * n, 3 * n)
    assert all(row[1] == "e" and type(row[3]) is float and row[3] >= 0 and raw.types[c] == "nova.audit.ok"
               for row, c in short)
    assert len({row[2] for row, _ in short}) == 1  # the one listener's id
    assert all(row[11] == t for row, t, _ in full)
    assert all(raw.types[c] == "nova.audit." + row[7] for row, _, c in full)
    assert {row[12] for row, _, _ in full} == {"bus", "app"}
    data = trail.window().data
    assert {d["component"] for d in data} == {"emitter", "bus", "app"}
    assert [d["timestamp"] for d in data] == raw.timestamps.tolist()
    em.shutdown()
    bus.shutdown()
    trail.close()


def test_rows_survive_a_json_store_and_old_dict_records_still_read(tmp_path):
    st = SQLiteStore(str(tmp_path / "a.db"))
    trail = AuditTrail(st)
    em = Emitter(workers=2)
    trail.attach(em)
    em.subscribe("x", lambda ev: None)
    ev = Event("x")
    em.emit_async(ev)
    assert em.drain(10)
    old = Event("nova.audit.error", {"event_id": "old-1", "event_type": "y", "destination": "y", "partition": None,
                                     "listener": "l", "group": None, "attempt": 1, "outcome": "error",
                                     "duration": 0.5, "error_type": "KeyError", "error_message": "'k'",
                                     "timestamp": 5, "component": "emitter"}, timestamp=5)
    st.append("nova.audit", old)
    trail.close()
    em.shutdown()
    st.close()

    st = SQLiteStore(str(tmp_path / "a.db"))
    trail = AuditTrail(st)
    (r,) = trail.history(ev.id)
    assert (r.event_type, r.outcome, r.attempt, r.partition, r.component) == ("x", "ok", 1, None, "emitter")
    assert isinstance(r.timestamp, int) and isinstance(r.duration, float)
    (o,) = trail.history("old-1")
    assert (o.outcome, o.error_type, o.duration, o.timestamp) == ("error", "KeyError", 0.5, 5)
    raw = st.window(streams=["nova.audit"]).data
    assert sorted(type(d).__name__ for d in raw) == ["dict", "list"]  # a row is a list after JSON
    data = trail.window().data
    assert sorted(d["event_id"] for d in data) == sorted([ev.id, "old-1"])
    assert all(set(d) == set(FIELDS) for d in data)
    trail.close()
    st.close()


def test_exit_writes_worker_batches_and_nova_audit_answers(tmp_path):
    """emit_async, then interpreter exit without close(): the atexit hook writes every
    accepted record of the workers' batches; ``nova audit`` then answers."""
    db = tmp_path / "a.db"
    code = f"""
from nova import Emitter, Event, SQLiteStore
from nova.observability import AuditTrail
st = SQLiteStore({str(db)!r})
trail = AuditTrail(st, flush_interval=60, batch_size=100000)
em = Emitter(workers=4)
trail.attach(em)
em.subscribe('x', lambda ev: None)
evs = [Event('x', i) for i in range(3000)]
for ev in evs:
    em.emit_async(ev)
print(evs[1234].id, flush=True)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    event_id = r.stdout.strip()
    st = SQLiteStore(str(db))
    assert len(st.window(streams=["nova.audit"])) == 3000
    st.close()
    r = subprocess.run([sys.executable, "-m", "nova", "audit", f"sqlite:///{db}", event_id, "--format", "jsonl"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    import json

    (rec,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert (rec["event_id"], rec["outcome"], rec["component"]) == (event_id, "ok", "emitter")
