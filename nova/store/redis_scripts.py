"""The key layout and the Lua scripts of :class:`~nova.store.RedisStore`.

Every key of a store starts with ``{<prefix>}:`` (a Redis Cluster hash tag), so a
store lives in one slot and every script touches one slot only:

==========================  =========  ==============================================
key                         type       holds
==========================  =========  ==============================================
``{p}:meta``                hash       ``format``, ``version``, ``codec``; counters
                                       ``seq`` (global sequence = events
                                       appended), ``nstreams``, ``evicted``, ``rejected``
``{p}:names``               hash       stream name -> stream code (1, 2, ...)
``{p}:bycode``              hash       stream code -> stream name
``{p}:last``                hash       stream code -> last position ever appended
``{p}:evc``                 hash       stream code -> events evicted
``{p}:s:<name>``            stream     the nova stream: entry id ``<position>-<sequence>``,
                                       fields ``t`` (timestamp, 8 bytes), ``y`` (type),
                                       ``i`` (id), ``m`` (metadata JSON or empty),
                                       ``d`` (payload, absent for ``None``)
``{p}:log``                 stream     append order across streams: id ``<sequence>-0``,
                                       fields ``c`` (stream code), ``p`` (position)
``{p}:time``                zset       the event-time index: every score 0, members
                                       ``ts(8) seq(8) code(4) pos(8)`` big-endian
``{p}:tok:<random>``        hash       one per store object: a ring of 1,024 slots
                                       ``counter % 1024`` -> ``"<counter> <result>"`` of
                                       its append calls, so a call retried after a lost
                                       reply is applied once (expires a day after use)
==========================  =========  ==============================================

The event-time index is ordered by member bytes (``ZRANGE ... BYLEX``): the first 8
bytes are the timestamp biased by 2**63, so byte order is (timestamp, sequence) order
and a window ``[start, end)`` is one exact lexicographic range, to the nanosecond,
late events included.

Scripts build keys of streams from ``{p}:s:`` + name (same slot as the declared keys).

.. versionadded:: 0.2
"""

from __future__ import annotations

__all__ = ("APPEND", "APPEND_ONE", "READ", "STREAM_FETCH", "LOG_FETCH", "EXPIRE", "INFO", "HEADS", "FORMAT", "VERSION")

FORMAT = "nova-events"
VERSION = 1

# Lua numbers are doubles: positions, sequences and codes stay below 2**53; timestamps
# never pass through a Lua number (they travel as 8 raw bytes).
_COMMON = r"""
local function entry_id(pos, seq) return string.format('%d-%d', pos, seq) end
local function member(tsb, seq, code, pos) return tsb .. struct.pack('>I8>I4>I8', seq, code, pos) end
local function unmember(m)
  local seq, code, pos = struct.unpack('>I8>I4>I8', m, 9)
  return seq, code, pos
end
local names_cache = {}
local function stream_key(prefix, bycode, code)
  local name = names_cache[code]
  if name == nil then
    name = redis.call('HGET', bycode, code)
    names_cache[code] = name
  end
  if not name then return nil end
  return prefix .. name
end
"""

