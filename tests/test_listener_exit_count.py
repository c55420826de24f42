"""ListenerManager with ``async def`` retries in flight at interpreter exit and at
``stop(timeout)``: the dead letters it reports are exactly the ones it made, and no
retry task is left pending on a loop that closes.

Causes fixed (see nova/_util/loop.py and nova/listener/drain.py):

* ``start_on_loop`` cancelled a hand-off's future when the hand-off was collected
  unrun; its ``weakref.finalize`` also ran at interpreter exit (weakref's own atexit
  hook runs before nova's), cancelling hand-offs still queued on the manager's running
  loop: those retries were dead-lettered before ``close_at_exit`` began, so its warning
  counted fewer events than the dead-letter store received.
* a retry task started on the caller's loop after ``asyncio.run`` cancelled that loop's
  tasks was left pending when the loop closed ("Task was destroyed but it is pending!"),
  its attempt stuck until the exit's timeout claimed it.
* (sibling) ``LoopThread.submit`` racing ``close()`` could queue a coroutine after the
  loop's last turn: dropped unawaited, its future never completed (a caller waiting on it,
  such as ``ListenerManager._run_coro`` for ``lm.process``, would hang).

Exit cases run in child interpreters (30 s hard timeout, killed on expiry), looped and
parametrized over delays, on both twins (compiled and pure kernels).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import re
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from childproc import run_script
from waiting import wait_until

from nova import errors
from nova._util.loop import start_on_loop, watch_loop
from nova.events import Event
from nova.listener import CircuitConfig, DeadLetterConfig, ListenerConfig, ListenerManager, RetryPolicy
from nova.store.memory import MemoryStore

WAIT = 10.0  # real seconds: a bound for waits that should end at once
BAD_STDERR = ("Task was destroyed", "was never awaited", "Exception ignored", "Traceback")


# --- child interpreters ----------------------------------------------------------------
def _run_child(script: str, tmp_path: Path, core: SimpleNamespace,
               env_extra: dict[str, str] | None = None) -> tuple[int, str]:
    rc, err, _ = run_script(script, tmp_path, core, env_extra)
    return rc, err

# The child: an async listener that always fails, retried "for ever" with short delays,
# 30 events handled in asyncio.run, then the interpreter exits with retries in flight.
# dump() is registered before nova is imported, so it runs after nova's exit hook.
_CHILD = """
    import asyncio, atexit, dataclasses, json, logging, sys
    OUT = sys.argv[0] + ".json"
    state = {"calls": 0}
    def dump():
        rows = [e.data for e in store.read("nova.deadletter")[0]]
        with open(OUT, "w") as f:
            json.dump({"stored": rows, "stats": dataclasses.asdict(lm.stats()), "calls": state["calls"],
                       "compiled": nova.USING_EXTENSIONS}, f)
    atexit.register(dump)
    logging.basicConfig(level=logging.WARNING)
    import nova
    from nova import Event, ListenerManager, ListenerConfig, RetryPolicy, CircuitConfig, DeadLetterConfig
    from nova.store.memory import MemoryStore
    store = MemoryStore()
    lm = ListenerManager()
    async def lis(ev):
        state["calls"] += 1
        await asyncio.sleep(0)
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=1_000_000, initial_delay=__DELAY__, max_delay=__MAX__),
        dead_letter=DeadLetterConfig(store=store)))
    async def main():
        for i in range(__N__):
            await m.handle(Event("t", i))
            if __PAUSE__:
                await asyncio.sleep(__PAUSE__)
    asyncio.run(main())
