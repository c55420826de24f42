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

Where things live: the policies in :mod:`nova.resilience.policy`, the breaker in
:mod:`nova.resilience.circuit`, the retry driver and the dead-letter path in
:mod:`nova.resilience.retry` / :mod:`nova.resilience.deadletter`, the timer scheduler in
:mod:`nova.resilience.scheduler`; here :mod:`~nova.listener.managed` (ManagedListener,
with :mod:`~nova.listener.calls`, :mod:`~nova.listener.retries` and
:mod:`~nova.listener.fastpath`), :mod:`~nova.listener.manager` (ListenerManager, with
:mod:`~nova.listener.drain`), :mod:`~nova.listener.config` and :mod:`~nova.listener.stats`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from nova.listener.config import ListenerConfig
from nova.listener.managed import ManagedListener
from nova.listener.manager import ListenerManager
from nova.listener.stats import Health, HealthDetail, ListenerStats
from nova.resilience.circuit import CircuitBreaker, CircuitState
from nova.resilience.deadletter import DEAD_LETTER_STREAM, dead_letter_event
from nova.resilience.redrive import RedriveReport
from nova.resilience.policy import Backoff, CircuitConfig, DeadLetter, DeadLetterConfig, RetryPolicy

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
    "HealthDetail",
    "RedriveReport",
    "DEAD_LETTER_STREAM",
)