#: KEYS: meta names bycode last evc time log stream tok
#: ARGV[1]: a MessagePack array (one argument: the client's cost is per argument) of
#: name max_streams limit reject(0/1) ttl n nullmask counter slot refresh(0/1), then
#: n x (tsb type id meta data)
APPEND = _COMMON + r"""
local A = cmsgpack.unpack(ARGV[1])
local ARGV = {A[1], A[2], A[3], A[4], A[6], A[7], A[5]}
local TYPES = {[KEYS[6]] = 'zset', [KEYS[7]] = 'stream', [KEYS[8]] = 'stream'}
local F = A
-- the call's token: slot ARGV[8] of this store object's ring KEYS[9] holds "<counter> <result>"
local prev = redis.call('HGET', KEYS[9], A[9])
if prev and string.sub(prev, 1, #A[8] + 1) == A[8] .. ' ' then return {1, string.sub(prev, #A[8] + 2)} end
local name = ARGV[1]
local n = tonumber(ARGV[5])
local limit = tonumber(ARGV[3])
local code = redis.call('HGET', KEYS[2], name)
local last = 0
if code then
  code = tonumber(code)
  last = tonumber(redis.call('HGET', KEYS[4], code) or '0')
end
if n == 0 then return {0, string.format('%d', last)} end
if limit > 0 and ARGV[4] == '1' then
  local live = redis.call('XLEN', KEYS[8])
  if live + n > limit then
    redis.call('HINCRBY', KEYS[1], 'rejected', 1)
    return {-2, string.format('%d', live)}
  end
end
if not code then
  -- a script is not rolled back on error: before the first write to a new stream, check
  -- the keys XADD/ZADD write (the store checks its hashes when it opens)
  for k, want in pairs(TYPES) do
    local t = redis.call('TYPE', k)['ok']
    if t ~= 'none' and t ~= want then return {-3, k .. ' ' .. t} end
  end
  local maxs = tonumber(ARGV[2])
  if maxs > 0 and redis.call('HLEN', KEYS[2]) >= maxs then
    redis.call('HINCRBY', KEYS[1], 'rejected', 1)
    return {-1, ARGV[2]}
  end
  code = redis.call('HINCRBY', KEYS[1], 'nstreams', 1)
  redis.call('HSET', KEYS[2], name, code)
  redis.call('HSET', KEYS[3], code, name)
end
local seq0 = redis.call('HINCRBY', KEYS[1], 'seq', n) - n
local mask = ARGV[6]
local skey, tkey, lkey = KEYS[8], KEYS[6], KEYS[7]
for i = 1, n do
  local b = 10 + (i - 1) * 5
  local pos, seq = last + i, seq0 + i
  local tsb = F[b + 1]
  if string.byte(mask, i) == 49 then
    redis.call('XADD', skey, entry_id(pos, seq), 't', tsb, 'y', F[b + 2], 'i', F[b + 3], 'm', F[b + 4], 'd', F[b + 5])
  else
    redis.call('XADD', skey, entry_id(pos, seq), 't', tsb, 'y', F[b + 2], 'i', F[b + 3], 'm', F[b + 4])
  end
  redis.call('ZADD', tkey, 0, member(tsb, seq, code, pos))
  redis.call('XADD', lkey, string.format('%d-0', seq), 'c', code, 'p', pos)
end
last = last + n
redis.call('HSET', KEYS[4], code, last)
if limit > 0 then
  local live = redis.call('XLEN', skey)
  if live > limit then
    local old = redis.call('XRANGE', skey, '-', '+', 'COUNT', live - limit)
    for _, e in ipairs(old) do
      local p, s = string.match(e[1], '^(%d+)-(%d+)$')
      p, s = tonumber(p), tonumber(s)
      redis.call('ZREM', tkey, member(e[2][2], s, code, p))
      redis.call('XDEL', lkey, string.format('%d-0', s))
      redis.call('XDEL', skey, e[1])
    end
    redis.call('HINCRBY', KEYS[5], code, #old)
    redis.call('HINCRBY', KEYS[1], 'evicted', #old)
  end
end
local result = string.format('%d %d', last, seq0 + n)
redis.call('HSET', KEYS[9], A[9], A[8] .. ' ' .. result)
if A[10] == '1' then redis.call('PEXPIRE', KEYS[9], tonumber(ARGV[7]) * 1000) end
return {1, result}
"""

#: The lean append of ONE event to a stream that exists, for a store without
#: max_events_per_stream (the common single append): no argument unpacking, no
#: limits, no loop, seven commands.  The first attempt of a call only: it writes the
#: call's token slot but need not read it (a retry after a lost reply runs APPEND,
#: which finds the slot), in APPEND's format, so either script sees the other's.
#: KEYS: meta names last time log stream tok
#: ARGV: name tsb type id meta data has-data(0/1) counter slot refresh(0/1) ttl
#: -> position, or false when the stream is new (nothing written: run APPEND)
APPEND_ONE = r"""
local code = redis.call('HGET', KEYS[2], ARGV[1])
if not code then return false end
local pos = redis.call('HINCRBY', KEYS[3], code, 1)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local tsb = ARGV[2]
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[6], string.format('%d-%d', pos, seq), 't', tsb, 'y', ARGV[3], 'i', ARGV[4], 'm', ARGV[5], 'd', ARGV[6])
else
  redis.call('XADD', KEYS[6], string.format('%d-%d', pos, seq), 't', tsb, 'y', ARGV[3], 'i', ARGV[4], 'm', ARGV[5])
end
redis.call('ZADD', KEYS[4], 0, tsb .. struct.pack('>I8>I4>I8', seq, tonumber(code), pos))
redis.call('XADD', KEYS[5], string.format('%d-0', seq), 'c', code, 'p', pos)
redis.call('HSET', KEYS[7], ARGV[9], string.format('%s %d %d', ARGV[8], pos, seq))
if ARGV[10] == '1' then redis.call('PEXPIRE', KEYS[7], tonumber(ARGV[11]) * 1000) end
return pos
"""