"""

_WARNING = re.compile(r"ListenerManager at interpreter exit: (\d+) retried event\(s\) not delivered")


def _check_exit_run(tmp_path: Path, core: SimpleNamespace, n: int, delay: float, max_delay: float,
                    pause: float) -> None:
    script = (_CHILD.replace("__DELAY__", repr(delay)).replace("__MAX__", repr(max_delay))
              .replace("__PAUSE__", repr(pause)).replace("__N__", str(n)))
    rc, err = _run_child(script, tmp_path, core, {"NOVA_EXIT_TIMEOUT": "1"})
    assert rc == 0, err
    for bad in BAD_STDERR:
        assert bad not in err, err
    res = json.loads((tmp_path / "child.py.json").read_text())
    assert res["compiled"] == (not core.pure)
    assert sorted(res["stored"]) == list(range(n)), err  # every event, once
    counts = [int(c) for c in _WARNING.findall(err)]
    assert counts == [n], err  # the warning counts exactly what the close dead-lettered
    assert res["stats"]["dead_lettered"] == n and res["stats"]["pending"] == 0, res


@pytest.mark.parametrize(("delay", "max_delay", "pause"), [
    (0.001, 0.01, 0.0),  # the reported case
    (0.0005, 0.002, 0.0),  # hand-offs queued at the moment asyncio.run ends
    (0.002, 0.005, 0.0005),  # retries already running on the caller's loop
    (0.0001, 0.0001, 0.0),  # retries racing the close itself
])
def test_exit_count_matches_the_dead_letters_stored(tmp_path: Path, core: SimpleNamespace, delay: float,
                                                    max_delay: float, pause: float) -> None:
    for i in range(10):  # flaky before the fix: 1 run in 10-50 (10 x 4 params x 2 twins)
        d = tmp_path / str(i)
        d.mkdir()
        _check_exit_run(d, core, 30, delay, max_delay, pause)


def test_exit_with_a_retry_task_created_during_asyncio_run_shutdown(tmp_path: Path,
                                                                    core: SimpleNamespace) -> None:
    # Deterministic form of the stranded task: a retry's task starts on the caller's loop
    # after asyncio.run cancelled that loop's tasks (here from an async generator's
    # cleanup, which runs between that sweep and the loop's close).
    script = """
    import asyncio, atexit, dataclasses, json, logging, sys, threading
    OUT = sys.argv[0] + ".json"
    state = {"calls": 0}
    def dump():
        got = store.read("nova.deadletter")[0]
        rows = [e.data for e in got]
        errs = [e.metadata["nova.error.type"] for e in got]
        with open(OUT, "w") as f:
            json.dump({"stored": rows, "errors": errs, "stats": dataclasses.asdict(lm.stats())}, f)
    atexit.register(dump)
    logging.basicConfig(level=logging.WARNING)
    from nova import Event, ListenerManager, ListenerConfig, RetryPolicy, CircuitConfig, DeadLetterConfig
    from nova.store.memory import MemoryStore
    store = MemoryStore()
    lm = ListenerManager()
    seen = set()
    async def lis(ev):
        state["calls"] += 1
        if ev.data in seen:  # a retry: still running when the caller's loop closes
            await asyncio.sleep(0.3)
        seen.add(ev.data)
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=1_000_000, initial_delay=0.05, max_delay=0.05),
        dead_letter=DeadLetterConfig(store=store)))
    async def late():
        try:
            yield 1
        finally:  # asyncio.run's shutdown_asyncgens: the tasks were cancelled already
            await asyncio.sleep(0.2)  # the retries (due in 50 ms) start on this loop now
    gens = []
    async def main():
        g = late()
        gens.append(g)
        await g.__anext__()
        for i in range(5):
            await m.handle(Event("t", i))
    asyncio.run(main())
    """
    rc, err = _run_child(script, tmp_path, core, {"NOVA_EXIT_TIMEOUT": "5"})
    assert rc == 0, err
    for bad in BAD_STDERR:
        assert bad not in err, err
    res = json.loads((tmp_path / "child.py.json").read_text())
    assert sorted(res["stored"]) == list(range(5))
    assert [int(c) for c in _WARNING.findall(err)] == [5], err
    # the attempts that started on the closing loop moved to the manager's loop and
    # failed there: none was stuck until the exit's time ran out (a Timeout dead letter)
    assert res["errors"] == ["ConnectionError"] * 5, res


def test_exit_count_with_async_retries_behind_an_emitter_that_shut_down(tmp_path: Path,
                                                                       core: SimpleNamespace) -> None:
    # The Emitter sibling: a managed async listener's retries run on the emitter's own
    # loop thread while it runs; shutdown() closes that loop with retries in flight (they
    # move to the manager's loop), then the interpreter exits with them still failing.
    script = """
    import asyncio, atexit, dataclasses, json, logging, sys
    OUT = sys.argv[0] + ".json"
    def dump():
        got = store.read("nova.deadletter")[0]
        with open(OUT, "w") as f:
            json.dump({"stored": [e.data for e in got], "stats": dataclasses.asdict(lm.stats())}, f)
    atexit.register(dump)
    logging.basicConfig(level=logging.WARNING)
    from nova import Emitter, Event, ListenerManager, ListenerConfig, RetryPolicy, CircuitConfig, DeadLetterConfig
    from nova.store.memory import MemoryStore
    store = MemoryStore()
    lm = ListenerManager()
    async def lis(ev):
        await asyncio.sleep(0)
        raise ConnectionError("down")
    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
        retry=RetryPolicy(max_attempts=1_000_000, initial_delay=0.001, max_delay=0.005),
        dead_letter=DeadLetterConfig(store=store)))
    em = Emitter()
    em.subscribe("t", m)
    for i in range(30):
        em.emit(Event("t", i))
    em.shutdown(timeout=5)
    """
    for i in range(5):
        d = tmp_path / str(i)
        d.mkdir()
        rc, err = _run_child(script, d, core, {"NOVA_EXIT_TIMEOUT": "2"})
        assert rc == 0, err
        for bad in BAD_STDERR:
            assert bad not in err, err
        res = json.loads((d / "child.py.json").read_text())
        assert sorted(res["stored"]) == list(range(30)), err
        assert [int(c) for c in _WARNING.findall(err)] == [30], err
        assert res["stats"]["dead_lettered"] == 30 and res["stats"]["pending"] == 0, res


# --- stop(timeout) in this process ---------------------------------------------------------
def _wait_for(pred: Any, what: str) -> None:
    wait_until(pred, what, WAIT)


class _Destroyed(logging.Handler):
    """Records asyncio's "Task was destroyed but it is pending!" errors."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "destroyed" in msg or "never awaited" in msg:
            self.seen.append(msg)


