"""Partition ownership inside a consumer group across processes: leases in Redis.

Each (topic, group) subscriber of a process is one **member** of the group on the
server, with three keys (``{prefix}:g:<topic>:<group>:...``):

* ``m`` — sorted set, member -> lease expiry (server time, ms);
* ``j`` — hash, member -> join sequence (field ``#seq``: the counter);
* ``o`` — hash, partition -> owning member.

One Lua script, :data:`STEP`, is one rebalance step of one member, run atomically on
the server (its clock, so members on machines with skewed clocks agree): renew the
caller's lease; drop every member whose lease expired (and free its partitions); the
desired owner of partition *p* is the live member ``p % n`` in join order; claim each
free partition the caller is the desired owner of; report the partitions the caller
owns and those of them it must give up (another member is now their desired owner).
A member gives a partition up only once it has nothing of it in flight
(``mode="release"``), so a partition never has two owners that both deliver.  A member
that leaves calls it with ``mode="leave"`` (its partitions are free at once); a member
that stops heartbeating loses them when its lease expires.

A new owner first claims the partition's pending entries (``XAUTOCLAIM`` of every
entry of the group's pending list of that stream, whoever held it) and delivers them,
in stream order, before reading new ones.

.. versionadded:: 0.3
"""

from __future__ import annotations

from typing import Any

__all__ = ("STEP", "MARK_ACK", "MARKED", "GroupLease", "Coordinator")

STEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, session, n, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local function drop(m)
  redis.call('ZREM', KEYS[1], m)
  redis.call('HDEL', KEYS[2], m)
  local o = redis.call('HGETALL', KEYS[3])
  for i = 1, #o, 2 do
    if o[i + 1] == m then redis.call('HDEL', KEYS[3], o[i]) end
  end
end
if mode == 'leave' then
  drop(me)
  return {{}, {}, 0}
