"""Issue 4 ratios: the columnar MemoryStore (compiled kernels), each against a baseline
measured in the same process.

Memory is measured with tracemalloc (numpy reports its buffers to it): the traced bytes
the store holds after appending 10 M rows with ``append_columns`` (payloads created by
the caller beforehand, so they are not counted), divided by 10 M.
"""

from __future__ import annotations

import gc
import sqlite3
import tracemalloc

import numpy as np
from _timing import Row, best_seconds, per_call_ns, rate_per_s

from nova import _core
from nova.events import Event
from nova.store import MemoryStore

T0 = 1_700_000_000_000_000_000


def _filled(n: int, kernel) -> MemoryStore:
    s = MemoryStore(kernel=kernel, capacity=n)
    step = 1_000_000
    for first in range(0, n, step):
        m = min(step, n - first)
        s.append_columns("s", types="t", timestamps=T0 + np.arange(first, first + m, dtype=np.int64) * 1000)
    return s


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    reps = 3 if quick else 7
    kernel = _core.implementation("c").ColumnLog

    # -- window over 10 M, as columns -------------------------------------------------
    n = 10_000_000
    s = _filled(n, kernel)
    t0 = T0 + (n // 2) * 1000
    t1 = t0 + (n // 100) * 1000
    b = s.window()
    ts = np.asarray(b.timestamps)
    win = s.window
    nova_ns = per_call_ns(lambda: win(t0, t1), 2000, reps)
    assert len(win(t0, t1)) == n // 100

    def bare():
        lo, hi = ts.searchsorted([t0, t1])
        ts[lo:hi]

    bare_ns = per_call_ns(bare, 2000, reps)
    rows.append(Row("window 1% of 10M as columns", nova_ns / 1e3, "us", "np.searchsorted + slice",
                    bare_ns / 1e3, nova_ns / bare_ns, "<= 5x", nova_ns / bare_ns <= 5))
    try:
        import pandas as pd

        df = pd.DataFrame({"v": np.zeros(n, dtype=np.int8)}, index=pd.DatetimeIndex(ts.view("datetime64[ns]")))
        p0, p1 = pd.Timestamp(t0), pd.Timestamp(t1 - 1)
        loc_ns = per_call_ns(lambda: df.loc[p0:p1], 200, reps)
        rows.append(Row("window 1% of 10M as columns", nova_ns / 1e3, "us", "DataFrame.loc on DatetimeIndex",
                        loc_ns / 1e3, loc_ns / nova_ns, ">= 4x faster", loc_ns / nova_ns >= 4))
        del df
    except ImportError:
        rows.append(Row("window vs pandas", nova_ns / 1e3, "us", "pandas missing", float("nan"),
                        float("nan"), ">= 4x faster", None))
    mat = rate_per_s(lambda: (lambda bb: (bb.ids, bb.data))(win(t0, t1)), n // 100, reps)
    rows.append(Row("window 1% of 10M + ids + data (column rows)", mat / 1e6, "M rows/s", "info",
                    float("nan"), float("nan"), "info", None))
    del s, b, ts
    gc.collect()

    # -- replay as Events -------------------------------------------------------------
    m = 500_000 if quick else 1_000_000
    events = [Event("t", i, timestamp=T0 + i) for i in range(m)]
    s = MemoryStore(kernel=kernel)
    s.append_many("s", events)

    def replay():
        for _ in s.replay():
            pass

    rate = rate_per_s(replay, m, reps)
    rows.append(Row(f"replay {m:,} Events (appended as Events)", rate / 1e6, "M ev/s", "target",
                    4.0, rate / 4e6, ">= 4 M/s", rate >= 4e6))
    sc = MemoryStore(kernel=kernel)
    sc.append_columns("s", types="t", timestamps=T0 + np.arange(m, dtype=np.int64), data=list(range(m)))

    def replay_cols():
        for _ in sc.replay():
            pass

    crate = rate_per_s(replay_cols, m, reps)
    rows.append(Row(f"replay {m:,} Events (appended as columns)", crate / 1e6, "M ev/s", "target",
                    4.0, crate / 4e6, "info", None))

    # -- single append ----------------------------------------------------------------
    k = 200_000
    fresh = [Event("t", i, timestamp=T0 + i) for i in range(k)]

    def single():
        st = MemoryStore(kernel=kernel, capacity=k)
        ap = st.append
        for e in fresh:
            ap("s", e)

    srate = rate_per_s(single, k, reps)
    rows.append(Row("single append (auto ids, one stream)", srate / 1e6, "M ev/s", "target",
                    2.0, srate / 2e6, ">= 2 M/s", srate >= 2e6))

    # -- batch append -----------------------------------------------------------------
    bts = T0 + np.arange(1_000_000, dtype=np.int64)
    bdata = list(range(1_000_000))

    def batch():
        st = MemoryStore(kernel=kernel)
        for _ in range(10):
            st.append_columns("s", types="t", timestamps=bts, data=bdata)

    brate = rate_per_s(batch, 10_000_000, max(reps, 5))
    rows.append(Row("append_columns 10 x 1M rows (growth included)", brate / 1e6, "M ev/s", "target",
                    20.0, brate / 20e6, ">= 20 M/s", brate >= 20e6))

    def batch_sized():
        st = MemoryStore(kernel=kernel, capacity=10_000_000)
        for _ in range(10):
            st.append_columns("s", types="t", timestamps=bts, data=bdata)

    zrate = rate_per_s(batch_sized, 10_000_000, max(reps, 5))
    rows.append(Row("append_columns 10 x 1M rows (capacity=10M hint)", zrate / 1e6, "M ev/s", "target",
                    20.0, zrate / 20e6, "info", None))
    many = [Event("t", i, timestamp=T0 + i) for i in range(100_000)]

    def batch_events():
        st = MemoryStore(kernel=kernel)
        st.append_many("s", many)

    erate = rate_per_s(batch_events, len(many), reps)
    rows.append(Row("append_many 100k Events", erate / 1e6, "M ev/s", "target", 20.0, erate / 20e6,
                    "info", None))
    del s, sc, events, fresh, many
    gc.collect()

    # -- memory at 10 M ---------------------------------------------------------------
    n = 10_000_000
    payloads = list(range(n))  # the caller's objects (small ints are cached by CPython anyway)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    s = MemoryStore(kernel=kernel)
    step = 1_000_000
    for first in range(0, n, step):
        s.append_columns("s", types="t", timestamps=T0 + np.arange(first, first + step, dtype=np.int64),
                         data=payloads[first:first + step])
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per = used / n
    rows.append(Row("store memory per event at 10M (tracemalloc)", per, "bytes", "target", 80.0,
                    per / 80, "<= 80 B", per <= 80))
    rows.append(Row("store memory per event at 10M (stats)", s.stats().memory_bytes / n, "bytes", "target",
                    80.0, s.stats().memory_bytes / n / 80, "info", None))
    del s, payloads
    gc.collect()

    # -- against sqlite3 --------------------------------------------------------------
    n = 1_000_000
    s = _filled(n, kernel)
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE ev (ts INTEGER, seq INTEGER, stream TEXT, pos INTEGER, type TEXT, id TEXT, data TEXT)")
    tsl = (T0 + np.arange(n, dtype=np.int64) * 1000).tolist()
    con.executemany("INSERT INTO ev VALUES (?, ?, 's', ?, 't', ?, NULL)",
                    ((t, i + 1, i + 1, f"{i:032x}") for i, t in enumerate(tsl)))
    con.execute("CREATE INDEX ev_ts ON ev (ts)")
    con.commit()
    t0 = T0 + (n // 2) * 1000
    t1 = t0 + (n // 100) * 1000
    q = "SELECT ts, seq, stream, pos, type, id, data FROM ev WHERE ts >= ? AND ts < ? ORDER BY ts, seq"
    assert len(con.execute(q, (t0, t1)).fetchall()) == n // 100
    sql_s = best_seconds(lambda: con.execute(q, (t0, t1)).fetchall(), reps)
    win = s.window
    col_s = per_call_ns(lambda: win(t0, t1), 2000, reps) / 1e9
    rows.append(Row("window 1% of 1M as columns", col_s * 1e6, "us", "sqlite3 indexed range fetchall",
                    sql_s * 1e6, sql_s / col_s, ">= 500x faster", sql_s / col_s >= 500))
    ev_s = best_seconds(lambda: list(s.replay(t0, t1)), reps)
    rows.append(Row("replay 1% of 1M as Event objects", ev_s * 1e6, "us", "sqlite3 fetchall (tuples)",
                    sql_s * 1e6, sql_s / ev_s, "> 1x faster", sql_s > ev_s))
    con.close()
    s.close()
    return rows
