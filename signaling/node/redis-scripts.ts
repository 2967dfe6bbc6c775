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
 * | `P room:<room>:s` | hash | peer id -> `"<address> <subject or -> <seq>"`: whom its seat is charged to, and its join order (signaling/seats.ts) |
 * | `P room:<room>:q` | string | the room's last join order |
 * | `P room:<room>:a` | string | open mode: the address the room is charged to (that of the join that created it) |
 * | `P addr:<address>:rooms` | set | open mode: the live rooms charged to a client address |
 *
 * Channels: `P node:<id>`, one per replica, carry JSON messages to it: `{t:"s",c,x}` (text x for
 * its socket c), `{t:"j"|"l",r,p,o}` (peer p with role o joined / left room r), `{t:"r",c}` (its
 * socket c was replaced), `{t:"e",c}` (its socket c lost its seat to an agent). A room's events
 * go to every replica holding members of the room.
 *
 * Every path that removes a room's last member (LEAVE, REAP of a dead replica) deletes the
 * room's keys and its charge, so counts go with the rooms, also when a replica dies (its
 * members are reaped once its presence expires). Seat records live beside the member records
 * (`:s`, not inside them) so that replicas of the previous version, during a rolling update,
 * still parse the member records: their joins record no seat (counted as address `?`), and a
 * room whose last member they remove leaves its `:s`/`:q`/`:a` keys, which the next join that
 * creates the room again clears; a stale entry of an address's set is dropped when the set is
 * found at its cap (its room no longer exists).
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
-- Removes the charge of room to its address, if any.
local function uncharge (room)
  local ak = P .. 'room:' .. room .. ':a'
  local a = redis.call('GET', ak)
  if a then
    redis.call('SREM', P .. 'addr:' .. a .. ':rooms', room)
    redis.call('DEL', ak)
  end
end
-- Deletes a room that has no member left, with its seats, join order and charge.
local function drop (room)
  local k = P .. 'room:' .. room
  redis.call('DEL', k .. ':m', k .. ':n', k .. ':s', k .. ':q')
  uncharge(room)
end
`

function script (name: string, body: string): Script {
  const lua = COMMON + body
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex') }
}

/**
 * ARGV: prefix, room, peer, role, replica, socket, address, subject (`-`: none), maxPeers,
 * maxSeatsPerAddress, maxSeatsPerSubject, maxViewers, maxViewersPerAddress, maxRoomsPerAddress
 * (0: rooms are not charged). The seat rules are those of signaling/seats.ts `decideSeat`.
 * Returns {'GONE'} when the replica is not registered (its presence expired, or Redis lost its
 * data), {'FULL', reason} when a cap refuses the join (reason: a seats.ts RefusalReason), else
 * {'OK', replacedReplica, replacedSocket, evictedReplica, evictedSocket, published, peer1,
 * role1, peer2, role2, ...} (replaced* empty when nothing was replaced on this replica's
 * behalf: a socket on another replica is told over its channel; evicted* likewise).
 */
export const JOIN = script('join', `
local room, peer, role, node, conn, addr, subj = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local maxPeers, maxAddr, maxSubj, maxViewers, maxViewersAddr, maxRooms = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
if not redis.call('ZSCORE', P .. 'nodes', node) then return {'GONE'} end
local rk = P .. 'room:' .. room
local mk, sk = rk .. ':m', rk .. ':s'
local all = redis.call('HGETALL', mk)
local seats = {}
if #all > 0 then
  local flat = redis.call('HGETALL', sk)
  for i = 1, #flat, 2 do seats[flat[i]] = flat[i + 1] end
