/**
 * The seat and room caps of the RoomStore contract (seats.ts has the rules), run against every
 * store beside store.contract.ts: memory (store.test.ts), Durable Object inside workerd
 * (worker/store.test.ts), Redis with two replicas (test/signaling/redis-store.test.ts). Each
 * test is an attack that must fail: a sender (a client address, or an agent's ticket subject)
 * takes seats until refused, and the network's other agents still get theirs; an agent whose
 * ticket names it gets a seat in a full room. On Redis the sockets are spread over both
 * replicas and joins race each other, so the caps are shown to be atomic across replicas.
 */
import { describe, expect, it } from 'vitest'
import { JoinRefused, type RefusalReason } from './seats.ts'
import { CONTRACT_ROOM, eventually, Heard, listen, type StoreFactory, type StoreHarness } from './store.contract.ts'
import type { Conn, JoinLimits, Member, Role, RoomStore, Seat } from './store.ts'

export interface SeatContractOptions {
  /** The store counts rooms per address (memory, Redis; not the Durable Object: one room per object). */
  roomsPerAddress?: boolean
  /** Several replicas: a dead replica's rooms stop counting within `presenceBoundMs`. */
  replicated?: { presenceBoundMs: number }
}

const ROOM = CONTRACT_ROOM
const CAPS: JoinLimits = { maxPeers: 8, maxSeatsPerAddress: 3, maxSeatsPerSubject: 2, maxViewers: 3, maxViewersPerAddress: 2, maxRoomsPerAddress: Infinity }
const A = '192.0.2.1'
const B = '2001:db8:1:2::/64'
const C = '198.51.100.7'
const D = '203.0.113.9'
const at = (address: string, subject?: string): Seat => ({ address, ...(subject !== undefined ? { subject } : {}) })
const m = (peer: string, role: Role = 'agent'): Member => ({ peer, role })

/** The refusal of a join: its code and reason. */
async function refused (p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  if (!(err instanceof JoinRefused)) throw new Error(`expected a JoinRefused, got ${String(err)}`)
  return `${err.code} ${err.reason}`
}
const why = (code: string, reason: RefusalReason): string => `${code} ${reason}`

/** Joins one socket (on replica `where`) and returns it. */
async function seat<C extends Conn> (h: StoreHarness<C>, where: 'here' | 'there', peer: string, s: Seat, role: Role = 'agent', limits: JoinLimits = CAPS, room = ROOM, store?: RoomStore<C>): Promise<C> {
  const r = where === 'here' ? h : h.other
  const conn = r.conn()
  await (store ?? r.store).join(room, conn, m(peer, role), s, limits)
  return conn
}

const peersOf = async <C extends Conn> (store: RoomStore<C>, room = ROOM): Promise<string[]> => (await store.members(room)).map(x => x.peer).sort()

