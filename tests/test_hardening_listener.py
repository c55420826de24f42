"""Issue 10 hardening of ListenerManager: stop(timeout) leaves nothing running and reports
every unfinished retry (item 5), a manager left open lets the interpreter exit in bounded
time (item 1), and an inherited manager is usable in a forked child (item 3).

Exit and fork cases run in child interpreters (hard timeout, killed on expiry).
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from childproc import run_script

from nova import errors
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

WAIT = 10.0  # real seconds: a bound for waits that should end at once


def cfg(**kw: Any) -> ListenerConfig:
    kw.setdefault("circuit", CircuitConfig(enabled=False))
    return ListenerConfig(**kw)


class Watch:
    """Counts listener and dead-letter calls, and those that *start* after stop() returned.

    A retry call that nova had already started (its claim check passed) when stop()'s time
    ran out may reach the listener's first line only after stop() returned (the thread
    waited for the GIL in between).  stop() reports exactly those: their event is in its
    list, dead-lettered with ``Timeout`` "still running".  So a late call is allowed only
    for such an event (:func:`_assert_quiet` checks it); anything else is a defect.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopped = False
        self.calls = 0
        self.late_calls = 0
        self.late_events: list[str] = []
        self.letters: list[DeadLetter] = []
        self.late_letters = 0
        self.returned: list[DeadLetter] = []

    def call(self, ev: Event | None = None) -> None:
        with self.lock:
            self.calls += 1
            if self.stopped:
                self.late_calls += 1
                self.late_events.append(ev.id if ev is not None else "")

    def on_dead(self, dl: DeadLetter) -> None:
        with self.lock:
            self.letters.append(dl)
            if self.stopped:
                self.late_letters += 1

    def mark_stopped(self) -> tuple[int, int]:
        with self.lock:
            self.stopped = True
            return self.calls, len(self.letters)


def _settle(watch: Watch, n_letters: int) -> None:
    """Wait (bounded) until *n_letters* dead letters were delivered."""
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        with watch.lock:
            if len(watch.letters) >= n_letters:
                return
        time.sleep(0.005)


def _still_running(returned: list[DeadLetter]) -> set[str]:
    """Ids of the events stop() returned because their call was running at its deadline."""
    return {d.event.id for d in returned
            if isinstance(d.error, errors.Timeout) and "still running" in str(d.error)}


def _assert_quiet(watch: Watch, calls: int, letters: int, returned: list[DeadLetter] | None = None) -> None:
    time.sleep(0.3)  # anything still scheduled would run in this time (delays are ms)
    with watch.lock:
        assert watch.late_letters == 0
        if returned is None:
            assert watch.late_calls == 0
        else:
            # Only calls nova had started before the deadline (reported as still running).
            allowed = _still_running(returned)
            assert all(eid in allowed for eid in watch.late_events), (watch.late_events, len(allowed))
            assert len(watch.late_events) == len(set(watch.late_events))
        assert watch.calls == calls + watch.late_calls


# -- item 5: stop(timeout) -------------------------------------------------------------------------


def test_stop_timeout_returns_every_pending_retry_and_nothing_runs_after() -> None:
    # The case: 320 events failing with retries pending, stop(timeout=0.01).
    watch = Watch()

    def always_fails(ev: Event) -> None:
        watch.call(ev)
        time.sleep(0.0005)
        raise ConnectionError("down")

    lm = ListenerManager()
    m = lm.register(always_fails, cfg(
        retry=RetryPolicy(max_attempts=1000, initial_delay=0.001, max_delay=0.005),
        dead_letter=DeadLetterConfig(handler=watch.on_dead)))
    events = [Event("t", i) for i in range(320)]
    for ev in events:
        m.handle(ev)
    out = lm.stop(timeout=0.01)
    calls, _ = watch.mark_stopped()
    # every event was accepted with attempts left: each is in the returned list, once
    assert sorted(d.event.data for d in out) == list(range(320))
    assert lm.stats().pending == 0 and lm.stats().processed == 0
    _settle(watch, 320)
    _assert_quiet(watch, calls, 320, out)
    assert len(watch.letters) == 320 and {id(d) for d in watch.letters} == {id(d) for d in out}
    assert lm.stats().dead_lettered == 320


