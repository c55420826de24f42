"""The Emitter: subscriptions, emit / emit_async / aemit, error policies, middleware,
overflow, concurrency bounds, shutdown and stats.

Runs against whichever kernels are active (the CI runs the suite with the compiled
kernels and again with ``NOVA_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from nova import Event
from nova.emitter import Emitter, EmitterStats, HookMiddleware, hooks
from nova.errors import BufferFull, EmitterClosed, Timeout, ValidationError
from nova.observability.metrics import NoOpMetricsCollector, SimpleMetricsCollector

WAIT = 10.0  # generous bound for waits on events (never a sleep)


@pytest.fixture
def make():
    """Build emitters that are shut down at teardown (no thread or loop left over)."""
    made: list[Emitter] = []

    def factory(**kw):
        em = Emitter(**kw)
        made.append(em)
        return em

    yield factory
    for em in made:
        assert em.shutdown(timeout=WAIT)


class Gate:
    """A listener that blocks until released, telling when it was entered."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list = []

    def __call__(self, ev):
        self.seen.append(ev.data)
        self.entered.set()
        assert self.release.wait(WAIT)


# ------------------------------------------------------------------ construction and bad input


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        ({"workers": 0}, ValueError, "workers > 0"),
        ({"workers": "4"}, TypeError, "workers as an int"),
        ({"workers": True}, TypeError, "workers as an int"),
        ({"buffer_size": -1}, ValueError, "buffer_size > 0"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency > 0"),
        ({"overflow": "drop"}, ValueError, "overflow among"),
        ({"overflow": "drop-oldest"}, ValueError, "overflow among"),
        ({"error_policy": "ignore"}, ValueError, "error_policy among"),
        ({"validator": 3}, TypeError, "callable validator"),
        ({"on_error": "x"}, TypeError, "callable on_error"),
        ({"name": ""}, TypeError, "non-empty str name"),
        ({"pool": object()}, TypeError, "WorkerPool"),
        ({"metrics": object()}, TypeError, "MetricsCollector"),
        ({"acquire_timeout": -1}, ValueError, ">= 0"),
    ],
)
def test_bad_construction(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        Emitter(**kw)


def test_bad_inputs(make):
    em = make()
    with pytest.raises(TypeError, match="Expected a nova Event, got dict"):
        em.emit({"type": "a"})
    with pytest.raises(TypeError, match="Expected a nova Event, got str"):
        em.emit_async("a")
    with pytest.raises(TypeError, match="Expected a nova Event, got NoneType"):
        asyncio.run(em.aemit(None))
    with pytest.raises(ValidationError, match="non-empty str event type, got ''"):
        em.subscribe("", print)
    with pytest.raises(TypeError, match="non-empty str event type, got int"):
        em.subscribe(1, print)
    with pytest.raises(TypeError, match="Expected a callable"):
        em.subscribe("a", 42)
    with pytest.raises(ValidationError):
        em.on("")
    with pytest.raises(ValueError, match="max_concurrency > 0"):
        em.subscribe("a", print, max_concurrency=0)
    with pytest.raises(TypeError, match="at index 1, got int"):
        em.emit_batch([Event("a"), 1])
    with pytest.raises(TypeError, match="iterable of Events"):
        em.emit_batch(5)

    def broken():  # the iterable's own error is not disguised as "not an iterable"
        yield Event("a")
        raise TypeError("bug inside the generator")

    with pytest.raises(TypeError, match="bug inside the generator"):
        em.emit_batch(broken())
    with pytest.raises(TypeError, match="middleware"):
        em.use(5)
    with pytest.raises(TypeError, match="async def"):

        async def amw(ev, nxt):
            return None

        em.use(amw)
    with pytest.raises(TypeError, match="neither"):
        em.use()
    with pytest.raises(ValidationError, match="non-empty str event type"):
        Event("")
    assert em.stats().emitted == 0
    assert em.stats().queued == 0  # the rejected batch enqueued nothing


def test_validator(make):
    em = make(validator=lambda ev: ev.data is not None)
    got = []
    em.subscribe("a", got.append)
    with pytest.raises(ValidationError, match="validator accepts"):
        em.emit(Event("a"))
    with pytest.raises(ValidationError):
        em.emit_async(Event("a"))

    def strict(ev):
        raise ValidationError(f"Expected data as int, got {type(ev.data).__name__}")

    em2 = make(validator=strict)
    with pytest.raises(ValidationError, match="data as int"):
        em2.emit(Event("a", "x"))
    em.emit(Event("a", 1))
    assert [e.data for e in got] == [1]
    assert em.stats().emitted == 1


# ------------------------------------------------------------------ subscriptions and order


def test_order_wildcard_and_introspection(make):
    em = make()
    calls = []
    em.subscribe("a", lambda ev: calls.append("a1"))
    em.subscribe("*", lambda ev: calls.append("star"))
    em.subscribe("a", lambda ev: calls.append("a2"))
    em.subscribe("b", lambda ev: calls.append("b1"))
    em.emit(Event("a"))
    em.emit(Event("b"))
    em.emit(Event("zzz"))
    assert calls == ["a1", "star", "a2", "star", "b1", "star"]
    assert em.event_types() == ["a", "*", "b"]
    assert len(em.listeners("a")) == 3
    assert len(em.listeners("*")) == 1
    assert len(em.listeners("nothing")) == 1


def test_on_returns_function_unchanged(make):
    em = make()
    got = []

    @em.on("x")
    def handler(ev):
        got.append(ev.data)

    assert handler.__name__ == "handler" and callable(handler)
    em.emit(Event("x", 5))
    assert got == [5]


def test_on_call_form_subscribes_and_returns_the_listener(make):
    em = make()
    got = []

    def handler(ev):
        got.append(ev.data)

    assert em.on("x", handler) is handler
    assert em.on("x", handler, max_concurrency=1) is handler
    em.emit(Event("x", 5))
    assert got == [5, 5]
    with pytest.raises(TypeError, match="callable"):
        em.on("x", 42)
    with pytest.raises(ValidationError):
        em.on("", handler)
    assert len(em.listeners("x")) == 2


def test_unsubscribe_removes_only_that_subscription(make):
    em = make()
    got = []
    s1 = em.subscribe("a", got.append)
    s2 = em.subscribe("a", got.append)
    em.emit(Event("a", 1))
    assert [e.data for e in got] == [1, 1]
    assert s1.unsubscribe() is True
    assert s1.unsubscribe() is False
    assert s2.active
    em.emit(Event("a", 2))
    assert [e.data for e in got] == [1, 1, 2]
    assert em.stats().active_listeners == 1
    with s2:
        pass
    em.emit(Event("a", 3))
    assert [e.data for e in got] == [1, 1, 2]
    assert em.event_types() == []


def test_listener_objects(make):
    em = make(error_policy="continue")
    seen, errors = [], []

    class L:
        id = "my-listener"

        def handle(self, ev):
            if ev.data == "bad":
                raise KeyError("bad")
            seen.append(ev.data)

        def on_error(self, ev, exc):
            errors.append((ev.data, type(exc).__name__))

    em.subscribe("a", L())
    em.emit(Event("a", 1))
    em.emit(Event("a", "bad"))
    assert seen == [1] and errors == [("bad", "KeyError")]
    assert em.listeners("a")[0].id == "my-listener"


# ------------------------------------------------------------------ error policies


def test_raise_policy_one_error_runs_every_listener(make):
    em = make()
    calls = []

    def bad(ev):
        calls.append("bad")
        raise ValueError("boom")

    em.subscribe("a", lambda ev: calls.append(1))
    em.subscribe("a", bad)
    em.subscribe("a", lambda ev: calls.append(3))
    with pytest.raises(ValueError, match="boom"):
        em.emit(Event("a"))
    assert calls == [1, "bad", 3]
    st = em.stats()
    assert (st.emitted, st.processed, st.failed) == (1, 2, 1)


def test_raise_policy_several_errors_group(make):
    em = make()
    calls = []

    def bad(n):
        def f(ev):
            calls.append(n)
            raise RuntimeError(f"e{n}")

        return f

    em.subscribe("a", bad(1))
    em.subscribe("a", lambda ev: calls.append("ok"))
    em.subscribe("a", bad(2))
    with pytest.raises(ExceptionGroup) as info:
        em.emit(Event("a"))
    assert [str(e) for e in info.value.exceptions] == ["e1", "e2"]
    assert calls == [1, "ok", 2]
    assert em.stats().failed == 2 and em.stats().processed == 1


def test_continue_policy_reports_to_hooks(make, caplog):
    hook = []
    em = make(error_policy="continue", on_error=lambda ev, exc, lis: hook.append((ev.data, str(exc), lis.id)))
    per_listener = []
    from nova.events import FunctionListener

    def bad(ev):
        raise ValueError(f"bad {ev.data}")

    lis = FunctionListener(bad, id="bad", on_error=lambda ev, exc: per_listener.append(str(exc)))
    after = []
    em.subscribe("a", lis)
    em.subscribe("a", after.append)
    em.emit(Event("a", 1))
    assert hook == [(1, "bad 1", "bad")]
    assert per_listener == ["bad 1"]
    assert len(after) == 1

    # no hooks at all: the error is logged, not lost
    em2 = make(error_policy="continue")
    em2.subscribe("a", bad)
    with caplog.at_level(logging.ERROR, logger="nova.emitter"):
        em2.emit(Event("a", 2))
    assert any("failed on event 'a'" in r.getMessage() for r in caplog.records)


def test_failing_hook_is_logged_not_raised(make, caplog):
    def hook(ev, exc, lis):
        raise RuntimeError("hook broke")

    em = make(error_policy="continue", on_error=hook)
    em.subscribe("a", lambda ev: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="nova.emitter"):
        em.emit(Event("a"))
    assert any("on_error hook" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ once


def test_once_called_once(make):
    em = make()
    got = []
    sub = em.once("a", got.append)
    em.emit(Event("a", 1))
    em.emit(Event("a", 2))
    assert [e.data for e in got] == [1]
    assert not sub.active
    assert em.stats().processed == 1 and em.stats().active_listeners == 0


@pytest.mark.stress
def test_once_exactly_once_under_races(make):
    em = make()
    threads_n = 8
    for _round in range(50):
        calls = []
        em.once("race", calls.append)
        barrier = threading.Barrier(threads_n)

        def fire():
            barrier.wait(WAIT)
            em.emit(Event("race"))

        ts = [threading.Thread(target=fire) for _ in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT)
        assert len(calls) == 1
    st = em.stats()
    assert st.processed == 50 and st.emitted == 50 * threads_n


def test_once_from_workers_and_aemit(make):
    em = make(workers=4)
    calls = []
    em.once("a", calls.append)
    assert em.emit_batch([Event("a", i) for i in range(50)]) == 50
    assert em.drain(WAIT)
    assert len(calls) == 1

    async def alis(ev):
        calls.append(ev)

    em.once("b", alis)

    async def main():
        await asyncio.gather(*(em.aemit(Event("b")) for _ in range(10)))

    asyncio.run(main())
    assert len(calls) == 2
    assert em.stats().processed == 2


# ------------------------------------------------------------------ async listeners from every entry point


def test_async_listener_from_emit_in_plain_thread(make):
    em = make()
    done = []

    async def alis(ev):
        await asyncio.sleep(0)
        done.append(ev.data)

    em.subscribe("a", alis)
    em.emit(Event("a", 1))
    assert done == [1]  # completed before emit returned

    async def bad(ev):
        raise LookupError("async boom")

    em.subscribe("a", bad)
    with pytest.raises(LookupError, match="async boom"):
        em.emit(Event("a", 2))
    assert done == [1, 2]
    st = em.stats()
    assert (st.processed, st.failed) == (2, 1)


def test_async_listener_from_emit_inside_running_loop(make):
    reported = threading.Event()
    errs = []
    em = make(on_error=lambda ev, exc, lis: (errs.append(str(exc)), reported.set()))
    ran = threading.Event()

    async def alis(ev):
        ran.set()

    async def bad(ev):
        raise ValueError("late")

    em.subscribe("a", alis)
    em.subscribe("a", bad)

    async def main():
        em.emit(Event("a"))  # must not block this loop

    asyncio.run(main())
    assert ran.wait(WAIT) and reported.wait(WAIT)
    assert errs == ["late"]


def test_async_listener_via_emit_async(make):
    em = make()
    seen = []

    async def alis(ev):
        await asyncio.sleep(0)
        seen.append(ev.data)

    em.subscribe("a", alis)
    assert em.emit_batch([Event("a", i) for i in range(20)]) == 20
    assert em.drain(WAIT)
    assert sorted(seen) == list(range(20))


def test_sync_handle_returning_awaitable_is_awaited(make):
    """A managed listener's handle may be sync and return an awaitable."""
    em = make()
    seen = []

    async def work(ev):
        seen.append(ev.data)

    class Managed:
        id = "managed"
        managed = True

        def handle(self, ev):
            return work(ev)

    em.subscribe("a", Managed())
    em.emit(Event("a", 1))
    em.emit_async(Event("a", 2))
    assert em.drain(WAIT)
    asyncio.run(em.aemit(Event("a", 3)))
    assert sorted(seen) == [1, 2, 3]


def test_aemit_concurrent_async_and_inline_sync(make):
    em = make()
    order = []

    async def main():
        first_in = asyncio.Event()

        async def a(ev):
            order.append("a-start")
            first_in.set()
            await asyncio.sleep(0)
            order.append("a-end")

        async def b(ev):
            await asyncio.wait_for(first_in.wait(), WAIT)  # only passes if a runs concurrently
            order.append("b")

        em.subscribe("x", lambda ev: order.append("sync"))
        em.subscribe("x", b)
        em.subscribe("x", a)
        await em.aemit(Event("x"))

    asyncio.run(main())
    assert order[0] == "sync" and set(order) == {"sync", "a-start", "a-end", "b"}
    assert em.stats().processed == 3


def test_aemit_error_policies(make):
    em = make()

    async def bad(ev):
        raise ValueError("a1")

    async def bad2(ev):
        raise KeyError("a2")

    em.subscribe("one", bad)
    em.subscribe("two", bad)
    em.subscribe("two", bad2)

    async def main():
        with pytest.raises(ValueError):
            await em.aemit(Event("one"))
        with pytest.raises(ExceptionGroup) as info:
            await em.aemit(Event("two"))
        assert len(info.value.exceptions) == 2

    asyncio.run(main())
    hook = []
    em2 = make(error_policy="continue", on_error=lambda ev, exc, lis: hook.append(type(exc).__name__))
    em2.subscribe("one", bad)
    asyncio.run(em2.aemit(Event("one")))
    assert hook == ["ValueError"]
    assert em.stats().failed == 3


# ------------------------------------------------------------------ emit_async and workers


def test_emit_async_delivers_and_reports_worker_errors(make):
    errs = []
    lock = threading.Lock()

    def hook(ev, exc, lis):
        with lock:
            errs.append(ev.data)

    em = make(workers=3, on_error=hook)  # error_policy "raise": workers still report
    got = []
    em.subscribe("a", lambda ev: got.append(ev.data))

    def bad(ev):
        if ev.data % 10 == 0:
            raise ValueError(ev.data)

    em.subscribe("a", bad)
    n = 500
    for i in range(n):
        assert em.emit_async(Event("a", i)) is True
    assert em.drain(WAIT)
    assert sorted(got) == list(range(n))
    assert sorted(errs) == list(range(0, n, 10))
    st = em.stats()
    assert st.delivered == n and st.emitted == n
    assert st.failed == n // 10 and st.processed == 2 * n - n // 10


def test_single_worker_keeps_order(make):
    em = make(workers=1)
    got = []
    em.subscribe("a", lambda ev: got.append(ev.data))
    em.emit_batch([Event("a", i) for i in range(300)])
    assert em.drain(WAIT)
    assert got == list(range(300))


def _filled(make, overflow, **kw):
    """An emitter whose one worker is blocked on event 0 and whose buffer (2) is full."""
    em = make(workers=1, buffer_size=2, overflow=overflow, **kw)
    gate = Gate()
    em.subscribe("a", gate)
    assert em.emit_async(Event("a", 0))
    assert gate.entered.wait(WAIT)
    assert em.emit_async(Event("a", 1)) and em.emit_async(Event("a", 2))
    assert em.stats().queued == 2
    return em, gate


def test_overflow_block_times_out_then_unblocks(make):
    em, gate = _filled(make, "block")
    with pytest.raises(Timeout, match="buffer within 0.05 s"):
        em.emit_async(Event("a", 3), timeout=0.05)
    result = []
    t = threading.Thread(target=lambda: result.append(em.emit_async(Event("a", 4))))
    t.start()
    gate.release.set()
    t.join(WAIT)
    assert result == [True]
    assert em.drain(WAIT)
    assert gate.seen == [0, 1, 2, 4]


def test_overflow_error(make):
    em, gate = _filled(make, "error")
    with pytest.raises(BufferFull, match="buffer, got it full"):
        em.emit_async(Event("a", 3))
    gate.release.set()
    assert em.drain(WAIT)
    assert gate.seen == [0, 1, 2]
    assert em.stats().dropped == 0


def test_overflow_drop_newest(make):
    metrics = SimpleMetricsCollector()
    em, gate = _filled(make, "drop_newest", metrics=metrics)
    assert em.emit_async(Event("a", 3)) is False
    assert em.emit_async(Event("a", 4)) is False
    gate.release.set()
    assert em.drain(WAIT)
    assert gate.seen == [0, 1, 2]
    st = em.stats()
    assert st.dropped == 2 and st.emitted == 3 and st.delivered == 3
    assert metrics.value("nova_events_dropped_total", component="emitter:emitter", reason="drop_newest") == 2


def test_overflow_drop_oldest(make):
    metrics = SimpleMetricsCollector()
    em, gate = _filled(make, "drop_oldest", metrics=metrics)
    assert em.emit_async(Event("a", 3)) is True
    assert em.emit_async(Event("a", 4)) is True
    gate.release.set()
    assert em.drain(WAIT)
    assert gate.seen == [0, 3, 4]
    st = em.stats()
    assert st.dropped == 2 and st.emitted == 5 and st.delivered == 3
    assert st.delivered + st.dropped == st.emitted
    assert metrics.value("nova_events_dropped_total", component="emitter:emitter", reason="drop_oldest") == 2


def test_user_pool(make):
    from nova.pool import WorkerPool

    with WorkerPool(2, 4, name="shared") as pool:
        em = make(pool=pool, workers=2)
        got = []
        em.subscribe("a", lambda ev: got.append(ev.data))
        em.emit_batch([Event("a", i) for i in range(100)])
        assert em.shutdown(WAIT)
        assert sorted(got) == list(range(100))
        assert not pool.closed  # the emitter does not close a pool it was given
        # more drain loops than pool threads: the extra loops would never run, and the
        # first emit_async used to wait a second for each of them
        with pytest.raises(ValueError, match="Expected workers <= the 2 threads of the given pool"):
            Emitter(pool=pool, workers=3)


# ------------------------------------------------------------------ max_concurrency


def test_max_concurrency_bounds_async_listener(make):
    em = make(max_concurrency=2)
    state = {"now": 0, "peak": 0}

    async def alis(ev):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        for _ in range(3):
            await asyncio.sleep(0)
        state["now"] -= 1

    em.subscribe("a", alis)

    async def main():
        await asyncio.gather(*(em.aemit(Event("a", i)) for i in range(8)))

    asyncio.run(main())
    assert state["peak"] == 2
    assert em.stats().processed == 8


def test_max_concurrency_caller_times_out(make):
    em = make(max_concurrency=1, acquire_timeout=0.05)

    async def main():
        hold = asyncio.Event()
        entered = asyncio.Event()

        async def alis(ev):
            entered.set()
            await hold.wait()

        em.subscribe("a", alis)
        first = asyncio.ensure_future(em.aemit(Event("a", 1)))
        await asyncio.wait_for(entered.wait(), WAIT)
        with pytest.raises(Timeout):
            await em.aemit(Event("a", 2))
        hold.set()
        await first

    asyncio.run(main())
    st = em.stats()
    assert (st.processed, st.failed) == (1, 1)


def test_max_concurrency_in_workers(make):
    em = make(workers=4, max_concurrency=2)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    two_in = threading.Event()
    go = threading.Event()

    def lis(ev):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            if state["now"] == 2:
                two_in.set()
        go.wait(WAIT)
        with lock:
            state["now"] -= 1

    em.subscribe("a", lis)
    for i in range(4):
        em.emit_async(Event("a", i))  # workers share small backlogs: one event each here
    assert two_in.wait(WAIT)
    go.set()
    assert em.drain(WAIT)
    assert state["peak"] == 2


# ------------------------------------------------------------------ middleware


def test_middleware_onion_enrich_and_stop(make):
    em = make()
    trace = []
    got = []

    def outer(ev, call_next):
        trace.append("outer-in")
        call_next(ev)
        trace.append("outer-out")

    def enrich(ev, call_next):
        trace.append("enrich")
        if ev.data == "stop":
            return None
        return call_next(ev.replace(data=f"{ev.data}!"))

    em.use(outer)
    em.use(enrich)
    em.subscribe("a", lambda ev: got.append(ev.data))
    em.emit(Event("a", "x"))
    em.emit(Event("a", "stop"))
    assert got == ["x!"]
    assert trace == ["outer-in", "enrich", "outer-out", "outer-in", "enrich", "outer-out"]
    assert em.stats().emitted == 2 and em.stats().processed == 1


def test_middleware_sees_listener_errors_and_own_errors_counted(make):
    em = make()
    seen = []

    def timing(ev, call_next):
        try:
            call_next(ev)
        except ValueError as exc:
            seen.append(str(exc))
            raise

    em.use(timing)
    em.subscribe("a", lambda ev: (_ for _ in ()).throw(ValueError("listener")))
    with pytest.raises(ValueError, match="listener"):
        em.emit(Event("a"))
    assert seen == ["listener"] and em.stats().middleware_errors == 0

    def broken(ev, call_next):
        raise RuntimeError("mw broke")

    em2 = make(error_policy="continue", on_error=lambda ev, exc, lis: seen.append((str(exc), lis)))
    em2.use(broken)
    em2.emit(Event("a"))
    assert seen[-1] == ("mw broke", None)
    assert em2.stats().middleware_errors == 1
    em3 = make()
    em3.use(broken)
    with pytest.raises(RuntimeError, match="mw broke"):
        em3.emit(Event("a"))


def test_hook_middleware_sync_and_async_paths(make):
    em = make(workers=1)
    log = []
    main_thread = threading.get_ident()

    def before(ev):
        log.append(("before", ev.data, threading.get_ident() == main_thread))
        if ev.data == "reject":
            raise ValidationError("Expected data, got reject")
        if ev.data == "skip":
            return False
        return None

    done = threading.Event()

    def after(ev, err):
        log.append(("after", ev.data, threading.get_ident() == main_thread))
        if ev.data == 2:
            done.set()

    mw = em.use(before=before, after=after)
    assert isinstance(mw, HookMiddleware)
    got = []
    em.subscribe("a", lambda ev: got.append(ev.data))
    em.emit(Event("a", 1))
    assert em.emit_async(Event("a", "skip")) is False
    with pytest.raises(ValidationError):
        em.emit_async(Event("a", "reject"))  # raised at the call, in the caller's thread
    assert em.emit_async(Event("a", 2)) is True
    assert done.wait(WAIT) and em.drain(WAIT)
    assert got == [1, 2]
    assert ("before", 2, True) in log and ("after", 2, False) in log
    assert ("after", 1, True) in log
    assert em.stats().middleware_errors == 1


def test_hooks_object_shape(make):
    em = make()
    calls = []

    class Seed:
        def before(self, ev):
            calls.append("b")

        def after(self, ev, err):
            calls.append(("a", err))

    em.use(Seed())
    em.use(hooks(after=lambda ev, err: calls.append("inner-after")))
    em.subscribe("a", lambda ev: calls.append("L"))
    em.emit(Event("a"))
    assert calls == ["b", "L", "inner-after", ("a", None)]


def test_middleware_in_aemit(make):
    em = make()
    got = []

    def stamp(ev, call_next):
        ev.metadata["seen"] = "yes"
        call_next(ev)

    async def alis(ev):
        got.append(ev.metadata["seen"])

    em.use(stamp)
    em.subscribe("a", alis)
    asyncio.run(em.aemit(Event("a")))
    assert got == ["yes"]


# ------------------------------------------------------------------ metrics


def test_metrics_reported(make):
    m = SimpleMetricsCollector()
    em = make(metrics=m, name="svc", error_policy="continue", on_error=lambda *a: None)
    em.subscribe("a", lambda ev: None)

    def bad(ev):
        raise ValueError

    from nova.events import as_listener

    em.subscribe("a", as_listener(bad, id="bad"))
    em.emit(Event("a"))
    em.emit_async(Event("a"))
    assert em.drain(WAIT)
    assert m.value("nova_events_emitted_total", type="a", result="error") == 1
    assert m.value("nova_events_emitted_total", type="a", result="queued") == 1
    assert m.value("nova_events_processed_total", listener="bad", result="error") == 2
    assert m.total("nova_events_processed_total", result="ok") == 2
    assert m.value("nova_active_listeners", emitter="svc") == 2
    assert m.value("nova_listener_duration_seconds", listener="bad")["count"] == 2
    assert m.value("nova_queue_size", component="emitter:svc") is not None


def test_noop_metrics_keeps_fast_path(make):
    em = make(metrics=NoOpMetricsCollector())
    got = []
    em.subscribe("a", got.append)
    em.emit(Event("a"))
    assert em._fast  # white-box: the no-op collector does not leave the fast path
    assert len(got) == 1


# ------------------------------------------------------------------ shutdown


def test_shutdown_idempotent_and_closed_errors():
    em = Emitter()
    em.subscribe("a", lambda ev: None)
    em.emit_async(Event("a"))
    assert em.shutdown(WAIT) is True
    assert em.shutdown(WAIT) is True
    assert em.closed
    for call in (lambda: em.emit(Event("a")), lambda: em.emit_async(Event("a")),
                 lambda: em.subscribe("a", print), lambda: asyncio.run(em.aemit(Event("a")))):
        with pytest.raises(EmitterClosed, match="shut down"):
            call()
    assert em.stats().delivered == 1


def test_context_managers():
    got = []
    with Emitter() as em:
        em.subscribe("a", got.append)
        em.emit_batch([Event("a", i) for i in range(10)])
    assert em.closed and len(got) == 10

    async def main():
        async with Emitter() as aem:

            async def alis(ev):
                got.append(ev)

            aem.subscribe("b", alis)
            await aem.aemit(Event("b"))
            aem.emit_async(Event("b"))
        return aem

    aem = asyncio.run(main())
    assert aem.closed and len(got) == 12


@pytest.mark.stress
def test_shutdown_under_load_loses_nothing():
    em = Emitter(workers=3, buffer_size=64)
    lock = threading.Lock()
    delivered = []
    warm = threading.Event()

    def lis(ev):
        delivered.append(ev.data)
        if len(delivered) == 2000:
            warm.set()

    em.subscribe("a", lis)
    accepted = []
    start = threading.Barrier(5)

    def producer(p):
        start.wait(WAIT)
        mine = 0
        for i in range(100_000):
            try:
                em.emit_async(Event("a", (p, i)))
            except EmitterClosed:
                break
            mine += 1
        with lock:
            accepted.append(mine)

    ts = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
    for t in ts:
        t.start()
    start.wait(WAIT)
    assert warm.wait(WAIT)  # shut down with the load in full swing
    assert em.shutdown(WAIT) is True
    for t in ts:
        t.join(WAIT)
    total = sum(accepted)
    st = em.stats()
    assert len(delivered) == total == st.delivered == st.emitted
    assert st.undelivered == 0 and len(set(delivered)) == total


def test_shutdown_timeout_reports_undelivered():
    em = Emitter(workers=1, buffer_size=10)
    gate = Gate()
    em.subscribe("a", gate)
    em.emit_async(Event("a", 0))
    assert gate.entered.wait(WAIT)
    for i in range(1, 6):
        em.emit_async(Event("a", i))
    assert em.shutdown(timeout=0.05) is False
    st = em.stats()
    assert st.undelivered == 5
    gate.release.set()
    assert em.drain(WAIT)  # the event in flight finishes in its worker
    st = em.stats()
    assert st.delivered + st.undelivered == st.emitted == 6
    assert gate.seen == [0]
    assert em.shutdown(0) is False  # idempotent: the first result


def test_shutdown_waits_for_background_async(make):
    done = threading.Event()

    async def alis(ev):
        await asyncio.sleep(0.01)
        done.set()

    em = Emitter()
    em.subscribe("a", alis)

    async def main():
        em.emit(Event("a"))

    asyncio.run(main())
    assert em.shutdown(WAIT) is True
    assert done.is_set()


# ------------------------------------------------------------------ stress with exact counts


@pytest.mark.stress
def test_many_threads_exact_counts(make):
    em = make(workers=4, buffer_size=256)
    lock = threading.Lock()
    counts = {"a": 0, "b": 0, "star": 0}

    def counter(key):
        def f(ev):
            with lock:
                counts[key] += 1

        return f

    em.subscribe("a", counter("a"))
    em.subscribe("b", counter("b"))
    em.subscribe("*", counter("star"))
    threads_n, per = 8, 4000
    barrier = threading.Barrier(threads_n)

    def work(k):
        barrier.wait(WAIT)
        for i in range(per):
            ev = Event("a" if i % 2 else "b", i)
            if (i + k) % 3 == 0:
                em.emit(ev)
            else:
                em.emit_async(ev, timeout=WAIT)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT * 3)
    assert em.drain(WAIT)
    total = threads_n * per
    assert counts == {"a": total // 2, "b": total // 2, "star": total}
    st = em.stats()
    assert st.emitted == total and st.processed == 2 * total and st.failed == 0
    asyncs = sum(1 for k in range(threads_n) for i in range(per) if (i + k) % 3 != 0)
    assert st.delivered == asyncs


@pytest.mark.stress
def test_subscribe_churn_while_emitting(make):
    """Subscriptions change copy-on-write while threads emit: no error, exact stats."""
    em = make()
    lock = threading.Lock()
    calls = [0]

    def lis(ev):
        with lock:
            calls[0] += 1

    em.subscribe("a", lis)
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            s = em.subscribe("a", lis)
            s.unsubscribe()

    c = threading.Thread(target=churn)
    c.start()
    try:
        for _ in range(5000):
            em.emit(Event("a"))
    finally:
        stop.set()
        c.join(WAIT)
    st = em.stats()
    assert st.processed == calls[0] and st.emitted == 5000 and st.active_listeners == 1


def test_stats_type_and_repr(make):
    em = make(name="x")
    assert isinstance(em.stats(), EmitterStats)
    assert "x" in repr(em) and em.name == "x"


def test_shutdown_or_drain_from_a_worker_is_refused(make):
    em = make(workers=1, error_policy="continue")
    errors = []
    done = threading.Event()
    em2_errors = []

    def lis(ev):
        for call in (em.shutdown, em.drain):
            try:
                call(0)
            except RuntimeError as exc:
                errors.append(str(exc))
        done.set()

    em.subscribe("a", lis)
    em.emit_async(Event("a"))
    assert done.wait(WAIT)
    assert len(errors) == 2 and all("outside emitter" in e for e in errors)
    assert em2_errors == []


def test_emit_batch_fast_and_slow_paths(make):
    em = make(workers=2)
    got = []
    lock = threading.Lock()

    def lis(ev):
        with lock:
            got.append(ev.data)

    em.subscribe("a", lis)
    assert em.emit_batch(Event("a", i) for i in range(100)) == 100  # a generator works
    assert em.emit_batch([Event("a", i) for i in range(100, 150)], timeout=WAIT) == 50
    assert em.drain(WAIT)
    assert sorted(got) == list(range(150))
    em.shutdown(WAIT)
    with pytest.raises(EmitterClosed):
        em.emit_batch([Event("a")])


def test_max_concurrency_async_listener_from_threads(make):
    em = make(max_concurrency=2)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    async def alis(ev):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        for _ in range(5):
            await asyncio.sleep(0)
        with lock:
            state["now"] -= 1

    em.subscribe("a", alis)
    barrier = threading.Barrier(6)

    def fire():
        barrier.wait(WAIT)
        for _ in range(5):
            em.emit(Event("a"))

    ts = [threading.Thread(target=fire) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT)
    assert state["peak"] <= 2
    assert em.stats().processed == 30


def test_subscribe_and_unsubscribe_from_a_listener(make):
    em = make()
    calls = []
    subs = {}

    def first(ev):
        calls.append(("first", ev.data))
        if ev.data == 1:
            subs["late"] = em.subscribe("a", lambda e: calls.append(("late", e.data)))
            subs["self"].unsubscribe()

    subs["self"] = em.subscribe("a", first)
    em.emit(Event("a", 1))  # the plan of this emit is fixed: "late" is not called yet
    em.emit(Event("a", 2))
    assert calls == [("first", 1), ("late", 2)]


def test_stats_exact_with_failures_once_and_wildcard(make):
    em = make(error_policy="continue", on_error=lambda *a: None)
    em.subscribe("*", lambda ev: None)

    def sometimes(ev):
        if ev.data % 3 == 0:
            raise ValueError

    em.subscribe("a", sometimes)
    em.once("a", lambda ev: None)
    em.subscribe("a", lambda ev: None)
    for i in range(30):
        em.emit(Event("a", i))
    for i in range(5):
        em.emit(Event("other", i))  # only the wildcard
    st = em.stats()
    assert st.emitted == 35
    assert st.failed == 10
    assert st.processed == 30 * 3 - 10 + 1 + 5


def test_same_callable_subscribed_twice_errors_attributed(make):
    hook = []
    em = make(error_policy="continue", on_error=lambda ev, exc, lis: hook.append(lis))
    calls = []

    def twice(ev):
        calls.append(ev.data)
        if len(calls) % 2 == 0:
            raise ValueError("second call fails")

    s1 = em.subscribe("a", twice)
    s2 = em.subscribe("a", twice)
    after = []
    em.subscribe("a", after.append)
    append = calls.append
    em.subscribe("b", append)
    em.subscribe("b", append)  # the very same bound method object twice
    em.emit(Event("a", 1))
    assert calls == [1, 1] and len(after) == 1
    assert hook == [s2.listener] and s1.listener is not s2.listener
    em.emit(Event("b", 2))
    assert calls[:2] == [1, 1] and [e.data for e in calls[2:]] == [2, 2]
    st = em.stats()
    assert (st.processed, st.failed) == (4, 1)


def test_aemit_plain_sync_listeners(make):
    em = make()
    calls = []
    em.subscribe("a", lambda ev: calls.append(1))
    em.subscribe("a", lambda ev: 1 / 0)
    em.subscribe("a", lambda ev: calls.append(3))

    async def main():
        await em.aemit(Event("b"))  # no listener at all
        with pytest.raises(ZeroDivisionError):
            await em.aemit(Event("a"))

    asyncio.run(main())
    assert calls == [1, 3]
    st = em.stats()
    assert (st.emitted, st.processed, st.failed) == (2, 2, 1)


def test_aemit_cancelled_cancels_its_listeners(make):
    em = make()
    cancelled = []

    def waiter(tag):
        async def lis(ev):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(tag)
                raise

        return lis

    em.subscribe("a", waiter("one"))
    em.subscribe("a", waiter("two"))

    async def main():
        task = asyncio.ensure_future(em.aemit(Event("a")))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert sorted(cancelled) == ["one", "two"]


def test_a_renamed_listener_whose_handle_returns_an_awaitable_is_awaited(make):
    # as_listener(obj, id=...) wrapped obj.handle as a plain function, whose return
    # value the emitter ignores: the coroutine was never run.
    from nova.events import as_listener

    done = []

    class Svc:
        id = "svc"

        def handle(self, ev):
            return self.work(ev)

        async def work(self, ev):
            done.append(ev.data)

        def on_error(self, ev, exc):
            done.append(("error", ev.data))

    em = make(error_policy="continue")
    renamed = as_listener(Svc(), id="svc-2")
    assert renamed.id == "svc-2" and em.listeners("a") == []
    em.subscribe("a", renamed)
    em.emit(Event("a", 1))

    async def main():
        await em.aemit(Event("a", 2))

    asyncio.run(main())
    assert done == [1, 2]
    assert em.stats().processed == 2


@pytest.mark.parametrize("n", [1, 2])
def test_a_cancelled_aemit_counts_its_calls_neither_processed_nor_failed(make, n):
    # One async listener takes a fast path that presumed the call processed; a cancelled
    # call did not return, so it is counted as on the general path: not at all.
    em = make()
    for _ in range(n):
        em.subscribe("a", _hang)

    async def main():
        task = asyncio.ensure_future(em.aemit(Event("a")))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    st = em.stats()
    assert (st.emitted, st.processed, st.failed) == (1, 0, 0)


async def _hang(ev):
    await asyncio.Event().wait()


def test_explicit_max_concurrency_bounds_inline_sync_calls(make):
    em = make(acquire_timeout=0.05)
    inside = threading.Event()
    leave = threading.Event()

    def slow(ev):
        inside.set()
        assert leave.wait(WAIT)

    em.subscribe("a", slow, max_concurrency=1)
    t = threading.Thread(target=em.emit, args=(Event("a", 1),))
    t.start()
    assert inside.wait(WAIT)
    with pytest.raises(Timeout):  # the second caller waited for the slot, then gave up
        em.emit(Event("a", 2))
    leave.set()
    t.join(WAIT)
    em.emit(Event("a", 3))  # the slot is free again
    st = em.stats()
    assert (st.processed, st.failed) == (2, 1)


def test_aemit_async_never_blocks_the_loop(make):
    em = make(workers=1, buffer_size=1)
    gate = Gate()
    em.subscribe("a", gate)

    async def main():
        assert await em.aemit_async(Event("a", 0))
        await asyncio.to_thread(gate.entered.wait, WAIT)
        assert await em.aemit_async(Event("a", 1))  # fills the buffer
        ticks = []

        async def ticker():
            while not gate.release.is_set():
                ticks.append(1)
                await asyncio.sleep(0)
                if len(ticks) == 50:
                    gate.release.set()  # the loop kept running while aemit_async waited

        waiting = asyncio.ensure_future(em.aemit_async(Event("a", 2), timeout=WAIT))
        await ticker()
        assert await waiting is True
        with pytest.raises(Timeout):
            em2_full = make(workers=1, buffer_size=1)
            g2 = Gate()
            em2_full.subscribe("b", g2)
            await em2_full.aemit_async(Event("b", 0))
            await asyncio.to_thread(g2.entered.wait, WAIT)
            await em2_full.aemit_async(Event("b", 1))
            try:
                await em2_full.aemit_async(Event("b", 2), timeout=0.05)
            finally:
                g2.release.set()

    asyncio.run(main())
    assert em.drain(WAIT)
    assert gate.seen == [0, 1, 2]


def test_retired_route_counters_are_folded_exactly(make, monkeypatch):
    import nova.emitter.routes as routes_mod

    monkeypatch.setattr(routes_mod, "RETIRED_AGE", 0.0)  # fold at once (single thread here)
    monkeypatch.setattr(routes_mod, "RETIRED_COMPACT", 16)
    em = make()
    calls = []
    em.subscribe("a", calls.append)
    for i in range(300):
        sub = em.subscribe("a", lambda ev: None)
        em.emit(Event("a", i))
        sub.unsubscribe()
        em.emit(Event("a", i))
    st = em.stats()
    assert st.emitted == 600 and st.processed == 600 + 300 and len(calls) == 600
    assert len(em._table.retired) <= 64  # white-box: compaction keeps the list bounded


# ------------------------------------------------------------------ model-based check

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TYPES = ["a", "b", "*"]
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("sub"), st.sampled_from(_TYPES)),
        st.tuples(st.just("once"), st.sampled_from(_TYPES)),
        st.tuples(st.just("unsub"), st.integers(0, 30)),
        st.tuples(st.just("emit"), st.sampled_from(["a", "b", "c"])),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_ops)
