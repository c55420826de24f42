"""nova._util: the argument checks, counters, the background loop thread and the exit hook."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from nova._util import checks
from nova._util.counters import count_value
from nova._util.loop import LoopThread
from nova.errors import ValidationError
from nova.testing import SYSTEM_CLOCK, ManualClock

ROOT = Path(__file__).resolve().parents[1]


def test_check_int_family():
    assert checks.check_int(3, "n", 1) == 3
    with pytest.raises(TypeError, match="Expected n as an int >= 1, got bool"):
        checks.check_int(True, "n", 1)
    with pytest.raises(ValueError, match="Expected n >= 1, got 0"):
        checks.check_int(0, "n", 1)
    with pytest.raises(TypeError, match="Expected size as an int > 0, got float"):
        checks.check_positive_int(1.0, "size")
    with pytest.raises(ValueError, match="Expected size > 0, got -2"):
        checks.check_positive_int(-2, "size")
    assert checks.check_opt_int(None, "m", 0) is None
    with pytest.raises(TypeError, match="Expected m as an int or None, got str"):
        checks.check_opt_int("1", "m", 0)
    with pytest.raises(ValueError, match="Expected m >= 0 or None, got -1"):
        checks.check_opt_int(-1, "m", 0)


def test_durations_and_timeouts():
    assert checks.check_duration(timedelta(milliseconds=1500), "d") == 1.5
    with pytest.raises(ValueError, match="Expected a finite d"):
        checks.check_duration(float("inf"), "d")
    with pytest.raises(ValueError, match="Expected d > 0 seconds"):
        checks.check_duration(0, "d", positive=True)
    with pytest.raises(ValueError, match="Expected d >= 0 seconds"):
        checks.check_duration(-1, "d")
    with pytest.raises(TypeError, match="Expected d as float seconds or a timedelta, got str"):
        checks.check_duration("1", "d")
    assert checks.check_timeout(None) is None
    assert checks.check_timeout(float("inf")) is None
    assert checks.check_timeout(timedelta.max) is None
    assert checks.check_timeout(1e300) is None
    assert checks.check_timeout(0.25) == 0.25
    with pytest.raises(ValueError):
        checks.check_timeout(float("nan"))
    assert checks.check_positive_timeout(None) is None
    with pytest.raises(ValueError, match="Expected timeout > 0 seconds"):
        checks.check_positive_timeout(0)


def test_callables_clock_names():
    assert checks.check_callable(print, "hook") is print
    with pytest.raises(TypeError, match="Expected a callable hook, got int"):
        checks.check_callable(1, "hook")
    assert checks.check_opt_callable(None, "hook") is None
    with pytest.raises(TypeError, match="Expected a callable hook or None, got int"):
        checks.check_opt_callable(1, "hook")
    assert checks.check_clock(None) is SYSTEM_CLOCK
    clock = ManualClock()
    assert checks.check_clock(clock) is clock
    assert checks.now_fn(clock)() == clock.monotonic()
    with pytest.raises(TypeError, match=r"Expected a clock with monotonic\(\) and sleep\(\), got int"):
        checks.check_clock(3)
    assert checks.check_name("a.b", "topic name") == "a.b"
    with pytest.raises(TypeError, match="Expected a str topic name, got int"):
        checks.check_name(1, "topic name")
    with pytest.raises(ValidationError, match="Expected a non-empty str topic name, got ''"):
        checks.check_name("", "topic name")
    with pytest.raises(ValidationError, match="at most 4 characters, got 5"):
        checks.check_name("abcde", "topic name", max_length=4)


def test_count_value_is_exact_under_threads():
    c = itertools.count()
    assert count_value(c) == 0

    def work():
        for _ in range(20_000):
            next(c)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert count_value(c) == 160_000
    assert count_value(itertools.count(7)) == 7


def test_loop_thread_runs_submits_and_closes():
    lt = LoopThread("nova-test-loop")
    assert not lt.started

    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    assert lt.run(add(1, 2)) == 3
    assert lt.started
    futs = [lt.submit(add(i, i)) for i in range(100)]
    assert [f.result(10) for f in futs] == [2 * i for i in range(100)]

    async def forever():
        await asyncio.Event().wait()

    pending = lt.submit(forever())
    assert lt.close(10) is True
    assert pending.cancelled()
    assert lt.closed
    coro = add(1, 1)
    with pytest.raises(RuntimeError, match="closed"):
        lt.submit(coro)
    assert lt.close(1) is True  # idempotent


def test_loop_thread_refuses_a_blocking_run_from_its_own_thread():
    lt = LoopThread("nova-test-loop2")

    async def inner():
        return 1

    async def outer():
        with pytest.raises(RuntimeError, match="outside the loop thread"):
            lt.run(inner())
        return "ok"

    assert lt.run(outer()) == "ok"
    lt.close(10)


def test_loop_thread_in_a_forked_child_starts_fresh():
    script = textwrap.dedent("""
        import asyncio, os, sys
        from nova._util.loop import LoopThread
        lt = LoopThread("t")
        async def one():
            return os.getpid()
        assert lt.run(one()) == os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0 if lt.run(one(), timeout=10) == os.getpid() else 3
            lt.close(5)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        lt.close(5)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=30, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_exit_hooks_run_in_stage_order_within_the_budget():
    script = textwrap.dedent("""
        import time
        from nova._util import atexit as ax
        class C:
            def __init__(self, name, stage, sleep=0.0):
                self.name, self.sleep = name, sleep
                ax.register(self.close_at_exit, stage)
            def close_at_exit(self, timeout):
                print(self.name, "budget_ok" if 0 <= timeout <= 2.0 else f"bad {timeout}", flush=True)
                time.sleep(min(self.sleep, timeout))
        keep = [C("store", ax.STAGE_STORAGE), C("pool", ax.STAGE_EXECUTOR),
                C("emitter", ax.STAGE_PRODUCER, sleep=10), C("bus", ax.STAGE_ROUTER)]
        gone = C("collected", ax.STAGE_PRODUCER)
        closed = C("closed", ax.STAGE_PRODUCER)
        ax.unregister(closed)
        del gone
        import gc; gc.collect()
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOVA_EXIT_TIMEOUT="2")
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=30, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["emitter", "budget_ok", "bus", "budget_ok", "pool", "budget_ok",
                                   "store", "budget_ok"], proc.stdout


def test_register_needs_a_bound_method():
    from nova._util import atexit as ax

    with pytest.raises(TypeError, match="Expected a bound method"):
        ax.register(print, ax.STAGE_PRODUCER)


def test_start_on_loop_runs_and_a_dropped_hand_off_leaves_no_coroutine():
    import gc

    from nova._util.loop import start_on_loop

    lt = LoopThread("nova-test-start")

    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    assert start_on_loop(lt.loop, lambda: double(21)).result(10) == 42
    lt.close(10)

    # A loop that closes with the hand-off still queued: no coroutine is ever made (so
    # none is "never awaited", which filterwarnings=error would turn into a failure),
    # and the future is cancelled once the dropped hand-off is collected.
    loop = asyncio.new_event_loop()
    made = []

    def factory():
        made.append(1)
        return double(1)

    fut = start_on_loop(loop, factory)
    loop.close()  # drops the queued callback unrun
    gc.collect()
    assert fut.cancelled() and made == []
    with pytest.raises(RuntimeError):
        start_on_loop(loop, factory)
