"""Resilient listeners: retries with backoff, circuit breakers, dead letters, timeouts.

The value types (all immutable, validated at construction):

* :class:`Backoff` — how the delay between attempts grows (FIXED, LINEAR, EXPONENTIAL).
* :class:`RetryPolicy` — how many calls, which errors are retried, and the delays.
* :class:`CircuitConfig` — the sliding-window circuit breaker's thresholds.
* :class:`DeadLetterConfig` — where events go whose attempts ran out.
* :class:`DeadLetter` — what a dead-letter handler receives.
* :class:`ListenerConfig` — everything above plus timeout, concurrency, rate limit.
* :class:`Health` — the health states of a listener and of a manager.

Backoff formulas (``d`` = ``initial_delay``, ``n`` = the number of the call that
failed, 1 for the first call):

* FIXED: ``d``
* LINEAR: ``d * n``
* EXPONENTIAL: ``d * 2 ** (n - 1)``

each capped by ``max_delay``; then, with ``jitter = j > 0``, multiplied by a factor
drawn uniformly from ``[1 - j, 1 + j)`` and capped by ``max_delay`` again.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import enum
import heapq
import inspect
import itertools
import logging
import math
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nova._util.atexit import STAGE_CONSUMER
from nova._util.atexit import register as _exit_register
from nova.errors import CircuitOpen, ListenerNotFound, PoolClosed, Timeout, ValidationError, type_name
from nova.resilience.circuit import CircuitBreaker, CircuitState
from nova.resilience.policy import Backoff, CircuitConfig, DeadLetter, DeadLetterConfig, RetryPolicy
from nova.testing import SYSTEM_CLOCK, to_seconds

__all__ = (
    "ListenerManager",
    "ManagedListener",
    "ListenerStats",
    "CircuitBreaker",
    "CircuitState",
    "dead_letter_event",
    "Backoff",
    "RetryPolicy",
    "CircuitConfig",
    "DeadLetterConfig",
    "DeadLetter",
    "ListenerConfig",
    "Health",
    "DEAD_LETTER_STREAM",
)

#: The EventStore stream dead letters are appended to.
DEAD_LETTER_STREAM = "nova.deadletter"


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as an int >= {minimum}, got {type_name(value)}")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum}, got {value!r}")
    return value


def _check_duration(value: object, name: str, *, positive: bool = False) -> float:
    seconds = to_seconds(value, name)  # type: ignore[arg-type]
    if math.isinf(seconds):
        raise ValueError(f"Expected a finite {name}, got {value!r}")
    if positive and seconds <= 0:
        raise ValueError(f"Expected {name} > 0 seconds, got {value!r}")
    return seconds


def _check_timeout(value: object) -> float | None:
    if value is None:
        return None
    return _check_duration(value, "timeout", positive=True)


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """How the manager runs one listener.

    Args:
        concurrency: calls of this listener allowed to run at once (a semaphore);
            ``None`` for no bound.
        retry: the :class:`RetryPolicy`.
        circuit: the :class:`CircuitConfig`.
        dead_letter: the :class:`DeadLetterConfig`.
        timeout: per-call timeout in seconds (or ``timedelta``), ``None`` for none.  An
            ``async def`` listener that overruns is cancelled; a sync listener is run on a
            helper thread and, when it overruns, the call counts as failed with
            :class:`nova.errors.Timeout` and its late result is ignored.
        rate_limit: ``None``, calls per second (a token bucket with burst
            ``max(1, rate)``), a ``(rate, burst)`` pair, or an object with
            ``acquire(n=1, timeout=None)`` (a :class:`nova.TokenBucket` or
            :class:`nova.RateLimiter`).  Each call waits for a token.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``concurrency < 1``, a non-positive ``timeout`` or rate.
    """

    concurrency: int | None = 10
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit: CircuitConfig = field(default_factory=CircuitConfig)
    dead_letter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    timeout: float | None = None
    rate_limit: Any = None

    def __post_init__(self) -> None:
        if self.concurrency is not None:
            _check_int(self.concurrency, "concurrency", 1)
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"Expected retry as a RetryPolicy, got {type_name(self.retry)}")
        if not isinstance(self.circuit, CircuitConfig):
            raise TypeError(f"Expected circuit as a CircuitConfig, got {type_name(self.circuit)}")
        if not isinstance(self.dead_letter, DeadLetterConfig):
            raise TypeError(
                f"Expected dead_letter as a DeadLetterConfig, got {type_name(self.dead_letter)}"
            )
        object.__setattr__(self, "timeout", _check_timeout(self.timeout))
        rl = self.rate_limit
        if rl is None or callable(getattr(rl, "acquire", None)):
            return
        if isinstance(rl, tuple):
            if len(rl) != 2:
                raise ValueError(f"Expected rate_limit as a (rate, burst) pair, got {rl!r}")
            _check_rate(rl[0])
            _check_int(rl[1], "rate_limit burst", 1)
            return
        _check_rate(rl)


def _check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(
            "Expected rate_limit as calls per second, a (rate, burst) pair or an object "
            f"with acquire(), got {type_name(rate)}"
        )
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"Expected rate_limit > 0 calls per second, got {rate!r}")
    return float(rate)


class Health(str, enum.Enum):
    """Health of a listener or of a whole manager (see :meth:`ListenerManager.health`).

    * ``CIRCUIT_OPEN`` (``"circuit-open"``): a breaker is open (or half-open).
    * ``UNHEALTHY``: at least half of the calls in the circuit window failed, with at
      least 10 calls in the window.
    * ``DEGRADED``: a failure in the window, or retries pending.
    * ``HEALTHY``: none of the above.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    CIRCUIT_OPEN = "circuit-open"

    def __str__(self) -> str:
        return self.value



# ---------------------------------------------------------------------------
# Runtime: clocks, helper threads, the retry scheduler, the circuit breaker.
# ---------------------------------------------------------------------------

_log = logging.getLogger("nova.listener")


def _now_fn(clock: Any) -> Callable[[], float]:
    """The fastest ``monotonic`` of *clock* (``time.monotonic`` itself for the system clock)."""
    return time.monotonic if clock is SYSTEM_CLOCK else clock.monotonic


def _check_clock(clock: object) -> Any:
    if clock is None:
        return SYSTEM_CLOCK
    if not (callable(getattr(clock, "monotonic", None)) and callable(getattr(clock, "sleep", None))):
        raise TypeError(f"Expected a clock with monotonic() and sleep(), got {type_name(clock)}")
    return clock


