"""The sliding windows of a circuit breaker and the rules checked over them.

:func:`make_window` picks one for a :class:`~nova.resilience.policy.CircuitConfig`:

* :class:`TimeWindow` (``window_type="time"``): the calls of the last ``window``
  seconds.  The count rule remembers the exact times of the last
  ``failure_threshold`` failures; the rate rules count calls, failures and slow calls
  in 16 slices of the window, so a rate's window edge is exact to a sixteenth.
* :class:`CountWindow` (``window_type="count"``): the last ``window`` recorded calls,
  exactly.

``add(now, ok, slow)`` records one outcome and returns the reason the breaker must open
(the rule that tripped, as text), or ``""``.  Not thread-safe: the breaker's lock
guards it.
"""

from __future__ import annotations

import collections
from typing import Any

__all__ = ("make_window", "TimeWindow", "CountWindow", "SLICES")

#: Slices of a time window the rate rules count in.
SLICES = 16


class _Rules:
    """The rules of a config, checked over ``(calls, failures, slow)`` counts."""

    def __init__(self, config: Any) -> None:
        self.threshold: int | None = config.failure_threshold
        self.rate: float | None = config.failure_rate
        self.slow_rate: float | None = config.slow_call_rate
        self.minimum: int = config.minimum_calls
        self.rated = self.rate is not None or self.slow_rate is not None

    def check_rates(self, calls: int, fails: int, slow: int, where: str) -> str:
        if calls < self.minimum:
            return ""
        if self.rate is not None and fails >= self.rate * calls:
            return f"failure_rate: {fails} of {calls} calls failed {where} (>= {self.rate:g})"
        if self.slow_rate is not None and slow >= self.slow_rate * calls:
            return f"slow_call_rate: {slow} of {calls} calls were slow {where} (>= {self.slow_rate:g})"
        return ""


class TimeWindow(_Rules):
    """The calls of the last ``window`` seconds (see the module docstring)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.span = float(config.window)
        n = self.threshold
        self._fail_times: collections.deque[float] = collections.deque(maxlen=n if n is not None else 1)
        self._w = self.span / SLICES
        self._calls = [0] * SLICES
        self._fails = [0] * SLICES
        self._slow = [0] * SLICES
        self._idx = 0
        self._end = -float("inf")

    def clear(self) -> None:
        self._fail_times.clear()
        self._calls = [0] * SLICES
        self._fails = [0] * SLICES
        self._slow = [0] * SLICES
        self._end = -float("inf")

    def _roll(self, now: float) -> None:
        if now < self._end:
            return
        steps = SLICES if self._end == -float("inf") else int((now - self._end) // self._w) + 1
        if steps >= SLICES:
            self._calls = [0] * SLICES
            self._fails = [0] * SLICES
            self._slow = [0] * SLICES
            self._idx = 0
            self._end = now + self._w
            return
        idx = self._idx
        for _ in range(steps):
            idx = (idx + 1) % SLICES
            self._calls[idx] = self._fails[idx] = self._slow[idx] = 0
        self._idx = idx
        self._end += steps * self._w

    def add(self, now: float, ok: bool, slow: bool) -> str:
        if not ok and self.threshold is not None:
            times = self._fail_times
            times.append(now)
            if len(times) == self.threshold and now - times[0] < self.span:
                return f"failure_threshold: {self.threshold} failures within {self.span:g}s"
        if not self.rated:
            return ""
        self._roll(now)
        i = self._idx
        self._calls[i] += 1
        if not ok:
            self._fails[i] += 1
        if slow:
            self._slow[i] += 1
        return self.check_rates(sum(self._calls), sum(self._fails), sum(self._slow),
                                f"in the last {self.span:g}s")

    def failures(self, now: float) -> int:
        if self.rated:
            return self.counts(now)[1]
        return sum(1 for t in self._fail_times if now - t < self.span)

    def counts(self, now: float) -> tuple[int, int, int]:
        if not self.rated:
            return (0, self.failures(now), 0)
        self._roll(now)
        return (sum(self._calls), sum(self._fails), sum(self._slow))


class CountWindow(_Rules):
    """The last ``window`` recorded calls, exactly."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.size = int(config.window)
        self._ring: collections.deque[tuple[bool, bool]] = collections.deque()
        self._fails = 0
        self._slow = 0

    def clear(self) -> None:
        self._ring.clear()
        self._fails = self._slow = 0

    def add(self, now: float, ok: bool, slow: bool) -> str:
        ring = self._ring
        if len(ring) == self.size:
            old_ok, old_slow = ring.popleft()
            self._fails -= not old_ok
            self._slow -= old_slow
        ring.append((ok, slow))
        self._fails += not ok
        self._slow += slow
        if not ok and self.threshold is not None and self._fails >= self.threshold:
            return f"failure_threshold: {self._fails} failures in the last {len(ring)} calls"
        return self.check_rates(len(ring), self._fails, self._slow, f"in the last {len(ring)} calls")

    def failures(self, now: float) -> int:
        return self._fails

    def counts(self, now: float) -> tuple[int, int, int]:
        return (len(self._ring), self._fails, self._slow)


def make_window(config: Any) -> TimeWindow | CountWindow:
    """The window *config* (a CircuitConfig) asks for."""
    return CountWindow(config) if config.window_type == "count" else TimeWindow(config)