end
local old
local total, viewers, ofSubj, ofAddr, viewersOfAddr = 0, 0, 0, 0, 0
local newestViewer, newestViewerSeq = nil, -1
local groups = {}
for i = 1, #all, 2 do
  local p = all[i]
  if p == peer then
    old = all[i + 1]
  else
    local r = split(all[i + 1])
    local a, s, q = '?', '-', 0
    local info = seats[p]
    if info then
      local ia, is, iq = string.match(info, '^(%S+) (%S+) (%d+)$')
      if ia then a, s, q = ia, is, tonumber(iq) end
    end
    total = total + 1
    if r == 'viewer' then
      viewers = viewers + 1
      if q > newestViewerSeq then newestViewer, newestViewerSeq = p, q end
    end
    if s ~= '-' then
      if s == subj then ofSubj = ofSubj + 1 end
    else
      local g = groups[a]
      if not g then g = {n = 0, peer = p, seq = q}; groups[a] = g end
      g.n = g.n + 1
      if q > g.seq then g.peer, g.seq = p, q end
      if subj == '-' and a == addr then
        ofAddr = ofAddr + 1
        if r == 'viewer' then viewersOfAddr = viewersOfAddr + 1 end
      end
    end
  end
end
if subj ~= '-' then
  if ofSubj >= maxSubj then return {'FULL', 'subject'} end
else
  if ofAddr >= maxAddr then return {'FULL', 'address'} end
  if role == 'viewer' and viewersOfAddr >= maxViewersAddr then return {'FULL', 'viewers_address'} end
end
if role == 'viewer' and viewers >= maxViewers then return {'FULL', 'viewers_full'} end
local victim
if total >= maxPeers then
  if role == 'agent' and subj ~= '-' then
    victim = newestViewer
    if not victim then
      local best
      for _, g in pairs(groups) do
        if not best or g.n > best.n or (g.n == best.n and g.seq > best.seq) then best = g end
      end
      if best then victim = best.peer end
    end
  end
  if not victim then return {'FULL', 'room_full'} end
end
if #all == 0 then
  -- A new room: whatever a replica of the previous version left of an earlier one goes.
  redis.call('DEL', sk, rk .. ':q')
  uncharge(room)
  if maxRooms > 0 then
    local ak = P .. 'addr:' .. addr .. ':rooms'
    if redis.call('SCARD', ak) >= maxRooms then
      for _, r in ipairs(redis.call('SMEMBERS', ak)) do
        if redis.call('EXISTS', P .. 'room:' .. r .. ':m') == 0 then redis.call('SREM', ak, r) end
      end
      if redis.call('SCARD', ak) >= maxRooms then return {'FULL', 'rooms_address'} end
    end
    redis.call('SADD', ak, room)
    redis.call('SET', rk .. ':a', addr)
  end
end
local published = 0
local en, ec = '', ''
if victim then
  local vr, vn, vc = split(redis.call('HGET', mk, victim))
  redis.call('HDEL', mk, victim)
  redis.call('HDEL', sk, victim)
  uncount(room, vn)
  if vn == node then
    en, ec = vn, vc
  else
    redis.call('PUBLISH', P .. 'node:' .. vn, '{"t":"e","c":"' .. vc .. '"}')
    published = published + 1
  end
  published = published + fanout(room, event('l', room, victim, vr))
end
local rn, rc = '', ''
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
redis.call('HSET', sk, peer, addr .. ' ' .. subj .. ' ' .. redis.call('INCR', rk .. ':q'))
redis.call('HINCRBY', rk .. ':n', node, 1)
redis.call('SADD', P .. 'node:' .. node .. ':rooms', room)
published = published + fanout(room, event('j', room, peer, role))
local out = {'OK', rn, rc, en, ec, tostring(published)}
local members = redis.call('HGETALL', mk)
for i = 1, #members, 2 do
  local r = split(members[i + 1])
  out[#out + 1] = members[i]
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
redis.call('HDEL', P .. 'room:' .. room .. ':s', peer)
uncount(room, node)
if redis.call('HLEN', mk) == 0 then drop(room) end
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
      redis.call('HDEL', P .. 'room:' .. room .. ':s', all[i])
      gone[#gone + 1] = {all[i], r}
    end
  end
  redis.call('HDEL', nk, dead)
  if redis.call('HLEN', mk) == 0 then drop(room) end
  for _, g in ipairs(gone) do
    published = published + fanout(room, event('l', room, g[1], g[2]))
    members = members + 1
  end
end
redis.call('DEL', rk)
return {tostring(members), tostring(published)}
`)
