"""The circuit breaker: a sliding-window breaker on an injectable clock."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from typing import Any

from nova._util.checks import check_clock, now_fn
from nova.errors import type_name
from nova.resilience.policy import CircuitConfig
from nova.resilience.window import make_window

_log = logging.getLogger("nova.resilience")

__all__ = ("CircuitBreaker", "CircuitState")


class CircuitState(str, enum.Enum):
    """The states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.value


class CircuitBreaker:
    """A circuit breaker following the rules of a :class:`CircuitConfig`, on an
    injectable clock.

    ::

        CLOSED --(a rule trips: count, failure rate or slow-call rate in the window)--> OPEN
        OPEN   --(`timeout` seconds passed)--> HALF_OPEN
        HALF_OPEN --(success_threshold probe successes)--> CLOSED
        HALF_OPEN --(any recorded probe failure, or a slow probe with a slow-call rule)--> OPEN

    * CLOSED: every call is admitted.  Recorded outcomes go to the sliding window (the
      last ``window`` seconds, or the last ``window`` calls); the rules are checked after
      each recorded failure or slow call.
    * OPEN: calls are rejected (:meth:`allow` returns False).  With
      ``automatic_half_open`` the breaker reads as half-open as soon as the timeout has
      passed (for :attr:`state`, health and stats too); without it only the next call
      moves it.
    * HALF_OPEN: at most ``half_open_max_calls`` probes run at a time; others are
      rejected.

    Errors the config does not record (``ignore``, ``record_on``, ``record_if``) count
    neither way.  Results of calls admitted before the last transition are ignored for
    the state (a slow call started while closed cannot close a half-open breaker).
    ``opened_at``/``reason`` say since when and why it last opened.  Thread-safe.
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
        self._window = make_window(config)
        self._opened_at = 0.0
        self._changed_at = self._now()
        self.reason = ""
        self._probes = 0
        self._successes = 0
        self._epoch = 0
        self._auto = config.automatic_half_open
        self._slow = config.slow_call_duration
        self._on_transition = on_transition
        self.transitions: dict[str, int] = {"opened": 0, "half_opened": 0, "closed": 0}

    def _move(self, new: CircuitState, now: float, reason: str = "") -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._probes = 0
        self._successes = 0
        self._changed_at = now
        if new is CircuitState.OPEN:
            self._opened_at = now
            self.reason = reason
            self.transitions["opened"] += 1
        elif new is CircuitState.HALF_OPEN:
            self.transitions["half_opened"] += 1
        else:
            self._window.clear()
            self.transitions["closed"] += 1
        if self._on_transition is not None:
            self._on_transition(old, new)

    def _refresh(self, now: float) -> None:
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.config.timeout:
            self._move(CircuitState.HALF_OPEN, now)

    @property
    def state(self) -> CircuitState:
        """The current state: with ``automatic_half_open`` an open breaker whose timeout
        passed is half-open from then on (the transition happens on this read if no call
        made it first)."""
        with self._lock:
            if self._auto:
                self._refresh(self._now())
            return self._state

    @property
    def since(self) -> float:
        """The clock time of the last transition (the creation time if none)."""
        with self._lock:
            if self._auto:
                self._refresh(self._now())
            return self._changed_at

    def retry_after(self) -> float:
        """Seconds until an open breaker half-opens (0 when it is not open or its
        timeout passed)."""
        with self._lock:
            now = self._now()
            if self._auto:
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

    def records(self, exc: BaseException) -> bool:
        """Whether *exc* counts as a failure (the config's ``record_on``/``ignore``/
        ``record_if``); a raising ``record_if`` records it (and is logged)."""
        try:
            return self.config.records(exc)
        except Exception:
            _log.exception("nova: record_if of a circuit breaker raised; the error is recorded")
            return True

    def _record(self, ok: bool, epoch: int, duration: float = 0.0) -> None:
        slow = self._slow is not None and duration >= self._slow
        with self._lock:
            if epoch != self._epoch:
                return
            now = self._now()
            state = self._state
            if state is CircuitState.CLOSED:
                reason = self._window.add(now, ok, slow)
                if reason:
                    self._move(CircuitState.OPEN, now, reason)
            elif state is CircuitState.HALF_OPEN:
                self._probes = max(0, self._probes - 1)
                if not ok:
                    self._move(CircuitState.OPEN, now, "probe failed")
                elif slow and self.config.slow_call_rate is not None:
                    self._move(CircuitState.OPEN, now, "probe slow")
                else:
                    self._successes += 1
                    if self._successes >= self.config.success_threshold:
                        self._move(CircuitState.CLOSED, now)

    def _abandon(self, epoch: int) -> None:
        """An admitted call ended without a recorded result (cancelled, a BaseException
        such as KeyboardInterrupt, or an ignored error): give its half-open probe slot
        back, recording nothing."""
        with self._lock:
            if epoch == self._epoch and self._state is CircuitState.HALF_OPEN:
                self._probes = max(0, self._probes - 1)

    def allow(self) -> bool:
        """Whether a call may run now (a half-open admission takes a probe slot).

        Report the call's outcome with :meth:`record_success` / :meth:`record_failure`
        (or :meth:`record_error`, which applies the config's exception filters).
        """
        return self._admit() >= 0

    def record_success(self, duration: float = 0.0) -> None:
        """Report that an admitted call succeeded (after *duration* seconds)."""
        self._record(True, self._epoch, duration)

    def record_failure(self, duration: float = 0.0) -> None:
        """Report that an admitted call failed (recorded whatever the error)."""
        self._record(False, self._epoch, duration)

    def record_error(self, exc: BaseException, duration: float = 0.0) -> bool:
        """Report that an admitted call raised *exc*: recorded as a failure if the
        config records it (returns True), else ignored (a probe slot is given back)."""
        if self.records(exc):
            self._record(False, self._epoch, duration)
            return True
        self._abandon(self._epoch)
        return False

    def failures_in_window(self) -> int:
        """Recorded failures within the window (for the count rule at most the threshold
        is remembered in a time window)."""
        with self._lock:
            return self._window.failures(self._now())

    def window_counts(self) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` recorded in the window now."""
        with self._lock:
            return self._window.counts(self._now())

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state.value}>"
