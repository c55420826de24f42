"""MemoryStore: the conformance suite on both kernel twins, plus what is specific to
the in-memory columnar store (zero-copy windows, compaction, background sweep)."""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

import numpy as np
import pytest

from nova import _core
from nova.errors import StoreClosed
from nova.events import Event
from nova.store import Cursor, MemoryStore, StoreSubscription
from nova.testing import ManualClock

from store_conformance import T0, StoreConformance, ev, stateful_test_case


class TestMemoryStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _kernel(self, core: Any) -> None:
        self.kernel = core.ColumnLog

    def make_store(self, **options: Any) -> MemoryStore:
        return MemoryStore(kernel=self.kernel, **options)

    # ---------------------------------------------------------------- specific
    def test_window_is_zero_copy_when_in_order(self) -> None:
        s = self.store()
        s.append_columns("a", types="t", timestamps=np.arange(1000, dtype=np.int64) + T0)
        b1 = s.window(T0 + 100, T0 + 200)
        b2 = s.window(T0 + 150, T0 + 300)
        assert np.shares_memory(b1.timestamps, b2.timestamps)
        assert b1.timestamps.tolist() == list(range(T0 + 100, T0 + 200))

    def test_late_events_fall_back_to_index_and_compaction_restores_order(self) -> None:
        s = self.store(max_events_per_stream=500)
        s.append_columns("a", types="t", timestamps=np.arange(500, dtype=np.int64) + T0, data=list(range(500)))
        s.append("a", ev(-5, data="late"))
        assert s.window(T0 - 10, T0 + 2).data == ["late", 1]
        s.append_columns("a", types="t", timestamps=np.arange(1000, 2000, dtype=np.int64) + T0, data=list(range(1000, 2000)))
        # positions 1..1001 evicted (the late row among them), then compacted away
        assert s.stats().evicted == 1001
        b = s.window()
        assert b.data == list(range(1500, 2000))
        assert np.shares_memory(b.timestamps, s.window(T0 + 1600).timestamps)

    def test_eviction_compacts_and_old_batches_stay_valid(self) -> None:
        s = self.store(max_events_per_stream=100)
        s.append("a", *[ev(i, data=i) for i in range(100)])
        before = s.window()
        for k in range(30):
            s.append_many("a", [ev(100 + 100 * k + i, data=100 + 100 * k + i) for i in range(100)])
        assert s.stats().events == 100
        assert before.data == list(range(100))
        assert [e.data for e in before] == list(range(100))
        assert s.stats().memory_bytes < 100_000
        assert s.read("a")[0][0].data == 3000

    def test_subscriber_behind_eviction_counts_missed(self) -> None:
        s = self.store(max_events_per_stream=5)
        sub = s.subscribe("a", buffer=100, overflow="drop_oldest")
        s.append("a", *[ev(i, data=i) for i in range(12)])
        got = [e.data for e in sub.get_many(100, timeout=5)]
        assert got == [7, 8, 9, 10, 11]
        assert sub.stats().missed == 7

    def test_background_sweep_with_manual_clock(self) -> None:
        clock = ManualClock()
        now = [T0]
        s = self.store(retention=1.0, now_ns=lambda: now[0], clock=clock, sweep_interval=0.5)
        s.append("a", Event("t", 1, timestamp=T0))
        sub = s.subscribe("a")
        assert sub.get(timeout=5).data == 1
        now[0] += 2 * 10**9
        assert clock.wait_for_sleepers(1, timeout=10)
        clock.advance(0.5)
        # the sweeper evicts under the store's lock, then notifies its condition
        with s._cond:
            assert s._cond.wait_for(lambda: s._evicted == 1, timeout=10)
        assert s.stats().evicted == 1
        assert list(s.replay()) == []
        s.close()
        clock.advance(1.0)

    def test_dropped_store_is_freed_without_the_cycle_collector(self) -> None:
        import gc
        import weakref

        gc.disable()
        try:
            s = MemoryStore(kernel=self.kernel)
            s.append("a", ev(1))
            s.append("a", ev(2))
            sub = s.subscribe("a")
            assert sub.get(timeout=5).timestamp == T0 + 1
            ref = weakref.ref(s)
            kept = s.append
            del s, sub
            assert ref() is None
            with pytest.raises(StoreClosed, match="already collected"):
                kept("a", ev(3))
        finally:
            gc.enable()

    def test_dropped_store_ends_its_sweeper(self) -> None:
        import gc

        clock = ManualClock()
        s = MemoryStore(retention=1.0, clock=clock, sweep_interval=0.5, kernel=self.kernel)
        sweeper = s._sweeper
        assert sweeper is not None and clock.wait_for_sleepers(1, timeout=10)
        del s
        gc.collect()
        clock.advance(0.5)
        sweeper.join(10)
        assert not sweeper.is_alive()

    def test_close_releases_blocked_appender_with_store_closed(self) -> None:
        s = self.store()
        sub = s.subscribe("a", buffer=1)
        s.append("a", ev(1))
        raised: list[BaseException] = []
        done = threading.Event()

        def produce() -> None:
            try:
                s.append("a", ev(2))
            except StoreClosed as exc:
                raised.append(exc)
            done.set()

        t = threading.Thread(target=produce)
        t.start()
        assert self.wait_until_blocked(s, 1)
        assert not done.is_set()
        s.close()
        assert done.wait(10)
        t.join(10)
        assert len(raised) == 1 and sub.closed

    def test_dropped_blocking_subscription_stops_blocking(self) -> None:
        import gc

        s = self.store()
        sub = s.subscribe("a", buffer=1)
        s.append("a", ev(1))
        assert s.stats().subscriptions == 1
        del sub
        gc.collect()
        assert s.stats().subscriptions == 0
        assert s.append("a", ev(2), ev(3)) == 3

    def test_arguments_are_checked(self) -> None:
        with pytest.raises(ValueError, match="Expected on_full among"):
            MemoryStore(on_full="drop")
        with pytest.raises(ValueError, match="max_events_per_stream >= 1"):
            MemoryStore(max_events_per_stream=0)
        with pytest.raises(TypeError, match="max_streams as an int"):
            MemoryStore(max_streams="3")
        with pytest.raises(ValueError, match="retention >= 0"):
            MemoryStore(retention=-1)
        with pytest.raises(TypeError, match="Expected a clock"):
            MemoryStore(clock=object())
        with pytest.raises(TypeError, match="now_ns as a callable"):
            MemoryStore(now_ns=5)
        with pytest.raises(ValueError, match="sweep_interval > 0"):
            MemoryStore(retention=1, sweep_interval=0)

    def test_repr_and_subscription_type(self) -> None:
        s = self.store()
        sub = s.subscribe()
        assert isinstance(sub, StoreSubscription)
        assert "open" in repr(s) and "open" in repr(sub)
        assert sub.cursor == Cursor(None, 0, None)
        sub.close()
        assert "closed" in repr(sub)

    def test_subclass_append_override_is_honoured(self) -> None:
        seen: list[int] = []

        class Counting(MemoryStore):
            def append(self, stream: str, *events: Any) -> int:
                seen.append(len(events))
                return super().append(stream, *events)

        s = Counting(kernel=self.kernel)
        self._stores.append(s)
        s.append("a", ev(1))
        s.append("a", ev(2))
        assert seen == [1, 1] and s.stats().events == 2

    def test_replay_returns_the_appended_objects(self) -> None:
        s = self.store()
        evs = [ev(i) for i in range(10)]
        s.append("a", *evs)
        assert all(a is b for a, b in zip(s.replay(), evs))


