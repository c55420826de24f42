"""The control half both transports' delivery threads share
(nova.transport.base.ThreadConsumer: stop, wait_stop, join, the private event loop and
the exit path) and Transport.stop_consumers, run through the in-process consumer (its
own thread, and drain tasks on a WorkerPool) and the Redis one (a real valkey-server)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nova import Bus, WorkerPool
from nova.events import Event
from nova.transport.base import ThreadConsumer, Transport
from nova.transport.inprocess import InProcessTransport

from bus_transports import TransportFactory

WAIT = 10.0  # real seconds: a bound for waits that should end at once


@pytest.fixture(params=["thread", "pool", "redis"])
def transport(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "thread":
        yield InProcessTransport()
    elif request.param == "pool":
        pool = WorkerPool(2, 64)
        try:
            yield InProcessTransport(pool=pool)
        finally:
            pool.close(WAIT)
    else:
        f = TransportFactory("redis", request.getfixturevalue("nova_valkey"))
        try:
            yield f()
        finally:
            f.close()


def test_stop_wakes_wait_stop_and_join_and_is_idempotent(transport: Any) -> None:
    c = transport.new_consumer(None, "c1")
    assert isinstance(c, ThreadConsumer)
    name = type(c).__name__
    assert not c.stopping
    assert c.wait_stop(0.01) is False
    t0 = time.monotonic()
    threading.Timer(0.05, c.stop).start()
    assert c.wait_stop(WAIT) is True  # woken by stop(), not by the timeout
    assert time.monotonic() - t0 < WAIT / 2
    assert c.stopping
    c.stop()  # idempotent
    assert c.join(WAIT) is True
    assert repr(c) == f"<{name} c1 running=False>"


def test_stop_consumers_stops_all_within_one_timeout(transport: Any) -> None:
    cs = [transport.new_consumer(None, f"c{i}") for i in range(3)]
    assert all(repr(c).endswith("running=True>") for c in cs)
    assert Transport.stop_consumers(cs, WAIT) is True
    assert all(c.stopping for c in cs)
    assert Transport.stop_consumers(cs, 0.0) is True  # already ended: no wait needed


def test_run_coroutine_uses_one_loop_per_consumer_closed_at_exit(bus_transport: TransportFactory) -> None:
    bus = Bus(transport=bus_transport())
    loops: list[asyncio.AbstractEventLoop] = []
    joined: list[bool] = []
    done = threading.Event()

    async def handler(ev: Event) -> None:
        loops.append(asyncio.get_running_loop())
        # a consumer joining itself from its own handler answers at once (not ended)
        joined.append(_current_consumer(bus_transport).join(WAIT))
        if len(loops) == 3:
            done.set()

    try:
        bus.subscribe("t", handler)
        for i in range(3):
            bus.publish("t", Event("x", i))
        assert done.wait(WAIT)
    finally:
        assert bus.shutdown(WAIT)
    assert len(set(map(id, loops))) == 1
    assert loops[0].is_closed()  # the exit path closed the consumer's private loop
    assert joined == [False, False, False]


def _current_consumer(f: TransportFactory) -> Any:
    if f.redis:
        from nova.transport.redis_consumer import current_consumer
    else:
        from nova.transport.inprocess import current_consumer
    c = current_consumer()
    assert c is not None
    return c
