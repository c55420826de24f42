"""The circuit breaker: a sliding-window breaker on an injectable clock."""

from __future__ import annotations

import collections
import enum
import threading
from collections.abc import Callable
from typing import Any

from nova._util.checks import check_clock, now_fn
from nova.errors import type_name
from nova.resilience.policy import CircuitConfig

__all__ = ("CircuitBreaker", "CircuitState")


class CircuitState(str, enum.Enum):
    """The states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.value


class CircuitBreaker:
    """A circuit breaker with a sliding time window, on an injectable clock.

    ::

        CLOSED --(failure_threshold failures within `window` seconds)--> OPEN
        OPEN   --(`timeout` seconds passed; checked on the next call)--> HALF_OPEN
        HALF_OPEN --(success_threshold probe successes)--> CLOSED
        HALF_OPEN --(any probe failure)--> OPEN

    * CLOSED: every call is admitted.  Each failure's time is remembered; failures older
      than ``window`` seconds are forgotten, so sparse failures never open it.
    * OPEN: calls are rejected (:meth:`allow` returns False).
    * HALF_OPEN: at most ``half_open_max_calls`` probes run at a time; others are
      rejected.

    Results of calls admitted before the last transition are ignored for the state
    (a slow call started while closed cannot close a half-open breaker).  Thread-safe.
    """

    def __init__(self, config: CircuitConfig | None = None, clock: Any = None,
                 on_transition: Callable[[CircuitState, CircuitState], Any] | None = None) -> None:
        if config is None:
            config = CircuitConfig()
        elif not isinstance(config, CircuitConfig):
            raise TypeError(f"Expected config as a CircuitConfig, got {type_name(config)}")
        self.config = config
        self._now = now_fn(check_clock(clock))
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures: collections.deque[float] = collections.deque(maxlen=config.failure_threshold)
        self._opened_at = 0.0
        self._probes = 0
        self._successes = 0
        self._epoch = 0
        self._on_transition = on_transition
        self.transitions: dict[str, int] = {"opened": 0, "half_opened": 0, "closed": 0}

    def _move(self, new: CircuitState, now: float) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._probes = 0
        self._successes = 0
        if new is CircuitState.OPEN:
            self._opened_at = now
            self.transitions["opened"] += 1
        elif new is CircuitState.HALF_OPEN:
            self.transitions["half_opened"] += 1
        else:
            self._failures.clear()
            self.transitions["closed"] += 1
        if self._on_transition is not None:
            self._on_transition(old, new)

    def _refresh(self, now: float) -> None:
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.config.timeout:
            self._move(CircuitState.HALF_OPEN, now)

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker whose timeout passed reads as half-open)."""
        with self._lock:
            self._refresh(self._now())
            return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker half-opens (0 when it is not open)."""
        with self._lock:
            now = self._now()
            self._refresh(now)
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.config.timeout - now)

    def _admit(self) -> int:
        """Admit a call: its epoch (>= 0), or -1 when rejected."""
        with self._lock:
            state = self._state
            if state is CircuitState.CLOSED:
                return self._epoch
            self._refresh(self._now())
            state = self._state
            if state is CircuitState.OPEN:
                return -1
            if self._probes >= self.config.half_open_max_calls:
                return -1
            self._probes += 1
            return self._epoch

    def _record(self, ok: bool, epoch: int) -> None:
        with self._lock:
            if epoch != self._epoch:
                return
            now = self._now()
            state = self._state
            if state is CircuitState.CLOSED:
                if not ok:
                    failures = self._failures
                    failures.append(now)
                    if len(failures) == failures.maxlen and now - failures[0] < self.config.window:
                        self._move(CircuitState.OPEN, now)
            elif state is CircuitState.HALF_OPEN:
                self._probes = max(0, self._probes - 1)
                if not ok:
                    self._move(CircuitState.OPEN, now)
                else:
                    self._successes += 1
                    if self._successes >= self.config.success_threshold:
                        self._move(CircuitState.CLOSED, now)

    def _abandon(self, epoch: int) -> None:
        """An admitted call ended without a result (cancelled, or a BaseException such as
        KeyboardInterrupt): give its half-open probe slot back, recording nothing."""
        with self._lock:
            if epoch == self._epoch and self._state is CircuitState.HALF_OPEN:
                self._probes = max(0, self._probes - 1)

    def allow(self) -> bool:
        """Whether a call may run now (a half-open admission takes a probe slot).

        Report the call's outcome with :meth:`record_success` / :meth:`record_failure`.
        """
        return self._admit() >= 0

    def record_success(self) -> None:
        """Report that an admitted call succeeded."""
        self._record(True, self._epoch)

    def record_failure(self) -> None:
        """Report that an admitted call failed."""
        self._record(False, self._epoch)

    def failures_in_window(self) -> int:
        """Failures remembered within the last ``window`` seconds (at most the threshold)."""
        with self._lock:
            now = self._now()
            return sum(1 for t in self._failures if now - t < self.config.window)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state.value}>"