def test_a_retry_call_running_at_stop_is_reported_and_its_outcome_ignored() -> None:
    started, release = threading.Event(), threading.Event()
    watch = Watch()
    outcome = {"raise": True}

    def lis(ev: Event) -> None:
        watch.call()
        if watch.calls == 1:
            raise ConnectionError("first")
        started.set()
        release.wait(WAIT)
        if outcome["raise"]:
            raise ConnectionError("late")

    lm = ListenerManager()
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=5, initial_delay=0.001),
                             dead_letter=DeadLetterConfig(handler=watch.on_dead)))
    m.handle(Event("t", 1))
    assert started.wait(WAIT)
    t0 = time.monotonic()
    out = lm.stop(timeout=0.2)
    assert time.monotonic() - t0 < WAIT
    watch.mark_stopped()
    assert len(out) == 1 and out[0].event.data == 1
    err = out[0].error
    assert isinstance(err, errors.Timeout) and "still running" in str(err)
    assert isinstance(err.__context__, ConnectionError) and str(err.__context__) == "first"
    assert out[0].attempts == 2  # the first call and the one still running
    release.set()  # the late call fails: no retry, no second dead letter
    _assert_quiet(watch, 2, 1)
    st = lm.stats()
    assert (st.pending, st.processed, st.dead_lettered) == (0, 0, 1)
    assert watch.letters == out


def test_a_late_success_after_stop_is_not_counted() -> None:
    started, release = threading.Event(), threading.Event()
    n = Counter[str]()

    def lis(ev: Event) -> None:
        n["calls"] += 1
        if n["calls"] == 1:
            raise ConnectionError("first")
        started.set()
        release.wait(WAIT)

    lm = ListenerManager()
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=0.001)))
    m.handle(Event("t"))
    assert started.wait(WAIT)
    out = lm.stop(timeout=0.05)
    release.set()
    time.sleep(0.2)
    st = lm.stats()
    assert len(out) == 1 and (st.processed, st.dead_lettered, st.pending) == (0, 1, 0)
    assert n["calls"] == 2


def test_stop_without_timeout_waits_for_the_running_retry() -> None:
    started = threading.Event()
    n = Counter[str]()

    def lis(ev: Event) -> None:
        n["calls"] += 1
        if n["calls"] == 1:
            raise ConnectionError("first")
        started.set()
        time.sleep(0.1)

    lm = ListenerManager()
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=0.001)))
    m.handle(Event("t"))
    assert started.wait(WAIT)
    assert lm.stop() == []
    st = lm.stats()
    assert (st.processed, st.dead_lettered, st.pending) == (1, 0, 0)


def test_async_retries_on_the_managers_loop_stop_cleanly() -> None:
    watch = Watch()
    blocked = threading.Event()

    async def lis(ev: Event) -> None:
        watch.call()
        if ev.data == "block" and watch.calls > 1:
            blocked.set()
            await asyncio.Event().wait()  # never set: stop() cancels it
        raise ConnectionError("down")

    lm = ListenerManager()
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=1000, initial_delay=0.001, max_delay=0.003),
                             dead_letter=DeadLetterConfig(handler=watch.on_dead)))

    async def first_calls() -> None:
        await m.handle(Event("t", "block"))
        for i in range(100):
            await m.handle(Event("t", i))

    asyncio.run(first_calls())  # the loop ends: the retries move to the manager's loop
    assert blocked.wait(WAIT)
    out = lm.stop(timeout=0.05)
    calls, _ = watch.mark_stopped()
    assert len(out) == 101 and len({d.event.id for d in out}) == 101
    blocker = [d for d in out if d.event.data == "block"]
    assert len(blocker) == 1 and isinstance(blocker[0].error, errors.Timeout)
    _settle(watch, 101)
    _assert_quiet(watch, calls, 101)
    st = lm.stats()
    assert (st.pending, st.processed, st.dead_lettered) == (0, 0, 101)