end
if mode == 'release' then
  for i = 5, #ARGV do
    if redis.call('HGET', KEYS[3], ARGV[i]) == me then redis.call('HDEL', KEYS[3], ARGV[i]) end
  end
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, m in ipairs(dead) do drop(m) end
redis.call('ZADD', KEYS[1], now + session, me)
if redis.call('HEXISTS', KEYS[2], me) == 0 then
  redis.call('HSET', KEYS[2], me, redis.call('HINCRBY', KEYS[2], '#seq', 1))
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local seqs = redis.call('HMGET', KEYS[2], unpack(live))
local order = {}
for i, m in ipairs(live) do order[i] = {tonumber(seqs[i]) or 0, m} end
table.sort(order, function(a, b) return a[1] < b[1] end)
local k = #order
local mine, revoke = {}, {}
for p = 0, n - 1 do
  local want = order[(p % k) + 1][2]
  local f = tostring(p)
  local o = redis.call('HGET', KEYS[3], f)
  if not o and want == me then
    redis.call('HSET', KEYS[3], f, me)
    o = me
  end
  if o == me then
    mine[#mine + 1] = p
    if want ~= me then revoke[#revoke + 1] = p end
  end
end
return {mine, revoke, k}
"""

# Exactly-once marks: one set per period of the dedup TTL (server time), member =
# event id.  A check looks in the current and the previous period's set; a set
# expires two periods after its last write.  So an id is remembered at least one TTL
# and at most two, and marking or checking a batch is a few set commands (SADD /
# SMISMEMBER of many ids) instead of a key per id (benchmark ratio_bus_redis.py
# "exactly-once cost").  The ids travel as MessagePack arrays, one argument per batch
# (redis-py's cost is per argument); the sets share the ``{prefix}`` hash tag of the
# stream: one slot.
_PERIOD = """
local t = redis.call('TIME')
local function period(ttl)
  return math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / ttl)
end
"""

#: Mark the event ids (``ARGV[4]``) for the group (set prefix ``ARGV[3]``, TTL
#: ``ARGV[2]`` ms) and acknowledge the entries (``ARGV[5]``) of stream ``KEYS[1]`` for
#: group ``ARGV[1]``, in one atomic step.
MARK_ACK = _PERIOD + """
local ttl = tonumber(ARGV[2])
local key = ARGV[3] .. period(ttl)
local ids = cmsgpack.unpack(ARGV[4])
for i = 1, #ids, 1000 do redis.call('SADD', key, unpack(ids, i, math.min(i + 999, #ids))) end
if #ids > 0 then redis.call('PEXPIRE', key, 2 * ttl) end
local eids = cmsgpack.unpack(ARGV[5])
local n = 0
for i = 1, #eids, 1000 do
  n = n + redis.call('XACK', KEYS[1], ARGV[1], unpack(eids, i, math.min(i + 999, #eids)))
end
return n
"""

#: Which of the event ids (``ARGV[2]``) the group marked (set prefix ``ARGV[1]``, TTL
#: ``ARGV[3]`` ms): ``0`` when none (the common case: no reply to build), else a
#: string of ``0``/``1``, one per id.
MARKED = _PERIOD + """
local p = period(tonumber(ARGV[3]))
local ids = cmsgpack.unpack(ARGV[2])
local hits, any = {}, false
for _, key in ipairs({ARGV[1] .. p, ARGV[1] .. (p - 1)}) do
  if redis.call('EXISTS', key) == 1 then
    for i = 1, #ids, 1000 do
      local r = redis.call('SMISMEMBER', key, unpack(ids, i, math.min(i + 999, #ids)))
      for k = 1, #r do
        if r[k] == 1 then hits[i + k - 1] = true; any = true end
      end
    end
  end
end
if not any then return 0 end
local out = {}
for i = 1, #ids do out[i] = hits[i] and '1' or '0' end
return table.concat(out)
"""


class GroupLease:
    """One member of one group of one topic (see the module docstring).

    Args:
        client: a redis-py client.
        step: the registered :data:`STEP` script.
        base: the key prefix of the group, ``{prefix}:g:<topic>:<group>``.
        member: this member's name (unique across processes).
        partitions: the topic's partition count.
        session_ms: the lease length.
    """

    __slots__ = ("client", "step_script", "keys", "member", "partitions", "session_ms")

    def __init__(self, client: Any, step: Any, base: str, member: str, partitions: int, session_ms: int) -> None:
        self.client = client
        self.step_script = step
        self.keys = [f"{base}:m", f"{base}:j", f"{base}:o"]
        self.member = member
        self.partitions = partitions
        self.session_ms = session_ms

    def step(self, mode: str = "beat", release: list[int] | None = None) -> tuple[set[int], set[int], int]:
        """Run one step; return (partitions owned, of them to give up, live members)."""
        args = [self.member, self.session_ms, self.partitions, mode, *(release or ())]
        mine, revoke, live = self.step_script(keys=self.keys, args=args, client=self.client)
        return {int(p) for p in mine}, {int(p) for p in revoke}, int(live)

    def owners(self) -> dict[int, str]:
        """The owner of each owned partition now (for tests and tools)."""
        raw = self.client.hgetall(self.keys[2])
        return {int(k): v.decode() for k, v in raw.items()}


class Coordinator:
    """The heartbeat thread of one transport: a rebalance step for every group slot
    of this process each ``heartbeat`` seconds, applied to the slot's lanes (newly
    owned partitions are claimed and given to a local member; partitions to give up
    are taken from their local member, released on the server once idle)."""

    def __init__(self, transport: Any, heartbeat: float) -> None:
        import threading

        self.transport = transport
        self.heartbeat = heartbeat
        self.slots: list[Any] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, slot: Any) -> None:
        """Start beating for *slot* (its first step already ran)."""
        import threading

        with self.lock:
            self.slots.append(slot)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="nova-bus-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, slot: Any) -> None:
        """Stop beating for *slot*."""
        with self.lock:
            if slot in self.slots:
                self.slots.remove(slot)

    def close(self) -> None:
        """Stop the thread (no slot left to beat for)."""
        with self.lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(10)

    def _run(self) -> None:
        import logging


        log = logging.getLogger("nova.bus")
        errors = self.transport.net_errors
        while not self._stop.wait(self.heartbeat):
            with self.lock:
                slots = list(self.slots)
            for slot in slots:
                if not slot.alive:
                    continue
                try:
                    self.transport.group_step(slot)
                except errors as exc:
                    log.warning("nova: heartbeat of group %r on topic %r failed (%s)", slot.group, slot.log.name, exc)
                except Exception:  # noqa: BLE001 - keep beating for the other slots
                    log.exception("nova: heartbeat of group %r on topic %r failed", slot.group, slot.log.name)

