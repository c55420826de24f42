"""Health and counters of managed listeners: :class:`Health`, :class:`ListenerStats`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ("Health", "HealthDetail", "ListenerStats")


class Health(str, enum.Enum):
    """Health of a listener or of a whole manager (see :meth:`ListenerManager.health`).

    * ``CIRCUIT_OPEN`` (``"circuit-open"``): a breaker is open.  Once its ``timeout``
      has passed it is half-open (computed from the clock, no call needed).
    * ``UNHEALTHY``: at least half of the calls in the circuit window failed, with at
      least 10 calls in the window.
    * ``DEGRADED``: a breaker half-open (probing), a failure in the window, or retries
      pending.

    .. versionchanged:: 0.2
        A half-open breaker is DEGRADED (it was CIRCUIT_OPEN).
    * ``HEALTHY``: none of the above.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    CIRCUIT_OPEN = "circuit-open"

    def __str__(self) -> str:
        return self.value


class HealthDetail(NamedTuple):
    """Why a listener has its :class:`Health` (see :meth:`ListenerManager.health_detail`).

    Attributes:
        listener_id: the listener.
        health: its :class:`Health`.
        reason: the rule that decided it (``"circuit open: failure_rate: ..."``,
            ``"circuit half-open: probing"``, ``"6 of 10 calls failed in the last 60s"``,
            ``"2 retries pending"``), ``""`` when healthy.
        since: the manager's clock time the state holds since (the breaker's last
            transition, the last failure, ...).
        retry_after: seconds until an open breaker half-opens (0 otherwise).

    .. versionadded:: 0.2
    """

    listener_id: str
    health: Health
    reason: str
    since: float
    retry_after: float = 0.0


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


#: The counter fields of :class:`ListenerStats` (all but ``listener_id``).
STAT_FIELDS = tuple(f for f in ListenerStats.__dataclass_fields__ if f != "listener_id")
#: Health counts calls and failures in this many slices of the circuit window.
BUCKETS = 16
#: Calls in the window needed before a listener can be UNHEALTHY.
UNHEALTHY_MIN_CALLS = 10

#: Health states from best to worst (a manager reports its listeners' worst).
HEALTH_ORDER = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2, Health.CIRCUIT_OPEN: 3}
