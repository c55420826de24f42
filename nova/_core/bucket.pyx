# cython: freethreading_compatible = False
"""A token bucket rate limiter (compiled kernel).

Same names, results, exceptions and messages as ``bucket_py`` (the specification).

With the system clock, ``try_acquire`` reads ``CLOCK_MONOTONIC`` (the clock behind
:func:`time.monotonic`) in C and updates the bucket with no Python call in between,
so the GIL makes each grant atomic without a lock.  With an injected clock its
``monotonic()`` is read first and the update that follows is just as atomic.
"""

cimport cython
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import asyncio
import time

from nova._core.bucket_py import EPS as _EPS_OBJ
from nova._core.bucket_py import check_clock, check_n, check_number, timeout_error, zero_rate_error
from nova.testing import SYSTEM_CLOCK, to_seconds

__all__ = ("TokenBucket",)

cdef double EPS = _EPS_OBJ
cdef object _ONE = 1


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


@cython.final
cdef class TokenBucket:
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

    cdef double _rate
    cdef double _burst
    cdef double _tokens
    cdef double _last
    cdef bint _c_clock
    cdef object _clock
    cdef object _mono

    def __init__(self, rate, burst, clock=None):
        self._rate = check_number(rate, "rate", positive=False)
        self._burst = check_number(burst, "burst", positive=True)
        self._clock = check_clock(clock)
        self._c_clock = self._clock is SYSTEM_CLOCK
        self._mono = time.monotonic if self._c_clock else self._clock.monotonic
        self._tokens = self._burst
        self._last = self._read_clock()

    cdef inline double _read_clock(self) except? -1.0:
        if self._c_clock:
            return _now()
        return float(self._mono())

    cdef inline void _refill(self, double now) noexcept:
        cdef double elapsed = now - self._last
        cdef double t
        if elapsed > 0:
            t = self._tokens + elapsed * self._rate
            self._tokens = t if t < self._burst else self._burst
            self._last = now

    @property
    def rate(self):
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self):
        """The bucket's size (the most tokens it holds)."""
        return self._burst

    @property
    def clock(self):
        """The clock the bucket reads."""
        return self._clock

    @property
    def available(self):
        """The tokens in the bucket now (after refilling)."""
        self._refill(self._read_clock())
        return self._tokens

    def try_acquire(self, n=1):
        """Take *n* tokens if the bucket has them; never waits.

        Returns:
            True if the tokens were taken, False otherwise (nothing is taken then).

        Raises:
            TypeError / ValueError: *n* is not a number with ``0 < n <= burst``.
        """
        cdef double v, now, t
        if n is _ONE and self._burst >= 1.0:
            v = 1.0
        else:
            v = check_n(n, self._burst)
        now = self._read_clock()
        # From here to the return: no Python call, so the GIL makes it atomic.
        self._refill(now)
        if self._tokens + EPS >= v:
            t = self._tokens - v
            self._tokens = t if t > 0 else 0.0
            return True
        return False

    cdef double _take_or_wait(self, double v, object t, list start) except -1.0:
        cdef double now = self._read_clock()
        cdef double tokens, left, wait, remaining
        self._refill(now)
        tokens = self._tokens
        if tokens + EPS >= v:
            left = tokens - v
            self._tokens = left if left > 0 else 0.0
            return 0.0
        if self._rate == 0:
            raise zero_rate_error(v, tokens)
        wait = (v - tokens) / self._rate
        if t is not None:
            if not start:
                start.append(now)
            remaining = <double>start[0] + <double>t - now
            if wait > remaining:
                raise timeout_error(v, t, tokens, self._rate)
        return wait

    def acquire(self, n=1, timeout=None):
        """Take *n* tokens, blocking the calling thread (on the bucket's clock) until
        they are there.

        Raises:
            TypeError / ValueError: *n* is not a number with ``0 < n <= burst``, or a bad timeout.
            Timeout: the tokens cannot be there within *timeout* seconds (raised as soon
                as that is known, without sleeping first), or the rate is 0 and the
                bucket lacks them.
        """
        cdef double v = check_n(n, self._burst)
        cdef double wait
        t = None if timeout is None else to_seconds(timeout, "timeout")
        cdef list start = []
        sleep = self._clock.sleep
        while True:
            wait = self._take_or_wait(v, t, start)
            if wait == 0.0:
                return None
            sleep(wait)

    async def acquire_async(self, n=1, timeout=None):
        """Like :meth:`acquire`, but waits with ``await`` and never blocks the event loop.

        With the system clock it sleeps with :func:`asyncio.sleep`; a custom clock's
        ``asleep(seconds)`` coroutine is used when it has one, otherwise its blocking
        ``sleep`` runs in a worker thread.

        Raises the same exceptions as :meth:`acquire`.
        """
        v = check_n(n, self._burst)
        t = None if timeout is None else to_seconds(timeout, "timeout")
        start = []
        clock = self._clock
        asleep = getattr(clock, "asleep", None)
        while True:
            wait = self._take_or_wait(v, t, start)
            if wait == 0.0:
                return None
            if clock is SYSTEM_CLOCK:
                await asyncio.sleep(wait)
            elif asleep is not None:
                await asleep(wait)
            else:
                await asyncio.to_thread(clock.sleep, wait)

    def __repr__(self):
        return f"<TokenBucket rate={self._rate:g}/s burst={self._burst:g} tokens={self._tokens:.6g}>"
