"""Health of nova components as plain data (what ``GET /healthz`` returns).

:func:`health_report` gathers the health of an Emitter, a Bus and ListenerManagers into
one JSON-ready dict: the overall status (the worst component's) and each component's
detail (queue depths, pending deliveries, breaker states, pending retries).

.. versionadded:: 0.3
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ("HEALTH_CODES", "health_report", "health_code", "component_kind", "serving_status")

#: Status name -> its rank (the overall status is the worst).
HEALTH_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2, "circuit-open": 3}


def health_code(status: Any) -> int:
    """The rank of a :class:`~nova.Health` (or its string value)."""
    return HEALTH_CODES[str(status)]


def serving_status(status: str) -> int:
    """The HTTP status of an overall health: 200 when healthy or degraded, else 503."""
    return 200 if HEALTH_CODES[status] <= 1 else 503


def component_kind(c: Any) -> str:
    """``"emitter"``, ``"bus"``, ``"manager"`` or ``"store"`` for a nova component."""
    from nova.bus import Bus
    from nova.emitter import Emitter
    from nova.listener import ListenerManager

    if isinstance(c, Emitter):
        return "emitter"
    if isinstance(c, Bus):
        return "bus"
    if isinstance(c, ListenerManager):
        return "manager"
    if callable(getattr(c, "window", None)) and callable(getattr(c, "append", None)):
        return "store"
    return "unknown"


def _emitter(em: Any) -> dict[str, Any]:
    s = em.stats()
    status = "unhealthy" if em.closed else "healthy"
    return {"name": em.name, "status": status, "closed": em.closed, "queued": s.queued,
            "emitted": s.emitted, "failed": s.failed, "dropped": s.dropped,
            "active_listeners": s.active_listeners}


def _bus(bus: Any) -> dict[str, Any]:
    s = bus.stats()
    status = "unhealthy" if bus.closed else ("degraded" if s.dead_lettered or s.failed else "healthy")
    return {"name": bus.name, "status": status, "closed": bus.closed, "topics": s.topics,
            "pending": s.pending, "published": s.published, "handled": s.handled,
            "failed": s.failed, "dead_lettered": s.dead_lettered, "retried": s.retried}


def _manager(mgr: Any) -> dict[str, Any]:
    listeners = {}
    for lid in mgr.listener_ids:
        try:
            m = mgr.get(lid)
        except LookupError:  # unregistered meanwhile
            continue
        br = m.breaker
        st = m.stats()
        listeners[lid] = {"status": str(m.health()), "breaker": None if br is None else str(br.state.value),
                          "pending_retries": st.pending, "failed": st.failed, "dead_lettered": st.dead_lettered}
    total = mgr.stats()
    return {"status": str(mgr.health()), "running": mgr.running, "pending_retries": total.pending,
            "listeners": listeners}


def health_report(*, emitter: Any = None, bus: Any = None, listeners: Any = None) -> dict[str, Any]:
    """``{"status": worst, "components": {name: detail}}`` for the given components.

    *emitter* and *bus* are one component or an iterable of them; *listeners* is a
    ListenerManager or an iterable of them.  Status values are those of
    :class:`~nova.Health` (``healthy``, ``degraded``, ``unhealthy``, ``circuit-open``);
    a closed emitter or bus is ``unhealthy``.
    """
    comps: dict[str, Any] = {}
    for kind, value, fn in (("emitter", emitter, _emitter), ("bus", bus, _bus), ("listeners", listeners, _manager)):
        for i, c in enumerate(_many(value)):
            name = getattr(c, "name", None) or str(i)
            key = f"{kind}:{name}"
            if key in comps:
                key = f"{key}#{i}"
            comps[key] = fn(c)
    worst = max((HEALTH_CODES[d["status"]] for d in comps.values()), default=0)
    status = next(k for k, v in HEALTH_CODES.items() if v == worst)
    return {"status": status, "components": comps}


def _many(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return (value,)