def test_async_retries_on_a_foreign_running_loop_stop_cleanly() -> None:
    # Retries of an async listener run on the loop that awaited the first call while it
    # runs (an Emitter's loop, an application's loop): stop() must reach them there too.
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    watch = Watch()
    on_loop: list[bool] = []
    try:
        async def lis(ev: Event) -> None:
            watch.call()
            on_loop.append(asyncio.get_running_loop() is loop)
            await asyncio.sleep(0.001)
            raise ConnectionError("down")

        lm = ListenerManager()
        m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=1000, initial_delay=0.001, max_delay=0.002),
                                 dead_letter=DeadLetterConfig(handler=watch.on_dead)))

        async def first_calls() -> None:
            await asyncio.gather(*(m.handle(Event("t", i)) for i in range(200)))

        asyncio.run_coroutine_threadsafe(first_calls(), loop).result(WAIT)
        time.sleep(0.05)  # retries are running on that loop
        out = lm.stop(timeout=0.02)
        calls, _ = watch.mark_stopped()
        assert sorted(d.event.data for d in out) == list(range(200))
        _settle(watch, 200)
        _assert_quiet(watch, calls, 200)
        assert all(on_loop)
        assert lm.stats().pending == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        th.join(WAIT)
        loop.close()


def test_managed_listener_behind_emit_async_stops_cleanly() -> None:
    watch = Watch()

    def lis(ev: Event) -> None:
        watch.call()
        raise ConnectionError("down")

    lm = ListenerManager()
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=1000, initial_delay=0.001, max_delay=0.003),
                             dead_letter=DeadLetterConfig(handler=watch.on_dead)))
    em = Emitter(workers=4)
    em.subscribe("t", m)
    for i in range(300):
        em.emit_async(Event("t", i))
    em.shutdown(timeout=WAIT)  # every first call made; retries are the manager's
    out = lm.stop(timeout=0.02)
    calls, _ = watch.mark_stopped()
    assert sorted(d.event.data for d in out) == list(range(300))
    _settle(watch, 300)
    _assert_quiet(watch, calls, 300)


def test_a_retry_refused_by_a_running_stop_is_in_its_list() -> None:
    # A retry that fails during stop(timeout) and whose next attempt would be due after
    # the deadline is dead-lettered at once, and reported by that stop().
    from nova.testing import ManualClock

    clock = ManualClock()
    lm = ListenerManager(clock=clock)
    n = Counter[str]()

    def lis(ev: Event) -> None:
        n["calls"] += 1
        raise ConnectionError(f"call {n['calls']}")

    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=5, initial_delay=1.0, backoff="fixed")))
    m.handle(Event("t"))  # retry due at t=1
    result: list[list[DeadLetter]] = []
    t = threading.Thread(target=lambda: result.append(lm.stop(timeout=1.5)))
    t.start()
    while not lm._deadlines:  # stop() is running
        time.sleep(0.001)
    clock.advance(1.0)  # the retry runs and fails; the next (t=2) is after the deadline
    t.join(WAIT)
    assert not t.is_alive()
    (out,) = result
    assert len(out) == 1 and out[0].attempts == 2 and str(out[0].error) == "call 2"
    assert n["calls"] == 2 and lm.stats().pending == 0
    clock.advance(1e9)


# -- many threads, exact counts ----------------------------------------------------------------------------


def _fails(ev: Event, n: int) -> bool:
    return zlib.crc32(f"{ev.id}:{n}".encode()) % 10 < 4  # 40% of calls


