"""A token bucket rate limiter (pure-Python twin, the specification).

``TokenBucket(rate, burst)`` holds up to *burst* tokens and starts full; tokens flow
back at *rate* per second.  ``try_acquire(n)`` takes *n* tokens if they are there;
``acquire(n, timeout)`` waits for them (sleeping on the bucket's clock exactly as long
as the missing tokens need, never polling); ``acquire_async`` does the same from
asyncio code.  Asking for more than *burst* tokens, or for ``n <= 0``, is a
``ValueError`` (it could never be granted), not a hang.  With ``rate=0`` nothing is
granted once the burst is spent: a waiting ``acquire`` raises
:class:`~nova.errors.Timeout` at once instead of blocking forever.

The clock is injectable (an object with ``monotonic()`` and ``sleep(seconds)``, such as
:class:`nova.testing.ManualClock`), so tests run without sleeping.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from datetime import timedelta
from typing import Any

from nova._core import forksafe
from nova.errors import Timeout
from nova.testing import SYSTEM_CLOCK, to_seconds

__all__ = ("TokenBucket",)

#: Tolerance (in tokens) for floating-point refill arithmetic, so that waiting exactly
#: the computed time always suffices.
EPS = 1e-9


def check_number(value: object, name: str, *, positive: bool) -> float:
    """Validate a finite int/float (not bool); > 0 if *positive*, else >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected {name} as an int or float, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond the float range
        raise ValueError(f"Expected a finite {name}, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"Expected a finite {name}, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"Expected {name} > 0, got {value!r}")
    if not positive and v < 0:
        raise ValueError(f"Expected {name} >= 0, got {value!r}")
    return v


def check_clock(clock: object) -> Any:
    if clock is None:
        return SYSTEM_CLOCK
    if not callable(getattr(clock, "monotonic", None)) or not callable(getattr(clock, "sleep", None)):
        raise TypeError(f"Expected a clock with monotonic() and sleep(seconds), got {type(clock).__name__}")
    return clock


def check_n(n: object, burst: float) -> float:
    """Validate a token count: a number with 0 < n <= burst."""
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"Expected n as an int or float, got {type(n).__name__}")
    try:
        v = float(n)
    except OverflowError:  # an int beyond the float range: more than any burst
        v = math.inf
    if not (v > 0):
        raise ValueError(f"Expected n > 0, got {n!r}")
    if v > burst:
        raise ValueError(f"Expected n <= burst ({burst:g}), got {n!r}: it could never be granted")
    return v


def zero_rate_error(n: float, tokens: float) -> Timeout:
    return Timeout(f"Expected {n:g} tokens, got {tokens:.6g}: the rate is 0, so tokens never come back")


def timeout_error(n: float, timeout: float, tokens: float, rate: float) -> Timeout:
    return Timeout(
        f"Expected {n:g} tokens within {timeout} s, got {tokens:.6g} and a refill rate of {rate:g}/s"
    )


