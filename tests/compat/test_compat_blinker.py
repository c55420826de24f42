"""nova.compat.blinker beyond blinker's own suite: parity with blinker, weak references
and the send-plan cache (no leak, no stale plan), thread safety, interpreter exit."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import blinker
import pytest

from nova.compat import blinker as nblinker

REPO = Path(__file__).resolve().parents[2]
IMPLS = [pytest.param(blinker, id="blinker"), pytest.param(nblinker, id="nova")]


def _script(mod: object) -> list[object]:
    sig = mod.Signal()  # type: ignore[attr-defined]
    log: list[object] = []

    def r1(sender: object, **kw: object) -> str:
        log.append(("r1", sender, kw))
        return "one"

    def r2(sender: object, **kw: object) -> str:
        log.append(("r2", sender))
        return "two"

    class Str(str):
        pass

    sig.connect(r1)
    sig.connect(r2, sender="abc")
    out = [sorted(r for _, r in sig.send("abc", k=1))]
    out.append(sorted(r for _, r in sig.send(Str("abc"))))  # str senders match by value
    out.append(sorted(r for _, r in sig.send(None)))
    sig.disconnect(r1)
    out.append(sorted(r for _, r in sig.send("abc")))
    out.append((sig.has_receivers_for("abc"), sig.has_receivers_for("zzz"), sig.has_receivers_for(mod.ANY)))  # type: ignore[attr-defined]
    with sig.muted():
        out.append(sig.send("abc"))
    sig.disconnect(r2, sender="abc")
    out.append((sig.send("abc"), list(sig.receivers_for("abc"))))
    return [sorted(map(repr, log)), out]


def test_same_script_same_outcome_as_blinker() -> None:
    assert _script(nblinker) == _script(blinker)


@pytest.mark.parametrize("mod", IMPLS)
def test_bound_method_sender_and_receiver(mod: object) -> None:
    class Obj:
        def __init__(self) -> None:
            self.got: list[object] = []

        def recv(self, sender: object) -> None:
            self.got.append(sender)

        def other(self) -> None:
            pass

    o = Obj()
    sig = mod.Signal()  # type: ignore[attr-defined]
    sig.connect(o.recv, sender=o.other)  # a bound method: a fresh object each access
    sig.send(o.other)
    sig.send(Obj().other)
    assert o.got == [o.other]


def test_send_results_are_in_connection_order() -> None:
    sig = nblinker.Signal()
    fns = []
    for i in range(20):
        def f(sender: object, i: int = i) -> int:
            return i
        fns.append(f)
        sig.connect(f, weak=False)
    assert [r for _, r in sig.send()] == list(range(20))


def test_plans_hold_weak_receivers_weakly() -> None:
    sig = nblinker.Signal()

    def recv(sender: object) -> None:
        return None

    ref = weakref.ref(recv)
    sig.connect(recv)
    sig.send(1)
    sig.send(None)
    assert sig._plans  # cached plans exist
    del recv
    gc.collect()
    assert ref() is None
    assert not sig.receivers
    assert sig.send(1) == []


def test_collected_sender_drops_cached_plans() -> None:
    sig = nblinker.Signal()
    calls: list[object] = []

    def recv(sender: object) -> None:
        calls.append(sender)

    class Sender:
        pass

    s = Sender()
    sig.connect(recv, sender=s, weak=False)
    sig.send(s)
    assert calls == [s]
    sid = id(s)
    del s, calls[:]
    gc.collect()
    assert sig._plans == {}
    # a new object at the same address is a new sender: it has no receiver
    for _ in range(10_000):
        other = Sender()
        if id(other) == sid:
            break
    assert sig.send(other) == []
    assert calls == []


def test_plan_cache_is_bounded() -> None:
    sig = nblinker.Signal()
    sig.connect(lambda sender: None, weak=False)
    keep = [object() for _ in range(5000)]
    for o in keep:
        sig.send(o)
    assert len(sig._plans) <= nblinker._PLAN_CACHE_MAX


def test_coroutine_receivers() -> None:
    sig = nblinker.Signal()

    async def a(sender: object, **kw: object) -> int:
        return 1

    def s(sender: object, **kw: object) -> int:
        return 2

    sig.connect(a)
    with pytest.raises(RuntimeError, match="Cannot send to a coroutine function."):
        sig.send()
    sig.connect(s)

    def to_async(fn):  # type: ignore[no-untyped-def]
        async def inner(*args, **kwargs):  # type: ignore[no-untyped-def]
            return fn(*args, **kwargs)
        return inner

    with pytest.raises(RuntimeError, match="Cannot send to a non-coroutine function."):
        asyncio.run(sig.send_async())
    assert [r for _, r in asyncio.run(sig.send_async(_sync_wrapper=to_async))] == [1, 2]
    got = sig.send(_async_wrapper=lambda fn: (lambda *a, **k: "wrapped"))
    assert [r for _, r in got] == ["wrapped", 2]


def test_namespace_and_named_signal() -> None:
    ns = nblinker.Namespace()
    s = ns.signal("saved", doc="Saved.")
    assert ns.signal("saved") is s and s.name == "saved" and s.__doc__ == "Saved."
    assert "'saved'>" in repr(s)
    assert nblinker.signal("nova-test-x") is nblinker.default_namespace["nova-test-x"]
    assert nblinker.ANY is nblinker.Signal.ANY
    import pickle

    assert pickle.loads(pickle.dumps(nblinker.ANY)) is nblinker.ANY


@pytest.mark.stress
def test_concurrent_connect_disconnect_and_send_exact_counts() -> None:
    sig = nblinker.Signal()
    lock = threading.Lock()
    count = [0]

    def steady(sender: object) -> None:
        with lock:
            count[0] += 1

    sig.connect(steady)
    stop = threading.Event()

    def churn() -> None:
        fns = [(lambda sender: None) for _ in range(10)]
        senders = [object() for _ in range(5)]
        while not stop.is_set():
            for f in fns:
                for s in senders:
                    sig.connect(f, sender=s, weak=False)
            for f in fns:
                sig.disconnect(f)

    per_thread = 3000
    senders = ["a", None, 7, object()]
    churners = [threading.Thread(target=churn) for _ in range(2)]
    sending = [threading.Thread(target=lambda s=s: [sig.send(s) for _ in range(per_thread)]) for s in senders]
    for t in churners + sending:
        t.start()
    for t in sending:
        t.join(timeout=30)
    stop.set()
    for t in churners:
        t.join(timeout=30)
    assert count[0] == len(senders) * per_thread
    assert list(sig.receivers_for("a")) == [steady]


def test_weak_receivers_at_interpreter_exit_are_quiet() -> None:
    code = (
        "from nova.compat import blinker\n"
        "sig = blinker.signal('exit-test')\n"
        "class R:\n"
        "    def on(self, sender, **kw): pass\n"
        "objs = [R() for _ in range(100)]\n"
        "for o in objs: sig.connect(o.on)\n"
        "fns = [(lambda s: None) for _ in range(100)]\n"
        "for f in fns: sig.connect(f)\n"
        "sig.send('x')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""


def test_public_names() -> None:
    assert nblinker.__all__ == ("ANY", "NamedSignal", "Namespace", "Signal", "Symbol", "default_namespace", "signal")
