/**
 * The RoomStore contract, run against every implementation (partyserver style):
 * MemoryRoomStore in store.test.ts, DurableObjectRoomStore inside workerd in
 * worker/store.test.ts, RedisRoomStore on a real redis-server in test/signaling/redis-store.test.ts.
 *
 * `makeStore` runs one test body against a fresh, empty store and its harness. It takes the
 * body (rather than returning a store) so that an implementation can run it where its store
 * lives — for the Durable Object store, inside the object (`runInDurableObject`).
 *
 * Each test speaks of two replicas, `h` and `h.other`, that share one room state. Where the
 * implementation has exactly one replica (memory, Durable Object) both are the same store; on
 * Redis they are two stores (two "processes") on one Redis. Deliveries to another replica may
 * be asynchronous, so what a listener hears is awaited with a bounded wait.
 */
import { describe, expect, it } from 'vitest'
import { CausewayError } from '../protocol/errors.ts'
import type { Conn, JoinLimits, Member, Role, RoomListener, RoomStore, Seat } from './store.ts'

/** What one replica's listener heard. */
export class Heard<C extends Conn> implements RoomListener<C> {
  readonly joinedEvents: Array<{ room: string, member: Member }> = []
  readonly leftEvents: Array<{ room: string, member: Member }> = []
  readonly delivered: Array<{ conn: string, text: string }> = []
  readonly replacedConns: string[] = []
  readonly evictedConns: string[] = []
  readonly lostConns: string[] = []
  joined (room: string, member: Member): void { this.joinedEvents.push({ room, member }) }
  left (room: string, member: Member): void { this.leftEvents.push({ room, member }) }
  deliver (conn: C, text: string): void { this.delivered.push({ conn: conn.id, text }) }
  replaced (conn: C): void { this.replacedConns.push(conn.id) }
  evicted (conn: C): void { this.evictedConns.push(conn.id) }
  lost (conns: C[]): void { this.lostConns.push(...conns.map(c => c.id)) }
}

export interface Replica<C extends Conn> {
  store: RoomStore<C>
  /** A new open connection held by this replica. */
  conn: () => C
}

export interface StoreHarness<C extends Conn> extends Replica<C> {
  /** A second replica on the same room state; the same replica where there is only one. */
  other: Replica<C>
  /** The store as a fresh instance would see it (after a Durable Object wakes up); the same store where state is only in memory. */
  reload: () => RoomStore<C>
  /** Stops `other` as kill -9 would (no goodbye); only where there are several replicas. */
  crashOther?: () => Promise<void>
}

export type StoreFactory<C extends Conn> = (body: (h: StoreHarness<C>) => void | Promise<void>) => Promise<void>

export interface ContractOptions {
  /** Several replicas: the presence of a replica that dies expires within `presenceBoundMs`. */
  replicated?: { presenceBoundMs: number }
}

/** The room the suite's sockets join (a Durable Object harness accepts its sockets for it). */
export const CONTRACT_ROOM = 'contract-room-0000000001'
const ROOM = CONTRACT_ROOM
const OTHER_ROOM = 'contract-room-0000000002'
/** Caps high enough that only maxPeers matters (seats.contract.ts tests the others). */
export const LIMITS: JoinLimits = { maxPeers: 64, maxSeatsPerAddress: 64, maxSeatsPerSubject: 64, maxViewers: 64, maxViewersPerAddress: 64, maxRoomsPerAddress: Infinity }
/** The seat of every join of this suite: one address. */
const AT: Seat = { address: '192.0.2.1' }
const agent = (peer: string): Member => ({ peer, role: 'agent' })
const viewer = (peer: string): Member => ({ peer, role: 'viewer' })
const BOTH: readonly Role[] = ['agent', 'viewer']
const byPeer = (ms: Member[]): Member[] => [...ms].sort((a, b) => a.peer.localeCompare(b.peer))

/** Retries `check` until it stops throwing (at most `ms`). */
export async function eventually (check: () => void, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    try { check(); return } catch (err) {
      if (Date.now() > deadline) throw err
    }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** Listeners on both replicas (one when they are the same store). */
export function listen<C extends Conn> (h: StoreHarness<C>): { here: Heard<C>, there: Heard<C> } {
  const here = new Heard<C>()
  h.store.listen(here)
  if (h.other.store === h.store) return { here, there: here }
  const there = new Heard<C>()
  h.other.store.listen(there)
  return { here, there }
}

export async function rejects (p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CausewayError)
  expect((err as CausewayError).code).toBe(code)
}