class TokenBucket:
    """A thread-safe token bucket: *rate* tokens per second, at most *burst*, starts full.

    Args:
        rate: tokens added per second (a finite number >= 0; 0 = never refill).
        burst: the bucket's size (a finite number > 0).
        clock: an object with ``monotonic()`` and ``sleep(seconds)``; the system clock
            when None.

    Raises:
        TypeError: a non-numeric rate/burst, or a clock without the two methods.
        ValueError: a negative, NaN or infinite rate, or burst <= 0.
    """

    __slots__ = ("_rate", "_burst", "_tokens", "_last", "_clock", "_mono", "_lock", "__weakref__")

    def __init__(self, rate: float, burst: float, clock: Any = None) -> None:
        self._rate = check_number(rate, "rate", positive=False)
        self._burst = check_number(burst, "burst", positive=True)
        self._clock = check_clock(clock)
        self._mono = time.monotonic if self._clock is SYSTEM_CLOCK else self._clock.monotonic
        self._tokens = self._burst
        self._last = float(self._mono())
        self._lock = threading.Lock()
        forksafe.track(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the lock is re-created free (a parent thread may have held
        it at the fork); the tokens are kept."""
        forksafe.reinit_lock(self._lock)

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """The bucket's size (the most tokens it holds)."""
        return self._burst

    @property
    def clock(self) -> Any:
        """The clock the bucket reads."""
        return self._clock

    def _refill(self, now: float) -> None:
        # Called with the lock held.  A reading older than the last one (another
        # thread read the clock later but took the lock first) adds nothing.
        elapsed = now - self._last
        if elapsed > 0:
            t = self._tokens + elapsed * self._rate
            self._tokens = t if t < self._burst else self._burst
            self._last = now

    @property
    def available(self) -> float:
        """The tokens in the bucket now (after refilling)."""
        now = float(self._mono())
        with self._lock:
            self._refill(now)
            return self._tokens

    def try_acquire(self, n: float = 1) -> bool:
        """Take *n* tokens if the bucket has them; never waits.

        Returns:
            True if the tokens were taken, False otherwise (nothing is taken then).

        Raises:
            TypeError / ValueError: *n* is not a number with ``0 < n <= burst``.
        """
        v = 1.0 if (type(n) is int and n == 1 and self._burst >= 1.0) else check_n(n, self._burst)
        now = float(self._mono())
        with self._lock:
            self._refill(now)
            if self._tokens + EPS >= v:
                t = self._tokens - v
                self._tokens = t if t > 0 else 0.0
                return True
            return False

    def _take_or_wait(self, v: float, t: float | None, start: list[float]) -> float:
        """Take *v* tokens (return 0.0) or return how long to wait for them.

        Raises Timeout when they cannot come within the deadline."""
        now = float(self._mono())
        with self._lock:
            self._refill(now)
            tokens = self._tokens
            if tokens + EPS >= v:
                left = tokens - v
                self._tokens = left if left > 0 else 0.0
                return 0.0
            rate = self._rate
        if rate == 0:
            raise zero_rate_error(v, tokens)
        wait = (v - tokens) / rate
        if t is not None:
            if not start:
                start.append(now)
            remaining = start[0] + t - now
            if wait > remaining:
                raise timeout_error(v, t, tokens, rate)
        return wait

    def acquire(self, n: float = 1, timeout: float | timedelta | None = None) -> None:
        """Take *n* tokens, blocking the calling thread (on the bucket's clock) until
        they are there.

        Raises:
            TypeError / ValueError: *n* is not a number with ``0 < n <= burst``, or a bad timeout.
            Timeout: the tokens cannot be there within *timeout* seconds (raised as soon
                as that is known, without sleeping first), or the rate is 0 and the
                bucket lacks them.
        """
        v = check_n(n, self._burst)
        t = None if timeout is None else to_seconds(timeout, "timeout")
        start: list[float] = []
        sleep = self._clock.sleep
        while True:
            wait = self._take_or_wait(v, t, start)
            if wait == 0.0:
                return
            sleep(wait)

    async def acquire_async(self, n: float = 1, timeout: float | timedelta | None = None) -> None:
        """Like :meth:`acquire`, but waits with ``await`` and never blocks the event loop.

        With the system clock it sleeps with :func:`asyncio.sleep`; a custom clock's
        ``asleep(seconds)`` coroutine is used when it has one, otherwise its blocking
        ``sleep`` runs in a worker thread.

        Raises the same exceptions as :meth:`acquire`.
        """
        v = check_n(n, self._burst)
        t = None if timeout is None else to_seconds(timeout, "timeout")
        start: list[float] = []
        clock = self._clock
        asleep = getattr(clock, "asleep", None)
        while True:
            wait = self._take_or_wait(v, t, start)
            if wait == 0.0:
                return
            if clock is SYSTEM_CLOCK:
                await asyncio.sleep(wait)
            elif asleep is not None:
                await asleep(wait)
            else:
                await asyncio.to_thread(clock.sleep, wait)

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self._rate:g}/s burst={self._burst:g} tokens={self._tokens:.6g}>"