class _Runner:
    """Daemon worker threads that grow on demand up to *max_threads* (the rest queue).

    Daemon threads, so that a sync listener stuck past its timeout never blocks the
    interpreter's exit.
    """

    def __init__(self, name: str, max_threads: int) -> None:
        self._name = name
        self._max = max_threads
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> None:
        with self._lock:
            if self._closed:
                raise PoolClosed("Expected an open runner, got a closed one")
            spawn = self._idle <= self._queue.qsize() and self._threads < self._max
            if spawn:
                self._threads += 1
            self._queue.put(fn)
        if spawn:
            threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()

    def _work(self) -> None:
        q = self._queue
        lock = self._lock
        while True:
            with lock:
                self._idle += 1
            fn = q.get()
            with lock:
                self._idle -= 1
            if fn is None:
                with lock:
                    self._threads -= 1
                return
            try:
                fn()
            except BaseException:  # pragma: no cover - tasks catch their own errors
                _log.exception("nova listener runner task failed")

    def close(self) -> None:
        """Tell every thread to exit once its current task is done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            n = self._threads
        for _ in range(n):
            self._queue.put(None)


class _Scheduler:
    """A timer heap served by one thread, on an injectable clock.

    * On the system clock the thread waits on a condition with a timeout.
    * On any other clock (e.g. :class:`nova.testing.ManualClock`) it waits with
      ``clock.sleep(until_due)``, so a test's ``advance`` wakes it.  Because such a
      sleep cannot be interrupted, an entry due earlier than the current sleep target
      starts a short-lived helper thread that sleeps toward the earlier time.

    Due entries are handed to *dispatch* (which runs them elsewhere); a dispatched
    entry counts as active until :meth:`task_done`.
    """

    def __init__(self, clock: Any, dispatch: Callable[[Callable[[], Any]], None]) -> None:
        self._clock = clock
        self._now = _now_fn(clock)
        self._real = clock is SYSTEM_CLOCK
        self._dispatch = dispatch
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._gen = 0
        self._thread: threading.Thread | None = None
        self._targets: list[float] = []  # clock-sleep targets of sleeping threads
        self._main_sleeping = 0  # the generation of a main thread inside clock.sleep, or 0
        self._live = 0  # entries in the heap not cancelled
        self._active = 0  # dispatched, not done

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is not None:
            return
        self._gen += 1
        t = threading.Thread(target=self._serve, args=(self._gen, True), name="nova-retry-scheduler",
                             daemon=True)
        self._thread = t
        t.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stop(self, join: float = 5.0) -> bool:
        """Stop the threads (a thread inside a manual clock's sleep exits when woken),
        waiting at most *join* seconds for the serving thread to end.

        Entries still scheduled (timers of calls in flight) keep it running: returns
        False then, and it stops by itself on the next :meth:`stop` once they are gone.
        """
        with self._cond:
            if self._live > 0:
                return False
            t = self._thread
            self._thread = None
            self._gen += 1
            self._cond.notify_all()
            sleeping = self._main_sleeping != 0
        if t is not None and not sleeping and t is not threading.current_thread():
            t.join(join)
        return True

    # -- entries -------------------------------------------------------------------
    def schedule(self, due: float, fn: Callable[[], Any]) -> _Entry:
        entry = _Entry(fn)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), entry))
            self._live += 1
            if self._thread is None:
                self._start_locked()
            elif (not self._real and self._main_sleeping == self._gen
                  and due < min(self._targets, default=math.inf)):
                threading.Thread(target=self._serve, args=(self._gen, False),
                                 name="nova-retry-alarm", daemon=True).start()
            self._cond.notify_all()
        return entry

    def cancel(self, entry: _Entry) -> bool:
        """Cancel a scheduled entry; False if it already ran or was cancelled."""
        with self._cond:
            if entry.state != 0:
                return False
            entry.state = 2
            self._live -= 1
            self._cond.notify_all()
            return True

    def take_all(self, predicate: Callable[[float, Any], bool]) -> list[tuple[float, _Entry]]:
        """Remove and return the live entries for which ``predicate(due, fn)`` holds."""
        with self._cond:
            keep: list[tuple[float, int, _Entry]] = []
            taken: list[tuple[float, int, _Entry]] = []
            for item in self._heap:
                if item[2].state != 0:
                    continue
                (taken if predicate(item[0], item[2].fn) else keep).append(item)
            heapq.heapify(keep)
            self._heap = keep
            for _, _, e in taken:
                e.state = 2
            self._live -= len(taken)
            self._cond.notify_all()
            return [(d, e) for d, _, e in taken]

    def task_done(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        return self._live

    def idle_now(self) -> bool:
        """No entry running and none due at the clock's current time (call with the lock)."""
        if self._active:
            return False
        now = self._now()
        for due, _, e in self._heap:
            if e.state == 0 and due <= now:
                return False
        return True

    def wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (real seconds) until *predicate()* holds under the lock; False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # -- the serving loop ------------------------------------------------------------
    def _pop_due(self, now: float) -> list[_Entry]:
        heap = self._heap
        out = []
        while heap and (heap[0][2].state != 0 or heap[0][0] <= now):
            _, _, e = heapq.heappop(heap)
            if e.state == 0:
                e.state = 1
                out.append(e)
        self._live -= len(out)
        self._active += len(out)
        return out

    def _serve(self, gen: int, main: bool) -> None:
        cond = self._cond
        while True:
            with cond:
                if gen != self._gen:
                    return
                now = self._now()
                due = self._pop_due(now)
                if not due:
                    heap = self._heap
                    if self._real:
                        cond.wait(heap[0][0] - now if heap else None)
                        continue
                    covered = bool(self._targets) and heap and min(self._targets) <= heap[0][0]
                    if not heap or covered:
                        if not main:
                            cond.notify_all()
                            return
                        cond.wait()
                        continue
                    target = heap[0][0]
                    self._targets.append(target)
                    if main:
                        self._main_sleeping = gen
            if due:
                for e in due:
                    self._run(e)
                continue
            try:
                self._clock.sleep(max(0.0, target - now))
            finally:
                with cond:
                    self._targets.remove(target)
                    if main and self._main_sleeping == gen:
                        self._main_sleeping = 0
                    cond.notify_all()

    def _run(self, entry: _Entry) -> None:
        try:
            self._dispatch(entry.fn)
        except BaseException:
            self.task_done()
            _log.exception("nova: could not dispatch a scheduled retry")


class _Entry:
    __slots__ = ("fn", "state")  # state: 0 scheduled, 1 dispatched, 2 cancelled

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.state = 0



# ---------------------------------------------------------------------------
# Stats, the managed listener and the manager.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """Counters of one managed listener, or of a whole manager (``listener_id=None``).

    Attributes:
        listener_id: the listener, ``None`` for a manager's totals.
        calls: listener calls made (first attempts and retries; rejected ones excluded).
        processed: events that ended handled (a call succeeded).
        failed: calls that failed (an exception or a timeout).
        retried: retry calls (every attempt after the first, rejected ones included).
        timeouts: calls that overran the timeout.
        rejected: calls refused by an open (or full half-open) circuit breaker.
        dead_lettered: events that ended dead-lettered (or dropped, when dead letters
            are disabled).
        dead_letter_errors: dead-letter handlers or stores that raised.
        pending: retries scheduled or running now.
        circuit_opened / circuit_half_opened / circuit_closed: breaker transitions.
    """

    listener_id: str | None
    calls: int = 0
    processed: int = 0
    failed: int = 0
    retried: int = 0
    timeouts: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    dead_letter_errors: int = 0
    pending: int = 0
    circuit_opened: int = 0
    circuit_half_opened: int = 0
    circuit_closed: int = 0


_STAT_FIELDS = tuple(f for f in ListenerStats.__dataclass_fields__ if f != "listener_id")
_BUCKETS = 16
_UNHEALTHY_MIN_CALLS = 10
_DL_KEYS = ("nova.error.type", "nova.error.message", "nova.attempts", "nova.listener",
            "nova.topic", "nova.deadletter.timestamp")


class _TokenBucket:
    """Tokens refill at *rate* per second up to *burst*, on the manager's clock."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._now = now
        self._last = now()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: 0.0 if taken, else the seconds until one is due."""
        with self._lock:
            now = self._now()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate


class _Box:
    """The result slot of a sync call run on a helper thread under a timeout."""

    __slots__ = ("done", "error", "abandoned", "finished", "lock")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.abandoned = False
        self.finished = False
        self.lock = threading.Lock()


def _qualified(exc: BaseException) -> str:
    t = type(exc)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# The life of one scheduled retry (an accepted event with attempts left).  Every change
# happens under the manager's ``_rcond``, so that stop() and the thread running the retry
# never both decide its outcome: whoever moves it out of a claimable state owns it.
_PENDING = 0  # scheduled (in the timer heap, or handed to a runner, pool or loop, not started)
_CALLING = 1  # its listener call runs
_DECIDING = 2  # the call failed; retry_if / the next delay are being worked out
_LETTERING = 3  # being dead-lettered by the thread that ran it (handler, store)
_DONE = 4  # handled, rescheduled as a new retry, or dead-lettered
_CLAIMED = 5  # taken by stop(): dead-lettered there; whatever the call does later is ignored
_CLAIMABLE = (_PENDING, _CALLING, _DECIDING)


class _Retry:
    """One scheduled retry of *event* by *managed*; the scheduler's entry calls it.

    ``attempts`` and ``error`` describe the calls made so far (updated when a call
    fails); ``due`` is its time on the manager's clock; ``fut`` the future of an async
    attempt's task (cancelled when stop() claims it mid-call)."""

    __slots__ = ("managed", "event", "attempts", "error", "topic", "loop", "state", "due", "entry", "fut")

    def __init__(self, managed: ManagedListener, event: Any, attempts: int, error: BaseException,
                 topic: str | None, loop: asyncio.AbstractEventLoop | None, due: float) -> None:
        self.managed = managed
        self.event = event
        self.attempts = attempts
        self.error = error
        self.topic = topic
        self.loop = loop
        self.state = _PENDING
        self.due = due
        self.entry: _Entry | None = None
        self.fut: concurrent.futures.Future[Any] | None = None

    def __call__(self) -> Any:
        return self.managed._run_retry(self)


class ManagedListener:
    """A listener wrapped by a :class:`ListenerManager` (made by :meth:`~ListenerManager.register`).

    Subscribe it to an :class:`~nova.Emitter` or a :class:`~nova.Bus` like any listener.

    * :meth:`handle` (the Emitter path): the first call runs inline; when it fails with
      a retryable error the next attempts are scheduled on the manager's retry
      scheduler, so neither the caller nor other listeners wait.  Errors are never
      raised to the caller: they go to stats, metrics and dead letters.
    * :meth:`run_inline` (the Bus path): every attempt runs in the calling thread,
      sleeping on the manager's clock in between, so an ordered partition keeps order.

    ``managed`` is ``True``; ``id`` is the wrapped listener's id; ``is_async`` tells
    whether :meth:`handle` returns an awaitable; ``listener`` is the wrapped listener and
    ``config`` its :class:`ListenerConfig`.  Thread-safe.
    """

    managed = True

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
        self._now = _now_fn(clock)
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
            self._bucket: _TokenBucket | None = None
            self._limiter = None
        elif isinstance(rl, (int, float, tuple)):
            rate, burst = (float(rl), max(1, math.ceil(rl))) if not isinstance(rl, tuple) else rl
            self._bucket = _TokenBucket(float(rate), int(burst), self._now)
            self._limiter = None
        else:
            self._bucket = None
            self._limiter = rl
        # breaker
        cc = config.circuit
        self._breaker = CircuitBreaker(cc, clock, self._on_transition) if cc.enabled else None
        self._window = cc.window
        # counters
        self._c = dict.fromkeys(_STAT_FIELDS, 0)
        # successful calls (== events handled): an itertools.count is an atomic counter
        self._ok = itertools.count()
        self._ok_next = self._ok.__next__
        self._last_failure = -math.inf
        # health buckets: calls and failures in _BUCKETS slices of the window
        self._bw = cc.window / _BUCKETS
        self._b_calls = [0] * _BUCKETS
        self._b_fail = [0] * _BUCKETS
        self._b_idx = 0
        self._b_count = itertools.count()  # calls in the current slice (flushed on roll)
        self._b_next = self._b_count.__next__
        self._b_end = self._now() + self._bw
        self._fast = self._compute_fast()
        if not self.is_async and self._tokens is not None:
            self.handle = self._make_fast_handle()  # type: ignore[method-assign,assignment]

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
            not self.is_async
            and self._timeout is None
            and self._bucket is None
            and self._limiter is None
            and not self._metrics_on
            and (br is None or br._state is CircuitState.CLOSED)
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
        _log.info("nova: circuit of listener %r: %s -> %s", self._id, old.value, new.value)

    # -- bookkeeping -------------------------------------------------------------------
    def _roll(self, now: float) -> None:
        # with self._lock held
        steps = int((now - self._b_end) // self._bw) + 1
        if steps >= _BUCKETS:
            self._new_slice()
            self._b_calls = [0] * _BUCKETS
            self._b_fail = [0] * _BUCKETS
            self._b_idx = 0
            self._b_end = now + self._bw
            return
        self._b_calls[self._b_idx] = _count_value(self._b_count)
        self._new_slice()
        idx = self._b_idx
        for _ in range(steps):
            idx = (idx + 1) % _BUCKETS
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

    def _acquire_gate(self) -> None:
        tokens = self._tokens
        if tokens is not None:
            tokens.get()

    async def _aacquire_gate(self) -> None:
        tokens = self._tokens
        if tokens is None:
            return
        try:
            tokens.get_nowait()
            return
        except queue.Empty:
            pass
        loop = asyncio.get_running_loop()
        while True:
            item = (loop, loop.create_future())
            with self._lock:
                self._awaiters.append(item)
            try:  # registered first, so a token returned from now on wakes us
                tokens.get_nowait()
            except queue.Empty:
                pass
            else:
                self._forget_awaiter(item)
                return
            try:
                await item[1]
            except BaseException:
                if not self._forget_awaiter(item):
                    self._wake_awaiter()  # we were woken: pass the wake-up on
                raise

    def _forget_awaiter(self, item: Any) -> bool:
        with self._lock:
            try:
                self._awaiters.remove(item)
                return True
            except ValueError:
                return False

    def _wake_awaiter(self) -> None:
        with self._lock:
            while self._awaiters:
                loop, fut = self._awaiters.popleft()
                try:
                    loop.call_soon_threadsafe(_set_if_pending, fut)
                    return
                except RuntimeError:  # that loop is closed
                    continue

    def _release_gate(self) -> None:
        tokens = self._tokens
        if tokens is not None:
            tokens.put(None)
            if self._awaiters:
                self._wake_awaiter()

    def _record(self, ok: bool, now: float, epoch: int, exc: BaseException | None, t0: float) -> None:
        with self._lock:
            c = self._c
            if now >= self._b_end:
                self._roll(now)
            self._b_next()
            if not ok:
                c["failed"] += 1
                self._b_fail[self._b_idx] += 1
                self._last_failure = now
                if isinstance(exc, Timeout):
                    c["timeouts"] += 1
        br = self._breaker
        if br is not None:
            br._record(ok, epoch)
        if self._metrics_on:
            m = self._metrics
            result = "ok" if ok else ("timeout" if isinstance(exc, Timeout) else "error")
            m.inc_events_processed(self._id, result)
            m.observe_listener_duration(self._id, max(0.0, now - t0))

    def _rejected(self) -> CircuitOpen:
        br = self._breaker
        wait = br.retry_after() if br is not None else 0.0
        with self._lock:
            self._c["rejected"] += 1
        if self._metrics_on:
            self._metrics.inc_events_processed(self._id, "rejected")
        return CircuitOpen(
            f"Expected a closed circuit for listener {self._id!r}, got "
            + (f"open (half-opens in {wait:.6g}s)" if wait > 0 else "half-open with every probe slot taken")
        )

    def _timed_out(self) -> Timeout:
        return Timeout(f"Expected listener {self._id!r} to finish within {self._timeout:.6g}s, got no result")

    # -- one call -----------------------------------------------------------------------
    def _call_sync(self, event: Any, retry: _Retry | None = None) -> BaseException | None:
        """One attempt in this thread (an async listener runs on the manager's loop).

        *retry*: the scheduled retry making the call; if stop() claims it while the call
        waits for its concurrency slot or rate-limit token, the listener is not called
        (``None`` is returned and ignored)."""
        if self.is_async:
            err: BaseException | None = self._manager._run_coro(self._acall(event))
            return err
        br = self._breaker
        epoch = 0
        if br is not None:
            epoch = br._admit()
            if epoch < 0:
                return self._rejected()
        try:
            self._acquire_gate()
        except BaseException:
            if br is not None:
                br._abandon(epoch)
            raise
        try:
            t0 = self._now()
            try:
                if self._bucket is not None:
                    while (wait := self._bucket.take()) > 0:
                        self._clock.sleep(wait)
                elif self._limiter is not None:
                    self._limiter.acquire(1)
                if retry is not None and retry.state != _CALLING:  # claimed by stop() meanwhile
                    if br is not None:
                        br._abandon(epoch)
                    return None
                t0 = self._now()
                if self._timeout is None:
                    r = self._fn(event)
                    if r is not None and self._check_result and inspect.isawaitable(r):
                        self._manager._run_coro(_await_it(r))
                else:
                    self._call_with_timeout(event, retry)
            except Exception as exc:
                self._record(False, self._now(), epoch, exc, t0)
                return exc
            except BaseException:  # no result: a half-open probe slot must not leak
                if br is not None:
                    br._abandon(epoch)
                raise
            self._record(True, self._now(), epoch, None, t0)
            return None
        finally:
            self._release_gate()

    def _call_with_timeout(self, event: Any, retry: _Retry | None = None) -> None:
        box = _Box()
        fn = self._fn
        check = self._check_result
        mgr = self._manager

        def run() -> None:
            if box.abandoned:
                return
            if retry is not None and retry.state != _CALLING:  # claimed by stop(): not called
                with box.lock:
                    box.finished = True
                box.done.set()
                return
            error = None
            try:
                r = fn(event)
                if r is not None and check and inspect.isawaitable(r):
                    mgr._run_coro(_await_it(r))
            except BaseException as exc:
                error = exc
            with box.lock:
                if box.abandoned:  # too late: the result is ignored
                    return
                box.finished = True
                box.error = error
            box.done.set()

        def expire() -> None:
            with box.lock:
                if not box.finished:
                    box.abandoned = True
            box.done.set()

        timeout = self._timeout
        assert timeout is not None
        entry = None if self._real else mgr._scheduler.schedule(self._now() + timeout, expire)
        mgr._call_runner().submit(run)
        if self._real:
            if not box.done.wait(timeout):
                expire()
        else:
            box.done.wait()
            assert entry is not None
            mgr._scheduler.cancel(entry)
        with box.lock:
            if not box.finished:
                box.abandoned = True
                raise self._timed_out()
        if box.error is not None:
            raise box.error

    async def _acall(self, event: Any, retry: _Retry | None = None) -> BaseException | None:
        """One attempt on the running loop (*retry*: as in :meth:`_call_sync`)."""
        br = self._breaker
        epoch = 0
        if br is not None:
            epoch = br._admit()
            if epoch < 0:
                return self._rejected()
        try:
            await self._aacquire_gate()
        except BaseException:  # cancelled while waiting for the gate
            if br is not None:
                br._abandon(epoch)
            raise
        try:
            t0 = self._now()
            try:
                if self._bucket is not None:
                    while (wait := self._bucket.take()) > 0:
                        await self._manager._asleep(wait)
                elif self._limiter is not None:
                    await asyncio.to_thread(self._limiter.acquire, 1)
                if retry is not None and retry.state != _CALLING:  # claimed by stop() meanwhile
                    if br is not None:
                        br._abandon(epoch)
                    return None
                t0 = self._now()
                result = self._fn(event)
                if self._timeout is None:
                    if inspect.isawaitable(result):
                        await result
                else:
                    await self._await_with_timeout(result)
            except Exception as exc:
                self._record(False, self._now(), epoch, exc, t0)
                return exc
            except BaseException:  # cancelled: no result, a half-open probe slot must not leak
                if br is not None:
                    br._abandon(epoch)
                raise
            self._record(True, self._now(), epoch, None, t0)
            return None
        finally:
            self._release_gate()

    async def _await_with_timeout(self, result: Any) -> None:
        if not inspect.isawaitable(result):
            return
        task = asyncio.ensure_future(result)
        loop = asyncio.get_running_loop()
        expired = loop.create_future()
        timeout = self._timeout
        assert timeout is not None
        entry = None
        handle = None
        if self._real:
            handle = loop.call_later(timeout, _set_if_pending, expired)
        else:
            entry = self._manager._scheduler.schedule(
                self._now() + timeout, lambda: _threadsafe_set(loop, expired))
        try:
            await asyncio.wait((task, expired), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            if handle is not None:
                handle.cancel()
            if entry is not None:
                self._manager._scheduler.cancel(entry)
            if not expired.done():
                expired.cancel()
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # the cancelled (or late-failing) call is ignored
                pass
            raise self._timed_out()
        task.result()

    # -- the Emitter path ---------------------------------------------------------------------
    def handle(self, event: Any) -> Any:
        """Handle *event* (the Emitter path); see the class docstring.

        Returns ``None`` (an awaitable for an ``async def`` listener).  Never raises what
        the listener raised: failures are retried, then dead-lettered.
        """
        if self._fast:
            tokens = self._tokens
            if tokens is not None:
                try:
                    tokens.get_nowait()
                except queue.Empty:  # at the concurrency bound: wait on the slow path
                    return self._handle_slow(event)
            try:
                self._fn(event)
            except Exception as exc:
                if tokens is not None:
                    tokens.put(None)
                self._fast_failed(event, exc)
                return None
            except BaseException:
                if tokens is not None:
                    tokens.put(None)
                raise
            if tokens is not None:
                tokens.put(None)
            self._ok_next()
            if self._now() >= self._b_end:
                self._roll_now(self._now())
            self._b_next()
            return None
        return self._handle_slow(event)

    def _fast_failed(self, event: Any, exc: BaseException) -> None:
        br = self._breaker
        self._record(False, self._now(), br._epoch if br is not None else 0, exc, 0.0)
        self._after_failure(event, exc, 1, getattr(event, "type", None), None)

    def _make_fast_handle(self) -> Callable[[Any], Any]:
        """:meth:`handle` as a closure over its collaborators (about 100 ns cheaper per
        call than the method); same behaviour.  Used for sync listeners with a bound."""
        fn = self._fn
        tokens = self._tokens
        assert tokens is not None
        take = tokens.get_nowait
        give = tokens.put
        ok_next = self._ok_next
        now = self._now
        slow = self._handle_slow
        failed = self._fast_failed
        roll = self._roll_now
        empty = queue.Empty

        def handle(event: Any) -> Any:
            if not self._fast:
                return slow(event)
            try:
                take()
            except empty:
                return slow(event)
            try:
                fn(event)
            except Exception as exc:
                give(None)
                failed(event, exc)
                return None
            except BaseException:
                give(None)
                raise
            give(None)
            ok_next()
            if now() >= self._b_end:
                roll(now())
            self._b_next()
            return None

        if self._check_result:
            # What the Listener's handle returns may be an awaitable: run it to the end.
            run_coro = self._manager._run_coro
            isawaitable = inspect.isawaitable

            def handle(event: Any) -> Any:  # noqa: F811 - the checking variant
                if not self._fast:
                    return slow(event)
                try:
                    take()
                except empty:
                    return slow(event)
                try:
                    r = fn(event)
                    if r is not None and isawaitable(r):
                        run_coro(_await_it(r))
                except Exception as exc:
                    give(None)
                    failed(event, exc)
                    return None
                except BaseException:
                    give(None)
                    raise
                give(None)
                ok_next()
                if now() >= self._b_end:
                    roll(now())
                self._b_next()
                return None

        handle.__doc__ = ManagedListener.handle.__doc__
        return handle

    def _handle_slow(self, event: Any) -> Any:
        if self.is_async:
            return self.ahandle(event)
        err = self._call_sync(event)
        if err is None:
            self._count_processed()
        else:
            self._after_failure(event, err, 1, getattr(event, "type", None), None)
        return None

    __call__ = handle

    async def ahandle(self, event: Any) -> None:
        """Handle *event* from asyncio code: like :meth:`handle`, awaited on this loop.

        Retries of an ``async def`` listener run on this loop while it runs.  A sync
        listener runs inline (its retries on the scheduler's threads).
        """
        if not self.is_async:
            if self._check_result and self._timeout is None:
                # what the Listener's handle returns is awaited on this loop
                err = await self._acall(event)
                if err is None:
                    self._count_processed()
                else:
                    self._after_failure(event, err, 1, getattr(event, "type", None), None)
                return
            self.handle(event)
            return
        err = await self._acall(event)
        if err is None:
            self._count_processed()
        else:
            self._after_failure(event, err, 1, getattr(event, "type", None), asyncio.get_running_loop())

    def _count_processed(self) -> None:
        self._ok_next()

    def _after_failure(self, event: Any, exc: BaseException, attempts: int, topic: str | None,
                       loop: asyncio.AbstractEventLoop | None, prev: _Retry | None = None) -> None:
        """The *attempts*-th call of *event* failed with *exc*: schedule the next attempt
        or dead-letter the event.  *prev* is the scheduled retry that made the call
        (``None`` for a first call, made inline by the caller)."""
        try:
            again = self._retry.should_retry(exc, attempts)
        except Exception as pred_exc:  # retry_if raised: stop, keep both errors
            _log.exception("nova: retry_if of listener %r raised", self._id)
            exc.__context__ = pred_exc
            again = False
        mgr = self._manager
        with mgr._rcond:
            if prev is not None and prev.state != _DECIDING:
                return  # stop() claimed it meanwhile and dead-lettered it
            collect = prev is not None
            if again:
                due = self._now() + self._retry.delay(attempts)
                if not mgr._refuse_retry(due):
                    if prev is not None:
                        mgr._forget(prev)
                    mgr._add_retry(_Retry(self, event, attempts, exc, topic, loop, due))
                    return
                collect = True  # stop() ends before it would be due (or the interpreter exits)
            dl = self._new_dead_letter(event, exc, attempts, topic)
            if collect:
                for letters in mgr._collectors:
                    letters.append(dl)
            if prev is not None:
                prev.state = _LETTERING
        try:
            self._deliver_dead_letter(dl)
        finally:
            if prev is not None:
                with mgr._rcond:
                    mgr._forget(prev)

    def _run_retry(self, retry: _Retry) -> Any:
        """Run one scheduled retry (on a runner thread, or on the original loop)."""
        mgr = self._manager
        with mgr._rcond:
            if retry.state != _PENDING:
                return None  # claimed by stop(): it never runs
            if not self.is_async:
                retry.state = _CALLING
        with self._lock:
            self._c["retried"] += 1
        if self.is_async:
            return self._submit_attempt(retry)
        try:
            err = self._call_sync(retry.event, retry)
        except BaseException as exc:  # pragma: no cover - _call_sync returns errors
            err = exc
        self._finish_retry(retry, err, None)
        return None

    def _submit_attempt(self, retry: _Retry) -> concurrent.futures.Future[Any]:
        """Start an async retry attempt on its original loop while that runs, else on the
        manager's loop; returns the future of its task.

        A task cancelled before it started (its loop closing) never runs the attempt's
        code: the attempt then moves to the manager's (current) loop, or, if it was
        already there, ends with that error (retried or dead-lettered), never silently
        lost.  A retry that stop() claimed meanwhile does nothing."""
        mgr = self._manager
        loop = retry.loop
        started: list[bool] = []
        holder: list[concurrent.futures.Future[Any]] = []

        def dropped() -> None:
            # The loop closed with the hand-off still queued: the coroutine is freed
            # unstarted and its future would never end.  Cancel it (see check()).
            if not started and holder:
                holder[0].cancel()

        target: asyncio.AbstractEventLoop | None = None  # the manager's loop, when used
        fut: concurrent.futures.Future[Any] | None = None
        if loop is not None and loop.is_running() and not loop.is_closed():
            coro = self._aretry(retry, None, started)
            weakref.finalize(coro, dropped)
            try:
                fut = asyncio.run_coroutine_threadsafe(coro, loop)
                holder.append(fut)  # before the last reference to coro goes
            except RuntimeError:  # closed meanwhile
                coro.close()
            del coro
        tries = 0
        while fut is None:
            retry.loop = None
            target = mgr._event_loop()
            coro = self._aretry(retry, target, started)
            weakref.finalize(coro, dropped)
            try:
                fut = asyncio.run_coroutine_threadsafe(coro, target)
                holder.append(fut)
            except RuntimeError:  # stop() closed that loop meanwhile: take the new one
                coro.close()
                tries += 1
                if tries > 3:  # pragma: no cover - the loop keeps closing under us
                    raise
            del coro
        retry.fut = fut

        def check(f: concurrent.futures.Future[Any]) -> None:
            if started or not f.cancelled():
                return
            with mgr._rcond:
                if retry.state != _PENDING:
                    return  # claimed by stop(), which cancelled it
                fail = target is not None and mgr._loop is target
                if fail:
                    retry.state = _CALLING
            if not fail:
                self._resubmit(retry)  # the loop it was handed to went away
            else:
                self._finish_retry(retry, asyncio.CancelledError(
                    f"Expected the retry of listener {self._id!r} to run, got it cancelled "
                    "before it started (the manager's loop closed)"), None)

        fut.add_done_callback(check)
        return fut

    async def _aretry(self, retry: _Retry, target: asyncio.AbstractEventLoop | None,
                      started: list[bool]) -> None:
        started.append(True)
        mgr = self._manager
        with mgr._rcond:
            if retry.state != _PENDING:
                return  # claimed by stop() before it started
            retry.state = _CALLING
        _IN_TASK.set(retry)  # this task's own context: stop() from inside does not wait for it
        try:
            err = await self._acall(retry.event, retry)
        except asyncio.CancelledError as exc:
            with mgr._rcond:
                if retry.state != _CALLING:
                    return  # stop() claimed it (and cancelled it): nothing more runs
                # Cut off because the loop it ran on is going away (asyncio.run ending,
                # an Emitter's shutdown closing its loop, stop() replacing the manager's
                # loop): the attempt has no result, so it runs again on the manager's loop.
                again = target is None or mgr._loop is not target
                if again:
                    retry.state = _PENDING
            if again:
                self._resubmit(retry)
                return
            err = exc
        self._finish_retry(retry, err, None if target is not None else asyncio.get_running_loop())

    def _resubmit(self, retry: _Retry) -> None:
        """Run a pending async attempt again on the manager's loop (it counts as a
        dispatched scheduler task until it ends)."""
        retry.loop = None
        sched = self._manager._scheduler
        with sched._cond:
            sched._active += 1
        try:
            fut = self._submit_attempt(retry)
        except BaseException as exc:  # pragma: no cover - the manager's loop cannot start
            sched.task_done()
            with self._manager._rcond:
                if retry.state != _PENDING:
                    return
                retry.state = _CALLING
            self._finish_retry(retry, exc, None)
            return
        fut.add_done_callback(lambda f: sched.task_done())

    def _finish_retry(self, retry: _Retry, err: BaseException | None,
                      loop: asyncio.AbstractEventLoop | None) -> None:
        """A retry's call ended with *err* (``None``: handled).  Ignored when stop() has
        claimed the retry meanwhile (it dead-lettered the event already)."""
        mgr = self._manager
        with mgr._rcond:
            if retry.state != _CALLING:
                return
            if err is None:
                self._count_processed()
                mgr._forget(retry)
                return
            retry.state = _DECIDING
            retry.attempts += 1
            retry.error = err
        self._after_failure(retry.event, err, retry.attempts, retry.topic,
                            loop if loop is not None else retry.loop, retry)

    # -- the Bus path ---------------------------------------------------------------------------
    def run_inline(self, event: Any, *, topic: str | None = None) -> bool:
        """Handle *event* with every attempt in the calling thread (the Bus path).

        Sleeps on the manager's clock between attempts.  Returns ``True`` if a call
        succeeded, ``False`` if the event was dead-lettered.  An ``async def`` listener
        runs to completion on the manager's event loop thread.  Never raises what the
        listener raised.
        """
        if self.is_async:
            return bool(self._manager._run_coro(self.arun_inline(event, topic=topic)))
        attempts = 0
        while True:
            attempts += 1
            err = self._call_sync(event)
            if attempts > 1:
                with self._lock:
                    self._c["retried"] += 1
            if err is None:
                self._count_processed()
                return True
            if not self._should_retry(err, attempts):
                self._dead_letter(event, err, attempts, topic)
                return False
            self._clock.sleep(self._retry.delay(attempts))

    async def arun_inline(self, event: Any, *, topic: str | None = None) -> bool:
        """:meth:`run_inline` for asyncio code: attempts awaited in turn on this loop."""
        attempts = 0
        while True:
            attempts += 1
            if self.is_async or (self._check_result and self._timeout is None):
                err = await self._acall(event)  # what handle returns is awaited on this loop
            else:
                err = self._call_sync(event)
            if attempts > 1:
                with self._lock:
                    self._c["retried"] += 1
            if err is None:
                self._count_processed()
                return True
            if not self._should_retry(err, attempts):
                self._dead_letter(event, err, attempts, topic)
                return False
            await self._manager._asleep(self._retry.delay(attempts))

    def _should_retry(self, err: BaseException, attempts: int) -> bool:
        try:
            return self._retry.should_retry(err, attempts)
        except Exception as pred_exc:
            _log.exception("nova: retry_if of listener %r raised", self._id)
            err.__context__ = pred_exc
            return False

    # -- dead letters ------------------------------------------------------------------------------
    def _dead_letter(self, event: Any, exc: BaseException, attempts: int, topic: str | None) -> DeadLetter:
        dl = self._new_dead_letter(event, exc, attempts, topic)
        self._deliver_dead_letter(dl)
        return dl

    def _new_dead_letter(self, event: Any, exc: BaseException, attempts: int, topic: str | None) -> DeadLetter:
        """The dead letter of *event*, counted (no user code runs here: callers may hold
        the manager's retry lock)."""
        from nova.events import now_ns

        dl = DeadLetter(event, exc, attempts, self._id, topic, now_ns())
        with self._lock:
            self._c["dead_lettered"] += 1
        return dl

    def _deliver_dead_letter(self, dl: DeadLetter) -> None:
        """Send *dl* down the dead-letter path: metrics, ``on_error``, handler, store."""
        cfg = self.config.dead_letter
        event, exc, attempts = dl.event, dl.error, dl.attempts
        if self._metrics_on:
            self._metrics.inc_events_processed(self._id, "dead_letter" if cfg.enabled else "dropped")
        on_error = self._on_error
        if on_error is not None:
            try:
                on_error(event, exc)
            except Exception:
                _log.exception("nova: on_error of listener %r raised", self._id)
        if not cfg.enabled:
            return
        errors = 0
        if cfg.handler is not None:
            try:
                cfg.handler(dl)
            except Exception:
                errors += 1
                _log.exception("nova: dead-letter handler of listener %r raised", self._id)
        if cfg.store is not None:
            try:
                cfg.store.append(DEAD_LETTER_STREAM, dead_letter_event(dl))
            except Exception:
                errors += 1
                _log.exception("nova: could not store a dead letter of listener %r", self._id)
        if cfg.handler is None and cfg.store is None:
            _log.warning("nova: event %s dead-lettered by listener %r after %d attempt(s): %r",
                         getattr(event, "id", event), self._id, attempts, exc)
        if errors:
            with self._lock:
                self._c["dead_letter_errors"] += errors

    # -- introspection ---------------------------------------------------------------------------
    def stats(self) -> ListenerStats:
        """A snapshot of this listener's counters."""
        with self._lock:
            c = dict(self._c)
            c["processed"] = _count_value(self._ok)
            c["calls"] = c["processed"] + c["failed"]
        return ListenerStats(self._id, **c)

    def health(self) -> Health:
        """This listener's :class:`Health` (rules in :meth:`ListenerManager.health`)."""
        br = self._breaker
        if br is not None and br.state is not CircuitState.CLOSED:
            return Health.CIRCUIT_OPEN
        now = self._now()
        with self._lock:
            if now >= self._b_end:
                self._roll(now)
            self._b_calls[self._b_idx] = _count_value(self._b_count)
            calls = sum(self._b_calls)
            fails = sum(self._b_fail)
            recent_failure = now - self._last_failure < self._window
            pending = self._c["pending"]
        if calls >= _UNHEALTHY_MIN_CALLS and 2 * fails >= calls:
            return Health.UNHEALTHY
        if recent_failure or pending:
            return Health.DEGRADED
        return Health.HEALTHY

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
        if self._bucket is not None:
            self._bucket._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ManagedListener {self._id!r}>"


def _count_value(counter: itertools.count[int]) -> int:
    """How many times ``next`` was called on a fresh ``itertools.count()`` (its repr
    is ``count(N)``; reading it this way is atomic, unlike a Python-level counter)."""
    return int(repr(counter)[6:-1])


async def _await_it(aw: Any) -> Any:
    return await aw


def _set_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _threadsafe_set(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    try:
        loop.call_soon_threadsafe(_set_if_pending, fut)
    except RuntimeError:  # the loop closed: nobody waits any more
        pass


def dead_letter_event(dl: DeadLetter) -> Any:
    """The event stored for *dl*: its event with the dead-letter metadata added.

    Keys: ``nova.error.type`` (qualified class name), ``nova.error.message``,
    ``nova.attempts``, ``nova.listener``, ``nova.deadletter.timestamp`` (ns) and, when
    known, ``nova.topic``.  Id, type, data and timestamp are the event's own.
    """
    ev = dl.event
    meta = dict(ev.metadata)
    meta["nova.error.type"] = _qualified(dl.error)
    meta["nova.error.message"] = str(dl.error)
    meta["nova.attempts"] = str(dl.attempts)
    meta["nova.listener"] = dl.listener_id
    meta["nova.deadletter.timestamp"] = str(dl.timestamp)
    if dl.topic is not None:
        meta["nova.topic"] = dl.topic
    return ev.replace(metadata=meta)


#: The scheduled task (a :class:`_Retry`) that runs in this thread or asyncio task.
_IN_TASK: contextvars.ContextVar[Any] = contextvars.ContextVar("nova_listener_task", default=None)

_HEALTH_ORDER = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2, Health.CIRCUIT_OPEN: 3}

#: Every live ListenerManager, so a forked child can make its inherited copies usable.
_MANAGERS: weakref.WeakSet[ListenerManager] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for manager in list(_MANAGERS):
        manager._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ListenerManager:
    """Runs listeners with retries, circuit breakers, dead letters, timeouts and limits.

    Args:
        pool: a :class:`nova.WorkerPool` (anything with ``submit(fn)``) to run scheduled
            retries on; by default the manager's own daemon threads run them.
        metrics: a metrics collector; ``nova_events_processed_total{listener,result}``
            (results ``ok``, ``error``, ``timeout``, ``rejected``,
            ``dead_letter``, ``dropped``) and ``nova_listener_duration_seconds``.
            ``None`` records nothing.
        clock: ``monotonic()`` + ``sleep()``; backoff delays, breaker windows and
            timeouts are measured on it (:class:`nova.testing.ManualClock` in tests).

    ``register`` works at once.  The retry scheduler starts on first need (or with
    :meth:`start`); :meth:`stop` drains it and may be followed by a new start.  Usable as
    a context manager (``stop()`` on exit).  Thread-safe.

    Left open at interpreter exit, it finishes the retries due within its share of
    ``NOVA_EXIT_TIMEOUT`` and dead-letters (and logs the count of) the rest: see
    :meth:`close_at_exit`.  Inherited by a forked child, it is usable there without the
    parent's pending retries (the parent runs those).

    Raises:
        TypeError: *pool*, *metrics* or *clock* lacks the needed methods.
    """

    def __init__(self, pool: Any = None, metrics: Any = None, clock: Any = None) -> None:
        if pool is not None and not callable(getattr(pool, "submit", None)):
            raise TypeError(f"Expected pool with a submit() method or None, got {type_name(pool)}")
        if metrics is not None and not callable(getattr(metrics, "inc_events_processed", None)):
            raise TypeError(f"Expected a MetricsCollector or None, got {type_name(metrics)}")
        self._pool = pool
        self._metrics = metrics
        self._clock = _check_clock(clock)
        self._now = _now_fn(self._clock)
        self._lock = threading.RLock()
        self._listeners: dict[str, ManagedListener] = {}
        self._scheduler = _Scheduler(self._clock, self._dispatch)
        self._retry_runner_: _Runner | None = None
        self._call_runner_: _Runner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_stop: asyncio.Event | None = None
        # Scheduled retries (accepted events with attempts left) and their states; see
        # _Retry.  stop() waits on and claims them under _rcond.
        self._rcond = threading.Condition(threading.Lock())
        self._retries: set[_Retry] = set()
        self._collectors: list[list[DeadLetter]] = []  # one per stop() running now
        self._deadlines: list[float] = []  # of the stop(timeout) calls running now
        self._exit_hooked = False  # registered with nova._util.atexit
        self._exit_closed = False  # close_at_exit ran: failures are dead-lettered at once
        self._managed: weakref.WeakSet[ManagedListener] = weakref.WeakSet()
        _MANAGERS.add(self)

    # -- registry -----------------------------------------------------------------------------
    def register(self, listener: Any, config: ListenerConfig | None = None, *,
                 id: str | None = None) -> ManagedListener:
        """Wrap *listener* (a callable, an ``async def`` or a Listener) and return the
        :class:`ManagedListener` to subscribe.  Its id is the listener's (or *id*).

        Raises:
            TypeError: *listener* is not callable or *config* not a ListenerConfig.
            nova.errors.ValidationError: the id is already registered here.
        """
        from nova.events import as_listener

        if config is None:
            config = ListenerConfig()
        elif not isinstance(config, ListenerConfig):
            raise TypeError(f"Expected config as a ListenerConfig, got {type_name(config)}")
        if isinstance(listener, ManagedListener):
            raise TypeError("Expected a plain listener, got a ManagedListener (already managed)")
        inner = as_listener(listener, id=id)
        with self._lock:
            if inner.id in self._listeners:
                raise ValidationError(f"Expected a listener id not registered yet, got {inner.id!r}")
            managed = ManagedListener(self, inner, config)
            self._listeners[inner.id] = managed
            self._managed.add(managed)
        return managed

    def unregister(self, listener_id: str) -> ManagedListener:
        """Forget a listener: :meth:`process`, :meth:`health` and :meth:`stats` no longer
        see it.  Its retries already scheduled still run; the returned object keeps working
        where it is subscribed (unsubscribe it there).

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        with self._lock:
            try:
                return self._listeners.pop(listener_id)
            except KeyError:
                raise ListenerNotFound(
                    f"Expected a registered listener id, got {listener_id!r}") from None

    def get(self, listener_id: str) -> ManagedListener:
        """The managed listener registered under *listener_id*.

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        try:
            return self._listeners[listener_id]
        except KeyError:
            raise ListenerNotFound(f"Expected a registered listener id, got {listener_id!r}") from None

    @property
    def listener_ids(self) -> tuple[str, ...]:
        """The registered ids, in registration order."""
        with self._lock:
            return tuple(self._listeners)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the retry scheduler (it also starts by itself on the first retry)."""
        self._scheduler.start()

    @property
    def running(self) -> bool:
        """Whether the retry scheduler thread runs."""
        return self._scheduler.running

    def stop(self, timeout: float | Any = None) -> list[DeadLetter]:
        """Drain the scheduled retries, then stop the scheduler and helper threads.

        With ``timeout=None`` it waits until every scheduled retry has ended (on a
        :class:`~nova.testing.ManualClock`, another thread must advance it).  With a
        timeout (seconds on the manager's clock, and at most as many real seconds):

        * retries due before the deadline run; the others are dead-lettered at once with
          their last error, and so are those still waiting when the time is up;
        * a retry call still running when the time is up cannot be killed (an ``async
          def`` one is cancelled): its event is dead-lettered by ``stop()`` with a
          :class:`nova.errors.Timeout` (the last error as ``__context__``, the running call
          counted in ``attempts``), and whatever that call does afterwards is ignored:
          it is not counted as processed, never retried, never dead-lettered again.

        Returns the dead letters of the scheduled retries that ended dead-lettered while
        it ran (by ``stop()`` itself or by the thread that ran their last attempt); each
        went through the dead-letter path (handler, store, ``on_error``).  Once it
        returns, nothing it covered runs any more: no listener call or dead-letter call
        starts, except the ones already running that the timeout cut off.

        What ``stop()`` covers is the manager's own work: retries scheduled before it
        returns.  A first call (``managed.handle`` in the caller's thread) is the caller's;
        a failure of one after ``stop()`` returned is new work and restarts the scheduler
        (the manager is restartable).  Called by a listener from inside one of this
        manager's retries (or its dead-letter handler), it does not wait for that retry,
        which ends after it returns and is counted as usual.  The scheduler keeps serving
        the timeouts of first calls still in flight.

        Raises:
            TypeError/ValueError: a bad *timeout*.
        """
        t = None if timeout is None else _check_duration(timeout, "timeout")
        me = _IN_TASK.get()
        if not (isinstance(me, _Retry) and me.managed._manager is self):
            me = None
        rcond = self._rcond
        retries = self._retries

        def busy() -> bool:
            n = len(retries)
            return n > 1 or (n == 1 and me not in retries)

        letters: list[DeadLetter] = []
        deadline = math.inf
        real_end: float | None = None
        with rcond:
            self._collectors.append(letters)
            if t is not None:
                deadline = self._now() + t
                real_end = time.monotonic() + t
                self._deadlines.append(deadline)
        try:
            if t is None:
                with rcond:
                    rcond.wait_for(lambda: not busy())
            else:
                assert real_end is not None
                # Retries due after the deadline cannot run in time: dead-letter them now
                # (those scheduled from now on are refused by _refuse_retry).
                self._claim(lambda r: r.state == _PENDING and r.due > deadline and r is not me)
                with rcond:
                    done = rcond.wait_for(lambda: not busy(), max(0.0, real_end - time.monotonic()))
                if not done:
                    # Time is up: what did not run or did not finish is dead-lettered now.
                    self._claim(lambda r: r.state in _CLAIMABLE and r is not me)
        finally:
            with rcond:
                self._collectors = [c for c in self._collectors if c is not letters]
                if t is not None:
                    self._deadlines.remove(deadline)
                # Retries still being dead-lettered by their own thread need no scheduler:
                # the threads stop unless new work came in.
                idle = not any(r.state in _CLAIMABLE and r is not me for r in retries)
        if idle:
            self._stop_threads(real_end)
        return letters

    def _claim(self, which: Callable[[_Retry], bool]) -> None:
        """Take the retries for which *which* holds away from whoever would run them and
        dead-letter them here (each stop() running now gets their dead letters)."""
        taken: list[tuple[_Retry, DeadLetter]] = []
        with self._rcond:
            for r in [r for r in self._retries if which(r)]:
                m = r.managed
                if r.state == _CALLING:
                    err: BaseException = Timeout(
                        f"Expected the retry of listener {m._id!r} to finish before stop() ended, "
                        "got it still running (its outcome is ignored)")
                    err.__context__ = r.error
                    dl = m._new_dead_letter(r.event, err, r.attempts + 1, r.topic)
                else:
                    dl = m._new_dead_letter(r.event, r.error, r.attempts, r.topic)
                self._forget(r, _CLAIMED)
                for letters in self._collectors:
                    letters.append(dl)
                taken.append((r, dl))
        sched = self._scheduler
        for r, dl in taken:
            if r.entry is not None:
                sched.cancel(r.entry)
            fut = r.fut
            if fut is not None and not fut.done():
                # An async attempt: cancel its task (if its loop still runs).
                loop = r.loop if r.loop is not None else self._loop
                if loop is None or not loop.is_closed():
                    fut.cancel()
            r.managed._deliver_dead_letter(dl)

    def _stop_threads(self, real_end: float | None) -> None:
        """Stop the scheduler, the runners and the loop thread, waiting for them at most
        until *real_end* (5 s when None); a thread still busy then is a daemon that ends
        on its own and can no longer run anything of this manager's stopped work."""

        def left() -> float:
            return 5.0 if real_end is None else max(0.0, real_end - time.monotonic())

        self._scheduler.stop(left())
        with self._lock:
            runners = [self._retry_runner_, self._call_runner_]
            self._retry_runner_ = self._call_runner_ = None
            loop, thread, stop_evt = self._loop, self._loop_thread, self._loop_stop
            self._loop = self._loop_thread = self._loop_stop = None
        for r in runners:
            if r is not None:
                r.close()
        if loop is not None and thread is not None and stop_evt is not None:
            try:
                loop.call_soon_threadsafe(stop_evt.set)
            except RuntimeError:  # pragma: no cover - already closed
                pass
            if thread is not threading.current_thread():
                thread.join(left())

    def close_at_exit(self, timeout: float) -> None:
        """Called once at interpreter exit by :mod:`nova._util.atexit` with the seconds
        left of nova's exit budget (``NOVA_EXIT_TIMEOUT``).

        Works like ``stop(timeout)`` on 80% of that time: retries due within it run,
        the others are dead-lettered through the normal path (a dead-letter store keeps
        them), and the count of those is logged as a warning on ``nova.listener``.
        Failures after this point are dead-lettered at once (no retry can outlive the
        interpreter).  Returns within *timeout* even if a dead-letter handler blocks.
        """
        letters: list[DeadLetter] = []  # every retry dead-lettered from now on
        with self._rcond:
            self._collectors.append(letters)
            self._exit_closed = True
            pending = len(self._retries)
        try:
            if pending == 0 and self._loop is None and not self.running:
                return
            budget = max(0.0, float(timeout))
            result: list[list[DeadLetter]] = []

            def run() -> None:
                result.append(self.stop(timeout=budget * 0.8))

            th = threading.Thread(target=run, name="nova-listener-exit", daemon=True)
            th.start()
            th.join(budget)
            if not result:
                _log.warning("nova: ListenerManager could not close within %.3gs at interpreter exit: "
                             "%d retried event(s) were pending; their dead-letter path was still running",
                             budget, pending)
            elif letters:
                _log.warning("nova: ListenerManager at interpreter exit: %d retried event(s) not "
                             "delivered in time, dead-lettered", len(letters))
        finally:
            with self._rcond:
                self._collectors = [c for c in self._collectors if c is not letters]

    def _reset_after_fork(self) -> None:
        """In a forked child: drop the parent's threads, locks and scheduled retries (the
        parent runs those; the child must not handle them twice) and make the manager
        usable again.  Listeners, configs, breaker states and counters are kept."""
        self._lock = threading.RLock()
        self._rcond = threading.Condition(threading.Lock())
        for r in self._retries:
            r.state = _CLAIMED
        self._retries = set()
        self._collectors = []
        self._deadlines = []
        self._scheduler = _Scheduler(self._clock, self._dispatch)
        self._retry_runner_ = self._call_runner_ = None
        self._loop = self._loop_thread = self._loop_stop = None
        for m in list(self._managed):
            m._reset_after_fork()

    def __enter__(self) -> ListenerManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ListenerManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no retry runs and none is due at the clock's current time.

        With a :class:`~nova.testing.ManualClock`: ``clock.advance(d)`` then
        ``wait_idle()`` returns once everything due by then has run.  *timeout* is in
        real seconds; returns False if it passed first.
        """
        t = None if timeout is None else _check_duration(timeout, "timeout")
        return self._scheduler.wait(self._scheduler.idle_now, t)

    # -- machinery ---------------------------------------------------------------------------
    def _refuse_retry(self, due: float) -> bool:
        """(With ``_rcond`` held.)  Whether a retry due at *due* must be dead-lettered at
        once: a stop(timeout) running now ends before it, or the interpreter exits."""
        return self._exit_closed or (bool(self._deadlines) and due > min(self._deadlines))

    def _add_retry(self, retry: _Retry) -> None:
        """(With ``_rcond`` held.)  Accept *retry* and put it on the timer heap."""
        self._retries.add(retry)
        m = retry.managed
        with m._lock:
            m._c["pending"] += 1
        if not self._exit_hooked:  # once per manager: the registry holds it weakly
            self._exit_hooked = True
            _exit_register(self.close_at_exit, STAGE_CONSUMER)
        retry.entry = self._scheduler.schedule(retry.due, retry)
        self._rcond.notify_all()

    def _forget(self, retry: _Retry, state: int = _DONE) -> None:
        """(With ``_rcond`` held.)  *retry* ended (or was claimed by stop())."""
        retry.state = state
        if retry in self._retries:
            self._retries.discard(retry)
            m = retry.managed
            with m._lock:
                m._c["pending"] -= 1
            self._rcond.notify_all()

    def _dispatch(self, fn: Callable[[], Any]) -> None:
        sched = self._scheduler

        def task() -> None:
            token = _IN_TASK.set(fn)  # an async retry's task inherits it too
            try:
                result = fn()
            except BaseException:
                sched.task_done()
                _log.exception("nova: a scheduled task failed")
                return
            finally:
                _IN_TASK.reset(token)
            if isinstance(result, concurrent.futures.Future):
                result.add_done_callback(lambda f: sched.task_done())
            else:
                sched.task_done()

        pool = self._pool
        if pool is not None and isinstance(fn, _Retry):
            # Never block the scheduler thread on a full pool, and never lose a retry to a
            # closed one: the manager's own threads take it then.
            try:
                try_submit = getattr(pool, "try_submit", None)
                if try_submit is not None:
                    if try_submit(task) is not None:
                        return
                else:
                    pool.submit(task)
                    return
            except Exception:  # PoolClosed, RuntimeError of a shut-down executor...
                pass
        for _ in range(3):
            try:
                self._retry_runner().submit(task)
                return
            except PoolClosed:  # stop() closed that runner meanwhile: a new one takes it
                continue
        self._retry_runner().submit(task)

    def _retry_runner(self) -> _Runner:
        with self._lock:
            r = self._retry_runner_
            if r is None or r._closed:
                r = self._retry_runner_ = _Runner("nova-retry", 16)
            return r

    def _call_runner(self) -> _Runner:
        with self._lock:
            r = self._call_runner_
            if r is None or r._closed:
                r = self._call_runner_ = _Runner("nova-listener-call", 256)
            return r

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            ready = threading.Event()
            box: dict[str, Any] = {}

            async def main() -> None:
                box["loop"] = asyncio.get_running_loop()
                box["stop"] = stop = asyncio.Event()
                ready.set()
                await stop.wait()

            t = threading.Thread(target=asyncio.run, args=(main(),), name="nova-listener-loop", daemon=True)
            t.start()
            ready.wait()
            self._loop, self._loop_stop, self._loop_thread = box["loop"], box["stop"], t
            return self._loop

    def _submit_coro(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._event_loop())

    def _run_coro(self, coro: Any) -> Any:
        """Run *coro* to completion on the manager's loop thread and return its result."""
        loop = self._event_loop()
        if self._loop_thread is threading.current_thread():  # pragma: no cover - misuse guard
            coro.close()
            raise RuntimeError("Expected a call from outside the manager's loop thread, got one from it")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def _asleep(self, seconds: float) -> None:
        """Sleep *seconds* on the manager's clock without blocking the running loop."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self._clock is SYSTEM_CLOCK:
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        entry = self._scheduler.schedule(self._now() + seconds, lambda: _threadsafe_set(loop, fut))
        try:
            await fut
        finally:
            self._scheduler.cancel(entry)

    # -- direct use ------------------------------------------------------------------------------
    def process(self, listener_id: str, event: Any, *, topic: str | None = None) -> bool:
        """Run *event* through the listener now, every attempt in this thread (sleeping on
        the clock between them).  True if handled, False if dead-lettered.

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
            TypeError: *event* is not an Event.
        """
        managed = self.get(listener_id)
        _check_event(event)
        return managed.run_inline(event, topic=topic)

    async def aprocess(self, listener_id: str, event: Any, *, topic: str | None = None) -> bool:
        """:meth:`process` for asyncio code.

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
            TypeError: *event* is not an Event.
        """
        managed = self.get(listener_id)
        _check_event(event)
        return await managed.arun_inline(event, topic=topic)

    # -- health and stats ------------------------------------------------------------------------
    def listener_health(self, listener_id: str) -> Health:
        """The :class:`Health` of one listener (rules in :meth:`health`).

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        return self.get(listener_id).health()

    def health(self) -> Health:
        """The worst health of the registered listeners (HEALTHY when there are none).

        Per listener, in this order:

        * ``CIRCUIT_OPEN`` if its breaker is open or half-open;
        * ``UNHEALTHY`` if at least half of its calls in the last circuit ``window``
          failed, with at least 10 calls in the window (calls are counted in 1/16-window
          slices, so the window's edge is exact to a sixteenth);
        * ``DEGRADED`` if a call failed within the window or retries are pending;
        * ``HEALTHY`` otherwise.
        """
        with self._lock:
            listeners = list(self._listeners.values())
        worst = Health.HEALTHY
        for m in listeners:
            h = m.health()
            if _HEALTH_ORDER[h] > _HEALTH_ORDER[worst]:
                worst = h
        return worst

    def stats(self, listener_id: str | None = None) -> ListenerStats:
        """Counters of one listener, or the totals over the registered ones (``None``).

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        if listener_id is not None:
            return self.get(listener_id).stats()
        with self._lock:
            listeners = list(self._listeners.values())
        totals = dict.fromkeys(_STAT_FIELDS, 0)
        for m in listeners:
            s = m.stats()
            for f in _STAT_FIELDS:
                totals[f] += getattr(s, f)
        return ListenerStats(None, **totals)

    # -- redrive -----------------------------------------------------------------------------------
    def redrive(self, store: Any, *, listener_id: str | None = None, start: Any = None,
                end: Any = None) -> int:
        """Replay dead letters from *store*'s ``"nova.deadletter"`` stream back through
        their listeners (all registered ones, or only *listener_id*), each with
        :meth:`process` semantics (inline, with retries).  *start*/*end* bound the events'
        timestamps, ``[start, end)``.  The dead-letter metadata is removed first.

        Returns how many events were replayed.  The stream is append-only: replayed
        entries stay, and an event that fails again is dead-lettered again.  Entries of
        listeners not registered here are skipped.

        Raises:
            nova.errors.ListenerNotFound: *listener_id* is not registered.
            TypeError: *store* is not an EventStore.
        """
        if not callable(getattr(store, "replay", None)):
            raise TypeError(f"Expected an EventStore (with replay) to redrive from, got {type_name(store)}")
        if listener_id is not None:
            self.get(listener_id)
        count = 0
        for ev in _dead_letters(store, start, end):
            meta = ev.metadata
            lid = meta.get("nova.listener")
            if lid is None or (listener_id is not None and lid != listener_id):
                continue
            managed = self._listeners.get(lid)
            if managed is None:
                continue
            clean = {k: v for k, v in meta.items() if k not in _DL_KEYS}
            managed.run_inline(ev.replace(metadata=clean), topic=meta.get("nova.topic"))
            count += 1
        return count

    def __repr__(self) -> str:
        return f"<ListenerManager listeners={len(self._listeners)} health={self.health().value}>"


def _check_event(event: object) -> None:
    from nova.events import Event
    from nova._core import event_py

    if not isinstance(event, (Event, event_py.Event)):
        raise TypeError(f"Expected a nova Event, got {type_name(event)}")


def _dead_letters(store: Any, start: Any, end: Any) -> list[Any]:
    """The events of the dead-letter stream of *store* in ``[start, end)`` (a snapshot,
    in timestamp order)."""
    return list(store.replay(start, end, streams=[DEAD_LETTER_STREAM]))