export function roomStoreContract<C extends Conn> (name: string, makeStore: StoreFactory<C>, opts: ContractOptions = {}): void {
  describe(`RoomStore contract: ${name}`, () => {
    it('starts empty', async () => {
      await makeStore(async (h) => {
        const { store, conn } = h
        expect(store.joinedAs(conn())).toBeUndefined()
        expect(store.local(ROOM)).toEqual([])
        expect(await store.members(ROOM)).toEqual([])
        expect(store.counts()).toEqual({ rooms: 0, peers: 0 })
      })
    })

    it('join resolves with the members and records the socket locally; members are the same from every replica', async () => {
      await makeStore(async (h) => {
        listen(h)
        const a = h.conn()
        const b = h.other.conn()
        expect(await h.store.join(ROOM, a, agent('peer-aaaa'), AT, LIMITS)).toEqual([agent('peer-aaaa')])
        expect(byPeer(await h.other.store.join(ROOM, b, viewer('peer-bbbb'), AT, LIMITS))).toEqual([agent('peer-aaaa'), viewer('peer-bbbb')])
        expect(h.store.joinedAs(a)).toEqual({ room: ROOM, peer: 'peer-aaaa', role: 'agent' })
        expect(h.other.store.joinedAs(b)).toEqual({ room: ROOM, peer: 'peer-bbbb', role: 'viewer' })
        expect(h.store.local(ROOM).map(e => e.conn.id)).toContain(a.id)
        expect(h.store.local(ROOM).find(e => e.conn.id === a.id)?.member).toEqual(agent('peer-aaaa'))
        for (const s of [h.store, h.other.store]) expect(byPeer(await s.members(ROOM))).toEqual([agent('peer-aaaa'), viewer('peer-bbbb')])
        expect(await h.store.members(OTHER_ROOM)).toEqual([])
        expect(h.store.local(OTHER_ROOM)).toEqual([])
        const total = h.other.store === h.store ? h.store.counts() : { rooms: h.store.counts().rooms, peers: h.store.counts().peers + h.other.store.counts().peers }
        expect(total).toEqual({ rooms: 1, peers: 2 })
      })
    })

    it('every replica holding a socket of the room hears joined, with the role', async () => {
      await makeStore(async (h) => {
        const { here, there } = listen(h)
        await h.store.join(ROOM, h.conn(), agent('peer-aaaa'), AT, LIMITS)
        await h.other.store.join(ROOM, h.other.conn(), viewer('peer-vvvv'), AT, LIMITS)
        for (const heard of [here, there]) {
          await eventually(() => expect(heard.joinedEvents).toContainEqual({ room: ROOM, member: viewer('peer-vvvv') }))
        }
        await eventually(() => expect(here.joinedEvents).toContainEqual({ room: ROOM, member: agent('peer-aaaa') }))
      })
    })

    it('a second join on the same socket is BAD_MESSAGE and changes nothing', async () => {
      await makeStore(async (h) => {
        listen(h)
        const a = h.conn()
        await h.store.join(ROOM, a, agent('peer-aaaa'), AT, LIMITS)
        await rejects(h.store.join(ROOM, a, agent('peer-cccc'), AT, LIMITS), 'BAD_MESSAGE')
        expect(h.store.joinedAs(a)?.peer).toBe('peer-aaaa')
        expect(await h.store.members(ROOM)).toEqual([agent('peer-aaaa')])
      })
    })

    it('a newer socket of a peer replaces the older one, on the same replica or another', async () => {
      await makeStore(async (h) => {
        const { here, there } = listen(h)
        const a1 = h.conn()
        const a2 = h.other.conn()
        const a3 = h.conn()
        await h.store.join(ROOM, h.conn(), agent('peer-wwww'), AT, LIMITS)
        await h.store.join(ROOM, a1, agent('peer-aaaa'), AT, LIMITS)
        expect(await h.other.store.join(ROOM, a2, agent('peer-aaaa'), AT, LIMITS)).toHaveLength(2)
        await eventually(() => expect(here.replacedConns).toContain(a1.id))
        expect(h.store.joinedAs(a1)).toBeUndefined()
        expect(h.other.store.joinedAs(a2)?.peer).toBe('peer-aaaa')
        expect(await h.store.leave(a1)).toBeUndefined()
        await h.store.join(ROOM, a3, viewer('peer-aaaa'), AT, LIMITS)
        await eventually(() => expect(there.replacedConns).toContain(a2.id))
        expect(h.other.store.joinedAs(a2)).toBeUndefined()
        expect(await h.other.store.leave(a2)).toBeUndefined()
        expect(byPeer(await h.other.store.members(ROOM))).toEqual([viewer('peer-aaaa'), agent('peer-wwww')])
        // Every join was heard (the replacing ones too), no leave was.
        await eventually(() => expect(here.joinedEvents.filter(e => e.member.peer === 'peer-aaaa')).toHaveLength(3))
        expect(here.leftEvents).toEqual([])
        expect(here.replacedConns.filter(id => id !== a1.id && id !== a2.id)).toEqual([])
      })
    })

    it('leave returns the member once, is heard as left, and returns nothing for a socket that never joined', async () => {
      await makeStore(async (h) => {
        const { here } = listen(h)
        const a = h.conn()
        const b = h.other.conn()
        const stranger = h.conn()
        await h.store.join(ROOM, a, agent('peer-aaaa'), AT, LIMITS)
        await h.other.store.join(ROOM, b, viewer('peer-bbbb'), AT, LIMITS)
        expect(await h.store.leave(stranger)).toBeUndefined()
        expect(await h.other.store.leave(b)).toEqual(viewer('peer-bbbb'))
        expect(await h.other.store.leave(b)).toBeUndefined()
        expect(h.other.store.joinedAs(b)).toBeUndefined()
        await eventually(() => expect(here.leftEvents).toEqual([{ room: ROOM, member: viewer('peer-bbbb') }]))
        expect(await h.store.members(ROOM)).toEqual([agent('peer-aaaa')])
        expect(await h.store.leave(a)).toEqual(agent('peer-aaaa'))
        expect(await h.store.members(ROOM)).toEqual([])
        expect(h.store.local(ROOM)).toEqual([])
        expect(h.store.counts()).toEqual({ rooms: 0, peers: 0 })
      })
    })

    it('maxPeers holds across replicas, for concurrent joins too; a peer already in a full room may join again', async () => {
      await makeStore(async (h) => {
        listen(h)
        const limits = { ...LIMITS, maxPeers: 3 }
        const tries = await Promise.allSettled([
          h.store.join(ROOM, h.conn(), agent('peer-0000'), AT, limits),
          h.other.store.join(ROOM, h.other.conn(), agent('peer-1111'), AT, limits),
          h.store.join(ROOM, h.conn(), agent('peer-2222'), AT, limits),
          h.other.store.join(ROOM, h.other.conn(), agent('peer-3333'), AT, limits),
          h.store.join(ROOM, h.conn(), agent('peer-4444'), AT, limits),
        ])
        expect(tries.filter(t => t.status === 'fulfilled')).toHaveLength(3)
        const refused = tries.filter((t): t is PromiseRejectedResult => t.status === 'rejected')
        expect(refused).toHaveLength(2)
        for (const r of refused) expect((r.reason as CausewayError).code).toBe('ROOM_FULL')
        const inside = await h.store.members(ROOM)
        expect(inside).toHaveLength(3)
        const again = h.other.conn()
        await h.other.store.join(ROOM, again, agent(inside[0]?.peer ?? ''), AT, limits)
        await rejects(h.other.store.join(ROOM, h.other.conn(), agent('peer-5555'), AT, limits), 'ROOM_FULL')
        await h.other.store.leave(again)
        expect(await h.store.join(ROOM, h.conn(), agent('peer-5555'), AT, limits)).toHaveLength(3)
      })
    })

    it('send hands the text to the peer\'s current socket wherever it is held, in order, and only to the roles given', async () => {
      await makeStore(async (h) => {
        const { there } = listen(h)
        const a = h.conn()
        const v = h.other.conn()
        await h.store.join(ROOM, a, agent('peer-aaaa'), AT, LIMITS)
        await h.other.store.join(ROOM, v, viewer('peer-vvvv'), AT, LIMITS)
        expect(await h.store.send(ROOM, 'peer-vvvv', ['agent'], 'not for viewers')).toBe(false)
        expect(await h.store.send(ROOM, 'peer-nobody', BOTH, 'to nobody')).toBe(false)
        expect(await h.store.send(OTHER_ROOM, 'peer-vvvv', BOTH, 'wrong room')).toBe(false)
        const texts = Array.from({ length: 50 }, (_, i) => `{"type":"signal","from":"peer-aaaa","sealed":"n${i}"}`)
        const sent = await Promise.all(texts.map(async t => await h.store.send(ROOM, 'peer-vvvv', BOTH, t)))
        expect(sent.every(Boolean)).toBe(true)
        await eventually(() => expect(there.delivered.filter(d => d.conn === v.id).map(d => d.text)).toEqual(texts))
        expect(there.delivered.every(d => d.conn === v.id)).toBe(true)
      })
    })

    it('remembers each peer\'s role, across a replace and a reload', async () => {
      await makeStore(async (h) => {
        listen(h)
        const a = h.conn()
        const v = h.conn()
        await h.store.join(ROOM, a, agent('peer-aaaa'), AT, LIMITS)
        await h.store.join(ROOM, v, viewer('peer-vvvv'), AT, LIMITS)
        const v2 = h.conn()
        await h.store.join(ROOM, v2, agent('peer-vvvv'), AT, LIMITS)
        const again = h.reload()
        expect(byPeer(await again.members(ROOM))).toEqual([agent('peer-aaaa'), agent('peer-vvvv')])
        expect(again.joinedAs(v2)).toEqual({ room: ROOM, peer: 'peer-vvvv', role: 'agent' })
        expect(again.joinedAs(v)).toBeUndefined()
      })
    })

    it('state survives a reload (hibernation): joins, replaces and leaves', async () => {
      await makeStore(async (h) => {
        listen(h)
        const [a, a2, b, c] = [h.conn(), h.conn(), h.conn(), h.conn()]
        await h.store.join(ROOM, a, agent('peer-aaaa'), AT, LIMITS)
        await h.store.join(ROOM, b, agent('peer-bbbb'), AT, LIMITS)
        await h.store.join(ROOM, c, agent('peer-cccc'), AT, LIMITS)
        await h.store.join(ROOM, a2, agent('peer-aaaa'), AT, LIMITS)
        await h.store.leave(c)
        const again = h.reload()
        again.listen(new Heard<C>())
        expect(byPeer(await again.members(ROOM))).toEqual([agent('peer-aaaa'), agent('peer-bbbb')])
        expect(again.joinedAs(a2)?.peer).toBe('peer-aaaa')
        expect(again.joinedAs(a)).toBeUndefined()
        expect(again.local(ROOM).map(e => e.conn.id).sort()).toEqual([a2.id, b.id].sort())
        expect(await again.leave(a)).toBeUndefined()
        expect(await again.leave(b)).toEqual(agent('peer-bbbb'))
        expect(await again.members(ROOM)).toEqual([agent('peer-aaaa')])
        expect(await again.send(ROOM, 'peer-aaaa', BOTH, 'after the reload')).toBe(true)
      })
    })

    if (opts.replicated !== undefined) {
      const bound = opts.replicated.presenceBoundMs
      it(`a replica that dies without a word: its peers' presence expires within ${bound} ms and the others hear left, except peers that joined again elsewhere`, async () => {
        await makeStore(async (h) => {
          const { here } = listen(h)
          if (h.crashOther === undefined) throw new Error('the harness of a replicated store must crash its other replica')
          await h.store.join(ROOM, h.conn(), agent('peer-here'), AT, LIMITS)
          await h.other.store.join(ROOM, h.other.conn(), agent('peer-gone'), AT, LIMITS)
          await h.other.store.join(ROOM, h.other.conn(), viewer('peer-view'), AT, LIMITS)
          await h.other.store.join(ROOM, h.other.conn(), agent('peer-move'), AT, LIMITS)
          await h.other.store.join(OTHER_ROOM, h.other.conn(), agent('peer-else'), AT, LIMITS)
          await h.crashOther()
          const t0 = Date.now()
          // A peer of the dead replica that reconnects here before the expiry keeps its presence.
          await h.store.join(ROOM, h.conn(), agent('peer-move'), AT, LIMITS)
          await eventually(() => expect(here.leftEvents.map(e => e.member.peer).sort()).toEqual(['peer-gone', 'peer-view']), bound + 2000)
          const took = Date.now() - t0
          expect(took).toBeLessThanOrEqual(bound)
          expect(here.leftEvents).toContainEqual({ room: ROOM, member: viewer('peer-view') })
          expect(byPeer(await h.store.members(ROOM))).toEqual([agent('peer-here'), agent('peer-move')])
          expect(await h.store.members(OTHER_ROOM)).toEqual([])
          expect(await h.store.send(ROOM, 'peer-gone', BOTH, 'to the dead')).toBe(false)
        })
      })
    }
  })
}
