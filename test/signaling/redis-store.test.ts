/**
 * RedisRoomStore on a real redis-server (started here on a free loopback port): the RoomStore
 * contract with two replicas (two stores, as two processes would have) on one Redis, then what
 * only a shared store can suffer: Redis going away and coming back empty, a dropped connection
 * while Redis keeps its data (no ghost members survive it), a replica whose presence expired
 * while it stalled, and garbage on a replica's channel.
 */
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CausewayError } from '../../protocol/errors.ts'
import { RedisRoomStore } from '../../signaling/node/redis-store.ts'
import { seatContract } from '../../signaling/seats.contract.ts'
import { eventually, Heard, LIMITS, roomStoreContract, type StoreFactory } from '../../signaling/store.contract.ts'
import type { Conn } from '../../signaling/store.ts'
import { haveRedis, startRedis, type RedisServer } from './redis.ts'

const TTL = 1500
const HEARTBEAT = 300
const ROOM = 'redis-room-000000000001'
const AT = { address: '192.0.2.1' }
const L8 = { ...LIMITS, maxPeers: 8 }

let redis: RedisServer
let prefixes = 0
let conns = 0
const newConn = (): Conn => ({ id: `conn-${++conns}`, send () {}, close () {} })
const newStore = (prefix: string, init: { presenceTtlMs?: number, heartbeatMs?: number } = {}): RedisRoomStore<Conn> =>
  new RedisRoomStore<Conn>({ url: redis.url, prefix, presenceTtlMs: init.presenceTtlMs ?? TTL, heartbeatMs: init.heartbeatMs ?? HEARTBEAT })

async function code (p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  return err instanceof CausewayError ? err.code : `no CausewayError: ${String(err)}`
}

