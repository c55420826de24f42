"""The Redis Streams transport: a :class:`~nova.Bus` whose partitions live on a Redis
or Valkey server, shared by the publishers and subscribers of many processes.

``Bus(transport=RedisTransport(url, prefix="nova"))``; the Bus API is unchanged.

* **Topics.** A topic's settings (partitions, delivery mode, dedup age) are recorded
  in ``{prefix}:bus:topic:<name>`` by the first process that creates it; a process
  that auto-creates the topic (``publish``/``subscribe``) takes them; an explicit
  ``create_topic`` with other settings raises :class:`~nova.errors.TopicExists`.
* **Partitions.** Partition *p* is stream ``{prefix}:bus:t:<topic>:<p>``.  A publisher
  computes *p* itself (Kafka's murmur2, as in-process) and appends with
  ``XADD <key> 0-* e <entry>``: the server gives the entry id ``0-<n>``, so the
  entry's offset in its partition is ``n - 1``, unique and contiguous across every
  process, and that is :attr:`PublishReceipt.offset <nova.PublishReceipt>`.
  ``publish_many`` pipelines its appends in batches.
* **Subscribers.** An ungrouped subscription reads every partition with ``XREAD``
  from the end it found when it subscribed (fan-out: each subscription of each
  process sees every event).  A consumer group is a Redis consumer group per
  partition stream; inside it each partition has one owner process at a time
  (leases, :mod:`nova.transport.redis_groups`), which reads it with ``XREADGROUP``
  and acknowledges (``XACK``) after the outcome (at-most-once: ``NOACK``, i.e.
  before handling; exactly-once: mark the event id and acknowledge in one script).
  Inside a process, the partitions it owns are spread over the group's local
  members as in-process (``p % members``).
* **Dead letters** of a topic whose ``DeadLetterConfig`` names no store go to a
  :class:`~nova.store.RedisStore` of their own (prefix ``<prefix>.dl.<topic>``,
  stream ``"nova.deadletter"``): ``bus.redrive(transport.dead_letter_store(topic))``.

The connection, URL checks and error translation are RedisStore's
(:mod:`nova.store.redis_connection`); entries are encoded by
:mod:`nova.transport.redis_codec`; the delivery threads are in
:mod:`nova.transport.redis_consumer`.  Size: :class:`RedisTransport` is over ~400
lines only by the whole Transport interface for one server with its docstrings; reads,
group leases, consumer threads, the topic log and the codec are the sibling modules.

.. versionadded:: 0.3
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from nova.errors import StoreUnavailable, TopicExists, ValidationError, type_name
from nova.store.codecs import get_codec
from nova.store.redis_connection import RedisConnection, import_redis
from nova.transport.base import Consumer, Lane, Slot, TopicLog, Transport
from nova.transport.redis_codec import EntryCodec
from nova.transport.redis_consumer import RedisConsumer, RedisLane, RedisSlot, current_consumer, offset_of
from nova.transport.redis_groups import MARK_ACK, MARKED, STEP, Coordinator, GroupLease
from nova.transport.redis_log import DeadLetterStore, RedisTopicLog
from nova.transport.redis_reads import Reads, as_is

__all__ = ("RedisTransport", "RedisTopicLog")

#: Claim every pending entry of a group's stream for the caller (a new owner).
CLAIM_ALL = """
local cur, n = '0-0', 0
repeat
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, cur, 'COUNT', 1000, 'JUSTID')
  cur = r[1]
  n = n + #r[2]
