"""The EventStore conformance suite, written once for every store backend.

A backend's test module subclasses :class:`StoreConformance` and provides
``make_store(**options)`` (options: ``max_events_per_stream``, ``retention``,
``on_full``, ``max_streams``, ``now_ns``, ``sweep_interval``); pytest then runs every
``test_*`` method below against it.  ``tests/test_store_memory.py`` does it for
``MemoryStore`` on both kernel twins::

    from store_conformance import StoreConformance

    class TestSQLiteStore(StoreConformance):
        def make_store(self, **options):
            return SQLiteStore(":memory:", **options)

:func:`stateful_test_case` builds the Hypothesis state machine that checks a store
against a plain sorted-list model.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nova.errors import BufferFull, StoreClosed, StreamFull, Timeout, ValidationError
from nova.events import Event
from nova.store import Cursor, EventBatch, EventStore, StreamInfo

__all__ = ("StoreConformance", "stateful_test_case", "ev")

T0 = 1_700_000_000_000_000_000  # a fixed wall-clock time in ns


def ev(ts: int, type: str = "t", data: Any = None, **kw: Any) -> Event:
    """An Event at T0 + ts ns."""
    return Event(type, data, timestamp=T0 + ts, **kw)


def _key(e: Event) -> tuple[str, int, Any]:
    return (e.type, e.timestamp, e.data)


class StoreConformance:
    """Every behaviour an EventStore promises.  Subclass and define ``make_store``."""

    def make_store(self, **options: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses define make_store(**options)")

    def wait_until_blocked(self, store: Any, n: int, timeout: float = 10.0) -> bool:
        """Wait until *n* appends have blocked on "block" subscribers (stats().blocked).
        Backends override this with their own wake-up; MemoryStore notifies its
        condition when an appender starts waiting."""
        with store._cond:
            return bool(store._cond.wait_for(lambda: store._blocked >= n, timeout=timeout))

    def store(self, **options: Any) -> Any:
        s = self.make_store(**options)
        self._stores.append(s)
        return s

    @pytest.fixture(autouse=True)
    def _close_stores(self) -> Any:
        self._stores: list[Any] = []
        yield
        for s in self._stores:
            s.close()

    # ------------------------------------------------------------------ protocol
    def test_is_an_event_store(self) -> None:
        s = self.store()
        assert isinstance(s, EventStore)
        with s as same:
            assert same is s

    # ------------------------------------------------------------------ append
    def test_append_returns_last_position_from_1(self) -> None:
        s = self.store()
        assert s.append("a", ev(1)) == 1
        assert s.append("a", ev(2), ev(3)) == 3
        assert s.append("b", ev(4)) == 1
        assert s.append("a") == 3
        assert s.append("nope") == 0
        assert s.streams() == ["a", "b"]

    def test_append_many_and_generators(self) -> None:
        s = self.store()
        assert s.append_many("a", [ev(1), ev(2)]) == 2
        assert s.append_many("a", (ev(i) for i in range(3, 6))) == 5
        with pytest.raises(TypeError, match="Expected events as an iterable"):
            s.append_many("a", 5)

    def test_append_is_all_or_nothing(self) -> None:
        s = self.store()
        s.append("a", ev(1))
        with pytest.raises(TypeError, match="Expected an Event at index 1, got dict"):
            s.append("a", ev(2), {"type": "x"}, ev(3))
        with pytest.raises(TypeError, match="Expected an Event.*, got str"):
            s.append("new", "not an event")
        assert s.streams() == ["a"]
        assert [e.timestamp for e in s.replay()] == [T0 + 1]
        assert s.stats().events == 1

    def test_empty_stream_name(self) -> None:
        s = self.store()
        with pytest.raises(ValidationError, match="Expected a non-empty str stream name"):
            s.append("", ev(1))

    @pytest.mark.parametrize("name", [5, None, b"a", ["s"], ("s",)])
    def test_non_str_stream_name_is_a_type_error(self, name: Any) -> None:
        # A list was "unhashable type: 'list'" (issue 10, item 10); every store method
        # that takes a stream name says the same thing for a non-str.
        s = self.store()
        s.append("s", ev(1))
        for call in (
            lambda: s.append(name, ev(2)),
            lambda: s.append_many(name, [ev(2)]),
            lambda: s.append_columns(name, types="t", timestamps=[T0]),
            lambda: s.read(name),
            lambda: s.stream_info(name),
        ):
            with pytest.raises(TypeError, match=f"Expected a str stream name, got {type(name).__name__}"):
                call()
        if name is not None:  # None: every stream
            with pytest.raises(TypeError, match=f"Expected a str stream name or None, got {type(name).__name__}"):
                s.subscribe(name)
        assert s.streams() == ["s"] and s.stats().events == 1

    def test_append_columns(self) -> None:
        s = self.store()
        ts = np.array([T0 + 3, T0 + 1, T0 + 2], dtype=np.int64)
        assert s.append_columns("c", types=["x", "y", "x"], timestamps=ts, data=[1, 2, 3], ids=["i1", "i2", "i3"]) == 3
        out = list(s.replay())
        assert [(e.type, e.data, e.id) for e in out] == [("y", 2, "i2"), ("x", 3, "i3"), ("x", 1, "i1")]
        # derived ids are unique and stable
        assert s.append_columns("c", types="z", timestamps=[T0 + 10, T0 + 11]) == 5
        ids1 = [e.id for e in s.replay(T0 + 10)]
        ids2 = s.window(T0 + 10).ids
        assert ids1 == ids2 and len(set(ids1)) == 2
        assert all(isinstance(i, str) and len(i) == 32 for i in ids1)
        assert [e.data for e in s.replay(T0 + 10)] == [None, None]

    def test_append_columns_datetime64(self) -> None:
        s = self.store()
        ts = np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:01"], dtype="datetime64[s]")
        s.append_columns("c", types="x", timestamps=ts)
        got = [e.timestamp for e in s.replay()]
        assert got == [1704067200 * 10**9, 1704067201 * 10**9]

    @pytest.mark.parametrize(
        "kwargs,exc,match",
        [
            ({"types": "x", "timestamps": [1, 2], "data": [1]}, ValidationError, "Expected 2 data"),
            ({"types": ["x"], "timestamps": [1, 2]}, ValidationError, "Expected 2 types"),
            ({"types": ["x", ""], "timestamps": [1, 2]}, ValidationError, "non-empty str event types, got '' at index 1"),
            ({"types": ["x", 3], "timestamps": [1, 2]}, ValidationError, "got int at index 1"),
            ({"types": "x", "timestamps": np.array([1.5, 2.0])}, ValidationError, "got floats"),
            ({"types": "x", "timestamps": [1, 2], "ids": ["a", None]}, ValidationError, "non-empty str event ids, got NoneType at index 1"),
            ({"types": "x", "timestamps": 5}, TypeError, "Expected timestamps as a numpy array or a sequence"),
            ({"types": "", "timestamps": [1]}, ValidationError, "non-empty str event type"),
            ({"types": "x", "timestamps": np.array(["NaT"], dtype="datetime64[ns]")}, ValidationError, "NaT"),
        ],
    )
    def test_append_columns_validates_everything_first(self, kwargs: dict[str, Any], exc: type, match: str) -> None:
        s = self.store()
        s.append("c", ev(0))
        with pytest.raises(exc, match=match):
            s.append_columns("c", **kwargs)
        with pytest.raises(exc, match=match):
            s.append_columns("fresh", **kwargs)
        assert s.stats().events == 1
        assert s.streams() == ["c"]

    # ------------------------------------------------------------------ read
    def test_read_pages_with_cursor(self) -> None:
        s = self.store()
        s.append("a", *[ev(i, data=i) for i in range(10)])
        s.append("b", ev(100))
        evs, cur = s.read("a", limit=4)
        assert [e.data for e in evs] == [0, 1, 2, 3]
        assert cur == Cursor("a", 4, T0 + 3)
        evs, cur = s.read("a", cur, limit=4)
        assert [e.data for e in evs] == [4, 5, 6, 7]
        evs, cur = s.read("a", cur)
        assert [e.data for e in evs] == [8, 9]
        assert cur.position == 10
        evs, cur2 = s.read("a", cur)
        assert evs == [] and cur2 == cur
        assert s.read("a", cur, limit=0) == ([], cur)

    def test_read_unknown_stream_and_bad_cursor(self) -> None:
        s = self.store()
        assert s.read("none") == ([], Cursor("none", 0, None))
        s.append("a", ev(1))
        with pytest.raises(ValueError, match="Expected a cursor of stream 'a', got one of 'b'"):
            s.read("a", Cursor("b", 1, None))
        with pytest.raises(TypeError, match="Expected a Cursor or None, got int"):
            s.read("a", 3)
        with pytest.raises(ValueError, match="Expected limit >= 0"):
            s.read("a", limit=-1)

    def test_read_returns_the_appended_events(self) -> None:
        s = self.store()
        e1 = Event("user.created", {"name": "Ada"}, metadata={"trace": "x"})
        s.append("u", e1)
        (got,), _ = s.read("u")
        assert got == e1
        assert got.metadata == {"trace": "x"}

    # ------------------------------------------------------------------ replay / window
    def test_replay_half_open_and_ordered_with_late_events(self) -> None:
        s = self.store()
        s.append("a", ev(10, data="a10"), ev(30, data="a30"))
        s.append("b", ev(20, data="b20"), ev(10, data="b10-late"))
        s.append("a", ev(5, data="a5-late"), ev(30, data="a30-second"))
        got = [e.data for e in s.replay()]
        assert got == ["a5-late", "a10", "b10-late", "b20", "a30", "a30-second"]
        assert [e.data for e in s.replay(T0 + 10, T0 + 30)] == ["a10", "b10-late", "b20"]
        assert [e.data for e in s.replay(T0 + 30, None)] == ["a30", "a30-second"]
        assert list(s.replay(T0 + 31)) == []
        assert [e.data for e in s.replay(None, T0 + 10)] == ["a5-late"]

    def test_replay_filters(self) -> None:
        s = self.store()
        s.append("a", ev(1, "x", 1), ev(2, "y", 2))
        s.append("b", ev(3, "x", 3), ev(4, "z", 4))
        assert [e.data for e in s.replay(streams="a")] == [1, 2]
        assert [e.data for e in s.replay(streams=["b", "unknown"])] == [3, 4]
        assert [e.data for e in s.replay(types="x")] == [1, 3]
        assert [e.data for e in s.replay(streams=["a"], types=["x", "z"])] == [1]
        assert list(s.replay(types="never")) == []
        with pytest.raises(TypeError, match="Expected streams as a str"):
            s.replay(streams=5)

    def test_replay_accepts_event_timestamp_forms(self) -> None:
        s = self.store()
        base = datetime(2024, 1, 1, tzinfo=timezone.utc)
        ns = int(base.timestamp()) * 10**9
        s.append("a", Event("t", 1, timestamp=ns), Event("t", 2, timestamp=ns + 10**9))
        assert [e.data for e in s.replay(base, base + timedelta(seconds=1))] == [1]
        assert [e.data for e in s.replay(np.datetime64("2024-01-01T00:00:01", "s"))] == [2]
        with pytest.raises(ValidationError, match="naive datetime"):
            s.replay(datetime(2024, 1, 1))
        with pytest.raises(ValidationError, match="got float"):
            s.window(1.5)

    def test_window_columns(self) -> None:
        s = self.store()
        s.append("a", ev(1, "x", "p1"), ev(3, "y", "p3"))
        s.append("b", ev(2, "x", "p2"))
        b = s.window(T0, T0 + 10)
        assert isinstance(b, EventBatch)
        assert len(b) == 3
        assert b.timestamps.tolist() == [T0 + 1, T0 + 2, T0 + 3]
        assert b.positions.tolist() == [1, 1, 2]
        assert b.sequences.tolist() == [1, 3, 2]
        assert [b.streams[c] for c in b.stream_codes] == ["a", "b", "a"]
        assert [b.types[c] for c in b.type_codes] == ["x", "x", "y"]
        assert b.data == ["p1", "p2", "p3"]
        assert [e.data for e in b] == ["p1", "p2", "p3"]
        assert b[-1].data == "p3" and b[0].id == b.ids[0]
        with pytest.raises(IndexError):
            b[3]
        assert b.timestamps.dtype == np.int64 and b.stream_codes.dtype == np.int32

    def test_window_is_a_snapshot(self) -> None:
        s = self.store()
        s.append("a", *[ev(i, data=i) for i in range(5)])
        b = s.window()
        s.append("a", *[ev(i, data=i) for i in range(5, 10)])
        assert len(b) == 5 and b.data == [0, 1, 2, 3, 4]

    def test_window_to_pandas(self) -> None:
        import pandas as pd

        s = self.store()
        s.append("a", ev(1, "x", 10), ev(2, "y", 20))
        df = s.window().to_pandas()
        assert list(df.columns) == ["timestamp", "sequence", "stream", "position", "type", "id", "data", "metadata"]
        assert df["timestamp"].iloc[0] == pd.Timestamp(T0 + 1, unit="ns", tz="UTC")
        assert df["stream"].tolist() == ["a", "a"]
        assert df["type"].tolist() == ["x", "y"]
        assert df["data"].tolist() == [10, 20]

    def test_window_to_arrow(self) -> None:
        s = self.store()
        s.append("a", ev(1, "x", 10), ev(2, "y", 20))
        t = s.window().to_arrow()
        assert t.num_rows == 2
        assert t.column("data").to_pylist() == [10, 20]
        assert t.column("stream").to_pylist() == ["a", "a"]
        s.append("a", ev(3, "x", object()))
        with pytest.raises(TypeError, match="Expected payloads pyarrow can type"):
            s.window().to_arrow()
        assert s.window().to_arrow(include_data=False).num_columns == 6

    # ------------------------------------------------------------------ info
    def test_stream_info_streams_stats(self) -> None:
        s = self.store()
        s.append("a", ev(1), ev(2))
        s.append("b", ev(3))
        assert s.stream_info("a") == StreamInfo("a", 2, 1, 2, 0)
        with pytest.raises(KeyError):
            s.stream_info("zzz")
        st = s.stats()
        assert (st.events, st.streams, st.appended) == (3, 2, 3)
        assert st.memory_bytes > 0

    # ------------------------------------------------------------------ retention
    def test_max_events_evict_oldest_never_reuses_positions(self) -> None:
        s = self.store(max_events_per_stream=3)
        s.append("a", *[ev(i, data=i) for i in range(5)])
        assert [e.data for e in s.read("a")[0]] == [2, 3, 4]
        assert s.append("a", ev(9, data=9)) == 6
        assert s.stream_info("a") == StreamInfo("a", 3, 4, 6, 3)
        assert s.stats().evicted == 3

    def test_max_events_reject(self) -> None:
        s = self.store(max_events_per_stream=2, on_full="reject")
        s.append("a", ev(1))
        with pytest.raises(StreamFull, match="max_events_per_stream=2"):
            s.append("a", ev(2), ev(3))
        assert s.append("a", ev(2)) == 2
        with pytest.raises(StreamFull):
            s.append("a", ev(3))
        assert s.stats().rejected == 2
        assert s.append("b", ev(1)) == 1

    def test_max_streams(self) -> None:
        s = self.store(max_streams=2)
        s.append("a", ev(1))
        s.append("b", ev(1))
        with pytest.raises(StreamFull, match="max_streams=2"):
            s.append("c", ev(1))
        assert s.append("a", ev(2)) == 2
        assert s.streams() == ["a", "b"]

    def test_retention_on_read_and_sweep(self) -> None:
        now = [T0 + 100 * 10**9]
        s = self.store(retention=timedelta(seconds=10), now_ns=lambda: now[0], sweep_interval=None)
        s.append("a", Event("t", 1, timestamp=now[0] - 20 * 10**9), Event("t", 2, timestamp=now[0] - 5 * 10**9))
        assert [e.data for e in s.replay()] == [2]
        assert [e.data for e in s.read("a")[0]] == [2]
        now[0] += 6 * 10**9
        assert s.sweep() == 1
        assert list(s.replay()) == []
        assert s.stream_info("a") == StreamInfo("a", 0, None, 2, 2)
        assert s.append("a", Event("t", 3, timestamp=now[0])) == 3

    @pytest.mark.parametrize("retention", [float("inf"), timedelta.max, 1e12], ids=["inf", "tdmax", "1e12"])
    def test_retention_longer_than_the_int64_range_keeps_everything(self, retention: object) -> None:
        # inf raised OverflowError at construction; a retention reaching past the int64
        # minimum made every read fail with "Expected cutoff within the int64 ... range".
        s = self.store(retention=retention, now_ns=lambda: T0, sweep_interval=None)
        s.append("a", Event("t", 1, timestamp=-(2**63) + 1), Event("t", 2, timestamp=T0))
        assert [e.data for e in s.replay()] == [1, 2]
        assert [e.data for e in s.read("a")[0]] == [1, 2]
        assert len(s.window()) == 2
        assert s.sweep() == 0
        assert s.stream_info("a") == StreamInfo("a", 2, 1, 2, 0)

    @pytest.mark.parametrize("huge", [float("inf"), 1e12, timedelta.max], ids=["inf", "1e12", "tdmax"])
    def test_subscription_huge_timeout_waits_without_limit(self, huge: Any) -> None:
        # get/get_many with a timeout too long for a lock wait used to raise OverflowError.
        s = self.store()
        sub = s.subscribe("a")
        got: dict[str, Any] = {}

        def consumer() -> None:
            try:
                got["get"] = sub.get(timeout=huge).data
                got["many"] = [e.data for e in sub.get_many(5, timeout=huge)]
            except BaseException as exc:  # recorded, asserted below
                got["error"] = exc

        t = threading.Thread(target=consumer, daemon=True)
        t.start()
        s.append("a", ev(1, data=1))
        s.append("a", ev(2, data=2))
        t.join(10)
        assert got == {"get": 1, "many": [2]}
        sub.close()

    def test_subscription_get_many_checks_max_items(self) -> None:
        # A non-int max_items was a ValueError; it is a TypeError, as RingQueue.get_many's.
        s = self.store()
        sub = s.subscribe("a")
        for bad in ("2", 2.0, True, None):
            with pytest.raises(TypeError, match="Expected max_items as an int >= 1, got"):
                sub.get_many(bad, timeout=0)  # type: ignore[arg-type]
        for bad in (0, -1):
            with pytest.raises(ValueError, match=f"Expected max_items as an int >= 1, got {bad}"):
                sub.get_many(bad, timeout=0)
        sub.close()

    @pytest.mark.parametrize("big", [2**63 - 1, 2**63, 2**70])
    def test_read_with_a_cursor_or_limit_beyond_int64(self, big: int) -> None:
        # The compiled kernel raised OverflowError here; the pure one did not.
        s = self.store()
        s.append("a", ev(1, data=1), ev(2, data=2))
        far = Cursor("a", big, None)
        assert s.read("a", far) == ([], far)
        assert [e.data for e in s.read("a", limit=big)[0]] == [1, 2]
        assert [e.data for e in s.read("a", Cursor("a", 1, None), limit=big)[0]] == [2]
        with s.subscribe("a", far) as sub:
            assert sub.get_many(5, timeout=0) == []
        with s.subscribe(None, Cursor(None, big, None)) as sub:
            assert sub.get_many(5, timeout=0) == []

    def test_cursor_type_and_stream_filters_are_checked_at_the_call(self) -> None:
        # Siblings of issue 10 item 10: no "unhashable" or late errors from any argument.
        s = self.store()
        s.append("s", ev(1))
        for bad_cursor in (5, "s", ["s", 0], ("s", 0, None)):
            with pytest.raises(TypeError, match="Expected a Cursor or None, got"):
                s.read("s", bad_cursor)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="Expected a Cursor or None, got"):
                s.subscribe("s", bad_cursor)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="Expected a cursor of stream 's'"):
            s.read("s", Cursor(["s"], 1, None))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="Expected a cursor position as an int >= 0"):
            s.read("s", Cursor("s", [1], None))  # type: ignore[arg-type]
        for kw in ("streams", "types"):
            for bad in (5, [["s"]], [b"s"], [None]):
                with pytest.raises(TypeError, match=f"Expected {kw} as"):
                    s.window(**{kw: bad})
                with pytest.raises(TypeError, match=f"Expected {kw} as"):
                    s.replay(**{kw: bad})
        assert len(s.window(streams=["s"], types=["t"])) == 1

    def test_stream_info_of_a_non_str_is_a_type_error(self) -> None:
        # 3 was a KeyError about an unknown stream and [1] an "unhashable type" error.
        s = self.store()
        s.append("a", ev(1))
        for bad in (3, None, ["a"], b"a"):
            with pytest.raises(TypeError, match="Expected a str stream name, got"):
                s.stream_info(bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("stream", ["a", None])
    def test_subscription_never_delivers_expired_events(self, stream: Any) -> None:
        # The subscription read the log without applying retention: expired history
        # (and late events already past the cutoff) came out of it.
        now = [T0 + 100 * 10**9]
        s = self.store(retention=10.0, now_ns=lambda: now[0], sweep_interval=None)
        sub = s.subscribe(stream)
        s.append("a", Event("t", "old", timestamp=now[0] - 20 * 10**9),
                 Event("t", "new", timestamp=now[0] - 5 * 10**9),
                 Event("t", "late-old", timestamp=now[0] - 30 * 10**9))
        assert [e.data for e in sub.get_many(10, timeout=0)] == ["new"]
        assert sub.get_many(10, timeout=0) == []
        assert sub.stats().missed == 2
        now[0] += 6 * 10**9  # "new" expires before it is taken
        s.append("a", Event("t", "newer", timestamp=now[0]))
        assert [e.data for e in sub.get_many(10, timeout=0)] == ["newer"]
        sub.close()

    def test_closing_a_subscription_keeps_its_cursor_at_the_last_event_taken(self) -> None:
        # Closing dropped the untaken rest of the batch and the cursor then pointed
        # past it: resuming from it skipped those events.
        s = self.store()
        s.append("a", *[ev(i, data=i) for i in range(5)])
        sub = s.subscribe("a")
        taken = []
        for e in sub:
            taken.append(e.data)
            if e.data == 2:
                sub.close()
        assert taken == [0, 1, 2]
        assert sub.cursor.position == 3
        assert [e.data for e in s.read("a", sub.cursor)[0]] == [3, 4]
        with s.subscribe("a", sub.cursor) as again:
            assert [e.data for e in again.get_many(10, timeout=0)] == [3, 4]
        sub2 = s.subscribe("a")
        assert sub2.get(timeout=5).data == 0
        s.close()  # closing the store ends it the same way
        assert sub2.cursor.position == 1

    # ------------------------------------------------------------------ close
    def test_close(self) -> None:
        s = self.store()
        s.append("a", ev(1))
        s.close()
        s.close()
        for call in (
            lambda: s.append("a", ev(2)),
            lambda: s.read("a"),
            lambda: s.replay(),
            lambda: s.window(),
            lambda: s.subscribe("a"),
            lambda: s.append_columns("a", types="x", timestamps=[1]),
        ):
            with pytest.raises(StoreClosed):
                call()
        assert s.stats().events == 1

    # ------------------------------------------------------------------ subscribe
    def test_subscribe_history_then_live(self) -> None:
        s = self.store()
        s.append("a", ev(1, data=1), ev(2, data=2))
        sub = s.subscribe("a")
        assert [sub.get(timeout=5).data for _ in range(2)] == [1, 2]
        s.append("a", ev(3, data=3))
        s.append("b", ev(3, data="other"))
        assert sub.get(timeout=5).data == 3
        with pytest.raises(Timeout):
            sub.get(timeout=0.01)
        assert sub.cursor == Cursor("a", 3, T0 + 3)
        sub.close()
        assert list(sub) == []

    def test_subscribe_from_cursor_and_all_streams(self) -> None:
        s = self.store()
        s.append("a", ev(1, data="a1"), ev(2, data="a2"))
        s.append("b", ev(0, data="b1"))
        sub = s.subscribe("a", Cursor("a", 1, None))
        assert sub.get(timeout=5).data == "a2"
        allsub = s.subscribe()
        assert [e.data for e in allsub.get_many(10, timeout=5)] == ["a1", "a2", "b1"]
        assert allsub.cursor == Cursor(None, 3, T0 + 0)
        again = s.subscribe(None, allsub.cursor)
        s.append("c", ev(5, data="c1"))
        assert again.get(timeout=5).data == "c1"
        assert allsub.get(timeout=5).data == "c1"

    def test_subscribe_stream_that_does_not_exist_yet(self) -> None:
        s = self.store()
        sub = s.subscribe("later")
        assert sub.get_many(5, timeout=0.01) == []
        s.append("other", ev(1))
        s.append("later", ev(2, data="x"))
        assert sub.get(timeout=5).data == "x"

    def test_subscribe_wakes_on_append_from_another_thread(self) -> None:
        s = self.store()
        sub = s.subscribe("a")
        got: list[Any] = []
        done = threading.Event()

        def consume() -> None:
            for e in sub:
                got.append(e.data)
                if len(got) == 3:
                    break
            done.set()

        t = threading.Thread(target=consume)
        t.start()
        for i in range(3):
            s.append("a", ev(i, data=i))
        assert done.wait(10)
        t.join(10)
        assert got == [0, 1, 2]

    def test_closing_store_ends_subscriptions(self) -> None:
        s = self.store()
        sub = s.subscribe("a")
        ended = threading.Event()
        got: list[Any] = []

        def consume() -> None:
            got.extend(sub)
            ended.set()

        t = threading.Thread(target=consume)
        t.start()
        s.append("a", ev(1))
        s.close()
        assert ended.wait(10)
        t.join(10)
        assert sub.closed and len(got) <= 1

    def test_subscribe_async(self) -> None:
        s = self.store()
        s.append("a", ev(1, data=1))

        async def main() -> list[Any]:
            sub = s.subscribe("a")
            out = []

            async def produce() -> None:
                for i in range(2, 5):
                    await asyncio.sleep(0)
                    s.append("a", ev(i, data=i))

            task = asyncio.create_task(produce())
            async for e in sub:
                out.append(e.data)
                if len(out) == 4:
                    break
            await task
            sub.close()
            return out

        assert asyncio.run(main()) == [1, 2, 3, 4]

    def test_subscribe_async_ends_on_close(self) -> None:
        s = self.store()

        async def main() -> list[Any]:
            sub = s.subscribe("a")
            loop = asyncio.get_running_loop()
            loop.call_soon(s.close)
            return [e async for e in sub]

        assert asyncio.run(main()) == []

    def test_subscribe_bad_arguments(self) -> None:
        s = self.store()
        with pytest.raises(ValueError, match="Expected overflow among"):
            s.subscribe("a", overflow="drop-oldest")
        with pytest.raises(ValueError, match="Expected buffer >= 1"):
            s.subscribe("a", buffer=0)
        with pytest.raises(TypeError, match="Expected buffer as an int"):
            s.subscribe("a", buffer=1.5)
        with pytest.raises(ValidationError):
            s.subscribe("")

    def test_subscribe_race_no_gap_no_duplicate(self) -> None:
        """History catch-up races with appends: 20 runs, exact sequences."""
        for run in range(20):
            s = self.store()
            n_hist, n_live = 300, 700
            s.append_many("r", [ev(i, data=i) for i in range(n_hist)])
            start = threading.Barrier(2)

            def produce() -> None:
                start.wait(10)
                for i in range(n_hist, n_hist + n_live):
                    s.append("r", ev(i, data=i))

            t = threading.Thread(target=produce)
            t.start()
            # alternate: a big buffer, a small blocking one, and the all-streams form
            sub = s.subscribe(None if run % 4 == 3 else "r", buffer=10_000 if run % 2 else 50)
            start.wait(10)
            got = [sub.get(timeout=10).data for _ in range(n_hist + n_live)]
            t.join(10)
            assert got == list(range(n_hist + n_live)), f"run {run}"
            with pytest.raises(Timeout):
                sub.get(timeout=0.001)
            s.close()

    def test_overflow_drop_oldest_counts(self) -> None:
        s = self.store()
        s.append("a", ev(0, data=0))
        sub = s.subscribe("a", buffer=3, overflow="drop_oldest")
        s.append("a", *[ev(i, data=i) for i in range(1, 8)])
        got = [e.data for e in sub.get_many(100, timeout=5)]
        got += [e.data for e in sub.get_many(100, timeout=0.01)]
        assert got == [0, 5, 6, 7]
        st = sub.stats()
        assert st.dropped == 4 and st.overflows >= 1 and st.delivered == 4

    def test_overflow_error_raises_in_subscriber(self) -> None:
        s = self.store()
        sub = s.subscribe("a", buffer=2, overflow="error")
        s.append("a", ev(1), ev(2), ev(3))
        with pytest.raises(BufferFull, match="buffer=2"):
            sub.get(timeout=5)
        assert sub.closed and sub.stats().overflows == 1
        assert s.append("a", ev(4)) == 4

    def test_overflow_block_blocks_the_appender(self) -> None:
        s = self.store()
        sub = s.subscribe("a", buffer=2, overflow="block")
        s.append("a", ev(1), ev(2))
        appended = threading.Event()

        def produce() -> None:
            s.append("a", ev(3))
            appended.set()

        t = threading.Thread(target=produce)
        t.start()
        assert self.wait_until_blocked(s, 1)
        assert not appended.is_set()
        assert [e.timestamp - T0 for e in sub.get_many(10, timeout=5)] == [1, 2]
        assert appended.wait(10)
        t.join(10)
        assert sub.get(timeout=5).timestamp == T0 + 3
        assert sub.stats().blocked == 1 and s.stats().blocked == 1

    def test_block_subscriber_close_releases_appender(self) -> None:
        s = self.store()
        sub = s.subscribe("a", buffer=1, overflow="block")
        s.append("a", ev(1))
        done = threading.Event()

        def produce() -> None:
            s.append("a", ev(2))
            done.set()

        t = threading.Thread(target=produce)
        t.start()
        assert self.wait_until_blocked(s, 1)
        assert not done.is_set()
        sub.close()
        assert done.wait(10)
        t.join(10)

    def test_get_on_ended_subscription_raises_store_closed(self) -> None:
        s = self.store()
        sub = s.subscribe("a")
        sub.close()
        with pytest.raises(StoreClosed, match="ended"):
            sub.get(timeout=1)
        assert sub.get_many(5, timeout=0.01) == []

    @pytest.mark.stress
    def test_one_subscription_many_consumer_threads(self) -> None:
        s = self.store()
        sub = s.subscribe("a", buffer=100_000)
        total = 4000
        got: list[int] = []
        glock = threading.Lock()
        done = threading.Event()

        def consume() -> None:
            while not done.is_set():
                try:
                    e = sub.get(timeout=0.05)
                except Timeout:
                    continue
                except StoreClosed:
                    return
                with glock:
                    got.append(e.data)
                    if len(got) == total:
                        done.set()

        threads = [threading.Thread(target=consume) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(total):
            s.append("a", ev(i, data=i))
        assert done.wait(60)
        sub.close()
        for t in threads:
            t.join(60)
        assert sorted(got) == list(range(total))

    # ------------------------------------------------------------------ system streams
    # Streams named "nova.*" (dead letters, redrive acks, audit) are nova's own: left
    # out of replay/window/subscribe over every stream unless include_system=True or
    # named (issue 13, report 4).
    def _with_system(self) -> Any:
        s = self.store()
        s.append("orders", ev(1, "order.paid", 1))
        s.append("nova.deadletter", ev(2, "nova.deadletter", 2))
        s.append("orders", ev(3, "order.paid", 3))
        s.append("nova.audit", ev(4, "nova.audit", 4))
        s.append("users", ev(5, "user.created", 5))
        return s

    def test_system_streams_left_out_of_replay_and_window_by_default(self) -> None:
        s = self._with_system()
        assert [e.data for e in s.replay()] == [1, 3, 5]
        batch = s.window()
        assert len(batch) == 3 and [e.data for e in batch] == [1, 3, 5]
        assert {batch.streams[c] for c in batch.stream_codes.tolist()} == {"orders", "users"}
        assert [e.data for e in s.replay(T0 + 2, T0 + 5)] == [3]
        assert [e.data for e in s.replay(types=["order.paid", "nova.deadletter"])] == [1, 3]

    def test_include_system_or_naming_a_system_stream_reads_it(self) -> None:
        s = self._with_system()
        assert [e.data for e in s.replay(include_system=True)] == [1, 2, 3, 4, 5]
        assert len(s.window(include_system=True)) == 5
        assert [e.data for e in s.replay(streams="nova.deadletter")] == [2]
        assert [e.data for e in s.window(streams=["orders", "nova.audit"])] == [1, 3, 4]
        assert [e.data for e in s.replay(types="nova.audit", include_system=True)] == [4]

    def test_readers_by_name_and_inventory_see_system_streams(self) -> None:
        s = self._with_system()
        assert [e.data for e in s.read("nova.deadletter")[0]] == [2]
        assert s.stream_info("nova.audit").length == 1
        assert s.streams() == ["orders", "nova.deadletter", "nova.audit", "users"]
        assert s.stats().events == 5 and s.stats().streams == 4

    def test_a_stream_merely_containing_nova_is_not_a_system_stream(self) -> None:
        s = self.store()
        s.append("novatel", ev(1, data=1))
        s.append("my.nova.stream", ev(2, data=2))
        s.append("nova", ev(3, data=3))
        s.append("nova.x", ev(4, data=4))
        assert [e.data for e in s.replay()] == [1, 2, 3]

    def test_include_system_must_be_a_bool(self) -> None:
        s = self._with_system()
        for call in (lambda: s.replay(include_system=1), lambda: s.window(include_system="yes"),
                     lambda: s.subscribe(include_system=None)):
            with pytest.raises(TypeError, match="Expected include_system as a bool, got (int|str|NoneType)"):
                call()

    def test_system_stream_added_later_is_left_out_too(self) -> None:
        s = self.store()
        s.append("orders", ev(1, data=1))
        assert [e.data for e in s.replay()] == [1]
        s.append("nova.deadletter", ev(2, data=2))
        assert [e.data for e in s.replay()] == [1]
        s.append("orders", ev(3, data=3))
        assert [e.data for e in s.window()] == [1, 3]

    def test_subscribe_to_every_stream_skips_system_streams_history_and_live(self) -> None:
        s = self._with_system()
        sub = s.subscribe()
        assert [sub.get(timeout=5).data for _ in range(3)] == [1, 3, 5]
        s.append("nova.deadletter", ev(6, data=6))
        s.append("orders", ev(7, data=7))
        assert sub.get(timeout=5).data == 7
        assert sub.get_many(10, timeout=0.05) == []
        st = sub.stats()
        assert (st.delivered, st.missed, st.dropped) == (4, 0, 0)
        # the cursor is the global sequence of the last event taken: resuming from it
        # gives nothing twice
        cur = sub.cursor
        assert cur.position == 7
        sub.close()
        s.append("users", ev(8, data=8))
        again = s.subscribe(None, cur)
        assert again.get(timeout=5).data == 8
        again.close()

    def test_subscribe_include_system_and_by_name(self) -> None:
        s = self._with_system()
        every = s.subscribe(include_system=True)
        assert [every.get(timeout=5).data for _ in range(5)] == [1, 2, 3, 4, 5]
        dead = s.subscribe("nova.deadletter")
        assert dead.get(timeout=5).data == 2
        s.append("nova.deadletter", ev(6, data=6))
        assert dead.get(timeout=5).data == 6 and every.get(timeout=5).data == 6
        every.close()
        dead.close()

    def test_subscribe_skips_a_long_run_of_system_events(self) -> None:
        # more system rows than one fetch takes (512) between two business events
        s = self.store()
        s.append("orders", ev(0, data="a"))
        s.append_many("nova.deadletter", [ev(i, data=i) for i in range(1, 1301)])
        s.append("orders", ev(2000, data="b"))
        sub = s.subscribe()
        assert [sub.get(timeout=5).data for _ in range(2)] == ["a", "b"]
        assert sub.get_many(10, timeout=0.05) == []
        assert sub.stats().missed == 0
        sub.close()

    def test_async_subscribe_skips_system_streams(self) -> None:
        s = self._with_system()

        async def main() -> list[Any]:
            sub = s.subscribe()
            out = []
            async for e in sub:
                out.append(e.data)
                if len(out) == 3:
                    s.append("nova.audit", ev(6, data=6))
                    s.append("orders", ev(7, data=7))
                if len(out) == 4:
                    sub.close()
            return out

        assert asyncio.run(main()) == [1, 3, 5, 7]

    def test_a_full_block_subscriber_that_leaves_system_streams_out_does_not_block_their_appends(self) -> None:
        # a dead letter written from a delivery thread must not wait for a subscriber
        # that will never receive it
        s = self.store()
        sub = s.subscribe(buffer=2, overflow="block")
        s.append("orders", ev(1, data=1), ev(2, data=2))  # the buffer is full now
        done = threading.Event()

        def dead_letter() -> None:
            s.append("nova.deadletter", ev(3, data=3))
            done.set()

        t = threading.Thread(target=dead_letter, daemon=True)
        t.start()
        try:
            assert done.wait(10), "the system append blocked on a subscriber that leaves it out"
        finally:
            if not done.is_set():
                s.close()  # wakes the blocked appender
            t.join(10)
        assert [sub.get(timeout=5).data for _ in range(2)] == [1, 2]
        assert sub.get_many(5, timeout=0.05) == []  # and it never gets the dead letter
        sub.close()

    # ------------------------------------------------------------------ threads
    @pytest.mark.stress
    def test_all_streams_subscriber_with_concurrent_appenders(self) -> None:
        s = self.store()
        n_threads, per = 4, 400
        sub = s.subscribe(None, buffer=64)
        start = threading.Barrier(n_threads)

        def appender(k: int) -> None:
            start.wait(10)
            for i in range(per):
                s.append(f"s{k % 2}", ev(i, data=(k, i)))

        threads = [threading.Thread(target=appender, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        got = [sub.get(timeout=30) for _ in range(n_threads * per)]
        for t in threads:
            t.join(30)
        datas = [e.data for e in got]
        assert sorted(datas) == sorted((k, i) for k in range(n_threads) for i in range(per))
        for k in range(n_threads):  # each appender's events arrive in its order
            assert [i for (kk, i) in datas if kk == k] == list(range(per))
        assert sub.cursor.position == n_threads * per

    @pytest.mark.stress
    def test_concurrent_appenders_and_readers(self) -> None:
        s = self.store()
        n_threads, per = 6, 500
        streams = ["s0", "s1", "s2"]
        errors: list[BaseException] = []
        stop = threading.Event()
        start = threading.Barrier(n_threads + 2)
        positions: dict[str, list[int]] = {k: [] for k in streams}
        plock = threading.Lock()

        def appender(k: int) -> None:
            try:
                start.wait(10)
                name = streams[k % len(streams)]
                for i in range(per):
                    p = s.append(name, ev(i, data=(k, i)))
                    with plock:
                        positions[name].append(p)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def reader() -> None:
            try:
                start.wait(10)
                while not stop.is_set():
                    b = s.window()
                    ts = b.timestamps
                    assert bool((ts[1:] >= ts[:-1]).all())
                    assert len(b.data) == len(b)
                    s.read("s0", limit=50)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=appender, args=(k,)) for k in range(n_threads)]
        threads += [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads[:n_threads]:
            t.join(60)
        stop.set()
        for t in threads[n_threads:]:
            t.join(60)
        assert not errors, errors
        total = n_threads * per
        assert s.stats().events == total
        for name in streams:
            assert sorted(positions[name]) == list(range(1, len(positions[name]) + 1))
        seen = [e.data for e in s.replay()]
        assert len(seen) == total and len(set(seen)) == total


# ---------------------------------------------------------------------- stateful
def stateful_test_case(factory: Any, *, max_examples: int = 25, steps: int = 30) -> type:
    """A Hypothesis ``TestCase`` checking ``factory(**options)`` stores against a
    sorted-list model: appends in and out of order, windows, reads, retention."""

    class StoreModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.now = T0 + 1_000
            self.retention = 500
            self.store = factory(retention=5e-7, now_ns=lambda: self.now, sweep_interval=None)
            self.rows: list[tuple[int, int, str, int, Any]] = []  # (ts, seq, stream, pos, data)
            self.seq = 0
            self.last_pos: dict[str, int] = {}

        def expire(self) -> None:
            cutoff = self.now - self.retention
            self.rows = [r for r in self.rows if r[0] >= cutoff]

        @rule(stream=st.sampled_from(["a", "b", "c"]), offsets=st.lists(st.integers(-600, 400), min_size=1, max_size=5))
        def append(self, stream: str, offsets: list[int]) -> None:
            events = []
            for off in offsets:
                self.seq += 1
                data = self.seq
                events.append(Event("t", data, timestamp=self.now + off))
                pos = self.last_pos.get(stream, 0) + 1
                self.last_pos[stream] = pos
                self.rows.append((self.now + off, self.seq, stream, pos, data))
            assert self.store.append(stream, *events) == self.last_pos[stream]

        @rule(stream=st.sampled_from(["a", "b"]), offsets=st.lists(st.integers(-600, 400), min_size=1, max_size=5))
        def append_columns(self, stream: str, offsets: list[int]) -> None:
            ts = []
            datas = []
            for off in offsets:
                self.seq += 1
                pos = self.last_pos.get(stream, 0) + 1
                self.last_pos[stream] = pos
                self.rows.append((self.now + off, self.seq, stream, pos, self.seq))
                ts.append(self.now + off)
                datas.append(self.seq)
            assert self.store.append_columns(stream, types="t", timestamps=ts, data=datas) == self.last_pos[stream]

        @rule(dt=st.integers(0, 300))
        def tick(self, dt: int) -> None:
            self.now += dt

        @rule(lo=st.integers(-800, 500), width=st.integers(0, 800))
        def window(self, lo: int, width: int) -> None:
            start, end = self.now + lo, self.now + lo + width
            self.expire()
            want = sorted(r for r in self.rows if start <= r[0] < end)
            b = self.store.window(start, end)
            assert b.timestamps.tolist() == [r[0] for r in want]
            assert b.data == [r[4] for r in want]
            assert [e.data for e in self.store.replay(start, end)] == [r[4] for r in want]

        @rule(stream=st.sampled_from(["a", "b", "c"]), after=st.integers(0, 20), limit=st.integers(1, 6))
        def read(self, stream: str, after: int, limit: int) -> None:
            self.expire()
            want = [r for r in self.rows if r[2] == stream and r[3] > after][:limit]
            evs, cur = self.store.read(stream, Cursor(stream, after, None), limit)
            assert [e.data for e in evs] == [r[4] for r in want]
            assert cur.position == (want[-1][3] if want else after)

        @rule()
        def sweep(self) -> None:
            self.store.sweep()
            self.expire()

        @invariant()
        def counts(self) -> None:
            self.expire()
            self.store.sweep()
            assert self.store.stats().events == len(self.rows)

        def teardown(self) -> None:
            self.store.close()

    StoreModel.TestCase.settings = settings(max_examples=max_examples, stateful_step_count=steps, deadline=None)
    return StoreModel.TestCase