describe.skipIf(!haveRedis())('RedisRoomStore on a real redis-server', () => {
  beforeAll(async () => { redis = await startRedis() })
  afterAll(async () => { await redis?.close() })

  const twoReplicas: StoreFactory<Conn> = async (body) => {
    const prefix = `contract${++prefixes}:`
    const here = newStore(prefix)
    const there = newStore(prefix)
    try {
      await Promise.all([here.ready(), there.ready()])
      await body({
        store: here,
        conn: newConn,
        other: { store: there, conn: newConn },
        reload: () => here,
        crashOther: async () => { await there.close() },
      })
    } finally {
      await Promise.all([here.close(), there.close()])
    }
  }
  roomStoreContract<Conn>('RedisRoomStore (two replicas on one redis-server)', twoReplicas, { replicated: { presenceBoundMs: TTL + HEARTBEAT + 200 } })
  seatContract<Conn>('RedisRoomStore (two replicas on one redis-server)', twoReplicas, { roomsPerAddress: true, replicated: { presenceBoundMs: TTL + HEARTBEAT + 200 } })

  it('losing Redis: local sockets are handed back as lost, joins and signals are STORE_UNAVAILABLE; it recovers by itself when Redis returns', async () => {
    const store = newStore('loss:')
    const heard = new Heard<Conn>()
    store.listen(heard)
    try {
      await store.ready()
      const a = newConn()
      await store.join(ROOM, a, { peer: 'peer-aaaa', role: 'agent' }, AT, L8)
      await redis.stop()
      await eventually(() => expect(heard.lostConns).toEqual([a.id]), 3000)
      expect(store.available).toBe(false)
      expect(store.joinedAs(a)).toBeUndefined()
      expect(await code(store.join(ROOM, newConn(), { peer: 'peer-bbbb', role: 'agent' }, AT, L8))).toBe('STORE_UNAVAILABLE')
      expect(await code(store.send(ROOM, 'peer-aaaa', ['agent'], 'x'))).toBe('STORE_UNAVAILABLE')
      expect(await code(store.members(ROOM))).toBe('STORE_UNAVAILABLE')
      expect(await store.leave(a)).toBeUndefined()
      const down = Date.now()
      await redis.start()
      await store.ready(5000)
      // ioredis retries every <= 1 s, then the next beat (300 ms here) registers again.
      expect(Date.now() - down).toBeLessThan(3000)
      const b = newConn()
      expect(await store.join(ROOM, b, { peer: 'peer-bbbb', role: 'agent' }, AT, L8)).toEqual([{ peer: 'peer-bbbb', role: 'agent' }])
    } finally {
      await store.close()
    }
  })

  it('a dropped connection while Redis keeps its data: the replica closes its sockets and, recovering, removes its members (the others hear left), so no ghost survives', async () => {
    const here = newStore('drop:')
    const there = newStore('drop:')
    const heardHere = new Heard<Conn>()
    const heardThere = new Heard<Conn>()
    here.listen(heardHere)
    there.listen(heardThere)
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    try {
      await Promise.all([here.ready(), there.ready(), admin.connect()])
      const x = newConn()
      await there.join(ROOM, newConn(), { peer: 'peer-stay', role: 'agent' }, AT, L8)
      await here.join(ROOM, x, { peer: 'peer-xxxx', role: 'viewer' }, AT, L8)
      // Both connections of `here` (named after its replica id), not `there`'s.
      const list = String(await admin.call('CLIENT', 'LIST'))
      const ids = list.split('\n').filter(l => l.includes(`name=causeway-signaling-${here.node}`)).map(l => /\bid=(\d+)/.exec(l)?.[1] ?? '')
      expect(ids).toHaveLength(2)
      for (const id of ids) expect(Number(await admin.call('CLIENT', 'KILL', 'ID', id))).toBe(1)
      await eventually(() => expect(heardHere.lostConns).toEqual([x.id]), 3000)
      await here.ready(5000)
      await eventually(() => expect(heardThere.leftEvents).toEqual([{ room: ROOM, member: { peer: 'peer-xxxx', role: 'viewer' } }]), 3000)
      expect(await there.members(ROOM)).toEqual([{ peer: 'peer-stay', role: 'agent' }])
      expect(heardThere.lostConns).toEqual([])
      expect(await here.join(ROOM, newConn(), { peer: 'peer-xxxx', role: 'viewer' }, AT, L8)).toHaveLength(2)
    } finally {
      admin.disconnect()
      await Promise.all([here.close(), there.close()])
    }
  })

  /** One replica with a socket joined as peer-aaaa, its listener, and an admin connection to the same Redis. */
  async function withJoinedReplica (prefix: string, body: (r: { here: RedisRoomStore<Conn>, heard: Heard<Conn>, admin: Redis, a: Conn }) => Promise<void>): Promise<void> {
    const here = newStore(prefix)
    const heard = new Heard<Conn>()
    here.listen(heard)
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    try {
      await Promise.all([here.ready(), admin.connect()])
      const a = newConn()
      await here.join(ROOM, a, { peer: 'peer-aaaa', role: 'agent' }, AT, L8)
      await body({ here, heard, admin, a })
    } finally {
      admin.disconnect()
      await here.close()
    }
  }

  it('a replica whose presence expired (a stall past the TTL) notices at its next beat, closes its sockets and registers again', async () => {
    await withJoinedReplica('stall:', async ({ here, heard, admin, a }) => {
      // What another replica's REAP does to a replica that stopped beating.
      expect(await admin.zrem('stall:nodes', here.node)).toBe(1)
      await eventually(() => expect(heard.lostConns).toEqual([a.id]), 2000)
      await here.ready(3000)
      expect(await here.members(ROOM)).toEqual([])
      expect(await here.join(ROOM, newConn(), { peer: 'peer-aaaa', role: 'agent' }, AT, L8)).toHaveLength(1)
    })
  })

  it('garbage on a replica\'s channel is dropped; the replica keeps working', async () => {
    await withJoinedReplica('garbage:', async ({ here, heard, admin, a }) => {
      const channel = `garbage:node:${here.node}`
      for (const junk of ['not json', '{"t":"s","c":"conn with spaces","x":"y"}', '{"t":"j","r":"r","p":"p","o":"root"}', '{"t":"r"}', `{"t":"s","c":"${a.id}","x":${JSON.stringify('A'.repeat(2 << 20))}}`]) {
        expect(await admin.publish(channel, junk)).toBe(1)
      }
      expect(await here.send(ROOM, 'peer-aaaa', ['agent'], 'still here')).toBe(true)
      await eventually(() => expect(heard.delivered).toEqual([{ conn: a.id, text: 'still here' }]))
      expect(heard.replacedConns).toEqual([])
      expect(here.joinedAs(a)?.peer).toBe('peer-aaaa')
    })
  })

  it('rooms, seats and the charges of rooms per address leave no key behind: after leaves, an eviction, and the reap of a dead replica', async () => {
    const here = newStore('keys:')
    const there = newStore('keys:')
    here.listen(new Heard<Conn>())
    there.listen(new Heard<Conn>())
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    const open = { ...LIMITS, maxPeers: 3, maxRoomsPerAddress: 4 }
    try {
      await Promise.all([here.ready(), there.ready(), admin.connect()])
      const mine: Conn[] = []
      for (const [i, room] of ['keys-room-0000000000000001', 'keys-room-0000000000000002', 'keys-room-0000000000000003'].entries()) {
        const c = newConn()
        await here.join(room, c, { peer: `peer-h${i}`, role: 'agent' }, { address: '192.0.2.1' }, open)
        mine.push(c)
        await there.join(room, newConn(), { peer: `peer-t${i}`, role: 'viewer' }, { address: '192.0.2.2' }, open)
      }
      // A full room: an agent with a subject evicts the viewer on the other replica.
      await there.join('keys-room-0000000000000001', newConn(), { peer: 'peer-x0', role: 'agent' }, { address: '192.0.2.3' }, open)
      const s = newConn()
      await here.join('keys-room-0000000000000001', s, { peer: 'peer-s0', role: 'agent' }, { address: '192.0.2.3', subject: 'subject-S' }, open)
      mine.push(s)
      expect(await admin.smembers('keys:addr:192.0.2.1:rooms')).toHaveLength(3)
      for (const c of mine) await here.leave(c)
      // What is left lives on `there` only; it dies, `here` reaps it.
      await there.close()
      const t0 = Date.now()
      while (Date.now() - t0 < TTL + HEARTBEAT + 2000 && (await admin.keys('keys:room:*')).length > 0) await new Promise(resolve => setTimeout(resolve, 50))
      expect(await admin.keys('keys:room:*')).toEqual([])
      expect(await admin.keys('keys:addr:*')).toEqual([])
    } finally {
      admin.disconnect()
      await Promise.all([here.close(), there.close()])
    }
  })

  it('a rolling update: members recorded by a replica of the previous version (no seat record) are counted, and what it leaves of a deleted room is cleared when the room is made again', async () => {
    await withJoinedReplica('rolling:', async ({ here, admin }) => {
      // As the previous JOIN script records a member: no `:s` entry.
      const room = 'rolling-room-00000000001'
      await admin.hset(`rolling:room:${room}:m`, 'peer-oldv', `agent ${here.node} conn-of-an-old-replica`)
      await admin.hincrby(`rolling:room:${room}:n`, here.node, 1)
      await admin.sadd(`rolling:node:${here.node}:rooms`, room)
      const one = { ...LIMITS, maxSeatsPerAddress: 1, maxRoomsPerAddress: 4 }
      expect(await here.join(room, newConn(), { peer: 'peer-new1', role: 'agent' }, { address: '192.0.2.1' }, one)).toHaveLength(2)
      expect(await code(here.join(room, newConn(), { peer: 'peer-new2', role: 'agent' }, { address: '192.0.2.1' }, one))).toBe('SEAT_LIMIT')
      // As the previous LEAVE leaves a room it deleted: the seats, join order and charge stay.
      const gone = 'rolling-room-00000000002'
      await admin.hset(`rolling:room:${gone}:s`, 'peer-ghost', '192.0.2.9 - 7')
      await admin.set(`rolling:room:${gone}:q`, '7')
      await admin.set(`rolling:room:${gone}:a`, '192.0.2.9')
      await admin.sadd('rolling:addr:192.0.2.9:rooms', gone)
      await here.join(gone, newConn(), { peer: 'peer-new3', role: 'agent' }, { address: '192.0.2.1' }, one)
      expect(Object.keys(await admin.hgetall(`rolling:room:${gone}:s`))).toEqual(['peer-new3'])
      expect(await admin.smembers('rolling:addr:192.0.2.9:rooms')).toEqual([])
      expect(await admin.get(`rolling:room:${gone}:a`)).toBe('192.0.2.1')
    })
  })
})
