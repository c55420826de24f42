"""Lossless export and import (EventBatch.to_arrow(data="json"|"bytes") -> Parquet ->
EventBatch.from_arrow -> SQLiteStore.append_batch), nova.store.copy between stores,
ISO-8601 window bounds in every store, and the msgpack codec."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from nova.errors import ValidationError
from nova.events import Event
from nova.store import EventBatch, MemoryStore, SQLiteStore, copy
from nova.store.codecs import get_codec

from store_conformance import T0, ev

import pyarrow as pa  # noqa: E402  (test dependency)
import pyarrow.parquet as pq  # noqa: E402


def _fields(batch: EventBatch) -> list[tuple[Any, ...]]:
    return [
        (e.id, batch.streams[int(batch.stream_codes[i])], int(batch.positions[i]), int(batch.sequences[i]),
         e.timestamp, e.type, e.metadata, e.data)
        for i, e in enumerate(batch)
    ]


def _fill(s: Any) -> None:
    # heterogeneous payloads, metadata, late events, evicted positions (limit 4)
    s.append("orders", Event("order.placed", {"order": 1, "amount": 9.5}, timestamp=T0 + 10, metadata={"customer_id": "c1"}))
    s.append("orders", Event("order.placed", {"order": 2, "lines": [1, 2]}, timestamp=T0 + 20))
    s.append("dlq", Event("dead", "boom", timestamp=T0 + 5, metadata={"nova.error.type": "ValueError", "reason": "é"}))
    s.append("orders", Event("order.cancelled", None, timestamp=T0 + 1), Event("order.placed", [1, "x"], timestamp=T0 + 30))
    s.append("orders", *[Event("tick", i, timestamp=T0 + 40 + i) for i in range(3)])


@pytest.fixture(params=["memory", "sqlite"])
def source(request: pytest.FixtureRequest, tmp_path: Path, core: Any) -> Any:
    if request.param == "memory":
        s: Any = MemoryStore(max_events_per_stream=4, kernel=core.ColumnLog)
    else:
        s = SQLiteStore(tmp_path / "src.db", max_events_per_stream=4, kernel=core.ColumnLog)
    _fill(s)
    yield s
    s.close()


@pytest.mark.parametrize("form", ["json", "bytes"])
def test_parquet_round_trip_is_lossless(source: Any, tmp_path: Path, form: str, core: Any) -> None:
    batch = source.window()
    orders = batch.stream_codes == batch.streams.index("orders")
    assert batch.positions[orders].min() == 4  # positions 1-3 evicted: must not be renumbered
    want = _fields(batch)
    table = batch.to_arrow(data=form)
    assert table.schema.field("metadata").type == pa.map_(pa.string(), pa.string())
    pq.write_table(table, tmp_path / "w.parquet")
    back = EventBatch.from_arrow(pq.read_table(tmp_path / "w.parquet"))
    assert _fields(back) == want
    # restore into an empty durable store: the very same numbers
    with SQLiteStore(tmp_path / "restored.db", kernel=core.ColumnLog) as dst:
        assert dst.append_batch(back) == len(want)
        assert _fields(dst.window()) == want
    with SQLiteStore(tmp_path / "restored.db", kernel=core.ColumnLog) as dst:
        assert _fields(dst.window()) == want
        info = dst.stream_info("orders")
        assert info.last_position == source.stream_info("orders").last_position
        # appends continue after the restored numbers; a second restore is refused whole
        with pytest.raises(ValidationError, match="Expected sequences increasing from"):
            dst.append_batch(back)
        assert dst.stats().events == len(want)
        assert dst.append("orders", ev(99)) == info.last_position + 1


def test_to_arrow_default_stays_inferred_and_bad_forms(source: Any) -> None:
    batch = source.window(streams="dlq")
    assert batch.to_arrow().column_names == ["timestamp", "sequence", "stream", "position", "type", "id", "data"]
    with pytest.raises(ValueError, match="Expected data among"):
        batch.to_arrow(data="yaml")
    with pytest.raises(ValueError, match="Expected a table from EventBatch.to_arrow"):
        EventBatch.from_arrow(batch.to_arrow())
    t = batch.to_arrow(data="struct")
    assert "metadata" in t.column_names
    assert _fields(EventBatch.from_arrow(t)) == _fields(batch)


def test_bytes_form_with_pickle_needs_the_codec_named(tmp_path: Path) -> None:
    s = MemoryStore()
    s.append("a", ev(1, data=(1, {2})))
    t = s.window().to_arrow(data="bytes", codec="pickle")
    with pytest.raises(ValueError, match="Expected codec= naming the table's codec 'pickle'"):
        EventBatch.from_arrow(t)
    assert EventBatch.from_arrow(t, codec="pickle").data == [(1, {2})]
    with pytest.raises(TypeError, match="Expected data the json codec can encode"):
        s.window().to_arrow(data="json")


def test_append_batch_checks_before_writing(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "a.db") as s:
        s.append("a", ev(1), ev(2))
        m = MemoryStore()
        m.append("a", ev(3, data=3))
        m.append("b", ev(4, data=4))
        with pytest.raises(ValidationError, match="Expected sequences increasing from 3"):
            s.append_batch(m.window())
        with pytest.raises(TypeError, match="Expected an EventBatch, got list"):
            s.append_batch([])  # type: ignore[arg-type]
        assert s.streams() == ["a"] and s.stats().events == 2


# ------------------------------------------------------------------ copy
def test_copy_memory_to_sqlite_and_back(tmp_path: Path, core: Any) -> None:
    mem = MemoryStore(kernel=core.ColumnLog)
    mem.append("a", *[ev(i, data={"i": i}, metadata={"k": str(i)}) for i in range(25)])
    mem.append("b", *[ev(100 + i, data=[i]) for i in range(7)])
    with SQLiteStore(tmp_path / "saved.db", kernel=core.ColumnLog) as disk:
        assert copy(mem, disk, batch_size=4) == 32
        assert [(e.id, e.data, e.metadata, e.timestamp) for e in disk.read("a")[0]] == [
            (e.id, e.data, e.metadata, e.timestamp) for e in mem.read("a")[0]
        ]
    with SQLiteStore(tmp_path / "saved.db", kernel=core.ColumnLog) as disk:
        back = MemoryStore(kernel=core.ColumnLog)
        n = copy(disk, back, start=T0 + 5, end="2023-11-14T22:13:20.000000100Z", streams=["a", "nope"], batch_size=3)
        assert n == 20
        assert [e.data["i"] for e in back.replay()] == list(range(5, 25))
        assert back.streams() == ["a"]
    with pytest.raises(TypeError, match="Expected dst as an EventStore, got int"):
        copy(mem, 5)
    with pytest.raises(TypeError, match="Expected batch_size as an int >= 1"):
        copy(mem, MemoryStore(), batch_size=0)


# ------------------------------------------------------------------ ISO-8601 bounds
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_iso_8601_bounds(kind: str, tmp_path: Path) -> None:
    s: Any = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "iso.db")
    base = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
    s.append("a", Event("t", 1, timestamp=base), Event("t", 2, timestamp=base + 123_456_789),
             Event("t", 3, timestamp=base + 3600 * 10**9))
    assert [e.data for e in s.replay("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456789Z")] == [1]
    assert [e.data for e in s.replay("2024-01-01T00:00:00.123456789+00:00")] == [2, 3]
    assert [e.data for e in s.replay("2024-01-01T02:00:00+01:00")] == [3]
    assert len(s.window(end="2024-01-01T00:00:01z")) == 2
    with pytest.raises(ValidationError, match="ISO-8601 date-time with a zone"):
        s.window("2024-01-01T00:00:00")
    with pytest.raises(ValidationError, match="ISO-8601 date-time with a zone, got 'yesterday'"):
        s.replay("yesterday")
    s.close()


# ------------------------------------------------------------------ msgpack
def test_msgpack_codec(tmp_path: Path, core: Any) -> None:
    p = tmp_path / "m.db"
    with SQLiteStore(p, codec="msgpack", kernel=core.ColumnLog) as s:
        s.append("a", ev(1, data={"b": b"\x00\x01", "n": [1, 2.5, None]}))
        with pytest.raises(TypeError, match="Expected data the msgpack codec can encode, got object"):
            s.append("a", ev(2, data=object()))
    with SQLiteStore(p, kernel=core.ColumnLog) as s:  # recorded codec, chosen on reopen
        assert s.codec.name == "msgpack"
        assert s.window().data == [{"b": b"\x00\x01", "n": [1, 2.5, None]}]


def test_msgpack_without_msgspec_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"pip install 'nova-events\[msgpack\]'"):
        get_codec("msgpack")
    with pytest.raises(ImportError, match="msgspec"):
        SQLiteStore(tmp_path / "x.db", codec="msgpack")
    assert not (tmp_path / "x.db").exists()  # refused before the file is created
