"""MemoryStore: appends, window lookup and materialisation, replay, subscribe, memory;
on 1 M and 10 M events, both kernel implementations."""

import numpy as np

from nova.events import Event
from nova.store import MemoryStore

from .common import IMPLS, impl

SIZES = [1_000_000, 10_000_000]
T0 = 1_700_000_000_000_000_000


def _store(name, n, **kw):
    """A store holding *n* in-order rows (one per microsecond) in 4 streams."""
    s = MemoryStore(kernel=impl(name).ColumnLog, capacity=n + 200_000, **kw)
    step = 1_000_000
    for k, first in enumerate(range(0, n, step)):
        m = min(step, n - first)
        ts = T0 + (np.arange(first, first + m, dtype=np.int64) * 1000)
        s.append_columns(f"s{k % 4}", types="t", timestamps=ts)
    return s


class SingleAppend:
    """store.append(stream, event) one event at a time, into a store of n events."""

    params = (IMPLS, SIZES)
    param_names = ["impl", "n"]
    timeout = 300

    def setup(self, name, n):
        self.store = _store(name, n)
        base = T0 + n * 1000
        self.events = [Event("t", i, timestamp=base + i) for i in range(20_000)]

    def teardown(self, name, n):
        self.store.close()

    def time_append_20k_single(self, name, n):
        ap = self.store.append
        for e in self.events:
            ap("s0", e)


class BatchAppend:
    """append_columns of 1 M rows, and append_many of 100 k Events."""

    params = (IMPLS,)
    param_names = ["impl"]
    timeout = 300

    def setup(self, name):
        self.kernel = impl(name).ColumnLog
        self.ts = T0 + np.arange(1_000_000, dtype=np.int64)
        self.data = list(range(1_000_000))
        self.events = [Event("t", i, timestamp=T0 + i) for i in range(100_000)]

    def time_append_columns_1m(self, name):
        s = MemoryStore(kernel=self.kernel)
        s.append_columns("s", types="t", timestamps=self.ts, data=self.data)
        s.close()

    def time_append_many_100k_events(self, name):
        s = MemoryStore(kernel=self.kernel)
        s.append_many("s", self.events)
        s.close()


class Window:
    """A 1% window of n events: lookup as columns, then materialised columns."""

    params = (IMPLS, SIZES)
    param_names = ["impl", "n"]
    timeout = 300

    def setup(self, name, n):
        self.store = _store(name, n)
        self.t0 = T0 + (n // 2) * 1000
        self.t1 = self.t0 + (n // 100) * 1000
        b = self.store.window()
        self.ts = np.asarray(b.timestamps)

    def teardown(self, name, n):
        self.store.close()

    def time_window_columns(self, name, n):
        self.store.window(self.t0, self.t1)

    def time_bare_searchsorted_slice(self, name, n):
        lo, hi = self.ts.searchsorted([self.t0, self.t1])
        self.ts[lo:hi]

    def time_window_with_ids_and_data(self, name, n):
        b = self.store.window(self.t0, self.t1)
        b.ids
        b.data

    def time_window_filtered_stream(self, name, n):
        self.store.window(self.t0, self.t1, streams="s1")


class Replay:
    """Iterate a 100 k-event window at the end of a store of n events: rows appended
    as Events (handed back as they are), or as columns (made into Events)."""

    params = (IMPLS, SIZES, ["events", "columns"])
    param_names = ["impl", "n", "kind"]
    timeout = 300

    def setup(self, name, n, kind):
        self.store = _store(name, n)
        m = 100_000
        self.t0 = T0 + n * 1000
        if kind == "events":
            self.store.append_many("tail", [Event("t", i, timestamp=self.t0 + i) for i in range(m)])
        else:
            self.store.append_columns("tail", types="t", timestamps=self.t0 + np.arange(m, dtype=np.int64),
                                      data=list(range(m)))

    def teardown(self, name, n, kind):
        self.store.close()

    def time_replay_100k(self, name, n, kind):
        for _ in self.store.replay(self.t0, None):
            pass


class Subscribe:
    """A subscriber draining 100 k events of history, then 10 k live appends."""

    params = (IMPLS,)
    param_names = ["impl"]
    timeout = 300

    def setup(self, name):
        self.kernel = impl(name).ColumnLog
        self.events = [Event("t", i, timestamp=T0 + i) for i in range(100_000)]
        self.live = [Event("t", i, timestamp=T0 + 100_000 + i) for i in range(10_000)]

    def time_subscribe_history_100k(self, name):
        s = MemoryStore(kernel=self.kernel)
        s.append_many("s", self.events)
        sub = s.subscribe("s")
        got = 0
        while got < 100_000:
            got += len(sub.get_many(4096, timeout=10))
        s.close()

    def time_subscribe_live_10k(self, name):
        s = MemoryStore(kernel=self.kernel)
        sub = s.subscribe("s", buffer=100_000)
        ap = s.append
        for e in self.live:
            ap("s", e)
        got = 0
        while got < 10_000:
            got += len(sub.get_many(4096, timeout=10))
        s.close()


class Memory:
    """The store's own bytes per event (arrays at capacity, list slots, indexes)."""

    params = (IMPLS, SIZES)
    param_names = ["impl", "n"]
    timeout = 300

    def setup(self, name, n):
        self.name = name

    def track_bytes_per_event(self, name, n):
        s = MemoryStore(kernel=impl(name).ColumnLog)
        step = 1_000_000
        for first in range(0, n, step):
            s.append_columns("s", types="t", timestamps=T0 + np.arange(first, first + step, dtype=np.int64))
        value = s.stats().memory_bytes / n
        s.close()
        return value

    track_bytes_per_event.unit = "bytes"


class PeakMemory:
    """Peak memory of building a store of 1 M rows."""

    params = (IMPLS,)
    param_names = ["impl"]
    timeout = 300

    def peakmem_store_1m_rows(self, name):
        s = _store(name, 1_000_000)
        s.close()