@pytest.mark.parametrize("pool", [False, True], ids=["own-threads", "pool"])
def test_stress_stop_with_many_producers_exact_counts(pool: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    watch = Watch()
    lock = threading.Lock()
    handled: Counter[str] = Counter()
    per_event: Counter[str] = Counter()

    def lis(ev: Event) -> None:
        watch.call(ev)
        with lock:
            per_event[ev.id] += 1
            k = per_event[ev.id]
        if _fails(ev, k):
            raise ConnectionError(f"flaky {k}")
        with lock:
            handled[ev.id] += 1

    executor = ThreadPoolExecutor(4) if pool else None
    try:
        lm = ListenerManager(pool=executor)
        m = lm.register(lis, ListenerConfig(
            concurrency=4, circuit=CircuitConfig(enabled=False),
            retry=RetryPolicy(max_attempts=1000, initial_delay=0.0005, max_delay=0.004, jitter=0.5),
            dead_letter=DeadLetterConfig(handler=watch.on_dead)))
        producers, per = 8, 400
        barrier = threading.Barrier(producers + 1)

        def produce(k: int) -> None:
            barrier.wait()
            for i in range(per):
                m.handle(Event("t", (k, i)))

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
        for t in threads:
            t.start()
        barrier.wait()
        for t in threads:
            t.join(60)
        out = lm.stop(timeout=0.005)
        calls, _ = watch.mark_stopped()
        accepted = producers * per
        st = lm.stats()
        returned = {d.event.id for d in out}
        assert len(returned) == len(out)  # none twice
        assert st.processed + len(out) == accepted == len(set(handled) | returned)
        # Only a retry whose call was running (or returning) when the time was up may have
        # succeeded late (its outcome ignored, its event returned): at most one per
        # thread that runs retries (the manager's own runner has up to 16).
        late = returned & set(handled)
        assert len(late) <= 16, len(late)
        assert len(set(handled) - returned) == st.processed
        assert all(v == 1 for v in handled.values())
        assert st.dead_lettered == len(out)
        _settle(watch, len(out))
        _assert_quiet(watch, calls, len(out), out)
        assert lm.stats().pending == 0  # one may still have been in its dead-letter handler
        assert len(watch.letters) == len(out)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)


# -- the class: the manager's own threads -------------------------------------------------------------------


def test_a_closed_pool_does_not_lose_a_retry() -> None:
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    n = Counter[str]()

    def lis(ev: Event) -> None:
        n["calls"] += 1
        if n["calls"] == 1:
            raise ConnectionError("first")

    lm = ListenerManager(pool=executor)
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=0.001)))
    m.handle(Event("t"))
    assert lm.stop(timeout=WAIT) == []
    assert lm.stats().processed == 1 and n["calls"] == 2


def test_a_full_worker_pool_does_not_block_the_scheduler() -> None:
    from nova import WorkerPool

    gate = threading.Event()
    with WorkerPool(1, queue_size=1) as pool:
        pool.submit(gate.wait, WAIT)
        pool.submit(lambda: None)  # the queue is now full
        n = Counter[str]()

        def lis(ev: Event) -> None:
            n["calls"] += 1
            if n["calls"] == 1:
                raise ConnectionError("first")

        lm = ListenerManager(pool=pool)
        m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=2, initial_delay=0.001)))
        m.handle(Event("t"))
        assert lm.stop(timeout=WAIT) == []  # ran on the manager's own threads
        assert lm.stats().processed == 1
        gate.set()


def test_stop_does_not_hang_on_a_blocked_async_listener_in_the_managers_loop() -> None:
    # An async retry that blocks the manager's loop thread (a sync sleep inside async def):
    # stop(timeout) must not join that thread for ever.
    release = threading.Event()
    n = Counter[str]()

    async def lis(ev: Event) -> None:
        n["calls"] += 1
        if n["calls"] == 1:
            raise ConnectionError("first")
        release.wait(WAIT)  # blocks the loop itself

    lm = ListenerManager()
    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=0.001)))
    asyncio.run(m.handle(Event("t")))
    end = time.monotonic() + WAIT
    while n["calls"] < 2 and time.monotonic() < end:
        time.sleep(0.001)
    t0 = time.monotonic()
    out = lm.stop(timeout=0.2)
    assert time.monotonic() - t0 < 3.0
    assert len(out) == 1 and isinstance(out[0].error, errors.Timeout)
    release.set()
    time.sleep(0.1)
    assert n["calls"] == 2 and lm.stats().processed == 0


# -- item 1: interpreter exit --------------------------------------------------------------------------------


def _run_child(script: str, tmp_path: Path, env_extra: dict[str, str] | None = None) -> tuple[int, str, float]:
    return run_script(script, tmp_path, env_extra=env_extra)

_EXIT_PRELUDE = """
    import atexit, json, logging, sys, threading, time
    OUT = sys.argv[0] + ".json"
    state = {"calls": 0, "ok": 0}
    def dump():  # registered before nova is imported: runs after nova's exit hook
        rows = [{"data": e.data, "meta": dict(e.metadata)} for e in store.read("nova.deadletter")[0]]
        with open(OUT, "w") as f:
            json.dump({"state": state, "stored": rows, "stats": lm.stats().__repr__()}, f)
    atexit.register(dump)
    logging.basicConfig(level=logging.WARNING)
    from nova import Event, ListenerManager, ListenerConfig, RetryPolicy, CircuitConfig, DeadLetterConfig
    from nova.store.memory import MemoryStore
    store = MemoryStore()
    lm = ListenerManager()
"""


