"""The manager-wide health and counters of a :class:`~nova.ListenerManager`
(:class:`HealthMixin`): the worst health of its listeners, why, and the summed stats.
Each listener computes its own (:mod:`nova.listener.state`); this module combines
them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from nova.listener.stats import HEALTH_ORDER, STAT_FIELDS, Health, HealthDetail, ListenerStats

if TYPE_CHECKING:
    from nova.listener.managed import ManagedListener

__all__ = ("HealthMixin",)


class HealthMixin:
    """Health and stats over the registered listeners (a base of
    :class:`~nova.ListenerManager`, which provides ``_lock``, ``_listeners`` and
    :meth:`get`)."""

    _lock: threading.RLock
    _listeners: dict[str, ManagedListener]
    get: Callable[[str], ManagedListener]

    def listener_health(self, listener_id: str) -> Health:
        """The :class:`Health` of one listener (rules in :meth:`health`).

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        return self.get(listener_id).health()

    def health(self) -> Health:
        """The worst health of the registered listeners (HEALTHY when there are none).

        Per listener, in this order:

        * ``CIRCUIT_OPEN`` if its breaker is open (a breaker whose ``timeout`` passed is
          half-open, computed from the clock without waiting for a call);
        * ``UNHEALTHY`` if at least half of its calls in the last circuit ``window``
          failed, with at least 10 calls in the window (calls are counted in 1/16-window
          slices, so the window's edge is exact to a sixteenth);
        * ``DEGRADED`` if its breaker is half-open, a call failed within the window or
          retries are pending;
        * ``HEALTHY`` otherwise.
        """
        with self._lock:
            listeners = list(self._listeners.values())
        worst = Health.HEALTHY
        for m in listeners:
            h = m.health()
            if HEALTH_ORDER[h] > HEALTH_ORDER[worst]:
                worst = h
        return worst

    def health_detail(self, listener_id: str | None = None) -> list[HealthDetail]:
        """Why :meth:`health` says what it says: a :class:`HealthDetail` (listener, health,
        the rule that decided it, since when) per registered listener (or for
        *listener_id* only), worst first.

        Raises:
            nova.errors.ListenerNotFound: *listener_id* is not registered.

        .. versionadded:: 0.2
        """
        if listener_id is not None:
            return [self.get(listener_id).health_detail()]
        with self._lock:
            listeners = list(self._listeners.values())
        details = [m.health_detail() for m in listeners]
        details.sort(key=lambda d: -HEALTH_ORDER[d.health])
        return details

    def stats(self, listener_id: str | None = None) -> ListenerStats:
        """Counters of one listener, or the totals over the registered ones (``None``).

        Raises:
            nova.errors.ListenerNotFound: no listener has that id.
        """
        if listener_id is not None:
            return self.get(listener_id).stats()
        with self._lock:
            listeners = list(self._listeners.values())
        totals = dict.fromkeys(STAT_FIELDS, 0)
        for m in listeners:
            s = m.stats()
            for f in STAT_FIELDS:
                totals[f] += getattr(s, f)
        return ListenerStats(None, **totals)
