"""One dead-letter suite for both callers: the Bus and the ListenerManager send dead
letters down the same path (nova.resilience.deadletter.send), so every case below runs
against both and expects the same outcome: a sink that raises (Exception or
BaseException) is logged on the caller's logger and counted, never propagated; a store
sink gets the event with the dead-letter metadata; no sink logs a WARNING."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from nova import Bus, Event, ListenerManager, TopicConfig
from nova.listener import ListenerConfig
from nova.resilience.policy import DeadLetter, DeadLetterConfig, RetryPolicy

CALLERS = ("bus", "listener")
LOGGERS = {"bus": "nova.bus", "listener": "nova.listener"}
WAIT = 10.0


class Halt(BaseException):
    """A BaseException that is not KeyboardInterrupt/SystemExit (safe to raise in tests)."""


class RecordingStore:
    """The part of the EventStore protocol dead letters use."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.appended: list[tuple[str, Any]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def append(self, stream: str, *events: Any) -> int:
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.appended.extend((stream, e) for e in events)
            return len(self.appended)


def orders_handler(ev: Event) -> None:
    """Fails for odd data, so each run dead-letters event 1 and handles event 2."""
    if ev.data % 2:
        raise ConnectionError(f"down for {ev.data}")


def run(caller: str, dead_letter: DeadLetterConfig) -> tuple[int, int, Event]:
    """Deliver Event('orders', 1) (fails: dead-lettered after one call) then
    Event('orders', 2) (handled) through *caller*; returns (dead_lettered,
    dead_letter_errors, the failed event)."""
    first, second = Event("orders", 1), Event("orders", 2)
    retry = RetryPolicy(max_attempts=1)
    if caller == "bus":
        with Bus(name="dl") as bus:
            bus.create_topic("orders", TopicConfig(retry=retry, dead_letter=dead_letter))
            bus.subscribe("orders", orders_handler)
            bus.publish("orders", first)
            bus.publish("orders", second)
            assert bus.flush(WAIT)
            s = bus.stats()
            assert (s.handled, s.pending) == (1, 0)
            return s.dead_lettered, s.dead_letter_errors, first
    lm = ListenerManager()
    try:
        m = lm.register(orders_handler, ListenerConfig(retry=retry, dead_letter=dead_letter))
        m.handle(first)  # the first call is inline; no retry left: dead-lettered inline
        m.handle(second)
        assert lm.wait_idle(WAIT)
        st = lm.stats(m.id)
        assert st.processed == 1
        return st.dead_lettered, st.dead_letter_errors, first
    finally:
        lm.stop(timeout=WAIT)


def records(caplog: pytest.LogCaptureFixture, caller: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGERS[caller] and r.levelno == level]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("error", [RuntimeError("sink down"), Halt("halt")], ids=["Exception", "BaseException"])
def test_handler_raising_is_logged_and_counted(caller: str, error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    letters: list[DeadLetter] = []

    def handler(dl: DeadLetter) -> None:
        letters.append(dl)
        raise error

    with caplog.at_level(logging.DEBUG):
        dead, errors, failed = run(caller, DeadLetterConfig(handler=handler))
    assert (dead, errors) == (1, 1)
    assert len(letters) == 1 and letters[0].event is failed
    logged = records(caplog, caller, logging.ERROR)
    assert len(logged) == 1
    assert "dead-letter handler of" in logged[0].getMessage()
    assert "orders_handler" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[1] is error
    assert not records(caplog, caller, logging.WARNING)  # a handler is a sink: no warning


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("error", [OSError("disk full"), Halt("halt")], ids=["Exception", "BaseException"])
def test_store_raising_is_logged_and_counted(caller: str, error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        dead, errors, _ = run(caller, DeadLetterConfig(store=RecordingStore(fail=error)))
    assert (dead, errors) == (1, 1)
    logged = records(caplog, caller, logging.ERROR)
    assert len(logged) == 1 and "could not store a dead letter of" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[1] is error


@pytest.mark.parametrize("caller", CALLERS)
def test_store_sink_gets_the_event_with_its_metadata(caller: str, caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore()
    letters: list[DeadLetter] = []
    with caplog.at_level(logging.DEBUG):
        dead, errors, failed = run(caller, DeadLetterConfig(handler=letters.append, store=store))
    assert (dead, errors) == (1, 1 - 1)
    assert len(store.appended) == 1
    stream, stored = store.appended[0]
    assert stream == "nova.deadletter"
    # issue 13: its own type, the original one in metadata
    assert (stored.id, stored.type, stored.data, stored.timestamp) == (failed.id, "nova.deadletter", 1, failed.timestamp)
    md = dict(stored.metadata)
    assert int(md.pop("nova.deadletter.timestamp")) == letters[0].timestamp > 0
    assert md.pop("nova.original_type") == failed.type
    assert md == {
        "nova.error.type": "ConnectionError",
        "nova.error.message": "down for 1",
        "nova.attempts": "1",
        "nova.listener": f"{__name__}.orders_handler",
        "nova.topic": "orders",
    }
    dl = letters[0]
    assert (dl.event, dl.attempts, dl.listener_id, dl.topic) == (failed, 1, f"{__name__}.orders_handler", "orders")
    assert isinstance(dl.error, ConnectionError)
    assert not records(caplog, caller, logging.WARNING) and not records(caplog, caller, logging.ERROR)


@pytest.mark.parametrize("caller", CALLERS)
def test_no_sink_logs_a_warning_per_dead_letter(caller: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        dead, errors, failed = run(caller, DeadLetterConfig())
    assert (dead, errors) == (1, 0)
    warned = records(caplog, caller, logging.WARNING)
    assert len(warned) == 1
    msg = warned[0].getMessage()
    assert f"event {failed.id} dead-lettered by" in msg and "orders_handler" in msg
    assert "after 1 attempt(s)" in msg and "down for 1" in msg


@pytest.mark.parametrize("caller", CALLERS)
def test_disabled_dead_letters_reach_no_sink_and_log_nothing(caller: str, caplog: pytest.LogCaptureFixture) -> None:
    letters: list[DeadLetter] = []
    store = RecordingStore()
    with caplog.at_level(logging.DEBUG):
        dead, errors, _ = run(caller, DeadLetterConfig(enabled=False, handler=letters.append, store=store))
    assert (dead, errors) == (1, 0)
    assert letters == [] and store.appended == []
    assert not records(caplog, caller, logging.WARNING) and not records(caplog, caller, logging.ERROR)