def _factory(pure: bool) -> Any:
    kernel = _core.kernel("columns", pure=pure).ColumnLog

    def make(**options: Any) -> MemoryStore:
        return MemoryStore(kernel=kernel, **options)

    return make


TestStoreModelPy = stateful_test_case(_factory(True))

if not _core.NO_EXTENSIONS and _core.compiled_available():
    TestStoreModelC = stateful_test_case(_factory(False))


def test_event_batch_from_events() -> None:
    from nova.store import EventBatch

    evs = [Event("x", 1, timestamp=5), Event("y", 2, timestamp=6), Event("x", 3, timestamp=7)]
    b = EventBatch.from_events(evs, streams=["a", "b", "a"], positions=[1, 1, 2], sequences=[1, 2, 3])
    assert len(b) == 3 and list(b) == evs and b[-1] is evs[2]
    assert b.timestamps.tolist() == [5, 6, 7]
    assert [b.streams[c] for c in b.stream_codes] == ["a", "b", "a"]
    assert [b.types[c] for c in b.type_codes] == ["x", "y", "x"]
    assert b.ids == [e.id for e in evs] and b.data == [1, 2, 3]
    assert b.to_pandas()["position"].tolist() == [1, 1, 2]
    with pytest.raises(ValueError, match="Expected streams, positions and sequences of length 3"):
        EventBatch.from_events(evs, streams=["a"], positions=[1, 1, 2], sequences=[1, 2, 3])
    with pytest.raises(TypeError, match="Expected an int row index, got str"):
        b["0"]


@pytest.mark.parametrize(
    "module,method,extra",
    [("pandas", "to_pandas", "nova-events[pandas]"), ("pyarrow", "to_arrow", "nova-events[arrow]")],
)
def test_export_without_the_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, method: str, extra: str
) -> None:
    store = MemoryStore()
    store.append("s", Event("t", 1, timestamp=5))
    batch = store.window()
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ImportError, match=re.escape(extra)):
        getattr(batch, method)()
    store.close()
