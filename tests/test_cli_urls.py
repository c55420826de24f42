"""nova.open_store(url) and the pieces of the nova command that run in-process: time
arguments, the row formats, and replay's constant memory."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import nova
from nova import Event, MemoryStore, SQLiteStore
from nova.errors import StoreFileError, ValidationError
from nova.store.urls import StoreURL, parse_store_url

T0 = 1_704_099_600_000_000_000


# --- open_store ---------------------------------------------------------------------------
def test_open_store_memory_and_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert nova.open_store is nova.store.open_store
    with nova.open_store("memory://") as m:
        assert isinstance(m, MemoryStore)
    with nova.open_store("memory://", max_events_per_stream=2) as m:
        for i in range(3):
            m.append("s", Event("t", i))
        assert m.stream_info("s").length == 2
    absolute = tmp_path / "a.db"
    with nova.open_store(f"sqlite:///{absolute}") as s:  # sqlite:////abs/path
        assert isinstance(s, SQLiteStore) and s.path == str(absolute)
        s.append("x", Event("t", 1))
    monkeypatch.chdir(tmp_path)
    with nova.open_store("sqlite:///a.db") as s:  # relative to the working directory
        assert s.stream_info("x").length == 1
    with nova.open_store("sqlite:///b.db?durability=full&codec=json") as s:
        assert (s.durability, s.codec.name) == ("full", "json")
    with nova.open_store("sqlite:///c.db", durability="off") as s:
        assert s.durability == "off"
    with nova.open_store("sqlite:///:memory:") as s:
        assert s.path == ":memory:"


@pytest.mark.parametrize("url, message", [
    ("ftp://host/x", "Expected a store URL starting with one of memory://, sqlite:///, redis://, rediss://, unix://"),
    ("unix://", "Expected 'unix:///path/to/redis.sock', got 'unix://' (no socket path)"),
    ("", "Expected a store URL"),
    ("memory://x", "Expected 'memory://' with nothing after it"),
    ("sqlite:///", "Expected 'sqlite:///<path>' with a path"),
    ("sqlite://relative.db", "Expected a store URL"),
    ("sqlite:///a.db?journal=wal", "Expected sqlite URL options among ('durability', 'codec'), got 'journal'"),
    ("sqlite:///a.db?durability", "Expected"),
    ("redis:///0", "Expected 'redis://host:port/db', got 'redis:///0' (no host)"),
    ("redis://h:6379/0?prefix=a&prefix=b", "Expected at most one prefix= in the URL, got 2"),
])
def test_open_store_bad_urls(url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match=None) as info:
        nova.open_store(url)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []  # a refused URL creates nothing


def test_open_store_type_and_option_conflicts(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Expected url as a str, got int"):
        nova.open_store(5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Expected durability in the URL or as an argument, got both"):
        nova.open_store(f"sqlite:///{tmp_path}/x.db?durability=full", durability="off")
    with pytest.raises(ValueError, match="Expected durability among"):
        nova.open_store(f"sqlite:///{tmp_path}/x.db?durability=maybe")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 500)
    with pytest.raises(StoreFileError):
        nova.open_store(f"sqlite:///{text}")


def test_parse_redis_url_keeps_everything_but_the_prefix() -> None:
    assert parse_store_url("redis://u:p@h:6380/2?prefix=audit&socket_timeout=3") == StoreURL(
        "redis", "redis://u:p@h:6380/2?socket_timeout=3", {"prefix": "audit"})
    assert parse_store_url("rediss://h/0") == StoreURL("redis", "rediss://h/0", {})


def test_open_store_redis_names_the_extra_without_redis_py(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` fails as when it is not installed
    with pytest.raises(ImportError, match=r"nova-events\[redis\]"):
        nova.open_store("redis://localhost:6379/0?prefix=t")


def test_parse_unix_socket_url() -> None:
    assert parse_store_url("unix:///run/redis.sock?db=2&prefix=p") == StoreURL(
        "redis", "unix:///run/redis.sock?db=2", {"prefix": "p"})


# --- times --------------------------------------------------------------------------------
def test_parse_time_forms() -> None:
    from nova.cli.times import parse_time

    now = T0
    assert parse_time("2024-01-01T09:00:00Z") == T0
    assert parse_time("2024-01-01T10:00:00.000000001+01:00") == T0 + 1
    assert parse_time(str(T0)) == T0
    assert parse_time("0") == 0
    assert parse_time("now", now) == now
    assert parse_time("now-15m", now) == now - 15 * 60 * 10**9
    assert parse_time("NOW - 1h30m", now) == now - 90 * 60 * 10**9
    assert parse_time("now+2d", now) == now + 2 * 86400 * 10**9
    assert parse_time("now-1w", now) == now - 7 * 86400 * 10**9
    assert parse_time("now-5ms", now) == now - 5_000_000
    assert parse_time("now-7us", now) == now - 7_000
    assert parse_time("now-9ns", now) == now - 9
    assert parse_time("now-1s", now) == now - 10**9


@pytest.mark.parametrize("text", ["yesterday", "now-15", "now-m", "now-15x", "2024-01-01T09:00:00",
                                  "2024-01-01", "-5", "1.5", "", "now--1m", "2024-13-01T00:00:00Z"])
def test_parse_time_refuses(text: str) -> None:
    from nova.cli.times import parse_time

    with pytest.raises(ValidationError, match="Expected start as ISO-8601 with a zone") as info:
        parse_time(text, T0, name="start")
    assert repr(text) in str(info.value)


# --- formats and memory -------------------------------------------------------------------
def test_iso_ns() -> None:
    from nova.cli.formats import iso_ns

    assert iso_ns(T0) == "2024-01-01T09:00:00.000000000Z"
    assert iso_ns(T0 + 123_456_789) == "2024-01-01T09:00:00.123456789Z"
    assert iso_ns(0) == "1970-01-01T00:00:00.000000000Z"


def test_rows_keep_odd_payloads_readable(core: Any) -> None:
    from nova.cli.formats import make_writer, rows_of

    with MemoryStore(kernel=core.ColumnLog) as store:
        store.append("s", Event("t", {"b": b"\x01\x02", "n": None, "u": "é"}, timestamp=T0))
        store.append("s", Event("t", [1, 2.5], timestamp=T0 + 1))
        out = io.StringIO()
        w = make_writer("jsonl", out)
        for rows in rows_of(store.window()):
            w.write(rows)
        w.close()
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert got[0]["data"] == {"b": "0102", "n": None, "u": "é"}
    assert got[1]["data"] == [1, 2.5] and got[1]["position"] == 2 and got[1]["sequence"] == 2


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    n = 40_000
    path = tmp_path_factory.mktemp("big") / "big.db"
    with SQLiteStore(path, durability="off") as store:
        store.append_columns("s", types=["t"] * n, timestamps=list(range(T0, T0 + n)),
                             data=[{"i": i, "pad": "x" * 150} for i in range(n)])
    return n, path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table", "parquet"])
def test_replay_output_runs_in_constant_memory(big_store: tuple[int, Path], tmp_path: Path, fmt: str) -> None:
    """Writing a window takes memory for one chunk of rows, not for the window: the
    peak while writing 40k rows is about the peak for 8k rows (holding the rows would
    add ~10 MB)."""
    from nova.cli.formats import make_writer, rows_of

    n, path = big_store

    def peak_for(end: int) -> int:
        out_path = tmp_path / f"out.{fmt}"
        with SQLiteStore(path) as store:
            batch = store.window(None, end)
            with open(out_path, "wb") if fmt == "parquet" else open(out_path, "w", encoding="utf-8",
                                                                    newline="") as out:
                tracemalloc.start()
                try:
                    writer = make_writer(fmt, out)
                    for rows in rows_of(batch):
                        writer.write(rows)
                    writer.close()
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
        return peak

    small, large = peak_for(T0 + 8_000), peak_for(T0 + n)
    assert large < small * 1.5 + 1_000_000, (small, large)
