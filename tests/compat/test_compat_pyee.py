"""nova.compat.pyee beyond pyee's own suite: parity with pyee on the same script,
thread safety, subclass hooks, pickling, executors, the cls decorators."""

from __future__ import annotations

import asyncio
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import pyee
import pyee.asyncio
import pytest

from nova.compat import pyee as npyee
from nova.compat.pyee.asyncio import AsyncIOEventEmitter
from nova.compat.pyee.cls import evented, on
from nova.compat.pyee.executor import ExecutorEventEmitter

IMPLS = [pytest.param(pyee, id="pyee"), pytest.param(npyee, id="nova")]


def _script(mod: object) -> list[object]:
    """A scripted session; returns everything observable."""
    log: list[object] = []
    ee = mod.EventEmitter()  # type: ignore[attr-defined]
    ee.on("new_listener", lambda ev, f: log.append(("new", ev)))

    def a(*args: object, **kw: object) -> None:
        log.append(("a", args, kw))

    def b(*args: object, **kw: object) -> None:
        log.append(("b", args, kw))
        if c in ee.listeners("x"):
            ee.remove_listener("x", c)  # removed during the emit: still called this time

    def c(*args: object, **kw: object) -> None:
        log.append(("c", args))

    ee.on("x", a)
    ee.on("x", b)
    ee.on("x", c)
    ee.once("x", a)  # same key: replaces a's entry by a once-wrapper, in place
    log.append(ee.emit("x", 1, k=2))
    log.append(ee.emit("x", 3))
    log.append(ee.emit("nothing"))
    log.append(sorted(ee.event_names()))
    log.append([f.__name__ for f in ee.listeners("x")])
    ee.remove_all_listeners("x")
    log.append((sorted(ee.event_names()), ee.listeners("x"), ee.emit("x")))
    try:
        ee.emit("error", "boom")
    except Exception as exc:  # noqa: BLE001
        log.append((type(exc).__name__, str(exc)))
    with pytest.raises(KeyError):
        ee.on("y", a)
        ee.remove_listener("y", b)
    return log


def test_same_script_same_outcome_as_pyee() -> None:
    assert _script(npyee) == _script(pyee)


@pytest.mark.parametrize("mod", IMPLS)
def test_a_raising_listener_stops_the_emit(mod: object) -> None:
    ee = mod.EventEmitter()  # type: ignore[attr-defined]
    calls: list[str] = []
    ee.on("x", lambda: (_ for _ in ()).throw(ValueError("first")))
    ee.on("x", lambda: calls.append("second"))
    with pytest.raises(ValueError, match="first"):
        ee.emit("x")
    assert calls == []


@pytest.mark.parametrize("mod", IMPLS)
def test_error_event_without_listener(mod: object) -> None:
    ee = mod.EventEmitter()  # type: ignore[attr-defined]
    with pytest.raises(mod.PyeeError, match="Uncaught, unspecified 'error' event: nope"):  # type: ignore[attr-defined]
        ee.emit("error", "nope")
    with pytest.raises(mod.PyeeError, match="None"):  # type: ignore[attr-defined]
        ee.emit("error")


