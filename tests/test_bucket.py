"""The token bucket kernel (both twins), on a manual clock: no test sleeps."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova import errors
from nova.testing import SYSTEM_CLOCK, ManualClock


def test_starts_full_then_refills(core):
    clock = ManualClock()
    b = core.TokenBucket(10, 5, clock=clock)
    assert b.rate == 10 and b.burst == 5
    assert [b.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.1)  # one token back
    assert b.try_acquire() is True
    assert b.try_acquire() is False
    clock.advance(100)  # capped at burst
    assert b.available == 5
    assert b.try_acquire(5) is True
    assert b.try_acquire(0.5) is False


def test_weighted_and_fractional(core):
    clock = ManualClock()
    b = core.TokenBucket(2, 4, clock=clock)
    assert b.try_acquire(3)
    assert not b.try_acquire(2)
    clock.advance(0.5)  # +1 -> 2 tokens
    assert b.try_acquire(2)
    assert b.available == 0


@pytest.mark.parametrize("n", [0, -1, 6, 5.0001, 10**400, -(10**400)])
def test_bad_n_is_value_error_not_hang(core, n):
    b = core.TokenBucket(1, 5, clock=ManualClock())
    with pytest.raises(ValueError, match="Expected n"):
        b.try_acquire(n)
    with pytest.raises(ValueError, match="Expected n"):
        b.acquire(n)


def test_bad_arguments(core):
    with pytest.raises(ValueError, match="Expected rate >= 0"):
        core.TokenBucket(-1, 1)
    with pytest.raises(ValueError, match="Expected burst > 0"):
        core.TokenBucket(1, 0)
    with pytest.raises(ValueError, match="Expected a finite rate"):
        core.TokenBucket(float("inf"), 1)
    with pytest.raises(TypeError, match="Expected rate as an int or float, got str"):
        core.TokenBucket("1", 1)
    # An int beyond the float range was an OverflowError from float().
    with pytest.raises(ValueError, match="Expected a finite rate"):
        core.TokenBucket(10**400, 1)
    with pytest.raises(ValueError, match="Expected a finite burst"):
        core.TokenBucket(1, -(10**400))
    with pytest.raises(TypeError, match="Expected a clock"):
        core.TokenBucket(1, 1, clock=object())
    b = core.TokenBucket(1, 1)
    with pytest.raises(TypeError, match="Expected n as an int or float, got str"):
        b.try_acquire("1")
    with pytest.raises(TypeError):
        b.try_acquire(True)


def test_rate_zero_grants_only_the_burst(core):
    clock = ManualClock()
    b = core.TokenBucket(0, 2, clock=clock)
    assert b.try_acquire(2)
    clock.advance(1e6)
    assert not b.try_acquire()
    with pytest.raises(errors.Timeout, match="rate is 0"):
        b.acquire()  # raises at once rather than blocking forever
    with pytest.raises(errors.Timeout, match="rate is 0"):
        b.acquire(timeout=5)


def test_acquire_sleeps_on_the_clock_exactly_as_needed(core):
    clock = ManualClock(auto_advance=True)
    b = core.TokenBucket(4, 4, clock=clock)
    b.acquire(4)
    t0 = clock.monotonic()
    b.acquire(2)  # needs 0.5 s of refill
    assert clock.monotonic() - t0 == pytest.approx(0.5)
    b.acquire(1)
    assert clock.monotonic() - t0 == pytest.approx(0.75)


def test_acquire_timeout_is_raised_without_waiting(core):
    clock = ManualClock()  # no auto-advance: a sleep would block this test
    b = core.TokenBucket(1, 10, clock=clock)
    b.acquire(10)
    with pytest.raises(errors.Timeout, match="Expected 5 tokens within 1.0 s"):
        b.acquire(5, timeout=1.0)
    assert clock.monotonic() == 0.0
    assert b.available == 0


def test_blocked_acquire_wakes_when_clock_advances(core):
    clock = ManualClock()
    b = core.TokenBucket(10, 1, clock=clock)
    b.acquire()
    done = threading.Event()

    def taker():
        b.acquire(timeout=5)
        done.set()

    t = threading.Thread(target=taker)
    t.start()
    assert clock.wait_for_sleepers(1)
    assert not done.is_set()
    clock.advance(0.1)
    assert done.wait(10)
    t.join(10)


def test_acquire_async(core):
    clock = ManualClock(auto_advance=True)
    b = core.TokenBucket(10, 2, clock=clock)

    async def main():
        await b.acquire_async(2)
        await b.acquire_async(1)
        with pytest.raises(errors.Timeout):
            await b.acquire_async(2, timeout=0.05)
        with pytest.raises(ValueError):
            await b.acquire_async(3)

    asyncio.run(main())
    assert clock.monotonic() == pytest.approx(0.1)


def test_acquire_async_system_clock(core):
    b = core.TokenBucket(1000, 1)

    async def main():
        await b.acquire_async()
        await b.acquire_async(timeout=1)  # ~1 ms of refill, awaited with asyncio.sleep

    asyncio.run(main())


def test_thread_safety_exact_grants(core):
    clock = ManualClock()
    b = core.TokenBucket(0, 5000, clock=clock)
    counts = [0] * 4

    def worker(i):
        while b.try_acquire():
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(counts) == 5000


def test_repr_and_clock(core):
    clock = ManualClock()
    b = core.TokenBucket(2.5, 3, clock=clock)
    assert b.clock is clock
    assert repr(b) == "<TokenBucket rate=2.5/s burst=3 tokens=3>"
    assert core.TokenBucket(1, 1).clock is SYSTEM_CLOCK


def test_timedelta_timeout(core):
    clock = ManualClock(auto_advance=True)
    b = core.TokenBucket(1, 1, clock=clock)
    b.acquire()
    b.acquire(timeout=timedelta(seconds=1))
    with pytest.raises(errors.Timeout):
        b.acquire(timeout=timedelta(milliseconds=500))
    with pytest.raises(ValueError, match="Expected timeout >= 0"):
        b.acquire(timeout=-1)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 5, allow_nan=False)),
        st.tuples(st.just("try"), st.one_of(st.integers(-1, 12), st.floats(-1, 12, allow_nan=False))),
        st.tuples(st.just("acquire0"), st.integers(1, 3)),
    ),
    max_size=60,
)


@given(
    rate=st.one_of(st.just(0), st.floats(0, 50, allow_nan=False), st.integers(0, 50)),
    burst=st.one_of(st.floats(0.5, 10), st.integers(1, 10)),
    ops=ops,
)
@settings(max_examples=200, deadline=None)
def test_differential_c_vs_py(core_pair, rate, burst, ops):
    c, py = core_pair
    clocks = (ManualClock(), ManualClock())
    buckets = (c.TokenBucket(rate, burst, clock=clocks[0]), py.TokenBucket(rate, burst, clock=clocks[1]))

    def outcome(b, op, arg):
        try:
            if op == "try":
                return ("ok", b.try_acquire(arg))
            return ("ok", b.acquire(arg, timeout=0))
        except Exception as exc:  # noqa: BLE001 - the type and message are compared
            return (type(exc).__name__, str(exc))

    for op, arg in ops:
        if op == "advance":
            for clock in clocks:
                clock.advance(arg)
            continue
        a, b = outcome(buckets[0], op, arg), outcome(buckets[1], op, arg)
        assert a == b, (op, arg)
        assert buckets[0].available == buckets[1].available
    assert repr(buckets[0]) == repr(buckets[1])
