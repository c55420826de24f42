"""The delivery side of :class:`~nova.transport.redis.RedisTransport`: lanes that hold
the entries fetched from one partition stream for one subscriber, and the delivery
threads that fetch, deliver and acknowledge them.

* A **lane** (:class:`RedisLane`) has a bounded local prefetch (``dq``: entry id,
  event), refilled from its stream by its owner: ``XREAD`` from the lane's
  read position for an ungrouped subscriber (fan-out: each sees every event),
  ``XREADGROUP`` for a consumer group (``NOACK`` for at-most-once: acknowledged
  when read, i.e. before handling).  A lane just acquired by the group member first
  re-reads the member's pending entries (id ``0`` onwards, after ``XAUTOCLAIM``).
* At most one consumer works on a lane at a time (``holder``, taken under the lane
  lock to deliver or fetch it), so the lane's order holds across local hand-offs.
* After the sink settled a prefix of a batch, the entries are acknowledged
  (``XACK``; for exactly-once, marked and acknowledged by one script, see
  :mod:`nova.transport.redis_groups`); the rest go back to the front of the lane.
  An acknowledgement that fails (server away) is kept and retried before the next
  fetch; nothing settled is forgotten.

.. versionadded:: 0.3
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from nova.bus.config import DeliveryMode
from nova.transport.base import Slot, ThreadConsumer
from nova.transport.base import Lane as BaseLane

if TYPE_CHECKING:
    from nova.transport.redis import RedisTopicLog, RedisTransport
    from nova.transport.redis_groups import GroupLease

__all__ = ("RedisLane", "RedisSlot", "RedisConsumer", "current_consumer", "offset_of")

_log = logging.getLogger("nova.bus")


def offset_of(entry_id: bytes) -> int:
    """The partition offset of stream entry id ``0-<offset + 1>``."""
    return int(entry_id.partition(b"-")[2]) - 1


class RedisLane(BaseLane):
    """The entries one subscriber has fetched and not yet settled from one partition."""

    __slots__ = ("slot", "sink", "key", "lock", "dq", "holder", "alive", "read_id", "fetched_upto",
                 "done_upto", "recover", "acks", "capacity")

    def __init__(self, slot: RedisSlot, index: int, key: str, capacity: int) -> None:
        super().__init__(index)
        self.slot = slot
        self.sink = slot.sink
        self.key = key
        self.lock = threading.Lock()
        self.dq: deque[tuple[bytes, Any]] = deque()  # (entry id, event)
        self.holder: RedisConsumer | None = None
        self.alive = True
        self.read_id = b"0-0"  # fan-out: the last entry read
        self.fetched_upto = -1  # offsets fetched into the lane / settled, for flush
        self.done_upto = -1
        self.recover: bytes | None = None  # group: our pending entries to re-read after this id
        self.acks: list[tuple[bytes, Any]] = []  # settled, not yet acknowledged
        self.capacity = capacity

    def __repr__(self) -> str:
        return f"<RedisLane {self.key} pending={self.pending()} alive={self.alive}>"


class RedisSlot(Slot):
    """One subscriber (ungrouped subscription or consumer group) of one topic in this
    process: one lane per partition; for a group, its lease on the server."""

    def __init__(self, log: RedisTopicLog, sink: Any, group: str | None, member: str) -> None:
        self.log = log
        self.sink = sink
        self.group = group
        self.rgroup = None if group is None else f"g:{group}"  # the Redis consumer group
        self.member = member
        topic = sink.topic
        mode = topic.delivery
        self.noack = group is not None and mode is DeliveryMode.AT_MOST_ONCE
        self.acking = group is not None and not self.noack
        self.eo = group is not None and mode is DeliveryMode.EXACTLY_ONCE
        age = topic.dedup.max_age
        self.dedup_ttl_ms = int(1000 * (age if age is not None else log.transport.dedup_ttl))
        self.mark_prefix = f"{log.transport.kp}:dd:{log.name}:{group}:"
        self.lanes: list[RedisLane] = [RedisLane(self, p, log.keys[p], log.capacity) for p in range(log.partitions)]
        self.consumers: list[Any] = []
        self.lease: GroupLease | None = None
        self.owned: set[int] = set()  # partitions this process owns (groups)
        self.revoking: set[int] = set()  # being given up: released once idle
        self.lease_until = float("inf")  # monotonic deadline of our lease (groups)
        self.alive = True
        self.step_lock = threading.Lock()  # one rebalance step (or the leave) at a time
        self.draining = False  # shutting down: finish what is held, fetch nothing more


#: The consumer whose delivery is running on this thread (None outside deliveries).
_current = threading.local()


def current_consumer() -> RedisConsumer | None:
    """The consumer delivering on the calling thread, if any (a handler is running)."""
    return getattr(_current, "consumer", None)


class RedisConsumer(ThreadConsumer):
    """A delivery thread: fetches the lanes it owns from the server, delivers them to
    their sinks and acknowledges what was settled (see the module docstring)."""

    _current = _current

    def __init__(self, transport: RedisTransport, owner: Any, name: str) -> None:
        self._init_control(transport, owner, name)
        self.owned: tuple[RedisLane, ...] = ()  # replaced whole under transport.lock
        self._wake = threading.Event()
        started = threading.Event()
        thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        thread.start()
        started.wait()

    # -- control (stop, join, run_coroutine: ThreadConsumer) --------------------------
    def _interrupt(self) -> None:
        self._wake.set()

    def wake(self) -> None:
        """Look at the lanes again now (ownership changed)."""
        self._wake.set()

    # -- the loop --------------------------------------------------------------------
    def _run(self, started: threading.Event) -> None:
        self.ident = threading.get_ident()
        _current.consumer = None
        started.set()
        backoff = 0.0
        errors = self.transport.net_errors
        try:
            while not self._stopped:
                try:
                    self._cycle()
                    backoff = 0.0
                except errors as exc:
                    if not backoff:
                        _log.warning("nova: consumer %s lost the Redis server (%s); retrying", self.name, exc)
                    backoff = min(1.0, max(0.05, backoff * 2))
                    self._stop.wait(backoff)
                    self._resync()
                except Exception:  # noqa: BLE001 - the thread must keep serving its lanes
                    _log.exception("nova: consumer %s failed a fetch/ack cycle; retrying", self.name)
                    self._stop.wait(0.1)
        finally:
            self._finish()

    def _resync(self) -> None:
        # A call failed: a read whose reply was lost left entries pending for us on the
        # server that never reached the lane (and a failed exactly-once check left a
        # batch out of it).  Re-read the group lanes from our pending list; what we
        # still hold locally is dropped first (it is in that list too), settled entries
        # waiting for their acknowledgement are skipped by the re-read.
        for lane in self.owned:
            if lane.slot.acking and self._hold(lane):
                try:
                    with lane.lock:
                        lane.enqueued -= len(lane.dq)
                        lane.dq.clear()
                        lane.recover = b"0-0"
                finally:
                    self._unhold(lane)

    def _hold(self, lane: RedisLane) -> bool:
        with lane.lock:
            if lane.holder is None and lane.consumer is self and lane.alive:
                lane.holder = self
                return True
            return False

    def _unhold(self, lane: RedisLane) -> None:
        with lane.lock:
            lane.holder = None
            c = lane.consumer
        if c is not None and c is not self:
            c.wake()

    def _cycle(self) -> None:
        lanes = self.owned
        if not lanes:
            self._wake.wait(0.1)
            self._wake.clear()
            return
        now = time.monotonic()
        worked = False
        for lane in lanes:
            if lane.acks and self._hold(lane):
                try:
                    self.transport.ack(lane)
                finally:
                    self._unhold(lane)
            if lane.dq and lane.slot.lease_until > now and self._hold(lane):
                try:
                    self._deliver(lane)
                    worked = True
                finally:
                    self._unhold(lane)
        fetch = [lane for lane in self.owned if len(lane.dq) < lane.capacity and not lane.acks
                 and not lane.slot.draining and lane.slot.lease_until > now and self._hold(lane)]
        if fetch:
            try:
                got = self.transport.fetch(fetch, block=not worked)
            finally:
                for lane in fetch:
                    self._unhold(lane)
            if not got and not worked:
                self._wake.clear()
        elif not worked:
            self._wake.wait(0.05)
            self._wake.clear()

    def _deliver(self, lane: RedisLane) -> None:
        with lane.lock:
            items = list(lane.dq)
            lane.dq.clear()
        slot = lane.slot
        t = self.transport
        if slot.eo:
            items = t.prefilter(lane, items)
            if not items:
                t.notify_progress()
                return
        n = len(items)
        done = n
        _current.consumer = self
        try:
            done = lane.sink.deliver(lane, self, [it[1] for it in items])
        finally:
            _current.consumer = None
            lane.settled += done
            if done:
                lane.done_upto = max(lane.done_upto, offset_of(items[done - 1][0]))
            if done < n:
                rest = items[done:]
                with lane.lock:
                    if lane.alive:
                        lane.dq.extendleft(reversed(rest))
                    else:
                        lane.discarded += len(rest)
            if done and slot.acking:
                lane.acks.extend(items[:done])
        if lane.acks:
            t.ack(lane)
        t.notify_progress()
