"""The bus/ package and the transport lane interface (issue 11), and the defects fixed
on the way: timeouts too long for a lock wait, the Event check, a retry_if that raises."""

from __future__ import annotations

import ast
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

import nova.bus
from nova import Bus, Event, TopicConfig
from nova.resilience.policy import DeadLetterConfig, RetryPolicy
from nova.testing import ManualClock
from nova.transport import InProcessTransport, default_transport
from nova.transport.base import Lane, LaneCounts, Transport

BUS_DIR = Path(nova.bus.__file__).resolve().parent


def test_the_bus_imports_no_concrete_transport_and_no_listener():
    for path in BUS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert "inprocess" not in name and not name.startswith("nova.listener"), (path.name, name)


def test_public_names_of_nova_bus_stay():
    expected = ("Bus", "BusStats", "TopicConfig", "DeliveryMode", "DedupWindow", "PublishReceipt",
                "DEFAULT_DEDUP_WINDOW", "MAX_TOPIC_NAME")
    assert nova.bus.__all__ == expected
    for name in expected:
        assert getattr(nova.bus, name) is getattr(nova, name, getattr(nova.bus, name))
    assert nova.bus.MAX_TOPIC_NAME == 249


def test_default_transport_is_in_process_and_a_transport():
    t = default_transport()
    assert isinstance(t, InProcessTransport) and isinstance(t, Transport)
    assert not t.in_delivery()


def test_lane_counters_through_the_interface():
    clock = ManualClock(auto_advance=True)
    seen_in_delivery = []
    with Bus(clock=clock) as b:
        b.create_topic("t", TopicConfig(partitions=2, retry=RetryPolicy(max_attempts=2),
                                        dead_letter=DeadLetterConfig(handler=lambda dl: None)))

        def h(e):
            seen_in_delivery.append(b._transport.in_delivery())
            if e.data == 3:
                raise ValueError("no")

        b.subscribe("t", h)
        for i in range(6):
            b.publish("t", Event("x", i), key=str(i))
        assert b.flush(10)
        lanes = b._registry.live_lanes()
        assert len(lanes) == 2 and all(isinstance(lane, Lane) for lane in lanes)
        total = LaneCounts(*[sum(col) for col in zip(*(lane.counts() for lane in lanes))])
        s = b.stats()
    assert (total.enqueued, total.settled, total.handled, total.dead, total.retried) == (6, 6, 5, 1, 1)
    assert (s.deliveries, s.handled, s.dead_lettered, s.retried) == (6, 5, 1, 1)
    assert seen_in_delivery and all(seen_in_delivery)


def test_counters_of_removed_subscribers_are_kept():
    with Bus() as b:
        sub = b.subscribe("t", lambda e: None)
        for i in range(5):
            b.publish("t", Event("x", i))
        assert b.flush(10)
        sub.unsubscribe()
        b.subscribe("t", lambda e: None)
        b.publish("t", Event("x", 5))
        assert b.flush(10)
        s = b.stats()
    assert (s.deliveries, s.handled, s.pending, s.published) == (6, 6, 0, 6)


@pytest.mark.parametrize("timeout", [float("inf"), 1e12, timedelta.max], ids=["inf", "1e12", "timedelta.max"])
def test_a_timeout_too_long_for_a_lock_wait_means_no_limit(timeout):
    # On main these raised OverflowError from the lock wait (publish while a buffer was
    # full, shutdown), leaving shutdown half done.
    b = Bus(buffer_size=1)
    gate, started = threading.Event(), threading.Event()

    def h(e):
        started.set()
        gate.wait(10)

    b.subscribe("t", h)
    b.publish("t", Event("x", 1))
    assert started.wait(10)
    b.publish("t", Event("x", 2))  # the buffer is full now
    threading.Timer(0.2, gate.set).start()
    assert b.publish("t", Event("x", 3), timeout=timeout).offset == 2  # waited for room
    assert b.publish_many("t", [Event("x", 4)], timeout=timeout)[0].offset == 3
    assert b.flush(timeout) is True
    assert b.shutdown(timeout) is True
    assert b.join(timeout) is True
    assert b.stats().handled == 4


def test_publish_accepts_either_event_twin():
    from nova._core import event_py

    with Bus() as b:
        got = []
        b.subscribe("t", lambda e: got.append(e.data))
        b.publish("t", event_py.Event("x", 1))
        b.publish("t", Event("x", 2))
        assert b.flush(10)
    assert got == [1, 2]


def test_a_raising_retry_if_is_counted_logged_and_chained(caplog):
    clock = ManualClock(auto_advance=True)
    letters = []
    pred_error = LookupError("predicate bug")

    def retry_if(exc):
        raise pred_error

    with caplog.at_level(logging.ERROR, logger="nova.bus"), Bus(clock=clock) as b:
        b.create_topic("t", TopicConfig(retry=RetryPolicy(max_attempts=5, retry_if=retry_if),
                                        dead_letter=DeadLetterConfig(handler=letters.append)))
        b.subscribe("t", lambda e: 1 / 0)
        b.publish("t", Event("x"))
        assert b.flush(10)
        s = b.stats()
    assert (s.dead_lettered, s.retried, s.hook_errors, s.dead_letter_errors) == (1, 0, 1, 0)
    assert letters[0].attempts == 1 and isinstance(letters[0].error, ZeroDivisionError)
    assert letters[0].error.__context__ is pred_error  # as in the ListenerManager
    logged = [r for r in caplog.records if r.name == "nova.bus" and "retry_if" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info[1] is pred_error
