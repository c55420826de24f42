"""The park kernel (``nova._core.park``, both twins): a parked worker's lock and the
watcher's watch for a batch left unfinished (see ``nova.emitter.handoff``)."""

from __future__ import annotations

import threading
import time

import pytest

WAIT = 10.0
PERIOD = 0.001


def test_park_lock_is_a_lock(core):
    lock = core.ParkLock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    t0 = time.monotonic()
    assert lock.acquire(True, 0.02) is False
    assert time.monotonic() - t0 >= 0.015
    lock.release()
    assert lock.acquire(timeout=0.5) is True
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_park_lock_rejects_bad_timeouts(core):
    lock = core.ParkLock()
    with pytest.raises(ValueError):
        lock.acquire(False, 1)  # a timeout for a non-blocking call
    for bad in (-2, -0.5, float("nan")):
        with pytest.raises(ValueError):
            lock.acquire(True, bad)
    with pytest.raises(TypeError):
        lock.acquire(True, "1")
    assert lock.acquire(True, 0) is True  # nothing accepted was lost: still usable
    lock.release()


def test_park_lock_wakes_a_waiting_thread(core):
    lock = core.ParkLock()
    lock.acquire()
    got = []
    waiting = threading.Event()

    def take():
        waiting.set()
        got.append(lock.acquire(True, WAIT))

    t = threading.Thread(target=take)
    t.start()
    assert waiting.wait(WAIT)
    lock.release()  # it waits (or is about to): woken, or takes the free lock
    t.join(WAIT)
    assert got == [True] and not t.is_alive()


def test_watch_rejects_bad_input(core):
    for bad in (0, -1, 1.5, True, "4", None):
        with pytest.raises(ValueError, match="Expected workers as an int >= 1"):
            core.Watch(bad)
    w = core.Watch(2)
    for call in (lambda: w.took(2, True), lambda: w.clear(-1), lambda: w.since(5), lambda: w.ack(2, 1.0)):
        with pytest.raises(IndexError, match=r"Expected a worker index in \[0, 2\)"):
            call()
    lock = core.ParkLock()
    lock.acquire()
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="Expected a period > 0"):
            w.wait(lock, bad, 3)


def test_took_clear_stale_ack(core):
    w = core.Watch(3)
    assert w.multi == 0 and w.since(0) == 0.0 and w.stale(PERIOD) == []
    w.took(0, True)
    w.took(2, False)  # joined a batch: not a new multi-event take
    assert w.multi == 1 and w.since(0) > 0 and w.since(2) > 0 and w.since(1) == 0.0
    assert w.stale(60.0) == []  # not old enough
    time.sleep(2 * PERIOD)
    stale = w.stale(PERIOD)
    assert [i for i, _ in stale] == [0, 2]
    w.ack(*stale[0])  # its batch has nothing unstarted left
    assert [i for i, _ in w.stale(PERIOD)] == [2]
    w.clear(2)
    assert w.stale(PERIOD) == []
    w.took(0, True)  # a new batch of worker 0 is watched again
    time.sleep(2 * PERIOD)
    assert [i for i, _ in w.stale(PERIOD)] == [0] and w.multi == 2


def test_wait_returns_woken_when_the_lock_is_released(core):
    w = core.Watch(2)
    lock = core.ParkLock()
    lock.acquire()
    w.took(1, True)
    w.ack(1, w.since(1))  # being delivered, nothing stale: the watcher keeps polling
    threading.Timer(0.05, lock.release).start()
    got = w.wait(lock, PERIOD, 1_000_000)
    assert got == core.WOKEN
    assert w.polls >= 1  # it polled meanwhile (about 50 times; a loaded machine may delay timers)
    assert lock.acquire(False) is False  # the watcher holds it now
    lock.release()


def test_wait_returns_check_for_a_stale_batch(core):
    w = core.Watch(2)
    lock = core.ParkLock()
    lock.acquire()
    w.took(0, True)
    t0 = time.monotonic()
    assert w.wait(lock, PERIOD, 1_000_000) == core.CHECK
    assert time.monotonic() - t0 < WAIT


def test_wait_returns_idle_after_polls_with_nothing_taken(core):
    w = core.Watch(2)
    lock = core.ParkLock()
    lock.acquire()
    before = w.polls
    assert w.wait(lock, PERIOD, 5) == core.IDLE
    assert w.polls - before == 5


def test_a_batch_being_delivered_keeps_the_watcher_polling(core):
    # acknowledged (its last event is being delivered) but not finished: not idle
    w = core.Watch(1)
    lock = core.ParkLock()
    lock.acquire()
    w.took(0, True)
    w.ack(0, w.since(0))

    def finish():
        time.sleep(0.03)
        w.clear(0)

    threading.Thread(target=finish).start()
    t0 = time.monotonic()
    assert w.wait(lock, PERIOD, 3) == core.IDLE
    assert time.monotonic() - t0 >= 0.02  # idle only after the batch finished


def test_wait_with_the_lock_already_released(core):
    w = core.Watch(1)
    lock = core.ParkLock()
    assert w.wait(lock, PERIOD, 3) == core.WOKEN  # free: taken at once
    assert lock.acquire(False) is False
    lock.release()
