"""A managed listener subscribed to an Emitter and to a Bus: resilience where it is wired."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from nova.bus import Bus, DeliveryMode, TopicConfig
from nova.emitter import Emitter
from nova.events import Event
from nova.listener import (
    CircuitConfig,
    DeadLetter,
    DeadLetterConfig,
    ListenerConfig,
    ListenerManager,
    RetryPolicy,
)
from nova.testing import ManualClock

WAIT = 10.0


def test_emitter_emit_retries_without_blocking_or_raising() -> None:
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    calls: list[tuple[int, float]] = []
    other: list[int] = []

    def flaky(ev: Event) -> None:
        calls.append((ev.data, clock.monotonic()))
        if sum(1 for d, _ in calls if d == ev.data) < 3:
            raise ConnectionError("down")

    managed = lm.register(flaky, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=0.5)))
    with Emitter() as em:
        em.subscribe("user.created", managed)
        em.subscribe("user.created", lambda ev: other.append(ev.data))
        em.emit(Event("user.created", 1))  # the failure is the manager's, not the caller's
        assert other == [1] and calls == [(1, 0.0)]
        clock.advance(0.5)
        assert lm.wait_idle(WAIT)
        clock.advance(1.0)
        assert lm.wait_idle(WAIT)
    assert calls == [(1, 0.0), (1, 0.5), (1, 1.5)]
    assert lm.stats().processed == 1 and lm.stats().retried == 2
    lm.stop(timeout=0)
    clock.advance(1e9)


def test_emitter_emit_async_dead_letters_with_event_type_as_topic() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    letters: list[DeadLetter] = []
    lock = threading.Lock()

    def on_dead(dl: DeadLetter) -> None:
        with lock:
            letters.append(dl)

    def broken(ev: Event) -> None:
        raise ValueError(f"bad {ev.data}")

    managed = lm.register(broken, ListenerConfig(retry=RetryPolicy(max_attempts=2, initial_delay=0.1),
                                                 dead_letter=DeadLetterConfig(handler=on_dead)))
    with Emitter(workers=2) as em:
        em.subscribe("job", managed)
        for i in range(20):
            em.emit_async(Event("job", i))
        assert em.shutdown(timeout=WAIT)
    lm.stop()  # drains the retries
    assert sorted(d.event.data for d in letters) == list(range(20))
    assert all(d.topic == "job" and d.attempts == 2 for d in letters)
    assert lm.stats().dead_lettered == 20


def test_emitter_async_managed_listener_via_aemit() -> None:
    lm = ListenerManager(clock=ManualClock(auto_advance=True))
    seen: list[int] = []

    async def handler(ev: Event) -> None:
        await asyncio.sleep(0)
        seen.append(ev.data)

    managed = lm.register(handler, ListenerConfig())
    assert managed.is_async

    async def main() -> None:
        em = Emitter()
        em.subscribe("a", managed)
        await em.aemit(Event("a", 1))
        await em.aemit(Event("a", 2))
        em.shutdown(timeout=WAIT)

    asyncio.run(main())
    assert seen == [1, 2] and lm.stats().processed == 2
    lm.stop()


def test_emitter_shutdown_does_not_kill_a_managed_retry_in_flight() -> None:
    # emit() runs an async managed listener on the emitter's own loop, and its retry is
    # scheduled there.  The emitter's shutdown closes that loop while the retry runs:
    # the retry goes on on the manager's loop instead of being dead-lettered.
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    letters: list[DeadLetter] = []
    loops: list[Any] = []
    started = threading.Event()

    async def flaky(ev: Event) -> None:
        loops.append(asyncio.get_running_loop())
        if len(loops) == 1:
            raise ConnectionError("down")
        if loops[-1] is loops[0]:
            started.set()
            await asyncio.Event().wait()  # cut off by the emitter's shutdown

    managed = lm.register(flaky, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=1),
                                                dead_letter=DeadLetterConfig(handler=letters.append)))
    em = Emitter()
    em.subscribe("job", managed)
    em.emit(Event("job"))
    clock.advance(1)
    assert started.wait(WAIT)
    assert em.shutdown(timeout=WAIT) is True
    assert lm.wait_idle(WAIT)
    st = lm.stats()
    assert letters == [] and len(loops) == 3 and loops[2] is not loops[0]
    assert (st.processed, st.dead_lettered, st.pending) == (1, 0, 0)
    lm.stop(timeout=0)
    clock.advance(1e9)


def test_emitter_shutdown_racing_managed_retries_loses_no_event() -> None:
    # Retries sent to the emitter's loop while it shuts down: a task cancelled before it
    # started never ran the attempt's code, and was neither handled nor dead-lettered.
    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    lock = threading.Lock()
    handled: list[int] = []
    letters: list[DeadLetter] = []
    seen: set[int] = set()

    async def flaky(ev: Event) -> None:
        with lock:
            first = ev.data not in seen
            seen.add(ev.data)
        if first:
            raise ConnectionError("down")
        await asyncio.sleep(0)
        with lock:
            handled.append(ev.data)

    managed = lm.register(flaky, ListenerConfig(retry=RetryPolicy(max_attempts=2, initial_delay=1),
                                                circuit=CircuitConfig(enabled=False),
                                                dead_letter=DeadLetterConfig(handler=letters.append)))
    n = 300
    for _ in range(3):
        handled.clear()
        letters.clear()
        seen.clear()
        em = Emitter()
        em.subscribe("job", managed)
        for i in range(n):
            em.emit(Event("job", i))  # every first call fails on the emitter's loop
        clock.advance(1)  # the retries go to the emitter's loop ...
        assert em.shutdown(timeout=WAIT) is True  # ... while it closes
        assert lm.wait_idle(WAIT)
        assert lm.stats().pending == 0
        assert sorted(handled + [dl.event.data for dl in letters]) == list(range(n))
    lm.stop(timeout=0)
    clock.advance(1e9)


class _ReturnsCoroutine:
    """A Listener whose plain handle returns an awaitable (the protocol allows it)."""

    id = "returns-coroutine"

    def __init__(self) -> None:
        self.done: list[Any] = []
        self.attempts = 0
        self.loops: list[Any] = []

    def handle(self, ev: Event) -> Any:
        return self._work(ev)

    async def _work(self, ev: Event) -> None:
        self.attempts += 1
        self.loops.append(asyncio.get_running_loop())
        if ev.data == "flaky" and "failed once" not in self.done:
            self.done.append("failed once")
            raise ConnectionError("down")
        self.done.append(ev.data)


def test_a_listener_whose_handle_returns_an_awaitable_is_awaited_when_managed() -> None:
    # The manager called handle() and ignored the coroutine it returned: never run,
    # counted as processed.
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    lis = _ReturnsCoroutine()
    managed = lm.register(lis, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=0)))
    assert lm.process(lis.id, Event("t", "process")) is True
    with Emitter() as em:
        em.subscribe("t", managed)
        em.emit(Event("t", "emit"))

        async def main() -> None:
            await em.aemit(Event("t", "aemit"))
            assert await lm.aprocess(lis.id, Event("t", "aprocess")) is True
            assert lis.loops[-1] is asyncio.get_running_loop()

        asyncio.run(main())
    assert lm.process(lis.id, Event("t", "flaky")) is True  # fails once, then retried
    assert lis.done == ["process", "emit", "aemit", "aprocess", "failed once", "flaky"]
    st = lm.stats()
    assert (st.processed, st.failed, st.dead_lettered) == (5, 1, 0)
    lm.stop()


def test_bus_partition_keeps_order_while_the_manager_retries() -> None:
    clock = ManualClock(auto_advance=True)  # run_inline sleeps on the manager's clock
    lm = ListenerManager(clock=clock)
    seen: list[tuple[int, int]] = []
    failures = {0: 2, 3: 1}
    lock = threading.Lock()

    def handler(ev: Event) -> None:
        with lock:
            if failures.get(ev.data, 0) > 0:
                failures[ev.data] -= 1
                raise ConnectionError("retry me")
            seen.append((ev.data, len(seen)))

    managed = lm.register(handler, ListenerConfig(retry=RetryPolicy(max_attempts=3, initial_delay=0.2),
                                                  circuit=CircuitConfig(enabled=False)))
    bus = Bus(default_partitions=1)
    try:
        bus.create_topic("orders", TopicConfig(partitions=1, delivery=DeliveryMode.AT_LEAST_ONCE))
        bus.subscribe("orders", managed)
        for i in range(6):
            bus.publish("orders", Event("order", i))
        assert bus.flush(timeout=WAIT)
    finally:
        bus.shutdown(timeout=WAIT)
    assert [d for d, _ in seen] == [0, 1, 2, 3, 4, 5]  # order kept through the retries
    st = lm.stats()
    assert (st.processed, st.retried, st.dead_lettered) == (6, 3, 0)
    assert clock.monotonic() == 0.2 + 0.4 + 0.2  # the waits were the manager's backoff
    lm.stop()


def test_bus_dead_letter_goes_through_the_managers_config() -> None:
    clock = ManualClock(auto_advance=True)
    lm = ListenerManager(clock=clock)
    letters: list[DeadLetter] = []
    topic_letters: list[Any] = []

    def handler(ev: Event) -> None:
        if ev.data == "poison":
            raise ValueError("cannot parse")

    managed = lm.register(handler, ListenerConfig(retry=RetryPolicy(max_attempts=2),
                                                  dead_letter=DeadLetterConfig(handler=letters.append)))
    bus = Bus()
    try:
        bus.create_topic("in", TopicConfig(partitions=2, dead_letter=DeadLetterConfig(handler=topic_letters.append)))
        bus.subscribe("in", managed)
        bus.publish("in", Event("x", "ok"), key="k")
        bus.publish("in", Event("x", "poison"), key="k")
        assert bus.flush(timeout=WAIT)
    finally:
        bus.shutdown(timeout=WAIT)
    assert len(letters) == 1 and letters[0].topic == "in" and letters[0].attempts == 2
    assert isinstance(letters[0].error, ValueError)
    assert topic_letters == []  # the manager owned the failure, not the topic's retry
    assert lm.stats().processed == 1
    lm.stop()


def test_bus_async_managed_listener() -> None:
    lm = ListenerManager(clock=ManualClock(auto_advance=True))
    seen: list[int] = []
    n = {"calls": 0}

    async def handler(ev: Event) -> None:
        n["calls"] += 1
        if n["calls"] == 1:
            raise ConnectionError("first call fails")
        seen.append(ev.data)

    managed = lm.register(handler, ListenerConfig(retry=RetryPolicy(max_attempts=2)))
    bus = Bus(default_partitions=1)
    try:
        bus.subscribe("t", managed)
        for i in range(3):
            bus.publish("t", Event("e", i))
        assert bus.flush(timeout=WAIT)
    finally:
        bus.shutdown(timeout=WAIT)
    assert seen == [0, 1, 2] and lm.stats().retried == 1
    lm.stop()
