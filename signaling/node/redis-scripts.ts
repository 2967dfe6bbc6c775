/**
 * The Lua scripts of RedisRoomStore (redis-store.ts). Each runs atomically inside Redis, so a
 * join's room limit, a replace and the fan-out of its event cannot interleave with another
 * replica's. Keys (P is the store's prefix, default `causeway:`):
 *
 * | key | type | holds |
 * |---|---|---|
 * | `P nodes` | sorted set | replica id -> its last heartbeat (Redis `TIME`, ms) |
 * | `P node:<id>:rooms` | set | rooms in which replica `<id>` holds members |
 * | `P room:<room>:m` | hash | peer id -> `"<role> <replica id> <socket id>"` (the peer's current socket) |
 * | `P room:<room>:n` | hash | replica id -> how many of the room's members it holds |
 *
 * Channels: `P node:<id>`, one per replica, carry JSON messages to it: `{t:"s",c,x}` (text x for
 * its socket c), `{t:"j"|"l",r,p,o}` (peer p with role o joined / left room r), `{t:"r",c}` (its
 * socket c was replaced). A room's events go to every replica holding members of the room.
 *
 * Every id that appears in a key, a record or a message is base64url (room and peer ids are
 * checked with zod before they reach the store; socket and replica ids are ours), so records
 * split on spaces and messages are built by concatenation. The scripts build some key names
 * from the prefix (another replica's set, a room's hashes): Redis Cluster is not supported, a
 * single Redis (with replicas or Sentinel for failover, if wanted) is.
 */
import { createHash } from 'node:crypto'

export interface Script { name: string, lua: string, sha: string }

const COMMON = `
local P = ARGV[1]
local function split (v) return string.match(v, '^(%S+) (%S+) (%S+)$') end
local function event (t, room, peer, role) return '{"t":"' .. t .. '","r":"' .. room .. '","p":"' .. peer .. '","o":"' .. role .. '"}' end
-- Publishes msg to every replica holding members of room; returns how many messages it sent.
local function fanout (room, msg)
  local nodes = redis.call('HKEYS', P .. 'room:' .. room .. ':n')
  for _, n in ipairs(nodes) do redis.call('PUBLISH', P .. 'node:' .. n, msg) end
  return #nodes
end
-- One member fewer for replica node in room.
local function uncount (room, node)
  local nk = P .. 'room:' .. room .. ':n'
  if redis.call('HINCRBY', nk, node, -1) <= 0 then
    redis.call('HDEL', nk, node)
    redis.call('SREM', P .. 'node:' .. node .. ':rooms', room)
  end
end
`

function script (name: string, body: string): Script {
  const lua = COMMON + body
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex') }
}

/**
 * ARGV: prefix, room, peer, role, replica, socket, maxPeers.
 * Returns {'GONE'} when the replica is not registered (its presence expired, or Redis lost its
 * data), {'FULL'} when the room is full, else {'OK', replacedReplica, replacedSocket,
 * published, peer1, role1, peer2, role2, ...} (replaced* empty when nothing was replaced).
 */
export const JOIN = script('join', `
local room, peer, role, node, conn, max = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
if not redis.call('ZSCORE', P .. 'nodes', node) then return {'GONE'} end
local mk = P .. 'room:' .. room .. ':m'
local old = redis.call('HGET', mk, peer)
if not old and redis.call('HLEN', mk) >= max then return {'FULL'} end
local rn, rc = '', ''
local published = 0
if old then
  local _, on, oc = split(old)
  uncount(room, on)
  rn, rc = on, oc
  if on ~= node then
    redis.call('PUBLISH', P .. 'node:' .. on, '{"t":"r","c":"' .. oc .. '"}')
    published = published + 1
  end
end
redis.call('HSET', mk, peer, role .. ' ' .. node .. ' ' .. conn)
redis.call('HINCRBY', P .. 'room:' .. room .. ':n', node, 1)
redis.call('SADD', P .. 'node:' .. node .. ':rooms', room)
published = published + fanout(room, event('j', room, peer, role))
local out = {'OK', rn, rc, tostring(published)}
local all = redis.call('HGETALL', mk)
for i = 1, #all, 2 do
  local r = split(all[i + 1])
  out[#out + 1] = all[i]
  out[#out + 1] = r
end
return out
`)

