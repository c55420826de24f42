"""Issue 13, report 4: nova's own streams ("nova.deadletter", "nova.deadletter.ack",
"nova.audit"...) share a store with business events without being counted as business
events: replay/window/subscribe over every stream leave them out unless
include_system=True or named; copy keeps them (a complete backup) unless told not to.

The per-backend behaviour is in tests/store_conformance.py (MemoryStore and SQLiteStore,
both twins); these are the end-to-end reports with real dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nova import Bus, TopicConfig
from nova.events import Event
from nova.listener import CircuitConfig, DeadLetterConfig, ListenerConfig, ListenerManager, RetryPolicy
from nova.resilience.redrive import ACK_STREAM
from nova.store import copy
from nova.store.memory import MemoryStore
from nova.store.sqlite import SQLiteStore
from nova.testing import ManualClock

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, core: Any, tmp_path: Path) -> Any:
    made: list[Any] = []

    def make() -> Any:
        if request.param == "memory":
            s: Any = MemoryStore(kernel=core.ColumnLog)
        else:
            s = SQLiteStore(tmp_path / f"s{len(made)}.db", kernel=core.ColumnLog)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _payments(store: Any) -> ListenerManager:
    """A payments listener failing for customer 'frozen', dead letters to *store*."""

    def charge(ev: Event) -> None:
        if ev.data["customer"] == "frozen":
            raise PermissionError("account frozen")

    lm = ListenerManager(clock=ManualClock(auto_advance=True))
    lm.register(charge, ListenerConfig(retry=RetryPolicy(max_attempts=1), circuit=CircuitConfig(enabled=False),
                                       dead_letter=DeadLetterConfig(store=store)), id="charge")
    return lm


def test_report_4_a_window_over_a_store_with_dead_letters_counts_only_business_events(make_store: Any) -> None:
    store = make_store()
    lm = _payments(store)
    customers = ["ada", "frozen", "grace", "frozen", "ada", "linus", "frozen", "grace"]
    for minute, customer in enumerate(customers):
        ev = Event("order.paid", {"customer": customer, "total": 10.0 + minute},
                   timestamp=T0 + timedelta(minutes=minute))
        store.append(f"customer-{customer}", ev)   # the README pattern: every event stored
        lm.process("charge", ev)
    lm.stop()
    # three dead letters share the store, in stream nova.deadletter, with the same timestamps
    assert len(store.read("nova.deadletter")[0]) == 3
    batch = store.window(T0, T0 + timedelta(minutes=10))
    assert len(batch) == len(customers)
    df = batch.to_pandas()
    assert len(df) == len(customers)
    assert df["type"].astype(str).tolist() == ["order.paid"] * len(customers)
    assert df["data"].map(lambda d: d["customer"]).tolist() == customers
    assert len(list(store.replay(T0, T0 + timedelta(minutes=10)))) == len(customers)
    # they are still there for whoever asks
    every = store.window(T0, T0 + timedelta(minutes=10), include_system=True)
    assert len(every) == len(customers) + 3
    dead = store.window(streams="nova.deadletter")
    assert [e.metadata["nova.original_type"] for e in dead] == ["order.paid"] * 3


def test_report_4_bus_dead_letters_and_redrive_acks_stay_out_of_business_reads(make_store: Any) -> None:
    store = make_store()
    with Bus(name="sys") as bus:
        bus.create_topic("orders", TopicConfig(retry=RetryPolicy(max_attempts=1),
                                               dead_letter=DeadLetterConfig(store=store)))
        state = {"up": False}

        def ship(ev: Event) -> None:
            if not state["up"]:
                raise ConnectionError("down")
            store.append("shipments", Event("order.shipped", ev.data, timestamp=ev.timestamp))

        bus.subscribe("orders", ship)
        for i in range(4):
            bus.publish("orders", Event("order.paid", i, timestamp=T0 + timedelta(seconds=i)))
        assert bus.flush(timeout=10)
        state["up"] = True
        report = bus.redrive(store)
        assert (report.replayed, report.succeeded) == (4, 4)
    assert len(store.read("nova.deadletter")[0]) == 4
    assert len(store.read(ACK_STREAM)[0]) == 4
    assert [(e.type, e.data) for e in store.replay()] == [("order.shipped", i) for i in range(4)]
    assert len(store.window()) == 4
    assert len(store.window(include_system=True)) == 12


def test_subscription_to_every_stream_follows_business_events_while_dead_letters_land(make_store: Any) -> None:
    store = make_store()
    lm = _payments(store)
    sub = store.subscribe()
    for i, customer in enumerate(["frozen", "ada", "frozen", "grace"]):
        ev = Event("order.paid", {"customer": customer, "n": i})
        store.append("orders", ev)
        lm.process("charge", ev)
    lm.stop()
    got = [sub.get(timeout=10).data["n"] for _ in range(4)]
    assert got == [0, 1, 2, 3]
    assert sub.get_many(10, timeout=0.05) == []
    assert sub.stats().missed == 0
    sub.close()
    dead = store.subscribe("nova.deadletter")
    assert [dead.get(timeout=10).data["n"] for _ in range(2)] == [0, 2]
    dead.close()


def test_copy_keeps_system_streams_by_default_so_a_redrive_from_the_copy_replays_nothing(make_store: Any) -> None:
    src = make_store()
    lm = _payments(src)
    lm.process("charge", Event("order.paid", {"customer": "frozen"}))
    src.append("orders", Event("order.paid", {"customer": "ada"}))
    # recovered: redrive once (acked), then copy
    lm.unregister("charge")

    def charge(ev: Event) -> None:
        return None

    lm.register(charge, ListenerConfig(dead_letter=DeadLetterConfig(store=src)), id="charge")
    assert lm.redrive(src).succeeded == 1
    full = make_store()
    assert copy(src, full) == 3
    assert sorted(full.streams()) == sorted(["nova.deadletter", "orders", ACK_STREAM])
    assert lm.redrive(full)[:5] == (0, 0, 0, 0, 1)   # the ack came along
    business = make_store()
    assert copy(src, business, include_system=False) == 1
    assert business.streams() == ["orders"]
    named = make_store()
    assert copy(src, named, streams=["nova.deadletter"], include_system=False) == 1
    with pytest.raises(TypeError, match="Expected include_system as a bool, got str"):
        copy(src, make_store(), include_system="no")
    lm.stop()
