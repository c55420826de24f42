"""The delivery loops of a plain sync handler with metrics off: the common case, kept
as tight loops (no per-event method calls beyond the handler).

Benchmark: ``asv_benchmarks/ratio_bus.py`` ("publish keyed/8 partitions -> 1 subscriber,
ALO" against a ``queue.Queue`` handoff, and "EXACTLY_ONCE cost per event" against
at-least-once); ``bench_bus.py``.  Batches are often a few events, so the per-batch
cost counts too: :class:`FastDelivery` overrides ``deliver`` itself (one call per batch
from the transport).  Everything else goes through :meth:`Delivery.deliver
<nova.bus.delivery.Delivery.deliver>`, which these loops must match in behaviour.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections import deque
from typing import Any

from nova.bus.dedup import own_id
from nova.bus.delivery import ABANDONED, HANDLER_ERRORS, SYNC, Delivery, Member
from nova.transport.base import Consumer, Lane

__all__ = ("FastDelivery",)


class FastDelivery(Delivery):
    """A :class:`~nova.bus.delivery.Delivery` for a bus with metrics off: a sync
    handler without dedup, an ungrouped exactly-once subscriber with a count-only
    window (one thread: the window's sets are used without its lock), or any other
    exactly-once subscriber (the window's lock taken once per batch) runs the tight
    loops below; anything else takes the general path."""

    __slots__ = ()

    def deliver(self, lane: Lane, consumer: Consumer, batch: deque[Any]) -> int:
        """See :meth:`Delivery.deliver <nova.bus.delivery.Delivery.deliver>`."""
        m: Member = consumer.owner
        if m.kind != SYNC:
            return Delivery.deliver(self, lane, consumer, batch)
        handle = m.handle
        before = lane.failed + lane.dead
        i = 0
        dd = self.dedup
        if dd is None:
            for ev in batch:
                if lane.consumer is not consumer:
                    break
                try:
                    handle(ev)
                except HANDLER_ERRORS as exc:
                    if self.failed(lane, consumer, m, ev, exc) == ABANDONED:
                        break
                i += 1
            lane.count_handled(i - (lane.failed + lane.dead - before))
            return i
        if not self.fast_dedup:
            return self._deliver_claimed(lane, consumer, m, batch)
        cur, prev = dd.cur, dd.prev
        cap: int = dd.max_ids  # type: ignore[assignment]  # fast_dedup: a count-only window
        dups = 0
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
            except HANDLER_ERRORS as exc:
                if self.failed(lane, consumer, m, ev, exc) == ABANDONED:
                    dd.release(eid)
                    break
            i += 1
        if dups:
            lane.count_dups(dups)
        lane.count_handled(i - dups - (lane.failed + lane.dead - before))
        return i

    def _deliver_claimed(self, lane: Lane, consumer: Consumer, m: Member, batch: Any) -> int:
        # A group (or an age window): the window is shared with the other members, so
        # claims take its lock, once for the whole batch; ids claimed and not reached
        # (the lane changed owner, or a backoff was abandoned) are released.
        # Benchmark: ratio_bus_redis.py "exactly-once cost per event".
        dd = self.dedup
        assert dd is not None
        handle = m.handle
        before = lane.failed + lane.dead
        fresh = dd.claim_many([ev.id for ev in batch])
        i = dups = 0
        for ev in batch:
            if lane.consumer is not consumer:
                break
            if not fresh[i]:
                dups += 1
                i += 1
                continue
            try:
                handle(ev)
            except HANDLER_ERRORS as exc:
                if self.failed(lane, consumer, m, ev, exc) == ABANDONED:
                    break
            i += 1
        for k in range(i, len(fresh)):
            if fresh[k]:
                dd.release(batch[k].id)
        if dups:
            lane.count_dups(dups)
        lane.count_handled(i - dups - (lane.failed + lane.dead - before))
        return i
