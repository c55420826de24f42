"""The internal interface between :class:`nova.Bus` and where its partitions live.

The Bus facade (topics, subscriptions, groups, patterns, delivery modes) talks to a
transport only through the four abstract classes below, so another transport (Redis
Streams: a stream per partition, a consumer group per slot, ``XREADGROUP`` readers) can
be added without touching :mod:`nova.bus`'s public API.

Vocabulary:

* **log** (:class:`TopicLog`): one topic's partitions.  ``append(partition, event)``
  gives the event the next offset of that partition and hands it to every lane of the
  partition, atomically: all lanes of a partition see events in offset order.
* **slot** (:class:`Slot`): one subscriber of a topic, i.e. one ungrouped subscription
  or one consumer group.  It has one **lane** per partition; a lane is a bounded FIFO
  of the events that slot has still to process from that partition.
* **consumer** (:class:`Consumer`): one delivery thread (one subscription, or one
  member of a group).  It drains the lanes assigned to it, one lane at a time, and
  passes batches to the lane's **sink** (the Bus):
  ``sink.deliver(lane, consumer, batch) -> int`` returns how many events of the batch
  it settled (handled, failed, dead-lettered or skipped as duplicates); the rest go back
  to the front of the lane, for the lane's owner at that moment.
* a lane has exactly one owner consumer at a time (:meth:`Transport.assign`); a sink
  stops early when ``lane.consumer is not consumer`` (ownership moved or the bus stops).
* a sink has the attributes ``group`` (the consumer group, ``None`` for an ungrouped
  subscription) and ``topic`` (the Bus's topic record: ``name``, ``partitions``,
  ``delivery``, ``dedup``, ``dead_letter``), which a transport may read.

Hooks with a default a transport may override (the in-process transport keeps the
defaults): :meth:`Transport.declare_topic` (a topic's settings shared with other
processes: first creator wins), :meth:`TopicLog.append_many` (a batch of appends),
:meth:`Transport.rebalance` (a group's members changed), :meth:`Transport.drain`
(what ``shutdown`` waits for), :meth:`Transport.dead_letter_store` (where a topic's
dead letters go when its config names no store) and :attr:`Transport.blocking_io`
(appends do network I/O: ``apublish`` runs them on a worker thread).

Accounting per lane (:class:`Lane`, read by the Bus for ``stats()`` and ``flush()``
through :meth:`Lane.counts`): the transport counts ``enqueued``, ``evicted`` (overflow
``drop_oldest``), ``discarded`` (lane removed with events in it), ``dropped``
(``drop_newest`` refusals) and ``settled`` (by the sink), and
``pending() = enqueued - evicted - discarded - settled``.  The sink records what became
of the events it settled (handled, failed, dead-lettered, duplicates, retries, hook and
dead-letter sink errors) with the ``count_*`` methods, on the lane owner's thread only,
so no lock is needed.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ("Transport", "TopicLog", "Slot", "Lane", "LaneCounts", "Consumer", "ThreadConsumer", "OVERFLOW_POLICIES")

#: Overflow policies a transport accepts when a lane is full.
OVERFLOW_POLICIES = ("block", "error", "drop_newest", "drop_oldest")


class Consumer(abc.ABC):
    """One delivery thread.  ``owner`` is whatever the Bus attached (its subscription
    record); ``ident`` is the thread id once started."""

    owner: Any
    ident: int | None

    @property
    @abc.abstractmethod
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask the thread to exit once the lanes queued to it are handed back.  Also wakes
        a backoff sleep done through :meth:`wait_stop`.  Idempotent."""

    @abc.abstractmethod
    def wait_stop(self, seconds: float) -> bool:
        """Sleep up to *seconds* (real time); return True at once if :meth:`stop` was
        called (before or during)."""

    @abc.abstractmethod
    def run_coroutine(self, coro: Any) -> Any:
        """Run *coro* to completion on this consumer's own event loop and return its
        result (raises what it raises)."""

    @abc.abstractmethod
    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True if it ended."""


class ThreadConsumer(Consumer):
    """The control half every consumer of this process shares (in-process and Redis):
    the stop flag and its wake-up, the private event loop that runs coroutine handlers,
    :meth:`join` and the exit path.

    A subclass calls :meth:`_init_control` in ``__init__``, sets ``_current`` (a
    ``threading.local`` whose ``consumer`` is the consumer delivering on that thread),
    implements :meth:`_interrupt` (wake its loop so that it sees :meth:`stop`) and
    calls :meth:`_finish` once its loop has ended.
    """

    _current: threading.local
    transport: Any
    name: str

    def _init_control(self, transport: Any, owner: Any, name: str) -> None:
        self.transport = transport
        self.owner = owner
        self.name = name
        self._stop = threading.Event()
        self._done = threading.Event()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ident = None

    @abc.abstractmethod
    def _interrupt(self) -> None:
        """Wake the delivery loop so that it notices :meth:`stop`."""

    def stop(self) -> None:
        """See :meth:`Consumer.stop`."""
        if not self._stopped:
            self._stopped = True
            self._stop.set()
            self._interrupt()

    def wait_stop(self, seconds: float) -> bool:
        """See :meth:`Consumer.wait_stop`."""
        return self._stop.wait(seconds)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopped

    def join(self, timeout: float | None = None) -> bool:
        """See :meth:`Consumer.join` (from a handler of this consumer: whether it ended,
        without waiting for itself)."""
        current: Consumer | None = getattr(self._current, "consumer", None)
        if current is self:
            return self._done.is_set()
        return self._done.wait(timeout)

    def run_coroutine(self, coro: Any) -> Any:
        """See :meth:`Consumer.run_coroutine`."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)

    def _finish(self) -> None:
        """The loop ended: close the private event loop, mark the consumer done and
        wake whoever waits for the transport's progress."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        self._done.set()
        self.transport.notify_progress()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} running={not self._done.is_set()}>"


class LaneCounts(NamedTuple):
    """A snapshot of one lane's counters (see the module docstring); summed by the Bus
    into :class:`~nova.BusStats`."""

    enqueued: int
    evicted: int
    discarded: int
    dropped: int
    settled: int
    handled: int
    failed: int
    dead: int
    dups: int
    retried: int
    hook_errors: int
    dl_errors: int


class Lane(abc.ABC):
    """The events one slot has still to process from one partition, and its counters.

    ``index`` is the partition; ``consumer`` the owner at this moment (``None``:
    nobody, events wait).  The transport counts what enters and leaves the lane; the
    sink records outcomes with the ``count_*`` methods, only on the thread of the
    consumer delivering the lane's batch (one writer: no lock).
    """

    __slots__ = (
        "index",
        "consumer",
        "enqueued",
        "evicted",
        "discarded",
        "dropped",
        "settled",
        "handled",
        "failed",
        "dead",
        "dups",
        "retried",
        "hook_errors",
        "dl_errors",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.consumer: Any = None
        # counted by the transport
        self.enqueued = 0
        self.evicted = 0
        self.discarded = 0
        self.dropped = 0  # drop_newest: never enqueued, counted here
        self.settled = 0
        # recorded by the sink, on the owning consumer's thread
        self.handled = 0
        self.failed = 0
        self.dead = 0
        self.dups = 0
        self.retried = 0
        self.hook_errors = 0
        self.dl_errors = 0

    def pending(self) -> int:
        """Events enqueued and not yet resolved (waiting or in flight)."""
        return self.enqueued - self.evicted - self.discarded - self.settled

    def resolved(self) -> int:
        """Events resolved: settled by the sink, evicted or discarded."""
        return self.settled + self.evicted + self.discarded

    def counts(self) -> LaneCounts:
        """The counters now (each read is atomic; the whole is a snapshot)."""
        return LaneCounts(
            self.enqueued,
            self.evicted,
            self.discarded,
            self.dropped,
            self.settled,
            self.handled,
            self.failed,
            self.dead,
            self.dups,
            self.retried,
            self.hook_errors,
            self.dl_errors,
        )

    def count_handled(self, n: int = 1) -> None:
        """Record *n* events handled."""
        self.handled += n

    def count_failed(self) -> None:
        """Record an event failed and not retried (at-most-once)."""
        self.failed += 1

    def count_dead(self) -> None:
        """Record an event dead-lettered."""
        self.dead += 1

    def count_dups(self, n: int = 1) -> None:
        """Record *n* events skipped as duplicates."""
        self.dups += n

    def count_retry(self) -> None:
        """Record a retry call about to be made."""
        self.retried += 1

    def count_hook_error(self) -> None:
        """Record an error hook, metric or ``retry_if`` predicate that raised."""
        self.hook_errors += 1

    def count_dl_errors(self, n: int) -> None:
        """Record *n* dead-letter sinks (handler, store) that raised."""
        self.dl_errors += n


class Slot(abc.ABC):
    """One subscriber (subscription or group) of one topic: one lane per partition."""

    lanes: Sequence[Lane]
    sink: Any


class TopicLog(abc.ABC):
    """The partitions of one topic."""

    name: str
    partitions: int
    #: ``on_drop(reason, n)``: called when the overflow policy drops *n* events
    #: (``reason`` ``"drop_newest"`` or ``"drop_oldest"``); set by the Bus, ``None``
    #: for no callback.  It may be called with a partition lock held: keep it short.
    on_drop: Callable[[str, int], Any] | None = None

    @abc.abstractmethod
    def append(self, partition: int, event: Any, timeout: float | None) -> int:
        """Append *event* to *partition* and to each of its lanes; return its offset.
        A full lane is handled by the log's overflow policy (see :meth:`Transport.open_topic`).

        Raises:
            BufferFull: a lane is full and the overflow is ``"error"`` (or blocking would
                deadlock: the caller is that lane's own consumer).
            Timeout: the overflow is ``"block"`` and no room came within *timeout*.
            BusClosed: the log was closed.
        """

    @abc.abstractmethod
    def close(self, deleted: bool = False) -> None:
        """Refuse appends from now on: an append racing with this call either completes
        (its event is in the lanes) or raises :class:`~nova.errors.BusClosed`
        (:class:`~nova.errors.TopicNotFound` when *deleted*).  Appends to a partition
        without lanes (nobody to deliver to) may still be counted."""

    @abc.abstractmethod
    def offsets(self) -> list[int]:
        """The next offset of each partition (= events appended so far)."""

    def append_many(self, partitions: Sequence[int], events: Sequence[Any], timeout: float | None) -> list[int]:
        """Append ``events[i]`` to ``partitions[i]`` for each *i*, in order; return their
        offsets.  The default calls :meth:`append` for each; a transport may batch
        (*timeout* bounds the whole call).  On an error, the events before the failing
        one stay appended.

        .. versionadded:: 0.3
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for p, ev in zip(partitions, events):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(self.append(p, ev, remaining))
        return out


class Transport(abc.ABC):
    """Where a Bus's partitions and delivery threads live."""

    #: True when an append does network I/O (``Bus.apublish`` then runs it on a
    #: worker thread, so the event loop never waits for the server).
    blocking_io: bool = False

    def declare_topic(self, name: str, settings: dict[str, Any], explicit: bool) -> dict[str, Any]:
        """Record (or check) the settings of topic *name* where other processes see
        them, before :meth:`open_topic`.  *settings* has ``partitions``, ``delivery``
        (the mode's value) and ``dedup_age`` (seconds or ``None``).  Returns the
        settings to use: the recorded ones when the topic exists elsewhere (an
        *explicit* ``create_topic`` whose settings differ raises
        :class:`~nova.errors.TopicExists`).  The default records nothing and returns
        *settings*.

        .. versionadded:: 0.3
        """
        return settings

    def dead_letter_store(self, topic: str) -> Any:
        """The EventStore dead letters of *topic* go to when its ``DeadLetterConfig``
        names none (``None``: only counted and logged, the default).

        .. versionadded:: 0.3
        """
        return None

    def rebalance(self, slot: Slot, consumers: list[Consumer]) -> None:
        """The members of a consumer group's *slot* in this bus changed to *consumers*
        (in join order; not empty).  The default gives lane *p* to
        ``consumers[p % len(consumers)]`` with :meth:`assign`.

        .. versionadded:: 0.3
        """
        for lane in slot.lanes:
            self.assign(lane, consumers[lane.index % len(consumers)])

    def drain(self, lanes: Sequence[Lane], timeout: float | None) -> bool:
        """Wait, during ``Bus.shutdown``, until what this bus accepted for *lanes* is
        resolved (the default: every event enqueued so far, as :meth:`wait_settled`).

        .. versionadded:: 0.3
        """
        return self.wait_settled([(lane, lane.enqueued) for lane in lanes], timeout)

    @abc.abstractmethod
    def open_topic(self, name: str, partitions: int, capacity: int, overflow: str) -> TopicLog:
        """Create the log of a new topic (*capacity* = max events waiting per lane;
        *overflow* one of :data:`OVERFLOW_POLICIES`, applied when a lane is full)."""

    @abc.abstractmethod
    def close_topic(self, log: TopicLog) -> None:
        """Forget a topic's log (its slots must have been removed first)."""

    @abc.abstractmethod
    def add_slot(self, log: TopicLog, sink: Any, consumers: list[Consumer]) -> Slot:
        """Attach a new subscriber to *log*: lane *p* is owned by
        ``consumers[p % len(consumers)]``.  Only events appended afterwards reach it."""

    @abc.abstractmethod
    def remove_slot(self, slot: Slot) -> int:
        """Detach *slot*; events still waiting in its lanes are discarded and counted in
        the lanes' ``discarded``.  Returns how many were discarded now."""

    @abc.abstractmethod
    def assign(self, lane: Lane, consumer: Consumer | None) -> None:
        """Make *consumer* the owner of *lane* (None: nobody; events wait)."""

    @abc.abstractmethod
    def new_consumer(self, owner: Any, name: str) -> Consumer:
        """Start a delivery thread for *owner*."""

    @abc.abstractmethod
    def wait_settled(self, targets: Iterable[tuple[Lane, int]], timeout: float | None) -> bool:
        """Block until every ``(lane, n)`` has its first *n* events resolved (settled,
        evicted or discarded), or *timeout* passes.  Returns whether they all were.
        A transport whose partitions are shared with other processes may instead wait
        for each lane to be resolved up to its partition's end at the time of the call
        (the counts only know this process's fetches)."""

    @abc.abstractmethod
    def notify_progress(self) -> None:
        """Wake :meth:`wait_settled` callers (after lanes changed state)."""

    @abc.abstractmethod
    def in_delivery(self) -> bool:
        """True if the calling thread is one of this transport's consumers delivering
        a batch (a handler is running): waiting for the bus from there would wait for
        itself."""

    @abc.abstractmethod
    def close(self, consumers: Iterable[Consumer], timeout: float | None) -> bool:
        """Stop *consumers* and wait for their threads; True if they all ended."""

    @staticmethod
    def stop_consumers(consumers: Iterable[Consumer], timeout: float | None) -> bool:
        """Stop every consumer of *consumers*, then wait for each to end, all within one
        *timeout* (``None``: no limit); True if they all ended.  The first step of
        :meth:`close` in every transport."""
        cs = list(consumers)
        for c in cs:
            c.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for c in cs:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = c.join(remaining) and ok
        return ok