@pytest.fixture
def destroyed() -> Any:
    h = _Destroyed()
    log = logging.getLogger("asyncio")
    log.addHandler(h)
    try:
        yield h
    finally:
        log.removeHandler(h)


def _managers(store: MemoryStore, gate: dict[Any, int]) -> tuple[ListenerManager, Any, Any]:
    """m1: events 0..4, whose retries stay in flight (``gate["running"]`` counts the
    calls running now); m2: events 5..9, whose retries are due in 60 s."""
    lm = ListenerManager()
    gate["running"] = 0

    async def blocked(ev: Event) -> None:
        gate[ev.data] = gate.get(ev.data, 0) + 1
        if gate[ev.data] > 1:
            gate["running"] += 1
            try:
                await asyncio.sleep(3600)
            finally:
                gate["running"] -= 1
        raise ConnectionError("down")

    async def failing(ev: Event) -> None:
        raise ConnectionError("down")

    cb = CircuitConfig(enabled=False)
    dl = DeadLetterConfig(store=store)
    m1 = lm.register(blocked, ListenerConfig(circuit=cb, dead_letter=dl,
                                             retry=RetryPolicy(max_attempts=5, initial_delay=0.001)))
    m2 = lm.register(failing, ListenerConfig(circuit=cb, dead_letter=dl,
                                             retry=RetryPolicy(max_attempts=5, initial_delay=60, max_delay=60)))
    return lm, m1, m2


def _in_flight(gate: dict[Any, int]) -> bool:
    return gate["running"] == 5


def test_stop_timeout_returns_exactly_the_async_retries_pending_or_in_flight(destroyed: _Destroyed) -> None:
    # The caller's loop has ended: the in-flight attempts run on the manager's loop.
    store = MemoryStore()
    gate: dict[Any, int] = {}
    lm, m1, m2 = _managers(store, gate)

    async def main() -> None:
        for i in range(10):
            await (m1 if i < 5 else m2).handle(Event("t", i))

    asyncio.run(main())
    _wait_for(lambda: _in_flight(gate), "the retries of 0..4 to be in flight")
    assert lm.stats().pending == 10
    loops = lm._loops  # this manager's loop thread (others may run in this process)
    assert loops is not None and loops._thread is not None
    thread = loops._thread
    letters = lm.stop(timeout=0.2)
    calls = dict(gate)
    assert sorted(dl.event.data for dl in letters) == list(range(10))
    by = {dl.event.data: dl for dl in letters}
    for i in range(5):  # cut off mid-call: a Timeout, the running call counted
        assert isinstance(by[i].error, errors.Timeout) and by[i].attempts == 2
        assert isinstance(by[i].error.__context__, ConnectionError)
    for i in range(5, 10):  # never ran again: their last error
        assert isinstance(by[i].error, ConnectionError) and by[i].attempts == 1
    st = lm.stats()
    assert st.pending == 0 and st.dead_lettered == 10 and st.processed == 0
    assert sorted(e.data for e in store.read("nova.deadletter")[0]) == list(range(10))
    # the cancelled attempts finish on the old loop thread, which then ends by itself
    _wait_for(lambda: not thread.is_alive(), "the manager's loop thread to end")
    assert gate == {**calls, "running": 0}  # no call started after stop(); the cut-off ones ended
    gc.collect()
    assert destroyed.seen == []


