"""Issue 13: "same behaviour for the Bus's dead letters".  Bus.redrive re-delivers each
stored dead letter to the subscriber that dead-lettered it (not to the topic), through
the delivery pipeline (handler, hooks, the topic's retry policy, its dead-letter config),
reports exactly what happened (RedriveReport) and is idempotent (acks in the store)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nova import Bus, DeliveryMode, TopicConfig
from nova.errors import BusClosed, TopicNotFound
from nova.events import Event, as_listener
from nova.listener import CircuitConfig, DeadLetterConfig, ListenerConfig, ListenerManager, RetryPolicy
from nova.resilience.redrive import ACK_STREAM
from nova.store.memory import MemoryStore
from nova.testing import ManualClock


class Flaky:
    """A handler that fails with ConnectionError while ``up`` is False."""

    def __init__(self, fail_first: int = 0) -> None:
        self.up = False
        self.calls = 0
        self.seen: list[Any] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        with self.lock:
            self.calls += 1
            if not self.up:
                raise ConnectionError("down")
            if self.fail_first > 0:
                self.fail_first -= 1
                raise ConnectionError("blip")
            self.seen.append(ev.data)


def make_bus(store: Any, *, attempts: int = 1, delivery: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
             topics: tuple[str, ...] = ("orders",)) -> Bus:
    bus = Bus(name="redrive", clock=ManualClock(auto_advance=True))
    for name in topics:
        bus.create_topic(name, TopicConfig(delivery=delivery, retry=RetryPolicy(max_attempts=attempts, initial_delay=1.0),
                                           dead_letter=DeadLetterConfig(store=store)))
    return bus


def entries(store: Any) -> list[Any]:
    return store.read("nova.deadletter")[0]


def test_redrive_after_recovery_reaches_only_the_failing_subscriber_and_a_second_replays_nothing(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    ship = Flaky()
    billed: list[Any] = []
    with make_bus(store) as bus:
        bus.subscribe("orders", as_listener(ship, id="ship"))
        bus.subscribe("orders", as_listener(lambda ev: billed.append(ev.data), id="bill"))
        evs = [Event("order.paid", i) for i in range(3)]
        for ev in evs:
            bus.publish("orders", ev)
        assert bus.flush(timeout=10)
        assert bus.stats().dead_lettered == 3 and billed == [0, 1, 2]
        stored = entries(store)
        assert [(e.type, e.metadata["nova.listener"], e.metadata["nova.topic"]) for e in stored] == [
            ("nova.deadletter", "ship", "orders")] * 3
        ship.up = True
        ship.calls = 0
        r = bus.redrive(store)
        assert r[:6] == (3, 3, 0, 0, 0, 0)
        assert ship.calls == 3 and ship.seen == [0, 1, 2]
        assert billed == [0, 1, 2]  # the subscriber that handled them does not see them again
        again = bus.redrive(store)
        assert again[:6] == (0, 0, 0, 0, 3, 0) and ship.calls == 3
        assert len(entries(store)) == 3  # append-only: never rewritten
        assert len(store.read(ACK_STREAM)[0]) == 3


def test_failed_again_goes_through_retries_and_the_topic_dead_letters_and_supersedes(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    ship = Flaky()
    with make_bus(store, attempts=2) as bus:
        bus.subscribe("orders", as_listener(ship, id="ship"))
        bus.publish("orders", Event("order.paid", 1))
        assert bus.flush(timeout=10)
        assert ship.calls == 2 and len(entries(store)) == 1
        r = bus.redrive(store)  # still down: both attempts fail, a new entry is written
        assert (r.replayed, r.succeeded, r.failed_again, r.skipped) == (1, 0, 1, 0)
        assert ship.calls == 4 and len(entries(store)) == 2
        assert entries(store)[1].metadata["nova.attempts"] == "2"
        ship.up = True
        ship.fail_first = 1  # one more blip: the topic's retry policy absorbs it
        r = bus.redrive(store)
        assert (r.replayed, r.succeeded, r.failed_again, r.skipped) == (1, 1, 0, 1)
        assert ship.seen == [1] and ship.calls == 6
        assert bus.redrive(store)[:6] == (0, 0, 0, 0, 2, 0)


def test_topic_and_listener_filters(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    a, b = Flaky(), Flaky()
    with make_bus(store, topics=("orders", "refunds")) as bus:
        bus.subscribe("orders", as_listener(a, id="a"))
        bus.subscribe("refunds", as_listener(b, id="b"))
        bus.publish("orders", Event("order.paid", "o1"))
        bus.publish("refunds", Event("refund.asked", "r1"))
        assert bus.flush(timeout=10)
        a.up = b.up = True
        r = bus.redrive(store, topic="refunds")
        assert (r.replayed, r.succeeded, r.skipped) == (1, 1, 1) and b.seen == ["r1"] and a.seen == []
        r = bus.redrive(store, listener_id="b")
        assert (r.replayed, r.skipped) == (0, 2)
        r = bus.redrive(store, listener_id="a")
        assert (r.replayed, r.succeeded, r.skipped) == (1, 1, 1) and a.seen == ["o1"]


def test_exactly_once_topic_redrive_is_not_dropped_as_a_duplicate(core: Any) -> None:
    # re-publishing the same id to an exactly-once topic would be deduplicated away;
    # re-delivery to the failing subscriber is the redrive
    store = MemoryStore(kernel=core.ColumnLog)
    ship = Flaky()
    with make_bus(store, delivery=DeliveryMode.EXACTLY_ONCE) as bus:
        bus.subscribe("orders", as_listener(ship, id="ship"))
        ev = Event("order.paid", 5)
        bus.publish("orders", ev)
        assert bus.flush(timeout=10)
        ship.up = True
        assert bus.redrive(store).succeeded == 1 and ship.seen == [5]
        bus.publish("orders", ev)  # the id is still claimed: live duplicates are still dropped
        assert bus.flush(timeout=10)
        assert ship.seen == [5] and bus.stats().duplicates == 1


def test_async_handler_is_redriven(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    state = {"up": False}
    seen: list[Any] = []

    async def ship(ev: Event) -> None:
        if not state["up"]:
            raise ConnectionError("down")
        seen.append(ev.data)

    with make_bus(store) as bus:
        bus.subscribe("orders", as_listener(ship, id="ship"))
        bus.publish("orders", Event("order.paid", 9))
        assert bus.flush(timeout=10)
        state["up"] = True
        assert bus.redrive(store)[:3] == (1, 1, 0) and seen == [9]


def test_hooks_run_on_a_redrive_failure(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    hooked: list[str] = []
    with Bus(name="hooks", on_error=lambda ev, exc, listener: hooked.append(str(exc))) as bus:
        bus.create_topic("orders", TopicConfig(retry=RetryPolicy(max_attempts=1),
                                               dead_letter=DeadLetterConfig(store=store)))
        bus.subscribe("orders", as_listener(Flaky(), id="ship"))
        bus.publish("orders", Event("order.paid", 1))
        assert bus.flush(timeout=10)
        assert hooked == ["down"]
        assert bus.redrive(store).failed_again == 1
        assert hooked == ["down", "down"]


def test_a_subscriber_no_longer_subscribed_is_skipped_and_its_entries_stay(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    ship = Flaky()
    with make_bus(store) as bus:
        sub = bus.subscribe("orders", as_listener(ship, id="ship"))
        bus.publish("orders", Event("order.paid", 1))
        assert bus.flush(timeout=10)
        bus.unsubscribe(sub)
        ship.up = True
        assert bus.redrive(store)[:5] == (0, 0, 0, 0, 1) and ship.seen == []
        bus.subscribe("orders", as_listener(ship, id="ship"))
        assert bus.redrive(store)[:5] == (1, 1, 0, 0, 0) and ship.seen == [1]


def test_managed_subscriber_open_breaker_stops_the_redrive_then_wait_on_the_clock(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    clock = ManualClock(auto_advance=True)
    ship = Flaky()
    lm = ListenerManager(clock=clock)
    managed = lm.register(ship, ListenerConfig(
        retry=RetryPolicy(max_attempts=1), circuit=CircuitConfig(failure_threshold=3, timeout=30.0),
        dead_letter=DeadLetterConfig(store=store)), id="ship")
    with Bus(name="managed", clock=clock) as bus:
        bus.subscribe("orders", managed)
        for i in range(3):
            bus.publish("orders", Event("order.paid", i))
        assert bus.flush(timeout=10)
        assert len(entries(store)) == 3 and managed.breaker.state.value == "open"
        calls = ship.calls
        r = bus.redrive(store)
        assert (r.replayed, r.rejected, r.left) == (0, 1, 2) and ship.calls == calls
        assert len(entries(store)) == 3
        ship.up = True
        r = bus.redrive(store, on_open="wait")  # sleeps on the bus clock until half-open
        assert (r.replayed, r.succeeded, r.rejected) == (3, 3, 0) and ship.seen == [0, 1, 2]
        # the same acks serve the manager's redrive: nothing left for it either
        assert lm.redrive(store)[:5] == (0, 0, 0, 0, 3)
    lm.stop()


def test_manager_and_bus_entries_are_each_left_to_their_own_redrive(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    lm = ListenerManager(clock=ManualClock(auto_advance=True))
    direct = Flaky()
    lm.register(direct, ListenerConfig(retry=RetryPolicy(max_attempts=1), circuit=CircuitConfig(enabled=False),
                                       dead_letter=DeadLetterConfig(store=store)), id="direct")
    lm.process("direct", Event("order.paid", "lm"))
    ship = Flaky()
    with make_bus(store) as bus:
        bus.subscribe("orders", as_listener(ship, id="ship"))
        bus.publish("orders", Event("order.paid", "bus"))
        assert bus.flush(timeout=10)
        direct.up = ship.up = True
        assert bus.redrive(store)[:5] == (1, 1, 0, 0, 1) and ship.seen == ["bus"] and direct.seen == []
        assert lm.redrive(store)[:5] == (1, 1, 0, 0, 1) and direct.seen == ["lm"]
    lm.stop()


def test_dry_run_lists_the_events_and_runs_nothing(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    ship = Flaky()
    with make_bus(store) as bus:
        bus.subscribe("orders", as_listener(ship, id="ship"))
        bus.publish("orders", Event("order.paid", 7, metadata={"k": "v"}))
        assert bus.flush(timeout=10)
        calls = ship.calls
        r = bus.redrive(store, dry_run=True)
        assert r.replayed == 1 and [(e.type, e.data, e.metadata) for e in r.events] == [("order.paid", 7, {"k": "v"})]
        assert ship.calls == calls and list(store.replay(streams=ACK_STREAM)) == []


def test_bad_arguments_are_refused_at_the_call(core: Any) -> None:
    store = MemoryStore(kernel=core.ColumnLog)
    bus = make_bus(store)
    with pytest.raises(TypeError, match="Expected an EventStore .* to redrive from, got list"):
        bus.redrive([])
    with pytest.raises(TopicNotFound, match="Expected an existing topic, got 'nope'"):
        bus.redrive(store, topic="nope")
    with pytest.raises(TypeError, match="Expected listener_id as a str or None, got int"):
        bus.redrive(store, listener_id=3)
    with pytest.raises(ValueError, match="Expected on_open 'stop' or 'wait', got 'skip'"):
        bus.redrive(store, on_open="skip")
    bus.shutdown(timeout=10)
    with pytest.raises(BusClosed, match="Expected an open bus"):
        bus.redrive(store)
