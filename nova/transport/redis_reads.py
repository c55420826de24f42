"""Reading and acknowledging partition streams: the consumer-thread half of
:class:`~nova.transport.redis.RedisTransport` (a mixin; see
:mod:`nova.transport.redis_consumer` for the loop that calls it).

Reads go through a client without redis-py's reply parsing (``reader``: the raw
``[[key, [[id, [b"e", entry]], ...]], ...]``; a dict per entry would cost as much as
the rest of the read).

.. versionadded:: 0.3
"""

from __future__ import annotations

import logging
from typing import Any

from nova.store.redis_rows import msgpack_array

_pack_str: Any = None
try:  # ids as one MessagePack array of str, built in C (benchmark: "exactly-once cost")
    import msgspec  # type: ignore[import-not-found, unused-ignore]

    _pack_str = msgspec.msgpack.Encoder().encode
except ImportError:  # pragma: no cover - msgspec is an optional extra
    pass


def pack_ids(ids: list[str]) -> bytes:
    """*ids* (str) as one MessagePack array of str (what the scripts unpack with
    ``cmsgpack``, which has no bin type)."""
    if _pack_str is not None:
        return bytes(_pack_str(ids))
    return msgpack_array([i.encode() for i in ids])
from nova.transport.redis_consumer import RedisLane, offset_of

__all__ = ("Reads", "as_is", "entries_of", "pack_ids")

_log = logging.getLogger("nova.bus")
_ACK_CHUNK = 5000  # entries per XACK / mark script call


class Reads:
    """Fetch, re-read, dedup-check and acknowledge lanes (on their consumer's thread,
    which holds them)."""

    client: Any
    reader: Any
    entry: Any
    block_ms: int
    _mark_ack: Any
    _marked: Any

    def fetch(self, lanes: list[RedisLane], block: bool) -> bool:
        """Refill *lanes* (held by the calling consumer); True if anything came."""
        fan: list[RedisLane] = []
        groups: dict[tuple[str, str, bool], list[RedisLane]] = {}
        got = False
        for lane in lanes:
            s = lane.slot
            if s.rgroup is None:
                fan.append(lane)
            elif lane.recover is not None:
                got = self._recover(lane) or got
            else:
                groups.setdefault((s.rgroup, s.member, s.noack), []).append(lane)
        calls = (1 if fan else 0) + len(groups)
        ms = self.block_ms if block and not got and calls == 1 else None
        ex = self.reader.execute_command
        if fan:
            count = max(1, min(lane.capacity - len(lane.dq) for lane in fan))
            args: list[Any] = ["XREAD", "COUNT", count]
            if ms:
                args += ["BLOCK", ms]
            args += ["STREAMS", *[lane.key for lane in fan], *[lane.read_id for lane in fan]]
            got = self._take(ex(*args), fan) or got
        for (g, member, noack), ls in groups.items():
            count = max(1, min(lane.capacity - len(lane.dq) for lane in ls))
            args = ["XREADGROUP", "GROUP", g, member, "COUNT", count]
            if ms:
                args += ["BLOCK", ms]
            if noack:
                args.append("NOACK")
            args += ["STREAMS", *[lane.key for lane in ls], *([">"] * len(ls))]
            got = self._take(ex(*args), ls) or got
        if block and not got and calls > 1:
            lanes[0].consumer.wait_stop(self.block_ms / 1000)  # several reads: none of them blocked
        return got

    def _recover(self, lane: RedisLane) -> bool:
        s = lane.slot
        reply = self.reader.execute_command(
            "XREADGROUP", "GROUP", s.rgroup, s.member, "COUNT", max(1, lane.capacity - len(lane.dq)),
            "STREAMS", lane.key, lane.recover)
        streams = entries_of(reply)
        if not streams or not streams[0][1]:
            lane.recover = None
            return False
        lane.recover = streams[0][1][-1][0]
        return self._take(reply, [lane])

    def _take(self, reply: Any, lanes: list[RedisLane]) -> bool:
        got = False
        by_key = {lane.key.encode(): lane for lane in lanes}
        decode = self.entry.decode
        for key, entries in entries_of(reply):
            lane = by_key[key]
            items: list[tuple[bytes, Any]] = []
            bad = []
            if lane.acks:  # a re-read of our pending entries: the settled ones are not redelivered
                settled = {a[0] for a in lane.acks}
                entries = [en for en in entries if en[0] not in settled]
            append = items.append
            for eid, fields in entries:
                try:
                    append((eid, decode(fields[1])))  # fields: [b"e", entry] (None: deleted)
                except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the partition
                    _log.error("nova: skipped entry %r of %s: %r", eid, lane.key, exc)
                    bad.append((eid, None))
            s = lane.slot
            if bad and s.acking:
                self.client.execute_command("XACK", lane.key, s.rgroup, *[b[0] for b in bad])
            with lane.lock:
                if s.rgroup is None and entries:
                    lane.read_id = entries[-1][0]
                if items and lane.alive:
                    lane.dq.extend(items)
                    lane.enqueued += len(items)
                    lane.fetched_upto = max(lane.fetched_upto, offset_of(items[-1][0]))
                    got = True
        return got

    def prefilter(self, lane: RedisLane, items: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
        """Exactly-once groups: drop the entries whose event id the group already
        marked (handled by any process), acknowledging and counting them."""
        s = lane.slot
        marked = self._marked(args=[s.mark_prefix, pack_ids([it[1].id for it in items]), s.dedup_ttl_ms],
                              client=self.client)
        if not marked:  # 0: none of them
            return items
        keep = [it for it, m in zip(items, marked) if m == 48]  # b"0"
        if len(keep) < len(items):
            dups = [it for it, m in zip(items, marked) if m != 48]
            lane.count_dups(len(dups))
            lane.settled += len(dups)
            lane.done_upto = max(lane.done_upto, offset_of(dups[-1][0]))
            lane.acks.extend(dups)
            self.ack(lane)
        return keep

    def ack(self, lane: RedisLane) -> None:
        """Acknowledge the settled entries of *lane* (exactly-once: mark their ids and
        acknowledge in one script).  On an error they stay to be acknowledged later."""
        s = lane.slot
        while lane.acks:
            items = lane.acks[:_ACK_CHUNK]
            ids = [it[0] for it in items]
            if s.eo:
                marks = pack_ids([it[1].id for it in items if it[1] is not None])
                self._mark_ack(keys=[lane.key], args=[s.rgroup, s.dedup_ttl_ms, s.mark_prefix, marks,
                                                      pack_ids([i.decode() for i in ids])], client=self.client)
            else:
                self.client.execute_command("XACK", lane.key, s.rgroup, *ids)
            del lane.acks[:len(items)]


def as_is(response: Any, **options: Any) -> Any:
    return response


def entries_of(reply: Any) -> list[Any]:
    """``[[key, [[id, [b"e", entry]], ...]], ...]`` from a raw XREAD/XREADGROUP reply
    (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [[k, v] for k, v in reply.items()]
    return list(reply)