def test_stop_timeout_with_async_retries_in_flight_on_the_callers_loop(destroyed: _Destroyed) -> None:
    # The caller's loop still runs: the in-flight attempts are tasks there; stop() is
    # called from another thread while they run, and cancels them.
    store = MemoryStore()
    gate: dict[Any, int] = {}
    lm, m1, m2 = _managers(store, gate)
    out: dict[str, Any] = {}

    async def main() -> None:
        for i in range(10):
            await (m1 if i < 5 else m2).handle(Event("t", i))
        while not _in_flight(gate):
            await asyncio.sleep(0.001)
        out["letters"] = await asyncio.to_thread(lm.stop, 0.2)
        out["calls"] = dict(gate)
        for _ in range(10):  # let the cancelled tasks finish here
            await asyncio.sleep(0)
        out["left"] = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    asyncio.run(main())
    letters = out["letters"]
    assert sorted(dl.event.data for dl in letters) == list(range(10))
    assert all(isinstance(dl.error, errors.Timeout) for dl in letters if dl.event.data < 5)
    assert out["left"] == []  # no retry task of the manager's left on the caller's loop
    st = lm.stats()
    assert st.pending == 0 and st.dead_lettered == 10
    assert gate == {**out["calls"], "running": 0}  # no call started after stop()
    gc.collect()
    assert destroyed.seen == []


def test_stop_timeout_counts_a_retry_rescheduled_while_it_runs() -> None:
    # Retries that fail again during stop(timeout) are rescheduled only if due before its
    # deadline; the others are dead-lettered by their own task and still returned.
    lm = ListenerManager()
    calls: dict[int, int] = {}

    async def lis(ev: Event) -> None:
        calls[ev.data] = calls.get(ev.data, 0) + 1
        await asyncio.sleep(0)
        raise ConnectionError("down")

    m = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False),
                                        retry=RetryPolicy(max_attempts=1_000_000, initial_delay=0.001,
                                                          max_delay=0.002)))

    async def main() -> None:
        for i in range(20):
            await m.handle(Event("t", i))

    for _ in range(5):
        calls.clear()
        before = lm.stats().dead_lettered
        asyncio.run(main())
        letters = lm.stop(timeout=0.05)
        assert sorted(dl.event.data for dl in letters) == list(range(20))
        st = lm.stats()
        assert st.pending == 0 and st.dead_lettered - before == 20


# --- start_on_loop / watch_loop ------------------------------------------------------------
def test_start_on_loop_cancels_and_awaits_a_task_pending_at_loop_shutdown() -> None:
    loop = asyncio.new_event_loop()
    try:
        async def setup() -> None:
            watch_loop(loop)

        loop.run_until_complete(setup())
        ended: list[str] = []

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                ended.append("finally")

        fut = start_on_loop(loop, forever)
        loop.run_until_complete(asyncio.sleep(0))  # the hand-off runs: the task starts
        assert not fut.done()
        # asyncio.run's end: (tasks cancelled: not this one, made later) async generators
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert fut.cancelled() and ended == ["finally"]
        # a hand-off after the shutdown began makes no coroutine and is cancelled
        made: list[bool] = []

        async def never() -> None:
            made.append(True)

        def factory() -> Any:
            made.append(True)
            return never()

        fut2 = start_on_loop(loop, factory)
        loop.run_until_complete(asyncio.sleep(0))
        assert fut2.cancelled() and made == []
        assert asyncio.all_tasks(loop) == set()
    finally:
        loop.close()


