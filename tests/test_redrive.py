"""Issue 13 report 2 and item 4: redrive reports exactly what happened, is idempotent
(acks in the store, the dead-letter stream never rewritten), stops at an open breaker,
dry_run; stored dead letters have type "nova.deadletter" and redrive restores the type."""

from __future__ import annotations

from typing import Any

import pytest

from nova.events import Event
from nova.listener import CircuitConfig, DeadLetterConfig, ListenerConfig, ListenerManager, RetryPolicy
from nova.store.memory import MemoryStore
from nova.testing import ManualClock


def setup(**circuit: Any) -> tuple[ListenerManager, MemoryStore, dict[str, Any], list[Event]]:
    store = MemoryStore()
    state: dict[str, Any] = {"up": False, "calls": 0}
    seen: list[Event] = []

    def charge(ev: Event) -> None:
        state["calls"] += 1
        if not state["up"]:
            raise ConnectionError("down")
        seen.append(ev)

    lm = ListenerManager(clock=ManualClock(auto_advance=True))
    lm.register(charge, ListenerConfig(
        retry=RetryPolicy(max_attempts=1),
        circuit=CircuitConfig(**circuit) if circuit else CircuitConfig(enabled=False),
        dead_letter=DeadLetterConfig(store=store)), id="charge")
    return lm, store, state, seen


def test_report_2_redrive_after_recovery_reports_exactly_and_a_second_replays_nothing(core: Any) -> None:
    lm, store, state, seen = setup()
    evs = [Event("order.paid", i) for i in range(3)]
    for ev in evs:
        assert lm.process("charge", ev) is False
    stored, _ = store.read("nova.deadletter")
    assert [e.type for e in stored] == ["nova.deadletter"] * 3
    assert [e.metadata["nova.original_type"] for e in stored] == ["order.paid"] * 3
    state["up"] = True
    state["calls"] = 0
    r = lm.redrive(store)
    assert r[:6] == (3, 3, 0, 0, 0, 0) and state["calls"] == 3
    assert [(e.id, e.type, e.data) for e in seen] == [(e.id, "order.paid", e.data) for e in evs]
    assert all("nova.original_type" not in e.metadata for e in seen)
    again = lm.redrive(store)
    assert again[:6] == (0, 0, 0, 0, 3, 0) and state["calls"] == 3
    assert len(store.read("nova.deadletter")[0]) == 3  # append-only, not rewritten
    lm.stop()


def test_report_2_an_open_breaker_stops_the_redrive_and_nothing_is_dead_lettered_again(core: Any) -> None:
    lm, store, state, _ = setup(failure_threshold=3, timeout=30.0)
    for i in range(3):
        lm.process("charge", Event("order.paid", i))  # opens the breaker on the third
    calls = state["calls"]
    r = lm.redrive(store)
    assert (r.replayed, r.rejected, r.left) == (0, 1, 2) and state["calls"] == calls
    assert len(store.read("nova.deadletter")[0]) == 3  # not 6
    lm.stop()


def test_failed_again_is_superseded_by_its_new_entry(core: Any) -> None:
    lm, store, state, _ = setup()
    lm.process("charge", Event("order.paid", 1))
    r = lm.redrive(store)
    assert r[:3] == (1, 0, 1)
    assert len(store.read("nova.deadletter")[0]) == 2
    state["up"] = True
    r = lm.redrive(store)
    assert (r.replayed, r.succeeded, r.skipped) == (1, 1, 1)  # only the newer entry runs
    lm.stop()


def test_dry_run_lists_and_runs_nothing(core: Any) -> None:
    lm, store, state, _ = setup()
    lm.process("charge", Event("order.paid", 7))
    calls = state["calls"]
    r = lm.redrive(store, dry_run=True)
    assert r.replayed == 1 and [(e.type, e.data) for e in r.events] == [("order.paid", 7)]
    assert state["calls"] == calls
    assert len(list(store.replay(None, None, streams=["nova.deadletter.ack"]))) == 0
    with pytest.raises(ValueError, match="Expected on_open 'stop' or 'wait', got 'skip'"):
        lm.redrive(store, on_open="skip")
    lm.stop()


def test_report_4_a_type_query_over_a_shared_store_sees_only_business_events(core: Any) -> None:
    lm, store, state, _ = setup()
    store.append("orders", Event("order.paid", 1))
    lm.process("charge", Event("order.paid", 2))
    assert [e.data for e in store.replay(None, None, types=["order.paid"])] == [1]
    lm.stop()
