"""The delivery loops of a plain sync handler with metrics off: the common case, kept
as tight loops (no per-event method calls beyond the handler).

Benchmark: ``asv_benchmarks/ratio_bus.py`` ("publish keyed/8 partitions -> 1 subscriber,
ALO" against a ``queue.Queue`` handoff, and "EXACTLY_ONCE cost per event" against
at-least-once); ``bench_bus.py`` ``time_publish_flush``.  Everything else goes through
:meth:`nova.bus.delivery.Delivery._deliver_general`, which these loops must match in
behaviour.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from nova.bus.dedup import own_id

if TYPE_CHECKING:
    from nova.bus.delivery import Delivery, Member
    from nova.transport.base import Consumer, Lane

__all__ = ("deliver_sync", "deliver_sync_dedup")

_ABANDONED = 2  # nova.bus.delivery.ABANDONED (not imported: delivery imports us)


def deliver_sync(slot: Delivery, lane: Lane, consumer: Consumer, m: Member, batch: deque[Any]) -> int:
    """:meth:`Delivery.deliver` for a sync handler, no dedup, no metrics."""
    handle = m.handle
    before = lane.failed + lane.dead
    i = 0
    for ev in batch:
        if lane.consumer is not consumer:
            break
        try:
            handle(ev)
        except BaseException as exc:  # noqa: BLE001 - see delivery.HANDLER_ERRORS
            if slot.failed(lane, consumer, m, ev, exc) == _ABANDONED:
                break
        i += 1
    lane.count_handled(i - (lane.failed + lane.dead - before))
    return i


def deliver_sync_dedup(slot: Delivery, lane: Lane, consumer: Consumer, m: Member, batch: deque[Any]) -> int:
    """:meth:`Delivery.deliver` for a sync handler of an ungrouped exactly-once
    subscriber with a count-only window (one thread: the window's sets are used
    without its lock), no metrics."""
    handle = m.handle
    dd = slot.dedup
    assert dd is not None
    cur, prev = dd.cur, dd.prev
    cap: int = dd.max_ids  # type: ignore[assignment]  # fast_dedup: a count-only window
    before = lane.failed + lane.dead
    dups = 0
    i = 0
    for ev in batch:
        if lane.consumer is not consumer:
            break
        eid = ev.id
        if type(eid) is not str:
            eid = own_id(eid)
        if eid in cur or eid in prev:
            dups += 1
            i += 1
            continue
        cur.add(eid)
        if len(cur) >= cap:
            dd.prev = prev = cur
            dd.cur = cur = set()
        try:
            handle(ev)
        except BaseException as exc:  # noqa: BLE001 - see delivery.HANDLER_ERRORS
            if slot.failed(lane, consumer, m, ev, exc) == _ABANDONED:
                dd.release(eid)
                break
        i += 1
    if dups:
        lane.count_dups(dups)
    lane.count_handled(i - dups - (lane.failed + lane.dead - before))
    return i