/**
 * ARGV: prefix, room, peer, replica, socket. Removes the member if that socket is still its
 * current one. Returns {role, published}, or nil when it was not (never joined, replaced).
 */
export const LEAVE = script('leave', `
local room, peer, node, conn = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local mk = P .. 'room:' .. room .. ':m'
local v = redis.call('HGET', mk, peer)
if not v then return false end
local r, n, c = split(v)
if n ~= node or c ~= conn then return false end
redis.call('HDEL', mk, peer)
uncount(room, node)
if redis.call('HLEN', mk) == 0 then redis.call('DEL', mk, P .. 'room:' .. room .. ':n') end
return {r, tostring(fanout(room, event('l', room, peer, r)))}
`)

/**
 * ARGV: prefix, room, peer, roles (comma-separated), text (JSON-encoded string).
 * Returns 1 when the text went to a live replica holding the peer's socket, 0 otherwise (no
 * such peer, a role not allowed, or its replica is gone).
 */
export const SIGNAL = script('signal', `
local v = redis.call('HGET', P .. 'room:' .. ARGV[2] .. ':m', ARGV[3])
if not v then return 0 end
local r, n, c = split(v)
if not string.find(',' .. ARGV[4] .. ',', ',' .. r .. ',', 1, true) then return 0 end
if redis.call('PUBLISH', P .. 'node:' .. n, '{"t":"s","c":"' .. c .. '","x":' .. ARGV[5] .. '}') > 0 then return 1 end
return 0
`)

/**
 * ARGV: prefix, replica, presence TTL (ms). Records the replica's heartbeat (Redis clock).
 * Returns {added, live, dead1, dead2, ...}: added is 1 when the replica was not registered
 * (first beat, or its presence had expired), live the replicas registered, dead* replicas
 * whose last beat is older than the TTL (at most 16 a beat).
 */
export const HEARTBEAT = script('heartbeat', `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', P .. 'nodes', now, ARGV[2])
local out = {tostring(added), '0'}
for _, d in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, 16)) do out[#out + 1] = d end
out[2] = tostring(redis.call('ZCARD', P .. 'nodes') - (#out - 2))
return out
`)

/**
 * ARGV: prefix, replica. Removes a dead replica (or this one, recovering) and every member it
 * held, and tells the replicas left in those rooms. Scripts do not interleave, so when several
 * replicas reap the same dead one, the first removes everything and the others find nothing:
 * each member is announced once. Returns {members, published}.
 */
export const REAP = script('reap', `
local dead = ARGV[2]
local rk = P .. 'node:' .. dead .. ':rooms'
local removed = redis.call('ZREM', P .. 'nodes', dead)
local rooms = redis.call('SMEMBERS', rk)
if removed == 0 and #rooms == 0 then return {'0', '0'} end
local members, published = 0, 0
for _, room in ipairs(rooms) do
  local mk = P .. 'room:' .. room .. ':m'
  local nk = P .. 'room:' .. room .. ':n'
  local all = redis.call('HGETALL', mk)
  local gone = {}
  for i = 1, #all, 2 do
    local r, n = split(all[i + 1])
    if n == dead then
      redis.call('HDEL', mk, all[i])
      gone[#gone + 1] = {all[i], r}
    end
  end
  redis.call('HDEL', nk, dead)
  if redis.call('HLEN', mk) == 0 then redis.call('DEL', mk, nk) end
  for _, g in ipairs(gone) do
    published = published + fanout(room, event('l', room, g[1], g[2]))
    members = members + 1
  end
end
redis.call('DEL', rk)
return {tostring(members), tostring(published)}
`)
