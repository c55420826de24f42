"""Helpers for testing code that uses nova.

:class:`ManualClock` is a clock (``monotonic()`` and ``sleep(seconds)``) that only moves
when told to, so tests of retries, backoff, rate limits and circuit breakers never sleep.

.. versionadded:: 0.1
"""

from __future__ import annotations

import threading
from datetime import timedelta

__all__ = ("ManualClock", "SystemClock", "SYSTEM_CLOCK", "to_seconds")


def to_seconds(value: float | int | timedelta, name: str = "duration") -> float:
    """Convert a duration (float/int seconds or :class:`datetime.timedelta`) to seconds.

    Raises:
        TypeError: not a number or timedelta (a bool is refused too).
        ValueError: negative or NaN.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected {name} as float seconds or a timedelta, got {type(value).__name__}")
    else:
        seconds = float(value)
    if seconds != seconds or seconds < 0:
        raise ValueError(f"Expected {name} >= 0 seconds, got {value!r}")
    return seconds


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        import time

        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for *seconds*."""
        import time

        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only on :meth:`advance` (or on ``sleep`` with ``auto_advance``).

    * ``monotonic()`` returns the current manual time.
    * ``sleep(s)``: with ``auto_advance=True`` it advances the clock by *s* and returns
      at once (single-threaded tests); otherwise it blocks the calling thread until
      another thread has advanced the clock by at least *s* (multi-threaded tests).
    * :meth:`wait_for_sleepers` lets a test wait until *n* threads are inside ``sleep``.

    Thread-safe.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        self._now = float(start)
        self.auto_advance = auto_advance
        self._cond = threading.Condition()
        self._sleepers = 0

    def monotonic(self) -> float:
        """The current manual time in seconds."""
        return self._now

    def time(self) -> float:
        """Alias of :meth:`monotonic`."""
        return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move time forward by *seconds* and wake sleepers whose time came.
        Returns the new time.

        Raises:
            ValueError: *seconds* is negative (time never goes back).
        """
        s = to_seconds(seconds, "advance")
        with self._cond:
            self._now += s
            self._cond.notify_all()
            return self._now

    def sleep(self, seconds: float) -> None:
        """Sleep in manual time (see the class docstring)."""
        s = to_seconds(seconds, "sleep")
        with self._cond:
            if self.auto_advance:
                self._now += s
                self._cond.notify_all()
                return
            target = self._now + s
            self._sleepers += 1
            self._cond.notify_all()
            try:
                while self._now < target:
                    self._cond.wait()
            finally:
                self._sleepers -= 1
                self._cond.notify_all()

    @property
    def sleepers(self) -> int:
        """How many threads are blocked in :meth:`sleep` now."""
        return self._sleepers

    def wait_for_sleepers(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Block until at least *n* threads are in :meth:`sleep`; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._sleepers >= n, timeout)

    def __repr__(self) -> str:
        return f"<ManualClock t={self._now:.6f}>"