#: KEYS: stream   ARGV: first-id count(0: all)
READ = r"""
if ARGV[2] == '0' then return redis.call('XRANGE', KEYS[1], ARGV[1], '+') end
return redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
"""

#: KEYS: names last stream   ARGV: name first-id count
#: -> {head position, entries}
STREAM_FETCH = r"""
local code = redis.call('HGET', KEYS[1], ARGV[1])
if not code then return {0, {}} end
local head = tonumber(redis.call('HGET', KEYS[2], code) or '0')
return {head, redis.call('XRANGE', KEYS[3], ARGV[2], '+', 'COUNT', ARGV[3])}
"""

#: KEYS: meta log bycode   ARGV: stream-key-prefix first-log-id count
#: -> {head sequence, seq1, code1, pos1, fields1 or false, ...}
LOG_FETCH = _COMMON + r"""
local head = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local out = {head}
local refs = redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', ARGV[3])
for _, r in ipairs(refs) do
  local seq = tonumber(string.match(r[1], '^(%d+)-'))
  local code, pos = tonumber(r[2][2]), tonumber(r[2][4])
  local skey = stream_key(ARGV[1], KEYS[3], code)
  local fields = false
  if skey then
    local e = redis.call('XRANGE', skey, entry_id(pos, seq), entry_id(pos, seq))
    if e[1] then fields = e[1][2] end
  end
  out[#out + 1] = seq
  out[#out + 1] = code
  out[#out + 1] = pos
  out[#out + 1] = fields
end
return out
"""

#: KEYS: meta time bycode log evc   ARGV: stream-key-prefix cutoff-bytes budget
#: -> events evicted (the caller repeats while it returns the budget)
EXPIRE = _COMMON + r"""
local members = redis.call('ZRANGE', KEYS[2], '-', '(' .. ARGV[2], 'BYLEX', 'LIMIT', 0, tonumber(ARGV[3]))
if #members == 0 then return 0 end
local per = {}
for _, m in ipairs(members) do
  local seq, code, pos = unmember(m)
  local skey = stream_key(ARGV[1], KEYS[3], code)
  if skey then redis.call('XDEL', skey, entry_id(pos, seq)) end
  redis.call('XDEL', KEYS[4], string.format('%d-0', seq))
  per[code] = (per[code] or 0) + 1
end
redis.call('ZREMRANGEBYLEX', KEYS[2], '-', '[' .. members[#members])
for code, k in pairs(per) do redis.call('HINCRBY', KEYS[5], code, k) end
redis.call('HINCRBY', KEYS[1], 'evicted', #members)
return #members
"""

#: KEYS: names last evc stream   ARGV: name  -> false | {length, first position, last, evicted}
INFO = r"""
local code = redis.call('HGET', KEYS[1], ARGV[1])
if not code then return false end
local first = 0
local e = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', 1)
if e[1] then first = tonumber(string.match(e[1][1], '^(%d+)-')) end
return {redis.call('XLEN', KEYS[4]), first, tonumber(redis.call('HGET', KEYS[2], code) or '0'),
        tonumber(redis.call('HGET', KEYS[3], code) or '0')}
"""

#: KEYS: meta names last   ARGV: name or ''  -> {global sequence, last position of name}
HEADS = r"""
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local pos = 0
if ARGV[1] ~= '' then
  local code = redis.call('HGET', KEYS[2], ARGV[1])
  if code then pos = tonumber(redis.call('HGET', KEYS[3], code) or '0') end
end
return {seq, pos}
"""
