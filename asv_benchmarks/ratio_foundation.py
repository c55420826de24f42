"""Issue 2 ratios: partition hashing and Event construction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from _timing import Row, per_call_ns, rate_per_s

from nova import _core


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    reps = 3 if quick else 7
    c = _core.implementation("c")
    rng = np.random.default_rng(7)
    keys = [rng.bytes(16) for _ in range(1000)]

    # Every loop below has the same shape (a for loop over the same keys calling one
    # function with the key), so the ratios compare the callees, not the harness.
    pf = c.partition_for

    def nova_loop():
        for k in keys:
            pf(k, 8)

    nova_ns = per_call_ns(nova_loop, 20, reps) / len(keys)
    try:
        from kafka.partitioner.default import murmur2 as kafka_murmur2

        def kafka_loop():
            for k in keys:
                kafka_murmur2(k)

        kafka_ns = per_call_ns(kafka_loop, 1, reps) / len(keys)
        rows.append(Row("partition_for 16B key (compiled)", nova_ns, "ns/key",
                        "kafka-python murmur2", kafka_ns, kafka_ns / nova_ns, ">= 40x faster",
                        kafka_ns / nova_ns >= 40))
    except ImportError:
        rows.append(Row("partition_for vs kafka-python", nova_ns, "ns/key", "kafka-python missing",
                        float("nan"), float("nan"), ">= 40x faster", None))
    try:
        import mmh3

        mmh3_hash = mmh3.hash

        def mmh3_loop():
            for k in keys:
                mmh3_hash(k)

        mmh3_ns = per_call_ns(mmh3_loop, 20, reps) / len(keys)
        rows.append(Row("partition_for 16B key (compiled)", nova_ns, "ns/key", "mmh3.hash",
                        mmh3_ns, nova_ns / mmh3_ns, "<= 2x cost", nova_ns / mmh3_ns <= 2))
    except ImportError:
        rows.append(Row("partition_for vs mmh3", nova_ns, "ns/key", "mmh3 missing",
                        float("nan"), float("nan"), "<= 2x cost", None))

    n = 200_000 if quick else 1_000_000
    arr = np.frombuffer(rng.bytes(16 * n), dtype="S16")
    pm = c.partition_many
    many_rate = rate_per_s(lambda: pm(arr, 8), n, reps)
    rows.append(Row(f"partition_many {n:,} x 16B (array)", many_rate / 1e6, "M keys/s",
                    "target", 50.0, many_rate / 50e6, ">= 50 M/s", many_rate >= 50e6))
    lst = arr.tolist()
    list_rate = rate_per_s(lambda: pm(lst, 8), n, reps)
    rows.append(Row(f"partition_many {n:,} x 16B (list)", list_rate / 1e6, "M keys/s",
                    "target", 50.0, list_rate / 50e6, "info", None))
    sub = lst[: n // 10]

    def scalar_loop():
        for k in sub:
            pf(k, 8)
    scalar_rate = rate_per_s(scalar_loop, len(sub), reps)
    rows.append(Row("partition_many (array) vs loop over scalar", many_rate / 1e6, "M keys/s",
                    "python loop of partition_for", scalar_rate / 1e6, many_rate / scalar_rate,
                    ">= 10x", many_rate / scalar_rate >= 10))

    @dataclass(slots=True)
    class Plain:
        id: str
        type: str
        timestamp: int
        data: object

    data = {"user": 1}
    E = c.Event

    def make_events():
        for _ in range(1000):
            E("t", data)

    def make_plain():
        for _ in range(1000):
            Plain("0123456789abcdef", "t", 1, data)

    ev_ns = per_call_ns(make_events, 50, reps) / 1000
    dc_ns = per_call_ns(make_plain, 50, reps) / 1000
    rows.append(Row("Event('t', data) auto id+timestamp (compiled)", ev_ns, "ns",
                    "@dataclass(slots=True) 4 fields", dc_ns, ev_ns / dc_ns, "<= 0.5x cost",
                    ev_ns / dc_ns <= 0.5))
    py = _core.implementation("py")
    Epy = py.Event

    def make_events_py():
        for _ in range(1000):
            Epy("t", data)
    py_ns = per_call_ns(make_events_py, 10, reps) / 1000
    rows.append(Row("Event construction: compiled vs pure twin", ev_ns, "ns", "pure Event",
                    py_ns, py_ns / ev_ns, "info", None))
    return rows
