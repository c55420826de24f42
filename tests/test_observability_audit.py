"""Issue 16 part 4: AuditTrail, the complete processing history of every event."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nova import as_listener, Bus, DeadLetterConfig, DeliveryMode, Emitter, Event, MemoryStore, RetryPolicy, TopicConfig
from nova.observability import AuditTrail
from nova.observability.audit import FIELDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store():
    s = MemoryStore()
    yield s
    s.close()


def test_bus_retries_then_dead_letter(store):
    trail = AuditTrail(store)
    bus = Bus(name="b")
    trail.attach(bus)
    dead = []
    bus.create_topic("orders", TopicConfig(partitions=3, retry=RetryPolicy(max_attempts=3, initial_delay=0, backoff="fixed"),
                                           dead_letter=DeadLetterConfig(handler=dead.append)))

    def bad(ev):
        raise ValueError("card declined")

    bus.subscribe("orders", bad, group="billing")
    ev = Event("order.placed")
    rc = bus.publish("orders", ev, key="c-1")
    assert bus.flush(10)
    h = trail.history(ev.id)
    assert [(r.attempt, r.outcome) for r in h] == [(1, "retry_scheduled"), (2, "retry_scheduled"), (3, "dead_lettered")]
    for r in h:
        assert r.event_type == "order.placed" and r.destination == "orders"
        assert r.partition == rc.partition and r.group == "billing"
        assert r.error_type == "ValueError" and r.error_message == "card declined"
        assert r.duration >= 0 and r.component == "bus"
        assert r.listener == as_listener(bad).id
    assert [r.timestamp for r in h] == sorted(r.timestamp for r in h)
    assert len(dead) == 1
    bus.shutdown()
    trail.close()


def test_bus_ok_after_retry_and_at_most_once_error(store):
    trail = AuditTrail(store)
    bus = Bus()
    trail.attach(bus)
    calls = []

    def flaky(ev):
        calls.append(ev)
        if len(calls) == 1:
            raise RuntimeError("once")

    bus.create_topic("a", TopicConfig(retry=RetryPolicy(max_attempts=2, initial_delay=0, backoff="fixed")))
    bus.subscribe("a", flaky)
    bus.create_topic("m", TopicConfig(delivery=DeliveryMode.AT_MOST_ONCE))
    bus.subscribe("m", lambda ev: 1 / 0)
    e1, e2 = Event("x"), Event("y")
    bus.publish("a", e1)
    bus.publish("m", e2)
    assert bus.flush(10)
    assert [(r.attempt, r.outcome) for r in trail.history(e1.id)] == [(1, "retry_scheduled"), (2, "ok")]
    (r,) = trail.history(e2.id)
    assert r.outcome == "error" and r.error_type == "ZeroDivisionError"
    bus.shutdown()
    trail.close()


def test_emitter_sync_async_and_window_for_pandas(store):
    import pandas as pd  # in the test extra
    trail = AuditTrail(store)
    em = Emitter(error_policy="continue", on_error=lambda e, x, l: None, name="em")
    trail.attach(em)

    def ok(ev):
        return None

    def bad(ev):
        raise KeyError(ev.type)

    em.subscribe("a", ok)
    em.subscribe("a", bad)
    t0 = time.time_ns()
    for _ in range(5):
        em.emit(Event("a"))
    for _ in range(5):
        em.emit_async(Event("a"))
    assert em.drain(10)
    t1 = time.time_ns() + 1
    batch = trail.window(t0, t1)
    assert len(batch) == 20
    df = pd.DataFrame(batch.data)
    assert set(FIELDS) <= set(df.columns)
    failed = df[df.outcome == "error"].groupby("listener").size()
    assert failed.to_dict() == {em.listeners("a")[1].id: 10}
    assert (df[df.outcome == "ok"].listener == em.listeners("a")[0].id).all()
    assert len(trail.window(t1, t1 + 10**9)) == 0
    em.shutdown()
    trail.close()


def test_record_directly_and_bad_outcome(store):
    trail = AuditTrail(store, stream="my.audit")
    ev = Event("x")
    trail.record(ev, "ext", "timeout", duration=1.5, error=TimeoutError("slow"))
    (r,) = trail.history(ev.id)
    assert (r.outcome, r.duration, r.error_type, r.component) == ("timeout", 1.5, "TimeoutError", "app")
    assert store.streams() == ["my.audit"]
    with pytest.raises(ValueError, match="Expected an outcome among ok, error"):
        trail.record(ev, "ext", "exploded")
    assert trail.history("unknown") == []
    trail.close()


def test_bounded_buffer_overflow_is_counted_never_silent(store, caplog):
    gate = threading.Event()

    class SlowStore(MemoryStore):
        def append_columns(self, *a, **k):
            gate.wait(10)
            return super().append_columns(*a, **k)

    s = SlowStore()
    trail = AuditTrail(s, buffer_size=10, batch_size=5)
    ev = Event("x")
    for _ in range(100):
        trail.record(ev, "l", "ok")
    st = trail.stats()
    # the writer may hold one batch; everything else beyond the buffer is counted
    assert st.accepted + st.overflowed == 100
    assert st.overflowed >= 100 - 10 - 5
    assert "audit trail buffer full" in caplog.text
    gate.set()
    assert trail.close(10)
    st = trail.stats()
    assert st.written == st.accepted and st.pending == 0
    assert len(trail.history(ev.id)) == st.accepted
    s.close()


def test_block_overflow_waits_and_keeps_everything(store):
    trail = AuditTrail(store, buffer_size=4, batch_size=2, overflow="block")
    ev = Event("x")
    n = 8
    ts = [threading.Thread(target=lambda: [trail.record(ev, "l", "ok") for _ in range(250)]) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert trail.flush(30)
    st = trail.stats()
    assert st.accepted == st.written == n * 250 and st.overflowed == 0
    trail.close()


def test_store_failure_is_counted(store, caplog):
    class Broken(MemoryStore):
        def append_columns(self, *a, **k):
            raise OSError("disk gone")

    s = Broken()
    trail = AuditTrail(s)
    trail.record(Event("x"), "l", "ok")
    assert trail.flush(10)
    st = trail.stats()
    assert st.write_errors == 1 and st.lost == 1 and st.pending == 0
    assert "could not write" in caplog.text
    trail.close()
    s.close()


def test_close_writes_everything_and_later_records_are_counted(store):
    trail = AuditTrail(store, flush_interval=10)  # only flush/close write promptly
    ev = Event("x")
    for _ in range(1000):
        trail.record(ev, "l", "ok")
    assert trail.close(10)
    assert trail.stats().written == 1000
    trail.record(ev, "l", "ok")
    assert trail.stats().overflowed == 1
    assert trail.close() is True  # idempotent


def test_exit_flushes_what_was_accepted(tmp_path):
    code = f"""
