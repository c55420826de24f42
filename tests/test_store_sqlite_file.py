"""SQLiteStore specifics on both kernel twins: reopening rebuilds the index, durability
levels, codecs (json, pickle by name, custom objects), schema version and clear errors
on foreign, newer or corrupt files, backups."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nova.errors import StoreClosed, StoreFileError, ValidationError
from nova.events import Event
from nova.store import Cursor, StreamInfo
from nova.store.codecs import get_codec
from nova.store.sqlite import SCHEMA_VERSION, SQLiteStore

from store_conformance import T0, ev


@pytest.fixture
def kernel(core: Any) -> Any:
    return core.ColumnLog


def test_reopen_rebuilds_the_index_with_every_field(tmp_path: Path, kernel: Any) -> None:
    p = tmp_path / "s.db"
    with SQLiteStore(p, kernel=kernel) as s:
        e1 = Event("user.created", {"name": "Ada"}, timestamp=T0 + 5, metadata={"trace": "x"})
        s.append("u", e1, ev(1, "late", [1, 2]))
        s.append("v", ev(3, data="v1"))
        s.append_columns("c", types=["x", "y"], timestamps=[T0 + 2, T0 + 4], data=[{"a": 1}, None], ids=["i1", "i2"])
        before = [(e.id, e.type, e.timestamp, e.data, e.metadata) for e in s.replay()]
        win = s.window()
        cols = (win.sequences.tolist(), win.positions.tolist(), [win.streams[c] for c in win.stream_codes])
    with SQLiteStore(p, kernel=kernel) as s:
        assert [(e.id, e.type, e.timestamp, e.data, e.metadata) for e in s.replay()] == before
        win = s.window()
        assert (win.sequences.tolist(), win.positions.tolist(), [win.streams[c] for c in win.stream_codes]) == cols
        assert s.streams() == ["u", "v", "c"]
        assert s.read("u")[0][0] == e1
        assert s.stream_info("c") == StreamInfo("c", 2, 1, 2, 0)
        assert s.stats().appended == 5
        # appends continue after the last position and sequence
        assert s.append("u", ev(9)) == 3
        assert s.window(T0 + 9).sequences.tolist() == [6]


def test_reopen_after_eviction_never_reuses_positions_or_sequences(tmp_path: Path, kernel: Any) -> None:
    p = tmp_path / "s.db"
    with SQLiteStore(p, kernel=kernel, max_events_per_stream=2) as s:
        s.append("a", *[ev(i, data=i) for i in range(5)])
        s.append("b", ev(10, data="b"))
        assert s.stream_info("a") == StreamInfo("a", 2, 4, 5, 3)
    with SQLiteStore(p, kernel=kernel, max_events_per_stream=2) as s:
        assert s.stream_info("a") == StreamInfo("a", 2, 4, 5, 3)
        assert [e.data for e in s.read("a")[0]] == [3, 4]
        assert s.append("a", ev(20, data=20)) == 6
        assert s.window(T0 + 20).sequences.tolist() == [7]
    now = [T0 + 100]
    with SQLiteStore(p, kernel=kernel, retention=1e-9 * 50, now_ns=lambda: now[0], sweep_interval=None) as s:
        # every live row (a5, a6 and b1) is older than T0 + 50, the newest sequence too
        assert s.sweep() == 3
        assert s.stream_info("a") == StreamInfo("a", 0, None, 6, 6)
    with SQLiteStore(p, kernel=kernel) as s:
        assert s.stats().events == 0
        assert s.append("a", ev(30)) == 7
        assert s.append("z", ev(30)) == 1
        assert s.window().sequences.tolist() == [8, 9]


@pytest.mark.parametrize("durability", ["full", "normal", "off"])
def test_durability_levels_set_synchronous(tmp_path: Path, kernel: Any, durability: str) -> None:
    with SQLiteStore(tmp_path / "s.db", durability=durability, kernel=kernel) as s:
        sync = s._conn.execute("PRAGMA synchronous").fetchone()[0]
        # "full" commits with NORMAL and fsyncs the WAL itself, shared by the appends committed meanwhile
        assert sync == {"off": 0, "normal": 1, "full": 1}[durability]
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        group = s._sqlite_log.group
        s.append("a", ev(1, data=1))
        # committed: another connection sees it
        other = sqlite3.connect(tmp_path / "s.db")
        assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        other.close()
        # with "full", the append returned after an fsync of the WAL covering it
        assert group.appends == 1
        assert group.fsyncs == (1 if durability == "full" else 0)


@pytest.mark.stress
def test_full_durability_threads_each_append_fsynced(tmp_path: Path, kernel: Any) -> None:
    import threading

    with SQLiteStore(tmp_path / "g.db", durability="full", kernel=kernel) as s:
        log = s._sqlite_log
        group = log.group
        real_wait = group.wait_durable
        covered: list[bool] = []

        def checked_wait(ticket: int) -> None:
            real_wait(ticket)
            covered.append(group._synced >= ticket)  # an fsync after the append's commit finished

        group.wait_durable = checked_wait  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def run(k: int) -> None:
            try:
                for i in range(100):
                    s.append(f"s{k % 3}", ev(i, data=[k, i]))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert s.stats().events == 800
        assert group.appends == 800
        # every append returned after an fsync covering its commit; one fsync may
        # cover several appends
        assert len(covered) == group.appends and all(covered)
        assert 1 <= group.fsyncs <= group.appends == log.commits
        for name in ("s0", "s1", "s2"):
            positions = [int(p) for p in s.window(streams=name).positions]
            assert sorted(positions) == list(range(1, len(positions) + 1))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected durability among"):
        SQLiteStore(tmp_path / "a.db", durability="fast")
    with pytest.raises(TypeError, match="Expected path as a str or os.PathLike, got int"):
        SQLiteStore(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected a codec among"):
        SQLiteStore(tmp_path / "b.db", codec="yaml")
    with pytest.raises(TypeError, match="Expected a codec name or an object with encode"):
        SQLiteStore(tmp_path / "c.db", codec=object())
    with pytest.raises(ValueError, match="Expected busy_timeout as seconds > 0"):
        SQLiteStore(tmp_path / "d.db", busy_timeout=0)


# ------------------------------------------------------------------ codecs
def test_json_codec_refuses_what_it_cannot_encode_and_stores_nothing(tmp_path: Path, kernel: Any) -> None:
    with SQLiteStore(tmp_path / "s.db", kernel=kernel) as s:
        s.append("a", ev(1, data={"ok": 1}))
        with pytest.raises(TypeError, match=r"Expected data the json codec can encode, got object at index 1"):
            s.append("a", ev(2, data=2), ev(3, data=object()))
        with pytest.raises(TypeError, match=r"Expected data the json codec can encode, got set at index 0"):
            s.append_columns("new", types="t", timestamps=[T0], data=[{1, 2}])
        with pytest.raises(TypeError, match="Expected data the json codec can encode, got float"):
            s.append("a", ev(4, data=float("nan")))
        assert s.streams() == ["a"]
        assert s.stats().events == 1
        assert s.append("a", ev(5, data=[1])) == 2
        assert [e.data for e in s.replay()] == [{"ok": 1}, [1]]
    raw = sqlite3.connect(tmp_path / "s.db")
    assert [json.loads(r[0]) for r in raw.execute("SELECT data FROM events ORDER BY seq")] == [{"ok": 1}, [1]]
    raw.close()


def test_pickle_only_by_name_and_reopening_needs_it_named(tmp_path: Path, kernel: Any) -> None:
    p = tmp_path / "p.db"
    with SQLiteStore(p, kernel=kernel, codec="pickle") as s:
        s.append("a", ev(1, data=(1, {2, 3})))
    with pytest.raises(StoreFileError, match="got None for a file written with codec 'pickle'.*unsafe"):
        SQLiteStore(p, kernel=kernel)
    with pytest.raises(StoreFileError, match="Expected codec 'pickle'.*got 'json'"):
        SQLiteStore(p, kernel=kernel, codec="json")
    with SQLiteStore(p, kernel=kernel, codec="pickle") as s:
        assert [e.data for e in s.replay()] == [(1, {2, 3})]


class Upper:
    """A custom codec: str payloads stored upper-cased."""

    name = "upper"

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise TypeError("only str")
        return obj.upper().encode()

    def decode(self, data: bytes) -> Any:
        return data.decode()


def test_custom_codec_object(tmp_path: Path, kernel: Any) -> None:
    p = tmp_path / "c.db"
    with SQLiteStore(p, kernel=kernel, codec=Upper()) as s:
        s.append("a", ev(1, data="abc"))
        with pytest.raises(TypeError, match=r"Expected data the upper codec can encode, got int at index 0 \(only str\)"):
            s.append("a", ev(2, data=5))
        assert [e.data for e in s.replay()] == ["ABC"]
    with SQLiteStore(p, kernel=kernel, codec=Upper()) as s:
        assert s.window().data == ["ABC"]
    with pytest.raises(StoreFileError, match="Expected codec 'upper'"):
        SQLiteStore(p, kernel=kernel, codec="json")


def test_codec_returning_non_bytes_is_a_type_error(tmp_path: Path) -> None:
    class Bad:
        def encode(self, obj: Any) -> Any:
            return "text"

        def decode(self, data: bytes) -> Any:
            return data

    with SQLiteStore(tmp_path / "b.db", codec=Bad()) as s:
        with pytest.raises(TypeError, match="Expected bytes from the Bad codec's encode"):
            s.append("a", ev(1, data=1))
        assert s.stats().events == 0


def test_get_codec_names() -> None:
    assert get_codec("json").decode(get_codec("json").encode({"a": [1]})) == {"a": [1]}
    assert get_codec("pickle").decode(get_codec("pickle").encode((1,))) == (1,)
    assert get_codec(get_codec("json")).name == "json"


# ------------------------------------------------------------------ files users can trust
def test_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)")
    c.commit()
    c.close()
    before = p.read_bytes()
    with pytest.raises(StoreFileError, match=r"got a SQLite database of another application .*customers"):
        SQLiteStore(p)
    assert p.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "n.db"
    SQLiteStore(p).close()
    c = sqlite3.connect(p)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.commit()
    c.close()
    with pytest.raises(StoreFileError, match=f"got version {SCHEMA_VERSION + 1} .*newer nova"):
        SQLiteStore(p)


def test_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not a database at all" * 200)
    before = p.read_bytes()
    with pytest.raises(StoreFileError, match="got a file SQLite cannot read"):
        SQLiteStore(p)
    assert p.read_bytes() == before


def test_corrupt_store_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.db"
    with SQLiteStore(p, durability="full") as s:
        s.append_columns("a", types="t", timestamps=np.arange(20_000, dtype=np.int64), data=[{"x": i} for i in range(20_000)])
    raw = bytearray(p.read_bytes())
    # trash every page after the schema pages (the table b-tree)
    for off in range(4096 * 2, len(raw), 4096):
        raw[off : off + 4096] = b"\xa5" * 4096
    p.write_bytes(bytes(raw))
    with pytest.raises(StoreFileError, match="SQLite cannot read"):
        SQLiteStore(p)


def test_closed_store_and_backup(tmp_path: Path, kernel: Any) -> None:
    s = SQLiteStore(tmp_path / "s.db", kernel=kernel)
    s.append("a", *[ev(i, data=i) for i in range(100)])
    s.backup(tmp_path / "copy.db")
    s.append("a", ev(200, data=200))
    batch = s.window(T0, T0 + 10)
    s.close()
    s.close()
    with pytest.raises(StoreClosed):
        s.append("a", ev(1))
    with pytest.raises(StoreClosed):
        s.backup(tmp_path / "again.db")
    with pytest.raises(StoreClosed, match="closed"):
        batch.data
    with SQLiteStore(tmp_path / "copy.db", kernel=kernel) as c:
        assert [e.data for e in c.replay()] == list(range(100))
        assert c.read("a", Cursor("a", 98, None))[0][-1].data == 99
    assert "closed" in repr(s)


def test_memory_path(kernel: Any) -> None:
    with SQLiteStore(":memory:", kernel=kernel) as s:
        s.append("a", ev(1, data=1))
        assert [e.data for e in s.replay()] == [1]


def test_append_columns_ids_are_stored(tmp_path: Path, kernel: Any) -> None:
    p = tmp_path / "s.db"
    with SQLiteStore(p, kernel=kernel) as s:
        s.append_columns("a", types="t", timestamps=[T0, T0 + 1])
        ids = s.window().ids
        assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    with SQLiteStore(p, kernel=kernel) as s:
        assert s.window().ids == ids


def test_bad_stream_name_validation_error(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as s:
        with pytest.raises(ValidationError):
            s.append("", ev(1))
        assert s._conn.execute("SELECT count(*) FROM streams").fetchone()[0] == 0


def test_two_stores_on_one_file_see_each_other(tmp_path: Path, kernel: Any) -> None:
    # two connections behave as two processes: appends, new streams, evictions
    p = tmp_path / "shared.db"
    a = SQLiteStore(p, kernel=kernel)
    b = SQLiteStore(p, kernel=kernel, max_events_per_stream=3)
    try:
        assert a.append("x", ev(1, data=1)) == 1
        assert b.append("x", ev(2, data=2)) == 2  # b caught up before writing
        assert a.append("y", ev(3, data=3)) == 1
        assert b.streams() == ["x", "y"] and a.streams() == ["x", "y"]
        assert [e.data for e in b.replay()] == [1, 2, 3]
        sub = a.subscribe("x")
        assert [e.data for e in sub.get_many(10, timeout=5)] == [1, 2]
        b.append("x", ev(4, data=4), ev(5, data=5))  # evicts position 1 of x (b's limit)
        got = [e.data for e in sub.get_many(10, timeout=5)]
        assert got == [4, 5]
        assert a.stream_info("x") == StreamInfo("x", 3, 2, 4, 1)  # a rebuilt its index
        assert [e.data for e in a.read("x")[0]] == [2, 4, 5]
        assert a.append("x", ev(6, data=6)) == 5
        assert b.stats().appended == a.stats().appended == 6
        assert [e.data for e in b.window(streams="x")] == [2, 4, 5, 6]
        sub.close()
    finally:
        a.close()
        b.close()


def test_index_snapshot_is_used_only_while_valid(tmp_path: Path, kernel: Any) -> None:
    p = tmp_path / "snap.db"
    with SQLiteStore(p, kernel=kernel) as s:
        s.append("a", *[ev(i, data=i) for i in range(10)])
    raw = sqlite3.connect(p)
    assert raw.execute("SELECT count(*) FROM snapshot").fetchone()[0] == 6  # written at close
    raw.close()
    # a writer that dies without closing: its rows are after the snapshot
    b = SQLiteStore(p, kernel=kernel, max_events_per_stream=8)
    b.append("a", ev(10, data=10), ev(11, data=11))  # evicts positions 1-4 (gen changes)
    b.append("c", ev(12, data=12))
    b._sqlite_log.closed = True
    b._conn.close()  # no snapshot written: the old one is stale now
    with SQLiteStore(p, kernel=kernel) as s:
        assert [e.data for e in s.read("a")[0]] == list(range(4, 12))
        assert s.stream_info("a") == StreamInfo("a", 8, 5, 12, 4)
        assert [e.data for e in s.read("c")[0]] == [12]
        s.append("c", ev(13, data=13))
    # the snapshot written by that close covers everything, the next open agrees
    with SQLiteStore(p, kernel=kernel) as s:
        assert s._sqlite_log._snapshot_at == (1, 14)
        assert [e.data for e in s.replay()] == list(range(4, 14))
    # appends after the snapshot by a writer that died are read from the table
    b = SQLiteStore(p, kernel=kernel)
    b.append("a", ev(20, data=20))
    b._sqlite_log.closed = True
    b._conn.close()
    with SQLiteStore(p, kernel=kernel) as s:
        assert [e.data for e in s.replay()] == list(range(4, 14)) + [20]
        assert s.append("a", ev(21)) == 14


def test_batch_payloads_evicted_after_the_window_was_taken(tmp_path: Path, kernel: Any) -> None:
    from nova.errors import EventEvicted

    now = [T0 + 100]
    with SQLiteStore(tmp_path / "e.db", kernel=kernel, retention=50e-9, now_ns=lambda: now[0], sweep_interval=None) as s:
        s.append("a", *[ev(60 + i, data=i) for i in range(10)])
        early = s.window()
        assert early.ids and len(early) == 10  # ids read: the batch keeps them
        late = s.window()
        now[0] += 15  # cutoff T0 + 65: the first 5 rows expire
        assert s.sweep() == 5
        assert len(early.ids) == 10  # what a batch already read stays readable
        with pytest.raises(EventEvicted, match="evicted since it was taken"):
            late.data
        assert [e.data for e in s.window()] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"retention": "1 day"}, TypeError, "retention"),
        ({"max_events_per_stream": 0}, ValueError, "Expected max_events_per_stream >= 1"),
        ({"on_full": "drop"}, ValueError, "Expected on_full among"),
    ],
)
def test_bad_store_arguments_leave_no_file(tmp_path: Path, kwargs: dict[str, Any], exc: type, match: str) -> None:
    p = tmp_path / "never.db"
    with pytest.raises(exc, match=match):
        SQLiteStore(p, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_backup_while_another_thread_appends(tmp_path: Path, kernel: Any) -> None:
    import threading

    with SQLiteStore(tmp_path / "live.db", kernel=kernel) as s:
        s.append_columns("a", types="t", timestamps=np.arange(50_000, dtype=np.int64), data=list(range(50_000)))
        stop = threading.Event()
        appended: list[int] = []

        def append() -> None:
            while not stop.is_set():
                appended.append(s.append("b", ev(len(appended), data=len(appended))))

        t = threading.Thread(target=append)
        t.start()
        try:
            s.backup(tmp_path / "copy.db")
        finally:
            stop.set()
            t.join(30)
        with SQLiteStore(tmp_path / "copy.db", kernel=kernel) as c:
            assert c.stream_info("a").length == 50_000
            got = [e.data for e in c.read("b")[0]] if "b" in c.streams() else []
            assert got == list(range(len(got)))  # a consistent prefix of b
            assert len(got) <= len(appended)
