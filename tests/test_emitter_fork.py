"""fork() and the max_concurrency semaphores (issue 11, phase B).

A subscription's ``max_concurrency`` Semaphore was inherited as is by a forked child: a
slot a parent thread held at the fork was lost there for good (with ``max_concurrency=1``
every later call of that subscription timed out or waited for ever), and a semaphore
lock a parent thread held at the fork blocked every call in the child.  The emitter's
after-fork hook now gives each subscription a fresh semaphore, and every
:class:`~nova.pool.Semaphore` gets a fresh lock and an empty line in a child.

Each case runs in a child interpreter (which forks again) on both twins, bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOUND = 30.0


_PRELUDE = """
import asyncio, os, sys, threading, time, warnings
import nova
from nova import Emitter, Event, Semaphore
from nova.errors import Timeout

warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
want_pure = os.environ.get("NOVA_NO_EXTENSIONS") == "1"
assert nova.USING_EXTENSIONS is (not want_pure), nova.USING_EXTENSIONS

def in_child(fn):
    # run fn in a forked child: 0 if it returned True, 3 if False, 1 on an error,
    # "froze" if it did not end within 10 s
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 3
        except BaseException as exc:
            print("CHILD ERROR", repr(exc), flush=True)
        os._exit(code)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "froze"

def wait_for(pred):
    deadline = time.monotonic() + 10
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.001)
"""


def _env(core) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("NOVA_NO_EXTENSIONS", None)
    env.pop("NOVA_REQUIRE_EXTENSIONS", None)
    env["NOVA_NO_EXTENSIONS" if core.pure else "NOVA_REQUIRE_EXTENSIONS"] = "1"
    return env


def _run(core, code: str) -> str:
    """Run *code* in a child interpreter; it must print OK and exit 0 within BOUND s."""
    try:
        out = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(code)], capture_output=True,
                             text=True, timeout=BOUND, env=_env(core), cwd=str(ROOT))
    except subprocess.TimeoutExpired as exc:  # subprocess.run killed the child
        pytest.fail(f"the child interpreter did not exit within {BOUND} s: {exc.stderr!r}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("OK"), out.stdout
    return out.stdout


def test_a_slot_held_by_a_parent_thread_is_free_in_the_child(core):
    # An explicit max_concurrency=1 bounds inline calls too; a parent thread inside the
    # call holds the only slot at the fork.  In the child that thread does not exist:
    # its slot must not be lost (the child's calls used to time out for ever).
    _run(core, """
        em = Emitter(acquire_timeout=2.0)
        inside, release = threading.Event(), threading.Event()
        got = []
        def lis(e):
            if e.data == "hold":
                inside.set()
                release.wait(20)
            got.append(e.data)
        em.subscribe("t", lis, max_concurrency=1)
        t = threading.Thread(target=em.emit, args=(Event("t", "hold"),))
        t.start()
        assert inside.wait(10)
        def child():
            for i in range(3):
                em.emit(Event("t", i))
            st = em.stats()
            return got == [0, 1, 2] and st.failed == 0
        code = in_child(child)
        release.set()
        t.join(10)
        assert code == 0, code
        assert got == ["hold"] and em.stats().failed == 0  # the parent is untouched
        print("OK")
    """)


def test_a_semaphore_lock_held_by_a_parent_thread_does_not_block_the_child(core):
    # A parent thread inside the semaphore's lock at the fork left it locked in the
    # child: every bounded call there blocked for ever.
    _run(core, """
        em = Emitter(acquire_timeout=2.0)
        got = []
        sub = em.subscribe("t", got.append, max_concurrency=2)
        (entry,) = em._table.entries()
        held, release = threading.Event(), threading.Event()
        def hold():
            with entry.sem._lock:
                held.set()
                release.wait(20)
        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(10)
        def child():
            em.emit(Event("t", 1))
            return got == [Event("t", 1)] or [e.data for e in got] == [1]
        code = in_child(child)
        release.set()
        t.join(10)
        assert code == 0, code
        print("OK")
    """)


def test_an_async_listener_slot_held_in_the_parent_is_free_in_the_child(core):
    # The emitter-wide bound (max_concurrency=1) covers async listeners: a parent task
    # awaiting inside the listener holds the slot at the fork.
    _run(core, """
        em = Emitter(max_concurrency=1, acquire_timeout=2.0)
        inside, release = threading.Event(), threading.Event()
        got = []
        async def lis(e):
            if e.data == "hold":
                inside.set()
                while not release.is_set():
                    await asyncio.sleep(0.005)
            got.append(e.data)
        em.subscribe("t", lis)
        t = threading.Thread(target=asyncio.run, args=(em.aemit(Event("t", "hold")),))
        t.start()
        assert inside.wait(10)
        def child():
            async def main():
                for i in range(3):
                    await em.aemit(Event("t", i))
            asyncio.run(main())
            em.emit(Event("t", 3))  # on nova's loop in the child
            return got == [0, 1, 2, 3] and em.stats().failed == 0
        code = in_child(child)
        release.set()
        t.join(10)
        assert code == 0, code
        assert got == ["hold"]
        print("OK")
    """)


def test_a_worker_slot_held_in_the_parent_is_free_in_the_child(core):
    # workers > max_concurrency: each worker call takes a slot; a parent worker blocked
    # in the listener holds the only one at the fork.
    _run(core, """
        em = Emitter(workers=2, max_concurrency=1, acquire_timeout=2.0)
        inside, release = threading.Event(), threading.Event()
        got = []
        def lis(e):
            if e.data == "hold":
                inside.set()
                release.wait(20)
            got.append(e.data)
        em.subscribe("t", lis)
        em.emit_async(Event("t", "hold"))
        assert inside.wait(10)
        def child():
            for i in range(3):
                em.emit_async(Event("t", i))
            assert em.drain(10)
            return sorted(got) == [0, 1, 2] and em.stats().failed == 0
        code = in_child(child)
        release.set()
        assert em.drain(10)
        assert code == 0, code
        assert got == ["hold"]
        assert em.shutdown(10)
        print("OK")
    """)


def test_a_listener_that_forks_inside_its_bounded_call(core):
    # The forking thread itself holds a slot: in the child its call returns and gives
    # the slot back (to the semaphore it took it from) without an over-release error,
    # and the subscription is usable at full capacity afterwards.
    _run(core, """
        em = Emitter(acquire_timeout=2.0)
        got, codes = [], []
        def lis(e):
            got.append(e.data)
            if e.data == "fork":
                pid = os.fork()
                if pid == 0:
                    child_ok[0] = True  # we are the child: go on from here
                    return
                codes.append(pid)
        child_ok = [False]
        em.subscribe("t", lis, max_concurrency=1)
        em.emit(Event("t", "fork"))  # raises in the child on an over-release
        if child_ok[0]:
            code = 1
            try:
                em.emit(Event("t", "again"))
                code = 0 if got == ["fork", "again"] and em.stats().failed == 0 else 3
            except BaseException as exc:
                print("CHILD ERROR", repr(exc), flush=True)
            os._exit(code)
        (pid,) = codes
        deadline = time.monotonic() + 10
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                raise AssertionError("the child froze")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
        em.emit(Event("t", 1))
        assert got == ["fork", 1]
        print("OK")
    """)


def test_a_plain_semaphore_is_usable_in_the_child(core):
    # Sibling: a user's Semaphore whose lock a parent thread held at the fork, with a
    # parent thread waiting in line.  In the child: a fresh lock and an empty line (the
    # waiter does not exist there); units taken stay taken.
    _run(core, """
        sem = Semaphore(2)
        sem.acquire(2)  # taken by this (the forking) thread
        waiting = threading.Thread(target=lambda: sem.acquire(1, 20))
        waiting.start()
        wait_for(lambda: sem.waiting == 1)
        held, release = threading.Event(), threading.Event()
        def hold():
            with sem._lock:
                held.set()
                release.wait(20)
        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(10)
        def child():
            ok = sem.waiting == 0 and sem.available == 0 and not sem.try_acquire()
            sem.release(2)  # this thread's units
            sem.acquire(2, 2.0)
            sem.release(2)
            return ok and sem.available == 2
        code = in_child(child)
        release.set()
        t.join(10)
        sem.release(2)
        waiting.join(10)
        assert code == 0, code
        assert not waiting.is_alive() and sem.available == 1
        print("OK")
    """)
