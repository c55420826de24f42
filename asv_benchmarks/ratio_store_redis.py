"""Issue 14 ratios: RedisStore against raw redis-py (with hiredis) on the same
valkey-server, in the same process, same events (a ~200-byte JSON payload):

* ``append_many`` of 1,000-event batches vs raw pipelined ``XADD`` (one pipeline
  of 1,000 per batch, fields type/id/ts/data, payloads JSON-encoded in the loop);
* single ``append`` vs a raw single ``XADD``;
* ``window()`` / ``replay()`` of a 1 % window (10 k of 1 M events) vs a raw
  ``XRANGE`` of the same entries (plus ``json.loads`` + Event per entry, for replay);
* informational: the server's own cost per event (``INFO commandstats``) for the raw
  XADD and for nova's append script (what the server alone could take: the client
  leaves the rest on the table), and the share of ``window()`` spent in the round
  trips and reply parsing (the rest is numpy/Python decoding).

``python asv_benchmarks/ratios.py store_redis`` (``--quick``: 200 k events).
"""

from __future__ import annotations

import json
from typing import Any

import redis
from _timing import Row, best_seconds
from _valkey import Server

from nova import _core
from nova.events import Event
from nova.store.redis import RedisStore

T0 = 1_700_000_000_000_000_000
STEP = 1000  # ns between events


def _payload(i: int) -> dict[str, object]:
    return {"order": i, "customer": f"customer-{i % 977:05d}", "amount": i * 0.25, "currency": "EUR",
            "items": [{"sku": f"sku-{i % 101:04d}", "qty": 1 + i % 5}, {"sku": f"sku-{i % 53:04d}", "qty": 2}],
            "note": "standard delivery to the registered address"}


def _events(first: int, n: int) -> list[Event]:
    return [Event("order.placed", _payload(i), timestamp=T0 + i * STEP) for i in range(first, first + n)]


def _raw_xadd_batch(r: Any, key: str, events: list[Event]) -> None:
    p = r.pipeline(transaction=False)
    dumps = json.dumps
    for e in events:
        p.xadd(key, {"y": e.type, "i": e.id, "t": e.timestamp, "d": dumps(e.data, separators=(",", ":"))})
    p.execute()


def _usec_per_call(r: Any, cmd: str) -> float:
    stats = r.info("commandstats").get(f"cmdstat_{cmd}")
    return float(stats["usec_per_call"]) if stats else float("nan")


def run(quick: bool) -> list[Row]:
    total = 200_000 if quick else 1_000_000
    rows: list[Row] = []
    server = Server()
    try:
        r = redis.Redis.from_url(server.url)
        store = RedisStore(server.url, prefix="bench")
        batches = [_events(i, 1000) for i in range(0, 20_000, 1000)]

        # -- append_many vs pipelined XADD, 20 batches of 1,000, alternating
        def nova_batches() -> None:
            for b in batches:
                store.append_many("orders-a", b)

        def raw_batches() -> None:
            for b in batches:
                _raw_xadd_batch(r, "raw-a", b)

        # alternate the two, best of 5 each: the machine is shared, and a burst of
        # load must not land on one side only
        t_raw = t_nova = raw_usec = nova_usec = float("inf")
        for _ in range(5):
            r.config_resetstat()
            t_raw = min(t_raw, best_seconds(raw_batches, 1))
            raw_usec = min(raw_usec, _usec_per_call(r, "xadd"))
            r.config_resetstat()
            t_nova = min(t_nova, best_seconds(nova_batches, 1))
            nova_usec = min(nova_usec, _usec_per_call(r, "evalsha") / 1000)
        n = 20_000
        rows.append(Row("append_many 1,000-event batches", n / t_nova, "ev/s", "raw pipelined XADD x1000",
                        n / t_raw, t_raw / t_nova, ">= 0.8", t_raw / t_nova >= 0.8))
        rows.append(Row("  server time per event, nova script", nova_usec, "us", "server time per raw XADD",
                        raw_usec, nova_usec / raw_usec, "info", None))
        rows.append(Row("  server ceiling, nova script (1/server time)", 1e6 / nova_usec, "ev/s",
                        "server ceiling, raw XADD", 1e6 / raw_usec, (1e6 / nova_usec) / (n / t_nova), "info", None))

        # -- single appends
        singles = _events(0, 2000)

        def nova_single() -> None:
            for e in singles:
                store.append("orders-s", e)

        def raw_single() -> None:
            dumps = json.dumps
            for e in singles:
                r.xadd("raw-s", {"y": e.type, "i": e.id, "t": e.timestamp, "d": dumps(e.data, separators=(",", ":"))})

        t_raw = t_nova = float("inf")
        for _ in range(5):
            t_raw = min(t_raw, best_seconds(raw_single, 1))
            t_nova = min(t_nova, best_seconds(nova_single, 1))
        k = len(singles)
        rows.append(Row("single append", k / t_nova, "ev/s", "raw single XADD", k / t_raw, t_raw / t_nova,
                        ">= 0.8", t_raw / t_nova >= 0.8))

        # -- a store of `total` events (time order = append order) and the same raw stream
        for first in range(0, total, 1000):
            evs = _events(first, 1000)
            store.append_many("big", evs)
            p = r.pipeline(transaction=False)
            for j, e in enumerate(evs):
                p.xadd("raw-big", {"y": e.type, "i": e.id, "t": e.timestamp,
                                   "d": json.dumps(e.data, separators=(",", ":"))}, id=f"{first + j + 1}-0")
            p.execute()
        w = total // 100
        lo = total // 2
        start, end = T0 + lo * STEP, T0 + (lo + w) * STEP

        def raw_xrange() -> Any:
            return r.xrange("raw-big", f"{lo + 1}-0", f"{lo + w}-0")

        def raw_replay() -> list[Any]:
            out = []
            for _id, f in r.xrange("raw-big", f"{lo + 1}-0", f"{lo + w}-0"):
                out.append(_core.Event(f[b"y"].decode(), json.loads(f[b"d"]), id=f[b"i"].decode(),
                                       timestamp=int(f[b"t"])))
            return out

        assert len(raw_xrange()) == w and len(store.window(start, end)) == w
        t_raw = t_win = float("inf")
        for _ in range(5):
            t_raw = min(t_raw, best_seconds(raw_xrange, 1))
            t_win = min(t_win, best_seconds(lambda: store.window(start, end), 1))
        rows.append(Row(f"window() 1% ({w:,} of {total:,})", t_win * 1e3, "ms", "raw XRANGE of the entries",
                        t_raw * 1e3, t_win / t_raw, "<= 1.5", t_win / t_raw <= 1.5))
        t_raw_r = t_rep = float("inf")
        for _ in range(5):
            t_raw_r = min(t_raw_r, best_seconds(raw_replay, 1))
            t_rep = min(t_rep, best_seconds(lambda: list(store.replay(start, end)), 1))
        rows.append(Row(f"replay() 1% as Events ({w:,} of {total:,})", t_rep * 1e3, "ms",
                        "raw XRANGE + json.loads + Event", t_raw_r * 1e3, t_rep / t_raw_r, "<= 1.5", t_rep / t_raw_r <= 1.5))
        t_rows = best_seconds(lambda: store._rows(start, end, None, None), 5)
        rows.append(Row("  window(): server round trips + hiredis parse", t_rows * 1e3, "ms", "window() total",
                        t_win * 1e3, t_rows / t_win, "info", None))
        store.close()
        r.close()
    finally:
        server.stop()
    return rows