def test_subscriptions_match_a_simple_model(ops):
    """Order, wildcard merging, once and unsubscribe against a list-based model."""
    em = Emitter()
    try:
        log = []
        model_subs = []  # [sub_index, type, once, active]
        handles = []
        model_log = []
        emits = 0
        for op, arg in ops:
            if op in ("sub", "once"):
                k = len(handles)
                fn = (lambda k: lambda ev: log.append((k, ev.data)))(k)
                handles.append(em.once(arg, fn) if op == "once" else em.subscribe(arg, fn))
                model_subs.append([k, arg, op == "once", True])
            elif op == "unsub":
                if arg < len(handles):
                    handles[arg].unsubscribe()
                    model_subs[arg][3] = False
            else:
                emits += 1
                em.emit(Event(arg, emits))
                for entry in model_subs:  # subscription order, wildcard merged in
                    k, t, once, active = entry
                    if active and (t == arg or t == "*"):
                        model_log.append((k, emits))
                        if once:
                            entry[3] = False
        assert log == model_log
        assert em.stats().active_listeners == sum(1 for e in model_subs if e[3])
        assert em.stats().processed == len(model_log)
    finally:
        em.shutdown()


@pytest.mark.parametrize("overflow,accepted,seen", [("drop_newest", False, [0, 1, 2]), ("drop_oldest", True, [0, 2, 3])])
def test_drop_policies_on_the_plain_path(make, overflow, accepted, seen):
    em, gate = _filled(make, overflow)  # no metrics, no hooks: the plain emit_async path
    assert em.emit_async(Event("a", 3)) is accepted
    gate.release.set()
    assert em.drain(WAIT)
    assert gate.seen == seen
    st = em.stats()
    assert st.dropped == 1 and st.delivered == 3


def test_base_exception_propagates_with_exact_counts(make):
    em = make()
    calls = []

    class Stop(BaseException):
        pass

    def stop(ev):
        raise Stop

    em.subscribe("a", calls.append)
    em.subscribe("a", stop)
    em.subscribe("a", calls.append)
    with pytest.raises(Stop):
        em.emit(Event("a"))
    assert len(calls) == 1
    st = em.stats()
    assert (st.processed, st.failed) == (1, 1)