export function seatContract<C extends Conn> (name: string, makeStore: StoreFactory<C>, opts: SeatContractOptions = {}): void {
  describe(`RoomStore seats: ${name}`, () => {
    it('one address opens seats until SEAT_LIMIT, joins racing on every replica; other addresses and agents with their own subject still join', async () => {
      await makeStore(async (h) => {
        listen(h)
        const tries = await Promise.allSettled(Array.from({ length: 6 }, async (_, i) => await seat(h, i % 2 === 0 ? 'here' : 'there', `peer-a${i}`, at(A))))
        expect(tries.filter(t => t.status === 'fulfilled')).toHaveLength(3)
        for (const t of tries) if (t.status === 'rejected') expect(await refused(Promise.reject(t.reason))).toBe(why('SEAT_LIMIT', 'address'))
        // The network's other agents: other addresses, and agents behind the same address with their own tickets.
        await seat(h, 'there', 'peer-b0', at(B))
        await seat(h, 'here', 'peer-c0', at(C))
        await seat(h, 'here', 'peer-s0', at(A, 'subject-S'))
        await seat(h, 'there', 'peer-t0', at(A, 'subject-T'))
        expect(await peersOf(h.store)).toHaveLength(7)
        expect(await refused(seat(h, 'here', 'peer-a9', at(A)))).toBe(why('SEAT_LIMIT', 'address'))
        // A seat given back is one the address may take again.
        const mine = (await h.store.members(ROOM)).map(x => x.peer).filter(p => p.startsWith('peer-a'))
        const holder = tries.findIndex(t => t.status === 'fulfilled')
        const conn = tries[holder]?.status === 'fulfilled' ? (tries[holder] as PromiseFulfilledResult<C>).value : undefined
        if (conn === undefined) throw new Error('no seat of A')
        expect(await (holder % 2 === 0 ? h.store : h.other.store).leave(conn)).toEqual(m(`peer-a${holder}`))
        expect(mine).toContain(`peer-a${holder}`)
        await seat(h, 'there', 'peer-a9', at(A))
      })
    })

    it('viewers: at most maxViewersPerAddress from one address and maxViewers in the room; agents still join', async () => {
      await makeStore(async (h) => {
        listen(h)
        await seat(h, 'here', 'peer-v0', at(A), 'viewer')
        await seat(h, 'there', 'peer-v1', at(A), 'viewer')
        expect(await refused(seat(h, 'here', 'peer-v2', at(A), 'viewer'))).toBe(why('SEAT_LIMIT', 'viewers_address'))
        // One more seat of A is allowed as an agent (3 per address), not as a viewer.
        await seat(h, 'here', 'peer-a0', at(A))
        await seat(h, 'there', 'peer-v3', at(B), 'viewer')
        expect(await refused(seat(h, 'here', 'peer-v4', at(C), 'viewer'))).toBe(why('ROOM_FULL', 'viewers_full'))
        // A member's debug page with its agent ticket is a viewer of its subject: capped as a viewer too.
        expect(await refused(seat(h, 'there', 'peer-v5', at(D, 'subject-S'), 'viewer'))).toBe(why('ROOM_FULL', 'viewers_full'))
        await seat(h, 'here', 'peer-c0', at(C))
        expect((await h.store.members(ROOM)).filter(x => x.role === 'viewer')).toHaveLength(3)
      })
    })

    it('an agent\'s ticket subject holds at most maxSeatsPerSubject seats, from any addresses; its seats do not count against an address', async () => {
      await makeStore(async (h) => {
        listen(h)
        const tries = await Promise.allSettled([A, B, C, D].map(async (addr, i) => await seat(h, i % 2 === 0 ? 'here' : 'there', `peer-s${i}`, at(addr, 'subject-S'))))
        expect(tries.filter(t => t.status === 'fulfilled')).toHaveLength(2)
        for (const t of tries) if (t.status === 'rejected') expect(await refused(Promise.reject(t.reason))).toBe(why('SEAT_LIMIT', 'subject'))
        // The address seats are all there still for joins without a subject, and another subject has its own.
        for (let i = 0; i < 3; i++) await seat(h, 'here', `peer-a${i}`, at(A))
        for (let i = 0; i < 3; i++) await seat(h, 'there', `peer-b${i}`, at(B))
        expect(await peersOf(h.store)).toHaveLength(8)
      })
    })

    it('a full room gives an agent with a subject a seat: the newest viewer goes, then the newest seat of the address holding the most; never a seat with a subject', async () => {
      await makeStore(async (h) => {
        const { here, there } = listen(h)
        // (Sorted: the two replicas' lists interleave in time.)
        const evicted = (): string[] => [...new Set([...here.evictedConns, ...there.evictedConns])].sort()
        const conns: Record<string, C> = {}
        // A (3 agents) then B (3 agents) then two viewers of C: eight seats, the room is full.
        for (let i = 0; i < 3; i++) conns[`peer-a${i}`] = await seat(h, 'here', `peer-a${i}`, at(A))
        for (let i = 0; i < 3; i++) conns[`peer-b${i}`] = await seat(h, 'there', `peer-b${i}`, at(B))
        conns['peer-v0'] = await seat(h, 'there', 'peer-v0', at(C), 'viewer')
        conns['peer-v1'] = await seat(h, 'here', 'peer-v1', at(C), 'viewer')
        expect(await refused(seat(h, 'here', 'peer-x0', at(D)))).toBe(why('ROOM_FULL', 'room_full'))
        expect(await refused(seat(h, 'here', 'peer-x1', at(D), 'viewer'))).toBe(why('ROOM_FULL', 'room_full'))
        expect(await refused(seat(h, 'here', 'peer-x2', at(D, 'subject-X'), 'viewer'))).toBe(why('ROOM_FULL', 'room_full'))
        const order: string[] = []
        const expectEvicted = async (peer: string): Promise<void> => {
          order.push(peer)
          await eventually(() => expect(evicted()).toEqual(order.map(p => conns[p]?.id ?? '').sort()))
          for (const heard of h.other.store === h.store ? [here] : [here, there]) {
            await eventually(() => expect(heard.leftEvents.map(e => e.member.peer)).toContain(peer))
          }
          expect(await peersOf(h.store)).not.toContain(peer)
        }
        // Through either replica: the viewers go first, newest first.
        await seat(h, 'here', 'peer-s0', at(D, 'subject-S'))
        await expectEvicted('peer-v1')
        await seat(h, 'there', 'peer-s1', at(D, 'subject-S'))
        await expectEvicted('peer-v0')
        expect(await refused(seat(h, 'here', 'peer-s2', at(D, 'subject-S')))).toBe(why('SEAT_LIMIT', 'subject'))
        // Then the address holding the most (a tie: the one whose newest seat is newer), its newest seat.
        const expected = ['peer-b2', 'peer-a2', 'peer-b1', 'peer-a1', 'peer-b0', 'peer-a0']
        const subjects = ['subject-T', 'subject-T', 'subject-U', 'subject-U', 'subject-V', 'subject-V']
        for (const [i, subject] of subjects.entries()) {
          await seat(h, i % 2 === 0 ? 'there' : 'here', `peer-${subject.slice(-1).toLowerCase()}${i}`, at(D, subject))
          await expectEvicted(expected[i] ?? '')
        }
        // Eight proven agents' seats: nothing is evicted for a ninth subject.
        expect(await refused(seat(h, 'here', 'peer-w0', at(D, 'subject-W')))).toBe(why('ROOM_FULL', 'room_full'))
        expect(await h.store.members(ROOM)).toHaveLength(8)
        expect(evicted()).toHaveLength(8)
        // An evicted socket is forgotten: leaving announces nothing more.
        const v1 = conns['peer-v1']
        if (v1 !== undefined) expect(await h.store.leave(v1)).toBeUndefined()
      })
    })

    it('a peer joining again is checked with its own seat aside: moving seats between addresses gains nothing', async () => {
      await makeStore(async (h) => {
        listen(h)
        for (let i = 0; i < 3; i++) await seat(h, 'here', `peer-a${i}`, at(A))
        const b0 = await seat(h, 'there', 'peer-b0', at(B))
        // Its own seat again (a reconnect): fine.
        await seat(h, 'there', 'peer-a0', at(A))
        // B's peer reconnecting from A would give A a fourth seat: refused, and its socket stays.
        expect(await refused(seat(h, 'here', 'peer-b0', at(A)))).toBe(why('SEAT_LIMIT', 'address'))
        expect(h.other.store.joinedAs(b0)?.peer).toBe('peer-b0')
        // A's peer moving to B frees a seat of A.
        await seat(h, 'here', 'peer-a1', at(B))
        await seat(h, 'here', 'peer-a3', at(A))
        expect(await refused(seat(h, 'there', 'peer-a4', at(A)))).toBe(why('SEAT_LIMIT', 'address'))
        expect(await peersOf(h.store)).toEqual(['peer-a0', 'peer-a1', 'peer-a2', 'peer-a3', 'peer-b0'])
      })
    })

    it('the seats survive a reload (a Durable Object waking up): caps and evictions count the seats from before', async () => {
      await makeStore(async (h) => {
        listen(h)
        for (let i = 0; i < 3; i++) await seat(h, 'here', `peer-a${i}`, at(A))
        const v = await seat(h, 'here', 'peer-v0', at(C), 'viewer')
        for (let i = 0; i < 3; i++) await seat(h, 'here', `peer-b${i}`, at(B))
        await seat(h, 'here', 'peer-s0', at(D, 'subject-S'))
        const again = h.reload()
        const heard = again === h.store ? undefined : new Heard<C>()
        if (heard !== undefined) again.listen(heard)
        expect(await refused(seat(h, 'here', 'peer-a9', at(A), 'agent', CAPS, ROOM, again))).toBe(why('SEAT_LIMIT', 'address'))
        expect(await refused(seat(h, 'here', 'peer-s1', at(D), 'agent', CAPS, ROOM, again))).toBe(why('ROOM_FULL', 'room_full'))
        await seat(h, 'here', 'peer-s1', at(D, 'subject-S'), 'agent', CAPS, ROOM, again)
        expect(await refused(seat(h, 'here', 'peer-s2', at(D, 'subject-S'), 'agent', CAPS, ROOM, again))).toBe(why('SEAT_LIMIT', 'subject'))
        if (heard !== undefined) expect(heard.evictedConns).toEqual([v.id])
        expect(await peersOf(again)).not.toContain('peer-v0')
        // The next eviction takes the newest seat of B (a tie with A; B joined later).
        await seat(h, 'here', 'peer-t0', at(D, 'subject-T'), 'agent', CAPS, ROOM, again)
        expect(await peersOf(again)).not.toContain('peer-b2')
      })
    })

    if (opts.roomsPerAddress === true) {
      const ROOMS = ['seat-room-0000000000000001', 'seat-room-0000000000000002', 'seat-room-0000000000000003', 'seat-room-0000000000000004', 'seat-room-0000000000000005']
      const limits: JoinLimits = { ...CAPS, maxRoomsPerAddress: 2 }
      const room = (i: number): string => ROOMS[i] ?? ''

      it('rooms per address: the address of the join that creates a room is charged until the room goes; creations race on every replica; other addresses still create rooms', async () => {
        await makeStore(async (h) => {
          listen(h)
          const tries = await Promise.allSettled([0, 1, 2, 3].map(async i => await seat(h, i % 2 === 0 ? 'here' : 'there', `peer-a${i}`, at(A), 'agent', limits, room(i))))
          const created = tries.flatMap((t, i) => t.status === 'fulfilled' ? [{ i, conn: t.value }] : [])
          expect(created).toHaveLength(2)
          for (const t of tries) if (t.status === 'rejected') expect(await refused(Promise.reject(t.reason))).toBe(why('TOO_MANY_ROOMS', 'rooms_address'))
          // Joining a room someone else created costs A nothing; B creates its own.
          await seat(h, 'there', 'peer-b0', at(B), 'agent', limits, room(4))
          await seat(h, 'here', 'peer-a8', at(A), 'agent', limits, room(4))
          const taken = created.map(c => c.i)
          const free = [0, 1, 2, 3].filter(i => !taken.includes(i))
          expect(await refused(seat(h, 'here', 'peer-a9', at(A), 'agent', limits, room(free[0] ?? 0)))).toBe(why('TOO_MANY_ROOMS', 'rooms_address'))
          // A room whose last peer leaves is no longer charged.
          const first = created[0]
          if (first === undefined) throw new Error('no room created')
          await (first.i % 2 === 0 ? h.store : h.other.store).leave(first.conn)
          await seat(h, 'there', 'peer-a9', at(A), 'agent', limits, room(free[0] ?? 0))
          // Ticket joins (maxRoomsPerAddress Infinity) are not counted at all.
          for (const i of [1, 2, 3]) await seat(h, 'here', `peer-t${i}`, at(C), 'agent', CAPS, `seat-room-ticket-00000000${i}`)
          await seat(h, 'here', 'peer-c0', at(C), 'agent', limits, `seat-room-open-0000000001`)
          await seat(h, 'here', 'peer-c1', at(C), 'agent', limits, `seat-room-open-0000000002`)
        })
      })

      if (opts.replicated !== undefined) {
        const bound = opts.replicated.presenceBoundMs
        it(`rooms per address: the rooms of a replica that dies stop counting once its presence expires (within ${bound} ms)`, async () => {
          await makeStore(async (h) => {
            listen(h)
            if (h.crashOther === undefined) throw new Error('the harness of a replicated store must crash its other replica')
            await seat(h, 'there', 'peer-a0', at(A), 'agent', limits, room(0))
            await seat(h, 'there', 'peer-a1', at(A), 'agent', limits, room(1))
            expect(await refused(seat(h, 'here', 'peer-a2', at(A), 'agent', limits, room(2)))).toBe(why('TOO_MANY_ROOMS', 'rooms_address'))
            await h.crashOther()
            const t0 = Date.now()
            let done = false
            for (let i = 0; !done && Date.now() - t0 < bound + 2000; i++) {
              try {
                await seat(h, 'here', `peer-z${i}`, at(A), 'agent', limits, room(2))
                done = true
              } catch {
                await new Promise(resolve => setTimeout(resolve, 50))
              }
            }
            expect(done).toBe(true)
            expect(Date.now() - t0).toBeLessThanOrEqual(bound)
            await seat(h, 'here', 'peer-a3', at(A), 'agent', limits, room(3))
          })
        })
      }
    }
  })
}