def _child_result(tmp_path: Path) -> Any:
    import json

    return json.loads((tmp_path / "child.py.json").read_text())


def test_exit_with_retries_pending_dead_letters_them_to_the_store(tmp_path: Path) -> None:
    rc, err, took = _run_child(_EXIT_PRELUDE + """
    def lis(ev):
        state["calls"] += 1
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60), dead_letter=DeadLetterConfig(store=store)))
    for i in range(50):
        m.handle(Event("t", i))
    """, tmp_path)
    assert rc == 0, err
    assert took < 10.0
    res = _child_result(tmp_path)
    assert sorted(r["data"] for r in res["stored"]) == list(range(50))
    assert all(r["meta"]["nova.error.type"] == "ConnectionError" for r in res["stored"])
    assert res["state"]["calls"] == 50  # retries due in 60 s were not run, not lost
    assert "50 retried event(s) not delivered" in err


def test_exit_runs_the_retries_due_within_the_budget(tmp_path: Path) -> None:
    rc, err, took = _run_child(_EXIT_PRELUDE + """
    def lis(ev):
        state["calls"] += 1
        time.sleep(0.01)  # a slow listener
        if state["calls"] <= 20:
            raise ConnectionError("first calls fail")
        state["ok"] += 1
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False), concurrency=1,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.2), dead_letter=DeadLetterConfig(store=store)))
    for i in range(20):
        m.handle(Event("t", i))
    """, tmp_path)
    assert rc == 0, err
    assert took < 10.0
    res = _child_result(tmp_path)
    assert res["state"]["ok"] == 20 and res["stored"] == []
    assert "not delivered" not in err


def test_exit_with_a_retry_blocked_for_ever_is_bounded_and_reported(tmp_path: Path) -> None:
    rc, err, took = _run_child(_EXIT_PRELUDE + """
    def lis(ev):
        state["calls"] += 1
        if state["calls"] > 1:
            threading.Event().wait()  # blocks for ever
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01), dead_letter=DeadLetterConfig(store=store)))
    m.handle(Event("t", 7))
    while state["calls"] < 2:
        time.sleep(0.001)
    """, tmp_path, {"NOVA_EXIT_TIMEOUT": "1"})
    assert rc == 0, err
    assert took < 10.0
    res = _child_result(tmp_path)
    assert [r["data"] for r in res["stored"]] == [7]
    assert res["stored"][0]["meta"]["nova.error.type"] == "nova.errors.Timeout"
    assert "1 retried event(s) not delivered" in err


def test_exit_with_a_dead_letter_handler_blocked_for_ever_is_bounded(tmp_path: Path) -> None:
    rc, err, took = _run_child(_EXIT_PRELUDE + """
    def lis(ev):
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60),
        dead_letter=DeadLetterConfig(handler=lambda dl: threading.Event().wait())))
    m.handle(Event("t"))
    """, tmp_path, {"NOVA_EXIT_TIMEOUT": "1"})
    assert rc == 0, err
    assert took < 10.0
    assert "could not close within" in err and "1 retried event(s) were pending" in err


def test_exit_with_async_retries_pending(tmp_path: Path) -> None:
    rc, err, took = _run_child(_EXIT_PRELUDE + """
    import asyncio
    async def lis(ev):
        state["calls"] += 1
        await asyncio.sleep(0)
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=1_000_000, initial_delay=0.001, max_delay=0.01),
        dead_letter=DeadLetterConfig(store=store)))
    async def main():
        for i in range(30):
            await m.handle(Event("t", i))
    asyncio.run(main())
    """, tmp_path, {"NOVA_EXIT_TIMEOUT": "1"})
    assert rc == 0, err
    assert took < 10.0
    res = _child_result(tmp_path)
    assert sorted(r["data"] for r in res["stored"]) == list(range(30))
    assert "30 retried event(s) not delivered" in err