def test_once_is_called_once_across_threads() -> None:
    ee = npyee.EventEmitter()
    hits: list[int] = []
    ee.once("go", hits.append)
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait(timeout=10)
        ee.emit("go", i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(hits) == 1
    assert ee.event_names() == set()


@pytest.mark.stress
def test_concurrent_add_remove_and_emit_exact_counts() -> None:
    ee = npyee.EventEmitter()
    lock = threading.Lock()
    stable = [0]

    def steady(n: int) -> None:
        with lock:
            stable[0] += 1

    ee.on("tick", steady)
    stop = threading.Event()

    def churn() -> None:
        fns = [(lambda n: None) for _ in range(20)]
        while not stop.is_set():
            for f in fns:
                ee.on("tick", f)
            for f in fns:
                ee.remove_listener("tick", f)

    emits_per_thread = 3000
    churners = [threading.Thread(target=churn) for _ in range(2)]
    emitters = [threading.Thread(target=lambda: [ee.emit("tick", i) for i in range(emits_per_thread)])
                for _ in range(4)]
    for t in churners + emitters:
        t.start()
    for t in emitters:
        t.join(timeout=30)
    stop.set()
    for t in churners:
        t.join(timeout=30)
    assert stable[0] == 4 * emits_per_thread
    assert ee.listeners("tick") == [steady]


def test_kwargs_and_positional_paths() -> None:
    ee = npyee.EventEmitter()
    got: list[object] = []
    ee.on("e", lambda *a, **k: got.append((a, k)))
    assert ee.emit("e", 1, 2) is True
    assert ee.emit("e", x=1) is True
    assert got == [((1, 2), {}), ((), {"x": 1})]


def test_subclass_emit_run_hook_is_used() -> None:
    seen: list[tuple[object, tuple[object, ...]]] = []

    class Logged(npyee.EventEmitter):
        def _emit_run(self, f, args, kwargs):  # type: ignore[no-untyped-def]
            seen.append((f.__name__, args))
            f(*args, **kwargs)

    ee = Logged()

    def h(x: int) -> None:
        seen.append(("called", (x,)))

    ee.on("e", h)
    ee.emit("e", 5)
    assert seen == [("h", (5,)), ("called", (5,))]
    assert npyee.EventEmitter._via_run is False and Logged._via_run is True


def _module_level_handler(*args: object) -> None:
    _PICKLE_LOG.append(args)


_PICKLE_LOG: list[tuple[object, ...]] = []


def test_pickle_round_trip_keeps_listeners() -> None:
    ee = npyee.EventEmitter()
    ee.on("e", _module_level_handler)
    copy = pickle.loads(pickle.dumps(ee))
    assert copy._lock is not ee._lock
    assert copy.listeners("e") == [_module_level_handler]
    _PICKLE_LOG.clear()
    assert copy.emit("e", 1) is True
    assert _PICKLE_LOG == [(1,)]


def test_pickle_with_features_is_refused_clearly() -> None:
    from nova.observability.metrics import SimpleMetricsCollector

    ee = npyee.EventEmitter(metrics=SimpleMetricsCollector())
    with pytest.raises(TypeError, match="Expected an EventEmitter without nova features to pickle"):
        pickle.dumps(ee)


def test_asyncio_emitter_runs_coroutines_and_reports_errors() -> None:
    async def main() -> list[object]:
        ee = AsyncIOEventEmitter()
        out: list[object] = []

        @ee.on("e")
        async def ok(x: int) -> None:
            await asyncio.sleep(0)
            out.append(x)

        @ee.on("bad")
        async def bad() -> None:
            raise KeyError("k")

        ee.on("error", lambda exc: out.append(type(exc).__name__))
        ee.emit("e", 1)
        ee.emit("bad")
        assert not ee.complete
        await ee.wait_for_complete()
        await asyncio.sleep(0)
        assert ee.complete
        return out

    assert sorted(map(str, asyncio.run(main()))) == ["1", "KeyError"]


def test_executor_emitter_on_a_nova_worker_pool() -> None:
    from nova.pool import WorkerPool

    pool = WorkerPool(2, 16)
    done = threading.Event()
    errors: list[BaseException] = []
    ee = ExecutorEventEmitter(executor=pool)
    ee.on("e", lambda: done.set())
    ee.on("bad", lambda: 1 / 0)
    ee.on("error", errors.append)
    ee.emit("e")
    ee.emit("bad")
    assert done.wait(10)
    ee.shutdown()
    assert pool.closed
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)


def test_executor_rejects_a_non_executor() -> None:
    with pytest.raises(TypeError, match="Expected an Executor"):
        ExecutorEventEmitter(executor=object())


def test_executor_default_is_a_thread_pool() -> None:
    with ExecutorEventEmitter() as ee:
        assert isinstance(ee._executor, ThreadPoolExecutor)


def test_cls_marks_do_not_leak_into_the_next_evented_class() -> None:
    # pyee keeps @on registrations in a module-global list taken by the next @evented
    # class: a marked method of a class that is not @evented would leak there.
    class NotEvented:
        @on("leak")
        def handler(self) -> None:
            raise AssertionError("must not be bound to another class")

    @evented
    class Service:
        def __init__(self) -> None:
            self.got: list[int] = []

        @on("e")
        def first(self, x: int) -> None:
            self.got.append(x)

        @on("e")
        @on("f")
        def second(self, x: int) -> None:
            self.got.append(-x)

    s = Service()
    assert s.event_emitter.event_names() == {"e", "f"}
    s.event_emitter.emit("e", 2)
    s.event_emitter.emit("f", 3)
    assert s.got == [2, -2, -3]
    assert NotEvented().handler.__name__ == "handler"


def test_public_names() -> None:
    assert npyee.__all__ == ("EventEmitter", "Handler", "PyeeError", "PyeeException")
    assert issubclass(npyee.PyeeError, npyee.PyeeException)
    assert pyee.asyncio.AsyncIOEventEmitter is not AsyncIOEventEmitter


def test_executor_cancelled_future_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    # pyee's callback calls future.exception() on a cancelled future, which raises
    # CancelledError inside concurrent.futures' callback runner (logged as an error).
    ex = ThreadPoolExecutor(1)
    gate = threading.Event()
    errors: list[BaseException] = []
    ee = ExecutorEventEmitter(executor=ex)
    ee.on("block", lambda: gate.wait(10))
    ee.on("queued", lambda: None)
    ee.on("error", errors.append)
    ee.emit("block")
    ee.emit("queued")  # waits behind "block": cancelled below
    with caplog.at_level("ERROR", logger="concurrent.futures"):
        ex.shutdown(wait=False, cancel_futures=True)
        gate.set()
        ex.shutdown(wait=True)
    assert errors == []
    assert [r for r in caplog.records if r.name == "concurrent.futures"] == []
