"""nova's optional features on the compat facades: metrics, managed listeners, the
store tap; off by default; bad arguments rejected at the call."""

from __future__ import annotations

import pytest

from nova import Event
from nova.compat import blinker as nblinker
from nova.compat import pyee as npyee
from nova.compat._features import Features, event_type
from nova.errors import ValidationError
from nova.listener import DeadLetterConfig, ListenerConfig, ListenerManager, RetryPolicy
from nova.observability.metrics import SimpleMetricsCollector
from nova.store import MemoryStore


def test_off_by_default() -> None:
    assert npyee.EventEmitter()._features is None
    assert nblinker.Signal()._features is None
    assert Features.build("x") is None


@pytest.mark.parametrize("kwargs, exc, msg", [
    ({"metrics": object()}, TypeError, "Expected a MetricsCollector"),
    ({"manager": object()}, TypeError, "Expected a ListenerManager or None, got object"),
    ({"listener_config": object()}, TypeError, "Expected a ListenerConfig or None, got object"),
    ({"listener_config": ListenerConfig()}, ValidationError, "Expected a manager with listener_config"),
    ({"store": object()}, TypeError, "Expected an event store"),
    ({"store": MemoryStore(), "stream": 3}, TypeError, "Expected a str stream, got int"),
    ({"store": MemoryStore(), "stream": ""}, ValidationError, "Expected a non-empty stream name"),
])
def test_bad_feature_arguments(kwargs: dict[str, object], exc: type[Exception], msg: str) -> None:
    for make in (lambda: npyee.EventEmitter(**kwargs), lambda: nblinker.Signal(**kwargs),
                 lambda: nblinker.NamedSignal("n", **kwargs)):
        with pytest.raises(exc, match=msg):
            make()


def test_pyee_metrics() -> None:
    m = SimpleMetricsCollector()
    ee = npyee.EventEmitter(metrics=m)

    def good(x: int) -> None:
        pass

    def bad(x: int) -> None:
        raise ValueError(x)

    ee.on("e", good)
    ee.emit("e", 1)
    ee.once("f", bad)
    with pytest.raises(ValueError):
        ee.emit("f", 2)
    ee.emit("nobody")
    assert m.value("nova_events_emitted_total", type="e", result="ok") == 1
    assert m.value("nova_events_emitted_total", type="nobody", result="ok") == 1
    assert m.value("nova_events_processed_total", listener="pyee:test_pyee_metrics.<locals>.good", result="ok") == 1
    assert m.value("nova_events_processed_total", listener="pyee:test_pyee_metrics.<locals>.bad", result="error") == 1
    assert m.value("nova_listener_duration_seconds", listener="pyee:test_pyee_metrics.<locals>.good")["count"] == 1


def test_pyee_store_tap_records_every_emit() -> None:
    store = MemoryStore()
    ee = npyee.EventEmitter(store=store, stream="audit")
    ee.on("user.created", lambda name: None)
    ee.emit("user.created", "ada")
    ee.emit(42, k=1)  # any hashable name: recorded under str(name)
    events, _ = store.read("audit")
    assert [(e.type, e.data) for e in events] == [
        ("new_listener", {"args": ("user.created", events[0].data["args"][1]), "kwargs": {}}),
        ("user.created", {"args": ("ada",), "kwargs": {}}),
        ("42", {"args": (), "kwargs": {"k": 1}}),
    ]
    store.close()


def test_pyee_managed_listener_dead_letters_and_unregisters() -> None:
    dead: list[object] = []
    lm = ListenerManager()
    cfg = ListenerConfig(retry=RetryPolicy(max_attempts=1), dead_letter=DeadLetterConfig(handler=dead.append))
    ee = npyee.EventEmitter(manager=lm, listener_config=cfg)
    calls: list[int] = []

    def flaky(x: int) -> None:
        calls.append(x)
        raise RuntimeError("down")

    ee.on("job", flaky)
    (lid,) = lm.listener_ids
    assert lid.startswith("pyee:test_pyee_managed_listener_dead_letters_and_unregisters.<locals>.flaky#")
    assert ee.emit("job", 7) is True  # not raised: managed listeners dead-letter
    assert calls == [7]
    assert len(dead) == 1
    assert dead[0].event.type == "job" and dead[0].event.data == {"args": (7,), "kwargs": {}}
    ee.remove_listener("job", flaky)
    assert lm.listener_ids == ()
    ee.once("job", flaky)
    assert len(lm.listener_ids) == 1
    ee.emit("job", 8)
    assert lm.listener_ids == ()  # a fired once-listener is unregistered
    assert calls == [7, 8]
    lm.stop()


def test_blinker_features() -> None:
    m = SimpleMetricsCollector()
    store = MemoryStore()
    lm = ListenerManager()
    sig = nblinker.NamedSignal("order.paid", metrics=m, store=store, manager=lm)

    class Recv:
        def __init__(self) -> None:
            self.got: list[object] = []

        def on(self, sender: object, **kw: object) -> str:
            self.got.append((sender, kw))
            return "result"

    r = Recv()
    sig.connect(r.on)  # weak: the managed call must not keep it alive
    assert len(lm.listener_ids) == 1
    res = sig.send("shop", amount=3)
    assert res == [(r.on, None)]  # managed listeners return None
    assert r.got == [("shop", {"amount": 3})]
    events, _ = store.read("blinker")
    assert [(e.type, e.data) for e in events] == [("order.paid", {"args": ("shop",), "kwargs": {"amount": 3}})]
    assert m.value("nova_events_emitted_total", type="order.paid", result="ok") == 1
    assert m.value("nova_events_processed_total", listener=f"blinker:{Recv.on.__qualname__}", result="ok") == 1
    import gc
    import weakref

    ref = weakref.ref(r)
    del r, res  # res holds a bound method of r
    gc.collect()
    assert ref() is None
    assert not sig.receivers
    assert lm.listener_ids == ()  # the collected receiver was unregistered
    lm.stop()
    store.close()


def test_blinker_async_receiver_with_manager() -> None:
    import asyncio

    lm = ListenerManager()
    sig = nblinker.Signal(manager=lm)
    got: list[object] = []

    async def recv(sender: object, **kw: object) -> None:
        got.append(sender)

    sig.connect(recv)
    assert asyncio.run(sig.send_async("s")) == [(recv, None)]
    assert got == ["s"]
    lm.stop()


def test_event_type() -> None:
    assert event_type("a") == "a"
    assert event_type(3) == "3"
    assert event_type("") == "<empty>"
    assert isinstance(Event(event_type(None), None), Event)