def test_exit_with_a_managed_listener_behind_emit_async(tmp_path: Path) -> None:
    # The emitter is flushed explicitly (its own exit path is the emitter's); the manager
    # is left open with the retries its first calls scheduled.
    rc, err, took = _run_child(_EXIT_PRELUDE + """
    from nova import Emitter
    def lis(ev):
        state["calls"] += 1
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60), dead_letter=DeadLetterConfig(store=store)))
    em = Emitter(workers=2)
    em.subscribe("t", m)
    for i in range(40):
        em.emit_async(Event("t", i))
    em.shutdown(timeout=10)
    """, tmp_path)
    assert rc == 0, err
    assert took < 10.0
    res = _child_result(tmp_path)
    assert sorted(r["data"] for r in res["stored"]) == list(range(40))


def test_after_exit_close_failures_are_dead_lettered_at_once() -> None:
    lm = ListenerManager()
    letters: list[DeadLetter] = []

    def lis(ev: Event) -> None:
        raise ConnectionError("down")

    m = lm.register(lis, cfg(retry=RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60),
                             dead_letter=DeadLetterConfig(handler=letters.append)))
    m.handle(Event("t", 1))
    lm.close_at_exit(2.0)  # what the exit hook calls
    assert [d.event.data for d in letters] == [1]
    m.handle(Event("t", 2))  # e.g. a worker pool closed at a later exit stage
    assert [d.event.data for d in letters] == [1, 2] and lm.stats().pending == 0
    assert not lm.running


# -- item 3: fork --------------------------------------------------------------------------------------------


def test_an_inherited_manager_is_usable_in_a_forked_child(tmp_path: Path) -> None:
    rc, err, took = _run_child("""
    import asyncio, os, sys, threading, time
    from nova import Event, ListenerManager, ListenerConfig, RetryPolicy, CircuitConfig, DeadLetterConfig

    lm = ListenerManager()
    inside, release = threading.Event(), threading.Event()
    calls = {"n": 0}
    def lis(ev):
        calls["n"] += 1
        if ev.data == "hold":
            if calls["n"] == 1:
                raise ConnectionError("first")
            inside.set()
            release.wait()  # a parent retry holds the only concurrency token at fork
            return
        if ev.data == "flaky" and calls["n"] % 2 == 1:
            raise ConnectionError("again")
    acalls = {"n": 0}
    async def alis(ev):
        acalls["n"] += 1
        if ev.data == "flaky" and acalls["n"] == 2:
            raise ConnectionError("async fails once")
    m = lm.register(lis, ListenerConfig(concurrency=1, circuit=CircuitConfig(enabled=False),
                    retry=RetryPolicy(max_attempts=3, initial_delay=0.001)))
    am = lm.register(alis, ListenerConfig(circuit=CircuitConfig(enabled=False),
                     retry=RetryPolicy(max_attempts=2, initial_delay=0.001)), id="alis")
    m.handle(Event("t", "hold"))
    assert inside.wait(10)
    slow = lm.register(lambda ev: (_ for _ in ()).throw(ConnectionError("x")), ListenerConfig(
        circuit=CircuitConfig(enabled=False), retry=RetryPolicy(max_attempts=2, initial_delay=60, max_delay=60)), id="slow")
    slow.handle(Event("t"))  # a retry pending in the parent
    asyncio.run(am.handle(Event("t", "x")))  # the manager's loop thread exists
    holder = threading.Thread(target=lambda: (lm._rcond.acquire(), release.wait(), lm._rcond.release()))
    holder.start()  # a parent thread holds the manager's lock at fork time
    time.sleep(0.05)

    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            st = lm.stats()
            assert st.pending == 0, st  # the parent's retries stay the parent's
            calls["n"] = 0
            m.handle(Event("t", "flaky"))  # the token held in the parent is back
            asyncio.run(am.handle(Event("t", "flaky")))
            end = time.monotonic() + 10
            while lm.stats().processed < 2 + st.processed and time.monotonic() < end:
                time.sleep(0.005)
            assert lm.stats().processed == st.processed + 2, lm.stats()
            assert lm.stop(timeout=5) == []
            ok = True
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    release.set()
    holder.join(10)
    assert lm.stop(timeout=5)[0].listener_id == "slow"
    sys.exit(os.waitstatus_to_exitcode(status))
    """, tmp_path)
    assert rc == 0, err
    assert took < 10.0