def test_start_on_loop_under_asyncio_run_leaves_no_task_pending(destroyed: _Destroyed) -> None:
    # Hand-offs from another thread keep arriving while asyncio.run shuts its loop down:
    # each future completes, and every attempt that began also ended (none was left
    # pending on the closed loop).
    futs: list[Any] = []
    began: list[int] = []
    ended: list[int] = []
    stop = threading.Event()

    async def attempt(i: int) -> None:
        began.append(i)
        try:
            await asyncio.sleep(0.002)
        finally:
            ended.append(i)

    def feeder(loop: asyncio.AbstractEventLoop) -> None:
        i = 0
        while not stop.is_set():
            try:
                futs.append(start_on_loop(loop, lambda i=i: attempt(i)))  # type: ignore[misc]
            except RuntimeError:  # the loop closed
                return
            i += 1
            time.sleep(0.0002)

    for _ in range(10):
        futs.clear()
        began.clear()
        ended.clear()
        stop.clear()
        threads: list[threading.Thread] = []

        async def main() -> None:
            loop = asyncio.get_running_loop()
            watch_loop(loop)
            th = threading.Thread(target=feeder, args=(loop,))
            threads.append(th)
            th.start()
            await asyncio.sleep(0.005)

        asyncio.run(main())
        stop.set()
        threads[0].join(WAIT)
        # a hand-off the closed loop dropped is cancelled when it is collected
        _wait_for(lambda: gc.collect() >= 0 and all(f.done() for f in futs),
                  f"every hand-off's future to complete: {[(i, f) for i, f in enumerate(futs) if not f.done()]}"
                  f" of {len(futs)}, began {sorted(began)[-3:]} ended {sorted(ended)[-3:]}")
        assert began and sorted(began) == sorted(ended)
    assert destroyed.seen == []


def test_loop_thread_submit_racing_its_close_never_drops_a_coroutine() -> None:
    # LoopThread.submit (Emitter async listeners, the manager's sync path to async ones)
    # racing close(): each submit either raises (its coroutine closed unstarted) or its
    # future completes; none is dropped unawaited with a future nobody completes.
    from nova._util.loop import LoopThread

    async def job() -> int:
        await asyncio.sleep(0)
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(40):
            lt = LoopThread("nova-test-loop")
            lt.loop  # noqa: B018 - start it
            futs: list[Any] = []
            go = threading.Event()

            def feeder(lt: LoopThread = lt, futs: list[Any] = futs) -> None:
                go.wait()
                for _ in range(2000):
                    try:
                        futs.append(lt.submit(job()))
                    except RuntimeError:  # closed
                        return
                    time.sleep(0.00002)

            ths = [threading.Thread(target=feeder) for _ in range(2)]
            for th in ths:
                th.start()
            go.set()
            time.sleep(0.002)
            assert lt.close(WAIT)
            for th in ths:
                th.join(WAIT)
            done, not_done = concurrent.futures.wait(futs, timeout=WAIT)
            assert not not_done, f"{len(not_done)} of {len(futs)} futures never completed"
            assert all(f.cancelled() or f.result() == 1 for f in done)
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


def test_sync_calls_of_an_async_listener_racing_stop_never_hang() -> None:
    # lm.process (the Bus path) runs an async listener on the manager's loop thread and
    # waits for it; stop() closes that loop meanwhile.  Each call returns, or raises
    # (refused by the closing loop, or cancelled by its last turn): none waits for ever.
    lm = ListenerManager()
    done: list[int] = []

    async def lis(ev: Event) -> None:
        await asyncio.sleep(0)
        done.append(ev.data)

    lid = lm.register(lis, ListenerConfig(circuit=CircuitConfig(enabled=False))).id
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller(base: int) -> None:
        for i in range(300):
            try:
                r = "ok" if lm.process(lid, Event("t", base + i)) else "dead"
            except RuntimeError:
                r = "refused"
            except concurrent.futures.CancelledError:
                r = "cancelled"
            with lock:
                outcomes.append(r)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ths = [threading.Thread(target=caller, args=(k * 1000,), daemon=True) for k in range(2)]
        for th in ths:
            th.start()
        while any(th.is_alive() for th in ths) and len(outcomes) < 600:
            lm.stop(timeout=0)
            time.sleep(0.0005)
        for th in ths:
            th.join(WAIT)
        assert not any(th.is_alive() for th in ths), f"a call hung ({len(outcomes)} of 600 returned)"
        lm.stop()
        gc.collect()
    assert len(outcomes) == 600 and "dead" not in outcomes
    assert outcomes.count("ok") == len(done)
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
