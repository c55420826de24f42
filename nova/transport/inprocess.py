"""The in-process transport: partitions, lanes and delivery threads in this process.

Design (see :mod:`nova.transport.base` for the vocabulary):

* Each partition has a lock.  ``append`` takes it, gives the event the next offset and
  appends it to the ``deque`` of every lane of the partition, so every subscriber sees
  a partition in offset order.  The lock already serialises producers of a partition,
  so the lanes are plain deques (a second, per-queue lock would only add cost); the
  bound (``capacity``) is enforced under that lock with the overflow policy.
* A lane that goes from idle to having work is put once into its owner consumer's
  *doorbell* (a :class:`queue.SimpleQueue` of lanes).  The consumer takes a lane, swaps
  its deque for an empty one under the partition lock (a whole batch at once), hands
  the batch to the sink, and re-queues the lane at the back of its doorbell if more
  came meanwhile (round robin across its lanes).  A lane is in at most one doorbell at
  a time, so at most one thread works on a lane: per-lane order holds.
* Ownership moves (group rebalancing, unsubscribe, shutdown) by changing
  ``lane.consumer`` under the partition lock; the old owner notices before its next
  event, puts the rest of its batch back at the front of the lane and forwards the lane
  to the new owner's doorbell.

.. versionadded:: 0.1
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable
from itertools import islice
from queue import SimpleQueue
from typing import Any

from nova._util.counters import count_value
from nova.errors import BufferFull, BusClosed, ClosedError, Timeout, TopicNotFound
from nova.transport.base import Consumer, Slot, ThreadConsumer, TopicLog, Transport
from nova.transport.base import Lane as BaseLane

__all__ = (
    "InProcessTransport",
    "InProcessTopicLog",
    "Lane",
    "InProcessSlot",
    "InProcessConsumer",
    "current_consumer",
)


class Lane(BaseLane):
    """The events one slot has still to process from one partition (see the module doc)."""

    __slots__ = ("partition", "slot", "sink", "dq", "capacity", "scheduled", "alive")

    def __init__(self, partition: _Partition, slot: InProcessSlot, capacity: int) -> None:
        super().__init__(partition.index)
        self.partition = partition
        self.slot = slot
        self.sink = slot.sink
        self.dq: deque[Any] = deque()
        self.capacity = capacity
        self.scheduled = False
        self.alive = True

    def __repr__(self) -> str:
        return f"<Lane partition={self.index} pending={self.pending()} alive={self.alive}>"


class _Partition:
    __slots__ = ("index", "lock", "cond", "lanes", "counter", "waiting", "log")

    def __init__(self, log: InProcessTopicLog, index: int) -> None:
        self.log = log
        self.index = index
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.lanes: tuple[Lane, ...] = ()
        self.counter = itertools.count()  # the next offset
        self.waiting = 0


def _schedule(lane: Lane) -> None:
    # Caller holds the partition lock.
    if not lane.scheduled:
        c = lane.consumer
        if c is not None:
            lane.scheduled = True
            c.doorbell.put(lane)


class InProcessTopicLog(TopicLog):
    """The partitions of one topic, in memory."""

    def __init__(self, name: str, partitions: int, capacity: int, overflow: str = "block") -> None:
        self.name = name
        self.partitions = partitions
        self.capacity = capacity
        self.overflow = overflow
        self.parts = [_Partition(self, i) for i in range(partitions)]
        self.closed = False
        self.deleted = False
        self.on_drop = None  # see TopicLog.on_drop; called under the partition lock

    def _closed_error(self) -> Exception:
        if self.deleted:
            return TopicNotFound(f"Expected an existing topic, got {self.name!r} deleted while publishing")
        return BusClosed(f"Expected an open bus, got topic {self.name!r} closed for publishing")

    def close(self, deleted: bool = False) -> None:
        """See :meth:`TopicLog.close`."""
        for part in self.parts:
            with part.lock:
                self.closed = True
                self.deleted = self.deleted or deleted
                if part.waiting:
                    part.cond.notify_all()

    def append(self, partition: int, event: Any, timeout: float | None) -> int:
        """See :meth:`TopicLog.append`."""
        part = self.parts[partition]
        if not part.lanes:
            # Nobody to deliver to: only the offset (itertools.count is atomic).
            return next(part.counter)
        with part.lock:
            if self.closed:
                raise self._closed_error()
            lanes = part.lanes
            if len(lanes) == 1:  # one subscriber: inline (benchmark: ratio_bus.py "publish keyed/8 partitions")
                lane = lanes[0]
                dq = lane.dq
                if len(dq) < lane.capacity:
                    dq.append(event)
                    lane.enqueued += 1
                    if not lane.scheduled:
                        c = lane.consumer
                        if c is not None:
                            lane.scheduled = True
                            c.doorbell.put(lane)
                    return next(part.counter)
            skip: tuple[Lane, ...] = ()
            for lane in lanes:
                if len(lane.dq) >= lane.capacity:
                    skip = self._make_room(part, self.overflow, timeout)
                    lanes = part.lanes
                    break
            off = next(part.counter)
            for lane in lanes:
                if skip and lane in skip:
                    lane.dropped += 1
                    continue
                lane.dq.append(event)
                lane.enqueued += 1
                _schedule(lane)
            return off

    def _make_room(self, part: _Partition, overflow: str, timeout: float | None) -> tuple[Lane, ...]:
        # Caller holds part.lock; some lane is full.
        if overflow == "drop_newest":
            skipped = tuple(lane for lane in part.lanes if len(lane.dq) >= lane.capacity)
            if self.on_drop is not None:
                self.on_drop("drop_newest", len(skipped))
            return skipped
        if overflow == "drop_oldest":
            n = 0
            for lane in part.lanes:
                while len(lane.dq) >= lane.capacity:
                    lane.dq.popleft()
                    lane.evicted += 1
                    n += 1
            if self.on_drop is not None:
                self.on_drop("drop_oldest", n)
            return ()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            full = [lane for lane in part.lanes if len(lane.dq) >= lane.capacity]
            if not full:
                return ()
            lane = full[0]
            if overflow == "error":
                raise BufferFull(
                    f"Expected room in topic {self.name!r} partition {part.index}, got a full "
                    f"subscriber buffer ({lane.capacity} events) with overflow='error'"
                )
            c = lane.consumer
            if c is not None and current_consumer() is c:
                raise BufferFull(
                    f"Expected room in topic {self.name!r} partition {part.index}, got a full "
                    "buffer of the subscriber whose own handler is publishing (waiting would deadlock)"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Timeout(
                    f"Expected room in topic {self.name!r} partition {part.index} within "
                    f"{timeout} s, got a subscriber buffer still full ({lane.capacity} events)"
                )
            part.waiting += 1
            try:
                part.cond.wait(remaining)
            finally:
                part.waiting -= 1
            if self.closed:
                raise self._closed_error()

    def offsets(self) -> list[int]:
        """See :meth:`TopicLog.offsets`."""
        return [count_value(p.counter) for p in self.parts]


class InProcessSlot(Slot):
    """One subscriber of one topic: its lanes, one per partition."""

    def __init__(self, log: InProcessTopicLog, sink: Any) -> None:
        self.log = log
        self.sink = sink
        self.lanes: list[Lane] = [Lane(p, self, log.capacity) for p in log.parts]


#: The consumer whose delivery is running on this thread (None outside deliveries).
_current = threading.local()


def current_consumer() -> InProcessConsumer | None:
    """The consumer delivering on the calling thread, if any (a handler is running)."""
    return getattr(_current, "consumer", None)


class _PoolDoorbell:
    """A consumer's lane queue when it runs on a worker pool: the first lane queued
    while the consumer is idle submits one drain task; a consumer never has two tasks
    at once, so it stays serial like a thread."""

    __slots__ = ("consumer", "q", "lock", "running")

    def __init__(self, consumer: InProcessConsumer) -> None:
        self.consumer = consumer
        self.q: deque[Lane | None] = deque()
        self.lock = threading.Lock()
        self.running = False

    def put(self, lane: Lane | None) -> None:
        with self.lock:
            self.q.append(lane)
            if self.running:
                return
            self.running = True
        self.consumer.transport._submit(self.consumer._pool_task)


class InProcessConsumer(ThreadConsumer):
    """A delivery loop draining the lanes it owns (see the module docstring): on its own
    daemon thread, or as a series of drain tasks on a worker pool."""

    #: lanes a pool task serves before yielding its worker to other consumers
    POOL_BUDGET = 16

    _current = _current

    def __init__(self, transport: InProcessTransport, owner: Any, name: str, pool: Any = None) -> None:
        self._init_control(transport, owner, name)
        self.doorbell: Any
        if pool is None:
            self.doorbell = SimpleQueue()
            started = threading.Event()
            thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
            thread.start()
            started.wait()
        else:
            self.doorbell = _PoolDoorbell(self)

    # -- control (stop, join, run_coroutine: ThreadConsumer) --------------------------
    def _interrupt(self) -> None:
        self.doorbell.put(None)

    # -- the loop --------------------------------------------------------------------
    def _run(self, started: threading.Event) -> None:
        self.ident = threading.get_ident()
        _current.consumer = None
        started.set()
        get = self.doorbell.get
        serve = self._serve
        try:
            while True:
                lane = get()
                if lane is None:
                    return
                serve(lane)
        finally:
            self._finish()

    def _pool_task(self) -> None:
        bell: _PoolDoorbell = self.doorbell
        self.ident = threading.get_ident()
        try:
            for _ in range(self.POOL_BUDGET):
                with bell.lock:
                    if not bell.q:
                        bell.running = False
                        return
                    lane = bell.q.popleft()
                if lane is None:
                    with bell.lock:
                        bell.running = False
                    self._finish()
                    return
                self._serve(lane)
            with bell.lock:
                if not bell.q:
                    bell.running = False
                    return
            self.transport._submit(self._pool_task)  # yield the worker, keep our turn
        finally:
            self.ident = None

    def _serve(self, lane: Lane) -> None:
        part = lane.partition
        with part.lock:
            if lane.consumer is not self or not lane.alive:
                self._forward(lane)
                return
            batch = lane.dq
            if not batch:
                lane.scheduled = False
                return
            lane.dq = deque()
            if part.waiting:
                part.cond.notify_all()
        n = len(batch)
        done = n
        _current.consumer = self
        try:
            done = lane.sink.deliver(lane, self, batch)
        finally:
            _current.consumer = None
            lane.settled += done
            with part.lock:
                if done < n:
                    rest = list(islice(batch, done, None))
                    if lane.alive:
                        lane.dq.extendleft(reversed(rest))
                    else:
                        lane.discarded += len(rest)
                if lane.alive and lane.dq:
                    c = lane.consumer
                    if c is not None:
                        c.doorbell.put(lane)  # stays scheduled (self: back of the line)
                    else:
                        lane.scheduled = False
                else:
                    lane.scheduled = False
            if self.transport._waiters:
                self.transport.notify_progress()

    def _forward(self, lane: Lane) -> None:
        # Caller holds the partition lock; this consumer no longer owns *lane*.
        c = lane.consumer
        if lane.alive and c is not None and lane.dq:
            c.doorbell.put(lane)
        else:
            lane.scheduled = False


def _run_on_thread(task: Any) -> None:
    threading.Thread(target=task, name="nova-bus-drain", daemon=True).start()


class InProcessTransport(Transport):
    """The default transport: everything in this process (see the module docstring)."""

    def __init__(self, pool: Any = None) -> None:
        self._cond = threading.Condition()
        self._waiters = 0
        self.pool = pool
        self._kicks: SimpleQueue[Any] | None = None
        self._kicker: threading.Thread | None = None
        self._kick_lock = threading.Lock()

    def _submit(self, task: Any) -> None:
        """Run *task* on the pool.  Callers may hold a partition lock, so this never
        waits: when the pool's queue is full, a helper thread does the waiting submit.
        When the pool was closed under the bus (its owner closed it, or its exit hook
        ran first), the task runs on a daemon thread of its own instead: the bus still
        delivers what it accepted and stops its consumers (a consumer never has two
        tasks at once, so this is at most one thread per consumer at a time)."""
        try:
            fut = self.pool.try_submit(task)
        except ClosedError:
            _run_on_thread(task)
            return
        if fut is not None:
            return
        with self._kick_lock:
            if self._kicker is None:
                self._kicks = SimpleQueue()
                self._kicker = threading.Thread(target=self._kick_loop, name="nova-bus-kicker", daemon=True)
                self._kicker.start()
            assert self._kicks is not None
            self._kicks.put(task)

    def _kick_loop(self) -> None:
        assert self._kicks is not None
        while True:
            task = self._kicks.get()
            if task is None:
                return
            try:
                self.pool.submit(task)
            except ClosedError:  # closed while we waited for room: see _submit
                _run_on_thread(task)

    def open_topic(self, name: str, partitions: int, capacity: int, overflow: str) -> InProcessTopicLog:
        """See :meth:`Transport.open_topic`."""
        return InProcessTopicLog(name, partitions, capacity, overflow)

    def close_topic(self, log: TopicLog) -> None:
        """See :meth:`Transport.close_topic`."""
        assert isinstance(log, InProcessTopicLog)
        for part in log.parts:
            with part.lock:
                if part.lanes:
                    raise RuntimeError(f"topic {log.name!r} still has subscribers")
        self.notify_progress()

    def add_slot(self, log: TopicLog, sink: Any, consumers: list[Consumer]) -> InProcessSlot:
        """See :meth:`Transport.add_slot`."""
        assert isinstance(log, InProcessTopicLog)
        slot = InProcessSlot(log, sink)
        for lane in slot.lanes:
            part = lane.partition
            with part.lock:
                owner = consumers[lane.index % len(consumers)] if consumers else None
                lane.consumer = owner
                part.lanes = part.lanes + (lane,)
        return slot

    def remove_slot(self, slot: Slot) -> int:
        """See :meth:`Transport.remove_slot`."""
        assert isinstance(slot, InProcessSlot)
        total = 0
        for lane in slot.lanes:
            part = lane.partition
            with part.lock:
                if not lane.alive:
                    continue
                lane.alive = False
                part.lanes = tuple(x for x in part.lanes if x is not lane)
                n = len(lane.dq)
                lane.dq.clear()
                lane.discarded += n
                total += n
                lane.consumer = None
                if part.waiting:
                    part.cond.notify_all()
        self.notify_progress()
        return total

    def assign(self, lane: BaseLane, consumer: Consumer | None) -> None:
        """See :meth:`Transport.assign`."""
        assert isinstance(lane, Lane)
        part = lane.partition
        with part.lock:
            if lane.consumer is consumer:
                return
            lane.consumer = consumer
            if lane.alive and consumer is not None and lane.dq and not lane.scheduled:
                _schedule(lane)
            # When scheduled, the lane sits in the old owner's doorbell or is being
            # processed there; that owner forwards it (see InProcessConsumer._run).

    def in_delivery(self) -> bool:
        """See :meth:`Transport.in_delivery`."""
        c = current_consumer()
        return c is not None and c.transport is self

    def new_consumer(self, owner: Any, name: str) -> InProcessConsumer:
        """See :meth:`Transport.new_consumer`."""
        return InProcessConsumer(self, owner, name, self.pool)

    def notify_progress(self) -> None:
        """See :meth:`Transport.notify_progress`."""
        with self._cond:
            self._cond.notify_all()

    def wait_settled(self, targets: Iterable[tuple[BaseLane, int]], timeout: float | None) -> bool:
        """See :meth:`Transport.wait_settled`."""
        todo = [(lane, n) for lane, n in targets if lane.resolved() < n]
        if not todo:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            try:
                while True:
                    todo = [(lane, n) for lane, n in todo if lane.resolved() < n]
                    if not todo:
                        return True
                    if deadline is None:
                        self._cond.wait(0.05)  # re-checks also catch lanes resolved off-thread
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        self._cond.wait(min(remaining, 0.05))
            finally:
                self._waiters -= 1

    def close(self, consumers: Iterable[Consumer], timeout: float | None) -> bool:
        """See :meth:`Transport.close`."""
        ok = self.stop_consumers(consumers, timeout)
        with self._kick_lock:
            if self._kicker is not None and self._kicks is not None:
                self._kicks.put(None)
                self._kicker = None
        return ok
