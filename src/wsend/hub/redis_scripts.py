"""The Lua scripts of the Redis broker, for a single Redis and for a Redis Cluster.

Every script gets the channel's meta hash as ``KEYS[1]`` and its stream as ``KEYS[2]`` (the
publish script also gets its pub/sub channel as ``KEYS[3]``): one hash slot, thanks to the
``{channel}`` hash tag, so that a cluster runs each script on the one master owning it.

They share ``open(create, fresh)``, which returns the channel's epoch. With ``create``, a
channel without a position gets epoch ``fresh``, offset 0 and an empty stream. On a cluster the
meta hash also records which master wrote it (``n``, the node id): a script running on another
master (a replica promoted after a failover, or the target of a slot migration) can't vouch that
it holds every publication acknowledged before, since replication is asynchronous, so it starts
a new epoch, even from a read. Subscribers then get ``recovered: false`` instead of offsets
that the new master would hand out a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["BrokerScripts", "broker_scripts"]

_OPEN: Final = """
local function open(create, fresh)
  local epoch = redis.call('HGET', KEYS[1], 'e')
  local writer = WRITER
  if epoch and writer and redis.call('HGET', KEYS[1], 'n') ~= writer then
    epoch, create = false, true
  end
  if epoch or not create then return epoch, false end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', fresh, 's', 0)
  if writer then redis.call('HSET', KEYS[1], 'n', writer) end
  return fresh, true
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_PUBLISH: Final = """
local epoch = open(true, ARGV[5])
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('HSET', KEYS[1], 't', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1], 't', ms)
-- Lifetimes stay strings: Lua 5.1 would print large numbers as 1e+14, which Redis refuses.
local stream_ttl = tonumber(ARGV[3]) > 0 and ARGV[3] or ARGV[4]
for i, life in ipairs({ARGV[4], stream_ttl}) do
  if tonumber(life) > 0 then redis.call('PEXPIRE', KEYS[i], life)
  else redis.call('PERSIST', KEYS[i]) end
end
redis.call(PUBLISH, KEYS[3], 'p:' .. offset .. ':' .. epoch .. ':' .. ms .. ':' .. ARGV[1])
return {offset, epoch, ms}
"""

_HISTORY: Final = """
local epoch, created = open(true, ARGV[1])
if created and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local meta = redis.call('HMGET', KEYS[1], 's', 't')
local top, ttl = meta[1], tonumber(meta[2] or '0')
if tonumber(ARGV[7]) >= 0 then ttl = tonumber(ARGV[7]) end
if ttl > 0 then
  local cutoff, start = ms - ttl, '-'
  while true do
    local batch = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 64)
    if #batch == 0 then redis.call('XTRIM', KEYS[2], 'MAXLEN', 0) break end
    local found = false
    for i = 1, #batch do
      if tonumber(batch[i][2][4]) > cutoff then
        redis.call('XTRIM', KEYS[2], 'MINID', batch[i][1])
        found = true
        break
      end
    end
    if found then break end
    start = '(' .. batch[#batch][1]
  end
end
-- ARGV[3]: the first stream id to return ('-': all); ARGV[5]: the count (string, -1: all).
local low, limit = ARGV[3], tonumber(ARGV[5])
if (low ~= '-' and ARGV[4] ~= epoch) or limit == 0 then return {epoch, top, {}} end
local pubs
if ARGV[6] == '1' then
  if limit > 0 then pubs = redis.call('XREVRANGE', KEYS[2], '+', low, 'COUNT', ARGV[5])
  else pubs = redis.call('XREVRANGE', KEYS[2], '+', low) end
else
  if limit > 0 then pubs = redis.call('XRANGE', KEYS[2], low, '+', 'COUNT', ARGV[5])
  else pubs = redis.call('XRANGE', KEYS[2], low, '+') end
end
return {epoch, top, pubs}
"""

# The position (nil epoch when the channel has none), and the stream entries ARGV[2]..ARGV[3]
# when ARGV[2] is given.
_POSITION: Final = """
local epoch = open(false, ARGV[1])
if not epoch then return {false, 0, {}} end
local entries = {}
if ARGV[2] then entries = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[3]) end
return {epoch, redis.call('HGET', KEYS[1], 's'), entries}
"""


@dataclass(frozen=True, slots=True)
class BrokerScripts:
    """The broker's scripts, as Lua source."""

    publish: str
    history: str
    position: str


def broker_scripts(*, cluster: bool) -> BrokerScripts:
    """The scripts for a single Redis (``PUBLISH``) or a Redis Cluster (``SPUBLISH``, and a
    new epoch when another master wrote the channel's position)."""
    writer = "redis.call('CLUSTER', 'MYID')" if cluster else "false"
    opening = _OPEN.replace("WRITER", writer)
    publish = _PUBLISH.replace("PUBLISH,", "'SPUBLISH'," if cluster else "'PUBLISH',")
    return BrokerScripts(opening + publish, opening + _HISTORY, opening + _POSITION)
