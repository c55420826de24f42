"""The state of a managed listener: counters, health, breaker transitions, dead letters
(:class:`ListenerState`, the base of :class:`~nova.listener.ManagedListener`)."""

from __future__ import annotations

import collections
import itertools
import logging
import math
import queue
import threading
from typing import TYPE_CHECKING, Any

from nova._core import TokenBucket
from nova._util.checks import now_fn
from nova._util.counters import count_value
from nova.events import now_ns
from nova.listener.config import ListenerConfig
from nova.listener.stats import BUCKETS, STAT_FIELDS, UNHEALTHY_MIN_CALLS, Health, HealthDetail, ListenerStats
from nova.observability.managed import dead_lettered as observed_dead_letter
from nova.resilience.circuit import CircuitBreaker, CircuitState
from nova.resilience.deadletter import send as send_dead_letter
from nova.resilience.policy import DeadLetter
from nova.testing import SYSTEM_CLOCK

if TYPE_CHECKING:
    from nova.listener.manager import ListenerManager

__all__ = ("ListenerState",)

_log = logging.getLogger("nova.listener")

#: Seconds (manager's clock) between two "circuit opened" WARNINGs of one listener.
OPEN_WARNING_INTERVAL = 60.0


class ListenerState:
    """The state of a managed listener and the bookkeeping every path shares: counters,
    health slices, breaker transitions, dead letters, stats and health.  The base of
    :class:`~nova.listener.ManagedListener` (calls, retries and the public paths are
    added by its subclasses in :mod:`~nova.listener.calls`, :mod:`~nova.listener.retries`
    and :mod:`~nova.listener.managed`)."""

    def __init__(self, manager: ListenerManager, listener: Any, config: ListenerConfig) -> None:
        from nova.events import FunctionListener, is_async_listener

        self._manager = manager
        self.listener = listener
        self.config = config
        self._id: str = listener.id
        self.is_async: bool = is_async_listener(listener)
        # A Listener object whose plain ``handle`` may return an awaitable (the Listener
        # protocol allows it): what it returns is awaited, never dropped.
        self._check_result = not self.is_async and not isinstance(listener, FunctionListener)
        self._fn = listener.handle
        self._on_error = getattr(listener, "on_error", None)
        clock = manager._clock
        self._clock = clock
        self._now = now_fn(clock)
        self._real = clock is SYSTEM_CLOCK
        self._metrics = manager._metrics
        self._metrics_on = bool(getattr(manager._metrics, "enabled", False))
        self._retry = config.retry
        self._timeout = config.timeout
        self._lock = threading.Lock()
        # concurrency gate
        # The gate is a queue of tokens: taking and returning one are single C calls
        # (atomic), and a thread waiting for one blocks in C without spinning.
        self._tokens: queue.SimpleQueue[None] | None = None
        if config.concurrency is not None:
            self._tokens = queue.SimpleQueue()
            for _ in range(config.concurrency):
                self._tokens.put(None)
        self._awaiters: collections.deque[Any] = collections.deque()  # asyncio waiters
        # rate limit
        rl = config.rate_limit
        if rl is None:
            self._bucket: Any = None  # a nova._core.TokenBucket on the manager's clock
            self._limiter = None
        elif isinstance(rl, (int, float, tuple)):
            rate, burst = (float(rl), max(1, math.ceil(rl))) if not isinstance(rl, tuple) else rl
            self._bucket = TokenBucket(float(rate), int(burst), clock)
            self._limiter = None
        else:
            self._bucket = None
            self._limiter = rl
        # breaker
        cc = config.circuit
        self._breaker = CircuitBreaker(cc, clock, self._on_transition) if cc.enabled else None
        # Rate rules, a count window and slow calls need every call's outcome and time:
        # such a breaker keeps the listener off the fast path (which records only failures).
        self._breaker_sees_successes = (
            cc.failure_rate is not None or cc.slow_call_duration is not None or cc.window_type == "count")
        self._window = float(cc.window) if cc.window_type == "time" else 60.0
        self._warned_at = -math.inf  # clock time of the last "circuit opened" WARNING
        self._opens_unwarned = 0
        # counters
        self._c = dict.fromkeys(STAT_FIELDS, 0)
        # successful calls (== events handled): an itertools.count is an atomic counter
        self._ok = itertools.count()
        self._ok_next = self._ok.__next__
        self._last_failure = -math.inf
        # health buckets: calls and failures in BUCKETS slices of the window
        self._bw = self._window / BUCKETS
        self._b_calls = [0] * BUCKETS
        self._b_fail = [0] * BUCKETS
        self._b_idx = 0
        self._b_count = itertools.count()  # calls in the current slice (flushed on roll)
        self._b_next = self._b_count.__next__
        self._b_end = self._now() + self._bw
        self._obs: Any = None  # observability seam: tracing / audit (nova.observability.managed)
        self._fast = self._compute_fast()

    # -- properties -----------------------------------------------------------------
    @property
    def id(self) -> str:
        """The wrapped listener's id."""
        return self._id

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker (``None`` when ``circuit.enabled`` is false)."""
        return self._breaker

    def _compute_fast(self) -> bool:
        br = self._breaker
        return (
            self._obs is None  # observed: every attempt goes through _call_sync/_acall
            and not self.is_async
            and self._timeout is None
            and self._bucket is None
            and self._limiter is None
            and not self._metrics_on
            and (br is None or (br._state is CircuitState.CLOSED and not self._breaker_sees_successes))
            and (self._tokens is not None or not self._check_result)
        )

    def _on_transition(self, old: CircuitState, new: CircuitState) -> None:
        # Called with the breaker's lock held.
        key = {CircuitState.OPEN: "circuit_opened", CircuitState.HALF_OPEN: "circuit_half_opened",
               CircuitState.CLOSED: "circuit_closed"}[new]
        with self._lock:
            self._c[key] += 1
        self._fast = self._compute_fast() if new is CircuitState.CLOSED else False
        if self._metrics_on:
            report = getattr(self._metrics, "inc_circuit_transitions", None)
            if report is not None:  # collectors written before 0.1 may lack it
                report(self._id, new.value)
        _log.debug("nova: circuit of listener %r: %s -> %s", self._id, old.value, new.value)
        if new is CircuitState.OPEN:
            self._warn_opened()

    def _warn_opened(self) -> None:
        """One WARNING when the breaker opens, at most one per :data:`OPEN_WARNING_INTERVAL`
        seconds of the manager's clock per listener (the openings in between are counted
        in the next one; every transition is logged at DEBUG and counted in stats)."""
        now = self._now()
        if now - self._warned_at < OPEN_WARNING_INTERVAL:
            self._opens_unwarned += 1
            return
        more, self._opens_unwarned, self._warned_at = self._opens_unwarned, 0, now
        br = self._breaker
        reason = br.reason if br is not None else ""
        _log.warning("nova: circuit of listener %r opened (%s)%s", self._id, reason,
                     f"; {more} more opening(s) since the last warning" if more else "")

    # -- bookkeeping -------------------------------------------------------------------
    def _roll(self, now: float) -> None:
        # with self._lock held
        steps = int((now - self._b_end) // self._bw) + 1
        if steps >= BUCKETS:
            self._new_slice()
            self._b_calls = [0] * BUCKETS
            self._b_fail = [0] * BUCKETS
            self._b_idx = 0
            self._b_end = now + self._bw
            return
        self._b_calls[self._b_idx] = count_value(self._b_count)
        self._new_slice()
        idx = self._b_idx
        for _ in range(steps):
            idx = (idx + 1) % BUCKETS
            self._b_calls[idx] = 0
            self._b_fail[idx] = 0
        self._b_idx = idx
        self._b_end += steps * self._bw

    def _new_slice(self) -> None:
        self._b_count = itertools.count()
        self._b_next = self._b_count.__next__

    def _roll_now(self, now: float) -> None:
        with self._lock:
            if now >= self._b_end:
                self._roll(now)
    def _count_processed(self) -> None:
        self._ok_next()

    def _count_retried(self) -> None:
        with self._lock:
            self._c["retried"] += 1

    def _retry_if_raised(self, pred_exc: BaseException) -> None:
        # called by the retry driver inside its except block: the traceback is logged
        _log.exception("nova: retry_if of listener %r raised", self._id)

    # -- dead letters ------------------------------------------------------------------------------
    def _dead_letter(self, event: Any, exc: BaseException, attempts: int, topic: str | None) -> DeadLetter:
        dl = self._new_dead_letter(event, exc, attempts, topic)
        self._deliver_dead_letter(dl)
        return dl

    def _new_dead_letter(self, event: Any, exc: BaseException, attempts: int, topic: str | None) -> DeadLetter:
        """The dead letter of *event*, counted (no user code runs here: callers may hold
        the manager's retry lock)."""
        dl = DeadLetter(event, exc, attempts, self._id, topic, now_ns())
        with self._lock:
            self._c["dead_lettered"] += 1
        if self._obs is not None:  # observability seam (nova.observability.managed)
            observed_dead_letter(self, event)
        return dl

    def _deliver_dead_letter(self, dl: DeadLetter) -> None:
        """Send *dl* down the dead-letter path: metrics, ``on_error``, then
        :func:`nova.resilience.deadletter.send` (handler, store, or a warning)."""
        cfg = self.config.dead_letter
        if self._metrics_on:
            self._metrics.inc_events_processed(self._id, "dead_letter" if cfg.enabled else "dropped")
        on_error = self._on_error
        if on_error is not None:
            try:
                on_error(dl.event, dl.error)
            except Exception:
                _log.exception("nova: on_error of listener %r raised", self._id)
        errors = send_dead_letter(cfg, dl, _log, f"listener {self._id!r}")
        if errors:
            with self._lock:
                self._c["dead_letter_errors"] += errors

    # -- introspection ---------------------------------------------------------------------------
    def stats(self) -> ListenerStats:
        """A snapshot of this listener's counters."""
        with self._lock:
            c = dict(self._c)
            c["processed"] = count_value(self._ok)
            c["calls"] = c["processed"] + c["failed"]
        return ListenerStats(self._id, **c)

    def health(self) -> Health:
        """This listener's :class:`Health` (rules in :meth:`ListenerManager.health`)."""
        return self.health_detail().health

    def health_detail(self) -> HealthDetail:
        """This listener's health and why: the rule that decided it and since when."""
        br = self._breaker
        if br is not None:
            state = br.state  # an open breaker whose timeout passed is half-open now
            if state is CircuitState.OPEN:
                return HealthDetail(self._id, Health.CIRCUIT_OPEN, "circuit open: " + br.reason,
                                    br.since, br.retry_after())
            half_open = state is CircuitState.HALF_OPEN
            since = br.since
        else:
            half_open = False
            since = 0.0
        now = self._now()
        with self._lock:
            if now >= self._b_end:
                self._roll(now)
            self._b_calls[self._b_idx] = count_value(self._b_count)
            calls = sum(self._b_calls)
            fails = sum(self._b_fail)
            last_failure = self._last_failure
            pending = self._c["pending"]
        if calls >= UNHEALTHY_MIN_CALLS and 2 * fails >= calls:
            return HealthDetail(self._id, Health.UNHEALTHY,
                                f"{fails} of {calls} calls failed in the last {self._window:g}s", last_failure)
        if half_open:
            return HealthDetail(self._id, Health.DEGRADED, "circuit half-open: probing", since)
        if now - last_failure < self._window:
            return HealthDetail(self._id, Health.DEGRADED,
                                f"{fails} of {calls} calls failed in the last {self._window:g}s", last_failure)
        if pending:
            return HealthDetail(self._id, Health.DEGRADED, f"{pending} retries pending", now)
        return HealthDetail(self._id, Health.HEALTHY, "", since)

    def _reset_after_fork(self) -> None:
        """In a forked child (called by the manager's fork hook): fresh locks, the
        concurrency tokens and half-open probe slots that calls of the parent's threads
        held given back, no retries pending (the parent runs those)."""
        self._lock = threading.Lock()
        tokens = self._tokens
        if tokens is not None:
            # A SimpleQueue is consistent after fork (its operations hold the GIL); the
            # tokens the parent's in-flight calls took never come back here: put them back.
            assert self.config.concurrency is not None
            for _ in range(self.config.concurrency - tokens.qsize()):
                tokens.put(None)
        self._awaiters = collections.deque()
        self._c["pending"] = 0
        br = self._breaker
        if br is not None:
            br._lock = threading.Lock()
            br._probes = 0
        lock = getattr(self._bucket, "_lock", None)
        if lock is not None:  # the pure TokenBucket twin's lock (the compiled one has none)
            self._bucket._lock = threading.Lock()


