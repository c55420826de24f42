"""The :class:`RateLimiter`: a small facade over :class:`~nova._core.TokenBucket`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nova._core import TokenBucket
from nova._util.checks import check_duration

__all__ = ("RateLimiter",)


class RateLimiter:
    """Allow *rate* operations per *per* seconds, with bursts up to *burst*.

    A facade over :class:`~nova._core.TokenBucket` (the compiled kernel when built):
    ``RateLimiter(100, per=60)`` allows 100 operations a minute, starting with a full
    burst.

    Args:
        rate: operations per *per* seconds (a number >= 0; 0 = only the burst, ever).
        burst: the most operations allowed at once; defaults to *rate* (at least 1).
        per: the period in seconds (or a timedelta) that *rate* refers to.
        clock: an object with ``monotonic()`` and ``sleep(seconds)`` (tests pass
            :class:`nova.testing.ManualClock`).

    Raises:
        TypeError / ValueError: bad rate, burst, per or clock.
    """

    __slots__ = ("_bucket", "_per", "_rate")

    def __init__(self, rate: float, burst: float | None = None, *, per: float | timedelta = 1.0,
                 clock: Any = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"Expected rate as an int or float, got {type(rate).__name__}")
        p = check_duration(per, "per", positive=True, finite=False)
        if burst is None:
            burst = max(1.0, float(rate)) if rate == rate else 1.0
        self._per = p
        self._rate = rate
        self._bucket = TokenBucket(rate / p, burst, clock)

    @property
    def bucket(self) -> Any:
        """The underlying :class:`~nova._core.TokenBucket`."""
        return self._bucket

    @property
    def rate(self) -> float:
        """Operations allowed per :attr:`per` seconds."""
        return float(self._rate)

    @property
    def per(self) -> float:
        """The period, in seconds, that :attr:`rate` refers to."""
        return self._per

    @property
    def burst(self) -> float:
        """The most operations allowed at once."""
        return float(self._bucket.burst)

    @property
    def available(self) -> float:
        """Operations allowed right now."""
        return float(self._bucket.available)

    def try_acquire(self, n: float = 1) -> bool:
        """Allow *n* operations now if the budget has them; never waits.

        Raises:
            TypeError / ValueError: *n* is not a number with ``0 < n <= burst``.
        """
        return bool(self._bucket.try_acquire(n))

    def acquire(self, n: float = 1, timeout: float | timedelta | None = None) -> None:
        """Wait (blocking the thread) until *n* operations are allowed.

        Raises:
            TypeError / ValueError: bad *n* or timeout.
            Timeout: the budget cannot allow them within *timeout* seconds.
        """
        self._bucket.acquire(n, timeout)

    async def acquire_async(self, n: float = 1, timeout: float | timedelta | None = None) -> None:
        """Like :meth:`acquire`, awaiting instead of blocking the event loop."""
        await self._bucket.acquire_async(n, timeout)

    def __enter__(self) -> RateLimiter:
        self.acquire(1)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> RateLimiter:
        await self.acquire_async(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"<RateLimiter {self._rate:g} per {self._per:g} s, burst {self.burst:g}>"
