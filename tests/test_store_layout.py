"""The store package layout (issue 11): one idea per module, old import paths kept,
MemoryStore and SQLiteStore siblings over one LogStore facade, and the code both
ColumnLog / Event twins share written once (nova._core._columns_common /
_event_common) with the same results from both twins."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import nova
from nova import store
from nova._core import _columns_common as common
from nova.errors import ValidationError
from nova.store import base, batch, logstore, memory, protocol, subscription
from nova.store.sqlite import SQLiteStore

T0 = 1_700_000_000_000_000_000


def test_old_import_paths_give_the_new_objects():
    assert base.Cursor is protocol.Cursor is store.Cursor
    assert base.EventStore is protocol.EventStore is store.EventStore
    assert base.StreamInfo is protocol.StreamInfo
    assert base.StoreStats is protocol.StoreStats
    assert base.SubscriptionStats is protocol.SubscriptionStats
    assert base.OVERFLOW_POLICIES is protocol.OVERFLOW_POLICIES
    assert base.ON_FULL_POLICIES is protocol.ON_FULL_POLICIES
    assert base.EventBatch is batch.EventBatch is store.EventBatch is nova.EventBatch
    assert memory.StoreSubscription is subscription.StoreSubscription is store.StoreSubscription
    assert memory.MemoryStore is store.MemoryStore is nova.MemoryStore
    for modname in ("nova.store.base", "nova.store.memory", "nova.store.protocol", "nova.store.batch",
                    "nova.store.logstore", "nova.store.subscription", "nova.store.args"):
        mod = importlib.import_module(modname)
        assert isinstance(mod.__all__, tuple)
        assert all(hasattr(mod, name) for name in mod.__all__), modname


def test_memory_and_sqlite_stores_are_siblings_over_logstore(tmp_path):
    assert issubclass(store.MemoryStore, logstore.LogStore)
    assert issubclass(SQLiteStore, logstore.LogStore)
    assert not issubclass(SQLiteStore, store.MemoryStore)
    with store.MemoryStore() as m, SQLiteStore(tmp_path / "s.db") as s:
        for st in (m, s):
            assert isinstance(st, store.EventStore)
            assert st.append("a", nova.Event("t", 1, timestamp=T0)) == 1
            assert [e.data for e in st.replay()] == [1]
        assert repr(m).startswith("<MemoryStore events=1 streams=1 open")
        assert repr(s).startswith("<SQLiteStore ")


def test_a_plain_logstore_over_a_kernel_log_is_a_working_store(core):
    """LogStore needs only a log with the ColumnLog interface (no lock-free append)."""
    st = logstore.LogStore(lambda: core.ColumnLog(0), max_events_per_stream=2)
    try:
        assert st.append("s", *(nova.Event("t", i, timestamp=T0 + i) for i in range(3))) == 3
        assert [e.data for e in st.replay()] == [1, 2]
        assert st.stats().evicted == 1
        assert repr(st).startswith("<LogStore events=2 streams=1 open")
    finally:
        st.close()
    assert st.closed


def test_store_checks_keep_their_messages(core):
    with store.MemoryStore(kernel=core.ColumnLog) as st:
        with pytest.raises(TypeError, match="Expected max_items as an int >= 1, got str"):
            st.subscribe("s").get_many("1")
        with pytest.raises(ValueError, match="Expected max_items as an int >= 1, got 0"):
            st.subscribe("s").get_many(0)
        with pytest.raises(TypeError, match="Expected buffer as an int >= 1, got float"):
            st.subscribe("s", buffer=1.5)
        with pytest.raises(ValueError, match="Expected limit >= 0 or None, got -1"):
            st.read("s", limit=-1)
        with pytest.raises(TypeError, match="Expected streams as a str, an iterable of str or None, got int"):
            st.window(streams=3)
    with pytest.raises(TypeError, match="Expected now_ns as a callable returning int ns, got int"):
        store.MemoryStore(now_ns=3)
    with pytest.raises(TypeError, match=r"Expected a clock with monotonic\(\) and sleep\(\), got int"):
        store.MemoryStore(clock=3)


def test_compiled_twin_uses_the_shared_layout_constants(core):
    assert core.ColumnLog is not None
    from nova._core import columns_py

    assert columns_py.FLAG_EVENT == common.FLAG_EVENT and columns_py.FLAG_DEAD == common.FLAG_DEAD
    mod = importlib.import_module(core.ColumnLog.__module__)
    assert mod.FLAG_EVENT == common.FLAG_EVENT and mod.FLAG_DEAD == common.FLAG_DEAD
    # MIN_CAPACITY: an empty log allocates the same rows in both twins
    assert core.ColumnLog(0).memory_bytes() == columns_py.ColumnLog(0).memory_bytes()
    with pytest.raises(TypeError, match="Expected capacity as an int, got float"):
        core.ColumnLog(1.5)
    with pytest.raises(ValueError, match=f"Expected capacity <= {common.MAX_CAPACITY} rows"):
        core.ColumnLog(common.MAX_CAPACITY + 1)
    log = core.ColumnLog()
    with pytest.raises(ValidationError, match="Expected a non-empty str stream name, got ''"):
        log.stream_code("")
    with pytest.raises(ValidationError, match="Expected a non-empty str event type, got int"):
        log.type_code(3)


def _churn(log_cls):
    """Out-of-order appends, evictions and compactions: exercises the shared index
    maintenance, compaction and name release."""
    log = log_cls(0)
    rng = np.random.default_rng(7)
    codes = [log.stream_code(f"s{i}") for i in range(3)]
    for step in range(40):
        for c in codes:
            ts = T0 + rng.integers(0, 10_000, 20)
            log.append_columns(c, [f"type{step % 7}"] * 20, ts)
        log.window(None, None)  # brings the time index up to date
        log.evict_oldest(codes[step % 3], 15)
        if step % 5 == 4:
            log.evict_before(T0 + 500 * step // 5)
    log.compact()
    sl = log.window(None, None)
    return (sl.ts.tolist(), sl.seq.tolist(), sl.pos.tolist(), [i[-10:] for i in sl.ids()], log.type_names(),
            log.is_sorted, [log.stream_info(c) for c in codes])


def test_twins_agree_after_index_maintenance_and_compaction(core_pair):
    compiled, pure = core_pair
    got_c = _churn(compiled.ColumnLog)
    got_p = _churn(pure.ColumnLog)
    assert got_c == got_p
    ts = got_c[0]
    assert ts == sorted(ts) and len(ts) > 0


def test_compaction_renumbers_types_and_drops_dead_rows(core):
    log = core.ColumnLog(0)
    a = log.stream_code("a")
    for i in range(600):
        log.append_columns(a, f"t{i}", np.array([T0 + i], dtype=np.int64))
    assert log.evict_before(T0 + 590) == 590  # compaction runs: dead rows >= half
    assert log.type_names() == [f"t{i}" for i in range(590, 600)]
    sl = log.window(None, None)
    assert sl.pos.tolist() == list(range(591, 601))
    assert [e.type for e in sl.events()] == [f"t{i}" for i in range(590, 600)]


def test_event_metadata_check_is_shared(core):
    with pytest.raises(ValidationError, match="Expected metadata as a dict\\[str, str\\], got int"):
        core.Event("t", metadata=3)
    with pytest.raises(ValidationError, match="Expected str metadata keys, got int key 1"):
        core.Event("t", metadata={1: "x"})
    with pytest.raises(ValidationError, match="Expected str metadata values, got int for key 'k'"):
        core.Event("t", metadata=[("k", 2)])
    md = {"k": "v"}
    e = core.Event("t", metadata=md)
    assert e.metadata == md and e.metadata is not md
    assert core.Event("t").metadata == {}