until cur == '0-0'
return n
"""


class RedisTransport(Reads, RedisConnection, Transport):
    """Partitions on Redis Streams (see the module docstring).

    (Reads and acknowledgements: :class:`~nova.transport.redis_reads.Reads`; the
    topic log: :mod:`~nova.transport.redis_log`.)

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL (ignored with *client*).
        client: a ``redis.Redis`` of your own (``decode_responses=False``).
        prefix: the keys' prefix: every key starts with ``{prefix}:bus:`` (one Redis
            Cluster hash slot per prefix).  Buses with the same server and prefix share
            topics.
        codec: the payload codec (``"json"`` by default, ``"msgpack"``, ``"pickle"``
            by name, or an object with ``encode``/``decode``); every process of a
            prefix must use the same.
        timeout: socket timeout of every call (seconds).
        retries: reconnection attempts of a call (exponential backoff, 50 ms to 1 s)
            before :class:`~nova.errors.StoreUnavailable`.
        session_timeout: a group member that has not renewed its lease for this long
            (it died, hung or lost the server) loses its partitions to the others.
        heartbeat: seconds between lease renewals / rebalance steps (default
            ``session_timeout / 5``).
        block: longest wait of one blocking read (seconds); a stopping consumer
            notices within it.
        dedup_ttl: seconds an exactly-once group remembers an event id when the
            topic's dedup window has no ``max_age`` (a window with ``max_age`` uses
            it as the TTL).
        batch: events per pipelined round trip of ``publish_many``.

    Raises:
        ValidationError: a bad URL or prefix.  TypeError / ValueError: a bad argument.
        ImportError: redis-py is not installed.

    One transport serves one Bus.  Thread-safe.

    Size: the Transport interface on Redis with its docstrings; log, groups and
    consumers are sibling modules.
    """

    blocking_io = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        client: Any = None,
        prefix: str = "nova",
        codec: object = None,
        timeout: float = 5.0,
        retries: int = 5,
        session_timeout: float = 10.0,
        heartbeat: float | None = None,
        block: float = 0.1,
        dedup_ttl: float = 3600.0,
        batch: int = 1000,
    ) -> None:
        redis = import_redis()
        self._redis = redis
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValidationError(f"Expected prefix as a non-empty str without braces, got {prefix!r}")
        for name, value in (("timeout", timeout), ("session_timeout", session_timeout), ("block", block),
                            ("dedup_ttl", dedup_ttl)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Expected {name} as a number of seconds, got {type_name(value)}")
            if not value > 0:
                raise ValueError(f"Expected {name} > 0 seconds, got {value!r}")
        if heartbeat is None:
            heartbeat = session_timeout / 5
        elif isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0 < heartbeat < session_timeout:
            raise ValueError(f"Expected heartbeat as seconds in (0, session_timeout), got {heartbeat!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"Expected batch as an int >= 1, got {batch!r}")
        self.prefix = prefix
        self.kp = "{" + prefix + "}:bus"
        if client is None:
            self.url = self._safe_url(url)
            self.client = self._make_client(url, timeout, retries)
        else:
            kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
            if not isinstance(kwargs, dict):
                raise TypeError(f"Expected client as a redis.Redis, got {type_name(client)}")
            if kwargs.get("decode_responses"):
                raise ValidationError("Expected a redis.Redis client made with decode_responses=False, got one with "
                                      "decode_responses=True")
            self.url = "<client>"
            self.client = client
        self._client = self.client
        # the reads, on the same connections without redis-py's reply parsing (a dict
        # per entry): benchmark ratio_bus_redis.py "one consumer"
        self.reader = redis.Redis(connection_pool=self.client.connection_pool)
        for cmd in ("XREAD", "XREADGROUP"):
            self.reader.set_response_callback(cmd, as_is)
        self.net_errors: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, StoreUnavailable)
        self.entry = EntryCodec(get_codec("json" if codec is None else codec))
        self.session_timeout = float(session_timeout)
        self.block_ms = max(1, int(block * 1000))
        self.dedup_ttl = float(dedup_ttl)
        self.batch = batch
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self._step = self.client.register_script(STEP)
        self._mark_ack = self.client.register_script(MARK_ACK)
        self._marked = self.client.register_script(MARKED)
        self._claim_all = self.client.register_script(CLAIM_ALL)
        self.coordinator = Coordinator(self, float(heartbeat))
        self.lock = threading.RLock()
        self._cond = threading.Condition()
        self.slots: list[RedisSlot] = []
        self._dead: dict[str, DeadLetterStore] = {}

    def __repr__(self) -> str:
        return f"<RedisTransport {self.url} prefix={self.prefix!r}>"

    # -- topics ------------------------------------------------------------------------
    def declare_topic(self, name: str, settings: dict[str, Any], explicit: bool) -> dict[str, Any]:
        """See :meth:`Transport.declare_topic`: first creator wins."""
        key = f"{self.kp}:topic:{name}"
        want = json.dumps(settings, sort_keys=True)
        with self._guard(f"declaring topic {name!r}"):
            p = self.client.pipeline(transaction=True)
            p.hsetnx(key, "config", want)
            p.hget(key, "config")
            _, got = p.execute()
        stored: dict[str, Any] = json.loads(got)
        if stored != settings and explicit:
            raise TopicExists(
                f"Expected topic {name!r} with the settings recorded on the Redis server by its first creator "
                f"({_fmt(stored)}), got {_fmt(settings)}"
            )
        return stored

    def open_topic(self, name: str, partitions: int, capacity: int, overflow: str) -> RedisTopicLog:
        """See :meth:`Transport.open_topic` (*overflow* does not apply: a publisher
        never waits for subscribers, events wait on the server)."""
        return RedisTopicLog(self, name, partitions, capacity)

    def close_topic(self, log: TopicLog) -> None:
        """Delete the topic on the server (streams, settings, group leases): as Kafka's
        delete-topic, for every process."""
        assert isinstance(log, RedisTopicLog)
        gkey = f"{self.kp}:groups:{log.name}"
        with self._guard(f"deleting topic {log.name!r}"):
            groups = self.client.smembers(gkey)
            keys = [*log.keys, f"{self.kp}:topic:{log.name}", gkey]
            for g in groups:
                base = f"{self.kp}:g:{log.name}:{g.decode()}"
                keys += [f"{base}:m", f"{base}:j", f"{base}:o"]
            self.client.delete(*keys)
        self.notify_progress()

    def dead_letter_store(self, topic: str) -> Any:
        """The store of *topic*'s dead letters (see the module docstring); pass it to
        ``Bus.redrive``."""
        with self.lock:
            store = self._dead.get(topic)
            if store is None:
                tag = topic if "{" not in topic and "}" not in topic else hashlib.sha1(topic.encode()).hexdigest()
                store = self._dead[topic] = DeadLetterStore(self, f"{self.prefix}.dl.{tag}")
            return store

    def ends(self, keys: Sequence[str]) -> dict[str, int]:
        """The offset of the last entry of each stream now (-1: none)."""
        with self._guard("reading partition ends"):
            p = self.client.pipeline(transaction=False)
            for k in keys:
                p.execute_command("XREVRANGE", k, "+", "-", "COUNT", 1)
            replies = p.execute()
        return {k: (offset_of(r[0][0]) if r else -1) for k, r in zip(keys, replies)}

    # -- subscribers -------------------------------------------------------------------
    def add_slot(self, log: TopicLog, sink: Any, consumers: list[Consumer]) -> RedisSlot:
        """See :meth:`Transport.add_slot`.  A group joins the group's leases on the
        server (one synchronous rebalance step: a first member owns every partition
        at once)."""
        assert isinstance(log, RedisTopicLog)
        slot = RedisSlot(log, sink, sink.group, f"{self.node}:{uuid.uuid4().hex[:10]}")
        slot.consumers = list(consumers)
        if slot.group is None:
            ends = self.ends(log.keys)
            for lane in slot.lanes:
                end = ends[lane.key]
                lane.read_id = f"0-{end + 1}".encode()
                lane.fetched_upto = lane.done_upto = end
            with self.lock:
                self.slots.append(slot)
                if consumers:
                    for lane in slot.lanes:
                        self.assign(lane, consumers[lane.index % len(consumers)])
            return slot
        with self._guard(f"joining group {slot.group!r} of topic {log.name!r}"):
            p = self.client.pipeline(transaction=False)
            for k in log.keys:
                p.execute_command("XGROUP", "CREATE", k, slot.rgroup, "$", "MKSTREAM")
            for r in p.execute(raise_on_error=False):
                if isinstance(r, Exception) and "BUSYGROUP" not in str(r):
                    raise r
            self.client.sadd(f"{self.kp}:groups:{log.name}", slot.group)
        slot.lease = GroupLease(self.client, self._step, f"{self.kp}:g:{log.name}:{slot.group}", slot.member,
                                log.partitions, int(self.session_timeout * 1000))
        with self.lock:
            self.slots.append(slot)
        self.group_step(slot)
        self.coordinator.add(slot)
        return slot

    def group_step(self, slot: RedisSlot) -> None:
        """One rebalance step of *slot* (see :mod:`nova.transport.redis_groups`),
        applied to its lanes.  Nothing once the slot left its group (a step racing
        with the leave would join it again, owning partitions nobody serves)."""
        with slot.step_lock:
            if slot.alive:
                self._step_locked(slot)

    def _step_locked(self, slot: RedisSlot) -> None:
        lease = slot.lease
        assert lease is not None
        release: list[int] = []
        with self.lock:
            for p in sorted(slot.revoking):
                lane = slot.lanes[p]
                if lane.holder is None:
                    if lane.acks:
                        self.ack(lane)
                    with lane.lock:
                        lane.enqueued -= len(lane.dq)  # they stay pending on the server: the next owner's
                        lane.dq.clear()
                        lane.recover = None
                    release.append(p)
        t0 = time.monotonic()
        with self._guard(f"renewing the lease of group {slot.group!r} on topic {slot.log.name!r}"):
            mine, revoke, _ = lease.step("release" if release else "beat", release)
        with self.lock:
            if not slot.alive:
                return
            slot.lease_until = t0 + self.session_timeout * 0.9
            slot.revoking.difference_update(release)
            active = mine - revoke
            for p in slot.owned - active:
                self.assign(slot.lanes[p], None)
                slot.owned.discard(p)
                slot.revoking.add(p)  # a partition lost outright is only dropped locally
            for p in sorted(active - slot.owned):
                lane = slot.lanes[p]
                if p in slot.revoking:
                    slot.revoking.discard(p)  # kept after all: still ours on the server
                else:
                    with self._guard(f"claiming partition {p} of topic {slot.log.name!r}"):
                        self._claim_all(keys=[lane.key], args=[slot.rgroup, slot.member], client=self.client)
                    lane.recover = b"0-0"
                slot.owned.add(p)
            self._spread(slot)
        self.notify_progress()

    def _spread(self, slot: RedisSlot) -> None:
        # Caller holds self.lock: the partitions this process owns, over its members.
        cs = slot.consumers
        for p in slot.owned:
            self.assign(slot.lanes[p], cs[p % len(cs)] if cs else None)

    def rebalance(self, slot: Slot, consumers: list[Consumer]) -> None:
        """See :meth:`Transport.rebalance`: the partitions this process owns move
        between its local members."""
        assert isinstance(slot, RedisSlot)
        with self.lock:
            slot.consumers = list(consumers)
            if slot.group is None:
                Transport.rebalance(self, slot, consumers)
            else:
                self._spread(slot)

    def remove_slot(self, slot: Slot) -> int:
        """See :meth:`Transport.remove_slot`; a group member leaves its group (its
        partitions are free for the other members at once)."""
        assert isinstance(slot, RedisSlot)
        total = 0
        with self.lock:
            slot.alive = False
            for lane in slot.lanes:
                self.assign(lane, None)
                with lane.lock:
                    lane.alive = False
                    n = len(lane.dq)
                    lane.dq.clear()
                    lane.discarded += n
                    total += n
            if slot in self.slots:
                self.slots.remove(slot)
        if slot.lease is not None:
            self.coordinator.remove(slot)
            self._leave(slot)
        self.notify_progress()
        return total

    def _leave(self, slot: RedisSlot) -> None:
        # slot.alive is False: no step starts after this one has the step lock
        assert slot.lease is not None
        with slot.step_lock:
            self._leave_locked(slot)

    def _leave_locked(self, slot: RedisSlot) -> None:
        assert slot.lease is not None
        try:
            for lane in slot.lanes:
                if lane.acks and lane.holder is None:
                    self.ack(lane)
            slot.lease.step("leave")
        except self.net_errors as exc:  # the lease expires by itself
            import logging

            logging.getLogger("nova.bus").warning(
                "nova: could not leave group %r of topic %r (%s); its lease expires in %.3g s",
                slot.group, slot.log.name, exc, self.session_timeout)

    def assign(self, lane: Lane, consumer: Consumer | None) -> None:
        """See :meth:`Transport.assign`."""
        assert isinstance(lane, RedisLane)
        with self.lock:
            old = lane.consumer
            if old is consumer:
                return
            with lane.lock:
                lane.consumer = consumer
            if old is not None:
                old.owned = tuple(x for x in old.owned if x is not lane)
            if consumer is not None and lane.alive:
                assert isinstance(consumer, RedisConsumer)
                consumer.owned = (*consumer.owned, lane)
                consumer.wake()

    def new_consumer(self, owner: Any, name: str) -> RedisConsumer:
        """See :meth:`Transport.new_consumer`."""
        return RedisConsumer(self, owner, name)

    def in_delivery(self) -> bool:
        """See :meth:`Transport.in_delivery`."""
        c = current_consumer()
        return c is not None and c.transport is self

    # -- completion --------------------------------------------------------------------
    def notify_progress(self) -> None:
        """See :meth:`Transport.notify_progress`."""
        with self._cond:
            self._cond.notify_all()

    def wait_settled(self, targets: Iterable[tuple[Lane, int]], timeout: float | None) -> bool:
        """See :meth:`Transport.wait_settled`.  The counts are not used: each lane must
        be resolved up to the end its partition has on the server now, i.e. every
        event published before this call (by any process) was handled, failed,
        dead-lettered or skipped by this subscriber; for a group, by whichever
        member owns the partition (its position on the server)."""
        return self._wait([lane for lane, _ in targets], timeout, local_groups=False)

    def drain(self, lanes: Sequence[Lane], timeout: float | None) -> bool:
        """What ``shutdown`` waits for: an ungrouped subscriber delivers every event
        published before the call (nobody else will); a group member stops fetching
        and finishes what it holds (handlers in flight, its prefetch, acks): what is
        left on the server is the group's, for the members that stay."""
        with self.lock:
            for lane in lanes:
                if isinstance(lane, RedisLane) and lane.slot.rgroup is not None:
                    lane.slot.draining = True  # its consumers fetch nothing more
        return self._wait(list(lanes), timeout, local_groups=True)

    def _wait(self, lanes: list[Lane], timeout: float | None, local_groups: bool) -> bool:
        live = [lane for lane in lanes if isinstance(lane, RedisLane) and lane.alive]
        ends = self.ends(sorted({lane.key for lane in live})) if live else {}
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while True:
            todo = self._unsettled(lanes, ends, local_groups)
            if not todo:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(pause if remaining is None else min(pause, remaining))
            pause = min(0.05, pause * 2)
            lanes = todo

    def _unsettled(self, lanes: list[Lane], ends: dict[str, int], local_groups: bool) -> list[Lane]:
        todo: list[Lane] = []
        check: list[RedisLane] = []
        for lane in lanes:
            if not isinstance(lane, RedisLane) or not lane.alive:
                if lane.pending() > 0:
                    todo.append(lane)
                continue
            end = ends.get(lane.key, -1)
            if lane.slot.rgroup is None:
                if lane.done_upto < end:
                    todo.append(lane)
            elif local_groups:
                if lane.dq or lane.acks or lane.holder is not None:
                    todo.append(lane)
            elif not (lane.fetched_upto <= lane.done_upto or lane.done_upto >= end) or lane.acks:
                todo.append(lane)
            else:
                check.append(lane)
        if check:
            with self._guard("checking group positions"):
                p = self.client.pipeline(transaction=False)
                for lane in check:
                    p.execute_command("XINFO", "GROUPS", lane.key)
                    p.execute_command("XPENDING", lane.key, lane.slot.rgroup)
                replies = p.execute()
            for i, lane in enumerate(check):
                end = ends.get(lane.key, -1)
                groups, pend = replies[2 * i], replies[2 * i + 1]
                name = lane.slot.rgroup.encode()  # type: ignore[union-attr]
                last = -1
                for g in groups:
                    info = g if isinstance(g, dict) else dict(zip(g[::2], g[1::2]))
                    info = {(k.decode() if isinstance(k, bytes) else k): v for k, v in info.items()}
                    if info["name"] == name:
                        last = offset_of(info["last-delivered-id"])
                lowest = pend.get("min") if pend and pend.get("pending") else None
                if last < end or (lowest is not None and offset_of(lowest) <= end):
                    todo.append(lane)
        return todo

    def close(self, consumers: Iterable[Consumer], timeout: float | None) -> bool:
        """See :meth:`Transport.close`; then every group slot without a running local
        member acknowledges what it settled and leaves its group (its partitions go
        to the other members at their next heartbeat)."""
        ok = self.stop_consumers(consumers, timeout)
        with self.lock:
            done = [s for s in self.slots if all(c.stopping for c in s.consumers)]
            for s in done:
                self.slots.remove(s)
                s.alive = False
            left = any(s.lease is not None for s in self.slots)
        for s in done:
            if s.lease is not None:
                self.coordinator.remove(s)
                self._leave(s)
        if not left:
            self.coordinator.close()
        return ok

    # -- for tools and tests -------------------------------------------------------------
    def group_owners(self, topic: str, group: str) -> dict[int, str]:
        """Partition -> owning member of *group* on *topic*, as the server has it now."""
        raw = self.client.hgetall(f"{self.kp}:g:{topic}:{group}:o")
        return {int(k): v.decode() for k, v in raw.items()}

    def group_members(self, topic: str, group: str) -> list[str]:
        """The live members of *group* on *topic* on the server (join order not kept)."""
        return [m.decode() for m in self.client.zrange(f"{self.kp}:g:{topic}:{group}:m", 0, -1)]


def _fmt(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={settings[k]!r}" for k in sorted(settings))