import sys
from nova import Emitter, Event, SQLiteStore
from nova.observability import AuditTrail
st = SQLiteStore({str(tmp_path / 'a.db')!r})
trail = AuditTrail(st, flush_interval=60)
em = Emitter()
trail.attach(em)
em.subscribe('x', lambda ev: None)
for _ in range(500):
    em.emit(Event('x'))
print('emitted', flush=True)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    from nova import SQLiteStore

    st = SQLiteStore(str(tmp_path / "a.db"))
    assert len(st.window(streams=["nova.audit"])) == 500
    st.close()


@pytest.mark.parametrize(
    "args, kwargs, exc, msg",
    [
        ((3,), {}, TypeError, "Expected an EventStore, got int"),
        ((None,), {}, TypeError, "Expected an EventStore, got NoneType"),
        (("S",), {"stream": 1}, TypeError, "Expected stream as a str, got int"),
        (("S",), {"stream": ""}, ValueError, "Expected a non-empty stream"),
        (("S",), {"buffer_size": 0}, ValueError, "Expected buffer_size >= 1, got 0"),
        (("S",), {"batch_size": 1.0}, TypeError, "Expected batch_size as an int, got float"),
        (("S",), {"overflow": "x"}, ValueError, "Expected overflow 'drop' or 'block', got 'x'"),
        (("S",), {"flush_interval": 0}, ValueError, "Expected flush_interval > 0, got 0"),
    ],
)
def test_bad_arguments(store, args, kwargs, exc, msg):
    args = tuple(store if a == "S" else a for a in args)
    with pytest.raises(exc, match=msg):
        AuditTrail(*args, **kwargs)


def test_attach_rejects_others(store):
    trail = AuditTrail(store)
    with pytest.raises(TypeError, match="Expected an Emitter, a Bus or a ListenerManager, got int"):
        trail.attach(5)
    with pytest.raises(TypeError, match="Expected event_id as a str, got int"):
        trail.history(5)
    trail.close()


def test_exported_from_nova():
    import nova

    assert nova.AuditTrail is AuditTrail


def test_fork_child_records_its_own_attempts_only():
    code = f"""
import os, sys
from nova import Emitter, Event, MemoryStore
from nova.observability import AuditTrail
st = MemoryStore()
trail = AuditTrail(st, flush_interval=60)
em = Emitter()
trail.attach(em)
em.subscribe('x', lambda ev: None)
for _ in range(10):
    em.emit(Event('x'))     # accepted in the parent, not yet written
pid = os.fork()
if pid == 0:
    em2 = Emitter()
    trail.attach(em2)
    em2.subscribe('y', lambda ev: None)
    em2.emit(Event('y'))
    ok = trail.flush(10)
    s = trail.stats()
    # the child's store copy holds what the parent wrote before fork() plus the child's one
    n = sum(1 for row in st.window(streams=['nova.audit']).data if row[1] == 'y')  # rows: FIELDS order
    os._exit(0 if ok and s.accepted == 1 and s.written == 1 and n == 1 else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
trail.close()
print(len(st.window(streams=['nova.audit'])))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "10"  # the parent's own 10, written once (by the parent)


def test_observed_plain_paths_count_exactly(store):
    """The observed delivery of plain sync routes (inline and in workers) counts like
    the fast paths and records every call, the failing one and those after it too."""
    trail = AuditTrail(store)
    em = Emitter(error_policy="continue", on_error=lambda e, x, l: None, workers=2)
    trail.attach(em)
    seen = []
    em.subscribe("a", seen.append)
    em.subscribe("a", lambda ev: 1 / 0)
    em.subscribe("a", seen.append)
    for _ in range(5):
        em.emit(Event("a"))
    for _ in range(5):
        assert em.emit_async(Event("a"))
    assert em.drain(10)
    st = em.stats()
    assert (st.emitted, st.processed, st.failed) == (10, 20, 10)
    assert len(seen) == 20
    trail.flush(10)
    df = trail.window()
    outcomes = sorted(d["outcome"] for d in df.data)
    assert outcomes == ["error"] * 10 + ["ok"] * 20

    em2 = Emitter()
    trail.attach(em2)

    def interrupt(ev):
        raise KeyboardInterrupt

    em2.subscribe("b", interrupt)
    em2.subscribe("b", seen.append)
    ev = Event("b")
    with pytest.raises(KeyboardInterrupt):
        em2.emit(ev)
    st = em2.stats()
    assert (st.emitted, st.processed, st.failed) == (1, 0, 1)
    assert [r.outcome for r in trail.history(ev.id)] == ["error"]
    em.shutdown()
    em2.shutdown()
    trail.close()
