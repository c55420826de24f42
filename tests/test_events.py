"""The Event kernel (both twins), listeners and subscriptions."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova import errors
from nova.events import FunctionListener, Listener, Subscription, as_listener, is_async_listener


def test_auto_fields(core):
    before = core.now_ns()
    ev = core.Event("user.created", {"name": "Ada"})
    after = core.now_ns()
    assert ev.type == "user.created"
    assert ev.data == {"name": "Ada"}
    assert isinstance(ev.id, str) and len(ev.id) == 32
    assert int(ev.id, 16) >= 0
    assert isinstance(ev.timestamp, int)
    assert before <= ev.timestamp <= after
    assert ev.metadata == {} and type(ev.metadata) is dict
    assert ev.datetime.tzinfo is timezone.utc


def test_explicit_fields(core):
    ev = core.Event("t", 1, id="abc", timestamp=123, metadata={"k": "v"})
    assert (ev.id, ev.timestamp, ev.metadata) == ("abc", 123, {"k": "v"})


def test_metadata_is_copied_and_mutable(core):
    md = {"a": "1"}
    ev = core.Event("t", metadata=md)
    md["b"] = "2"
    assert ev.metadata == {"a": "1"}
    ev.metadata["trace"] = "x"
    assert ev.metadata == {"a": "1", "trace": "x"}


def test_fields_are_read_only(core):
    ev = core.Event("t")
    for name in ("id", "type", "timestamp", "data", "metadata"):
        with pytest.raises(AttributeError):
            setattr(ev, name, None)


def test_ids_unique_and_sorted_in_one_thread(core):
    ids = [core.Event("t").id for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    new = [core.new_id() for _ in range(1000)]
    assert new == sorted(new) and len(set(new)) == 1000


def test_ids_unique_across_threads(core):
    out: list[list[str]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        out[i] = [core.Event("t").id for _ in range(5000)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    all_ids = [x for chunk in out for x in chunk]
    assert len(all_ids) == 40_000
    assert len(set(all_ids)) == 40_000
    for chunk in out:
        assert chunk == sorted(chunk)


def _child_ids(impl: str, q: "multiprocessing.Queue[list[str]]") -> None:
    from nova import _core

    ns = _core.implementation(impl)
    q.put([ns.Event("t").id for _ in range(2000)])


def test_ids_unique_across_forked_processes(core):
    ctx = multiprocessing.get_context("fork")
    # Make ids in the parent first so the child inherits a used counter state.
    parent = [core.Event("t").id for _ in range(2000)]
    q = ctx.Queue()
    procs = [ctx.Process(target=_child_ids, args=(core.name, q)) for _ in range(3)]
    for p in procs:
        p.start()
    children = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    q.close()
    q.join_thread()
    all_ids = parent + [x for c in children for x in c]
    assert len(set(all_ids)) == len(all_ids)


def test_id_prefix_is_creation_millisecond(core):
    ev = core.Event("t")
    ms = int(ev.id[:12], 16)
    assert abs(ms - ev.timestamp // 1_000_000) <= 1


def test_aware_datetime_timestamp(core):
    dt = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    ev = core.Event("t", timestamp=dt)
    assert ev.timestamp == int(dt.timestamp()) * 1_000_000_000 + 123456 * 1000
    other_zone = dt.astimezone(timezone(timedelta(hours=5)))
    assert core.Event("t", timestamp=other_zone).timestamp == ev.timestamp
    assert core.to_timestamp_ns(dt) == ev.timestamp


def test_datetime64_timestamp(core):
    ts = np.datetime64("2024-01-02T03:04:05.123456789", "ns")
    assert core.Event("t", timestamp=ts).timestamp == int(ts.astype(np.int64))
    assert core.Event("t", timestamp=np.datetime64("2024-01-02", "D")).timestamp == int(
        np.datetime64("2024-01-02", "ns").astype(np.int64)
    )
    assert core.Event("t", timestamp=np.int64(5)).timestamp == 5


def test_pandas_timestamp_keeps_nanoseconds(core):
    import pandas as pd
    ts = pd.Timestamp("2024-01-02T03:04:05.123456789", tz="UTC")
    assert core.Event("t", timestamp=ts).timestamp == ts.value


@pytest.mark.parametrize(
    "bad,match",
    [
        (datetime(2024, 1, 1), "naive datetime"),
        (1.5, "got float"),
        (True, "got bool"),
        ("2024", "got str"),
        (np.datetime64("NaT"), "NaT"),
        (2**63, "int64"),
    ],
)
def test_bad_timestamps(core, bad, match):
    with pytest.raises(errors.ValidationError, match=match):
        core.Event("t", timestamp=bad)
    with pytest.raises(ValueError, match=match):
        core.to_timestamp_ns(bad)


def test_float_message_says_what_to_pass(core):
    with pytest.raises(errors.ValidationError, match=r"int\(seconds \* 1_000_000_000\)"):
        core.Event("t", timestamp=1.0)


@pytest.mark.parametrize("bad", ["", None, 1, b"t"])
def test_bad_type(core, bad):
    with pytest.raises(errors.ValidationError, match="non-empty str event type"):
        core.Event(bad)


@pytest.mark.parametrize("bad", ["", 5, b"id"])
def test_bad_id(core, bad):
    with pytest.raises(errors.ValidationError, match="non-empty str event id"):
        core.Event("t", id=bad)


@pytest.mark.parametrize(
    "bad,match",
    [({1: "v"}, "str metadata keys"), ({"k": 1}, "str metadata values"), (5, "dict")],
)
def test_bad_metadata(core, bad, match):
    with pytest.raises(errors.ValidationError, match=match):
        core.Event("t", metadata=bad)


def test_metadata_from_pairs(core):
    assert core.Event("t", metadata=[("a", "b")]).metadata == {"a": "b"}


def test_equality_and_hash(core):
    a = core.Event("t", {"x": 1}, id="i", timestamp=5, metadata={"k": "v"})
    b = core.Event("t", {"x": 1}, id="i", timestamp=5, metadata={"k": "v"})
    assert a == b and not (a != b) and hash(a) == hash(b) == hash("i")
    assert a != a.replace(data={"x": 2})
    assert a != a.replace(timestamp=6)
    assert a != a.replace(metadata={})
    assert a != a.replace(type="u")
    assert a != a.replace(id="j")
    assert core.Event("t", id="i", timestamp=5) == core.Event("t", id="i", timestamp=5, metadata={})
    assert a != "not an event"
    assert len({a, b}) == 1


def test_replace(core):
    a = core.Event("t", 1, metadata={"k": "v"})
    b = a.replace(data=2)
    assert (b.id, b.type, b.timestamp, b.data, b.metadata) == (a.id, "t", a.timestamp, 2, {"k": "v"})
    assert b.metadata is not a.metadata
    with pytest.raises(TypeError, match="expected fields among"):
        a.replace(colour="red")
    with pytest.raises(errors.ValidationError):
        a.replace(type="")


def test_repr(core):
    r = repr(core.Event("t", 1, id="i", timestamp=5, metadata={"k": "v"}))
    assert r == "Event(type='t', data=1, id='i', timestamp=5, metadata={'k': 'v'})"


def test_event_is_final(core):
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (core.Event,), {})


def test_pickle_roundtrip(core):
    a = core.Event("t", {"x": [1, 2]}, metadata={"k": "v"})
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.id == a.id and type(b) is type(a)


@settings(max_examples=100, deadline=None)
@given(
    type_=st.text(min_size=1, max_size=20),
    ts=st.integers(-(2**63), 2**63 - 1),
    md=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4),
    data=st.one_of(st.none(), st.integers(), st.text()),
)
def test_differential_event_fields(core_pair, type_, ts, md, data):
    c, py = core_pair
    ec = c.Event(type_, data, id="x", timestamp=ts, metadata=md)
    ep = py.Event(type_, data, id="x", timestamp=ts, metadata=md)
    assert (ec.type, ec.data, ec.id, ec.timestamp, ec.metadata) == (
        ep.type, ep.data, ep.id, ep.timestamp, ep.metadata
    )
    assert repr(ec) == repr(ep)


@settings(max_examples=100, deadline=None)
@given(value=st.one_of(st.floats(), st.booleans(), st.datetimes(), st.text(max_size=3)))
def test_differential_bad_timestamps(core_pair, value):
    c, py = core_pair
    with pytest.raises(errors.ValidationError) as ec:
        c.to_timestamp_ns(value)
    with pytest.raises(errors.ValidationError) as ep:
        py.to_timestamp_ns(value)
    assert str(ec.value) == str(ep.value)


# -- listeners and subscriptions (pure Python, implementation independent) ------------


def handler(event):
    return event.data


async def ahandler(event):
    return event.data


class Obj:
    id = "obj"

    def handle(self, event):
        return "obj"


def test_as_listener_function():
    li = as_listener(handler)
    assert isinstance(li, Listener)
    assert li.id == f"{__name__}.handler"
    assert not is_async_listener(li)
    assert li.handle(type("E", (), {"data": 3})()) == 3
    assert as_listener(handler, id="h").id == "h"


def test_as_listener_async_and_objects():
    li = as_listener(ahandler)
    assert li.is_async and is_async_listener(li)
    obj = Obj()
    assert as_listener(obj) is obj
    renamed = as_listener(obj, id="other")
    assert renamed.id == "other" and renamed.handle(None) == "obj"
    lam = as_listener(lambda e: None)
    assert lam.id.endswith("<lambda>")


def test_as_listener_bad():
    with pytest.raises(TypeError, match="Expected a callable"):
        as_listener(5)
    with pytest.raises(errors.ValidationError):
        FunctionListener(handler, id="")


def test_function_listener_on_error_forwarding():
    seen = []
    li = FunctionListener(handler, on_error=lambda e, x: seen.append((e, x)))
    exc = RuntimeError("boom")
    li.on_error("ev", exc)
    assert seen == [("ev", exc)]


def test_subscription_lifecycle():
    detached = []
    sub = Subscription("t", as_listener(handler), detached.append)
    assert sub.active and sub.id.startswith("sub-")
    with sub as s:
        assert s is sub
    assert not sub.active and sub.end_reason == "unsubscribed"
    assert detached == [sub]
    assert sub.unsubscribe() is False
    assert detached == [sub]
    ended = Subscription("t", as_listener(handler), detached.append)
    assert ended._end("topic deleted") and not ended.active
    assert ended.end_reason == "topic deleted"
    assert "inactive" in repr(ended)


def test_subscription_unsubscribe_once_under_race():
    calls = []
    sub = Subscription("t", as_listener(handler), calls.append)
    barrier = threading.Barrier(8)
    results = []

    def go():
        barrier.wait()
        results.append(sub.unsubscribe())

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count(True) == 1 and len(calls) == 1


def test_event_abc_covers_both_twins():
    """Facades check events through nova.events (an ABC both twins register with)."""
    from nova._core import event_py
    from nova.events import EVENT_CLASSES, Event, EventABC, check_event, is_event

    for cls in {Event, event_py.Event}:
        ev = cls("t")
        assert isinstance(ev, EventABC) and is_event(ev)
        check_event(ev)
        assert cls in EVENT_CLASSES
    for bad in (1, "t", None, object()):
        assert not isinstance(bad, EventABC) and not is_event(bad)
        with pytest.raises(TypeError, match=f"Expected a nova Event, got {type(bad).__name__}"):
            check_event(bad)
