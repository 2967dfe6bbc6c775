/**
 * Issue 22, item 1 (signaling): a member or a stranger tries to deny the network's agents a
 * seat in their room, or a new network a room, and fails. Against the Node service with rooms
 * in memory, two Node replicas on one real redis-server (joins alternate between them), and the
 * Worker under workerd (`wrangler dev`; seats only: one Durable Object per room sees no other
 * room, so rooms per address are Cloudflare's rate-limiting rules there). Client addresses are
 * real: each test address is its own 127.x source address on loopback.
 *
 * Tokens come from `bin/causeway token` as an owner makes them (agent tokens whose ticket
 * names the agent, a viewer token); tickets without a subject, as the previous version minted
 * for agents, are signed here.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generatePeerKey, type JoinRole } from '../../protocol/join-proof.ts'
import { deriveRoomId } from '../../protocol/keys.ts'
import { signTicket } from '../../protocol/ticket.ts'
import { decodeToken } from '../../protocol/token.ts'
import { run } from '../smoke/causeway.ts'
import { newRoom, type Msg } from './client.ts'
import { haveRedis, startRedis, type RedisServer } from './redis.ts'
import { seatJoin, type Seated } from './seat-client.ts'
import { startNode, startWorkerd, type Target } from './servers.ts'

const SECRET = 'seats-test-access-secret-0123456789'
/** Ticket mode with the default seat caps: 64 peers, 16 per address, 8 per agent, 16 viewers, 8 per address. */
const TICKETED = { CAUSEWAY_ACCESS_SECRET: SECRET }
/**
 * Open mode with 2,000 rooms per instance: more joins than that from one address would fill an
 * instance without the per-address cap (16 by default), so a flood that gets past 2,000 shows
 * the cap is what leaves room for the new network.
 */
const MAX_ROOMS = 2000
const OPEN = { CAUSEWAY_MAX_ROOMS: String(MAX_ROOMS) }
const FLOOD = 10_000
const FLOOD_MS = 20_000
const AT_ONCE = 24

interface Service {
  /** One base URL per replica. */
  bases: string[]
  /** A counter summed over the replicas and label sets (labels matched as given); undefined where there is no /metrics (workerd). */
  metric?: (name: string, label?: string) => Promise<number>
  close: () => Promise<void>
}

async function metricOf (base: string, name: string, label?: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(3000) })).text()
  let sum = 0
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(line)
    if (m?.[2] !== undefined && (label === undefined || (m[1] ?? '').includes(label))) sum += Number(m[2])
  }
  return sum
}

function fromTargets (targets: Target[], extra?: () => Promise<void>): Service {
  const bases = targets.map(t => t.url)
  return {
    bases,
    ...(targets.every(t => t.name === 'node') ? { metric: async (name: string, label?: string) => (await Promise.all(bases.map(async b => await metricOf(b, name, label)))).reduce((a, b) => a + b, 0) } : {}),
    close: async () => { await Promise.all(targets.map(async t => await t.close())); await extra?.() },
  }
}

/**
 * `flood`: the source address of the open-mode flood, one per kind: the previous flood's
 * thousands of connections from one address linger in TIME_WAIT, and binding a new source port
 * on that address (`localAddress`) then slows down several times over.
 */
const KINDS: Array<{ name: string, ok: () => boolean, start: (env: Record<string, string>) => Promise<Service>, rooms: boolean, flood?: string }> = [
  { name: 'node, rooms in memory', ok: () => true, rooms: true, flood: '127.0.1.2', start: async env => fromTargets([await startNode(env)]) },
  {
    name: 'two node replicas on redis',
    ok: haveRedis,
    rooms: true,
    flood: '127.0.2.2',
    start: async env => {
      const redis: RedisServer = await startRedis()
      const replicas = await Promise.all([0, 1].map(async () => await startNode({ ...env, CAUSEWAY_STORE: redis.url })))
      return fromTargets(replicas, async () => { await redis.close() })
    },
  },
  { name: 'workerd (Durable Object per room)', ok: () => true, rooms: false, start: async env => fromTargets([await startWorkerd(env)]) },
]

/** The owner's network, made with bin/causeway: agent tokens (tickets naming the agent) and a viewer token. */
interface Network { room: string, ticket: (name: string) => string, viewer: string }
let network: Network
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'causeway-seats-'))
  const env = { CAUSEWAY_ACCESS_SECRET: SECRET }
  const made = await run(['token', '--signaling', 'http://127.0.0.1:8787'], { cwd: dir })
  expect(made.code, made.stderr).toBe(0)
  const tickets = new Map<string, string>()
  let room = ''
  for (const name of ['mallory', 'east', 'west']) {
    const r = await run(['token', '--name', name, '--out', `${name}.token`], { cwd: dir, env })
    expect(r.code, r.stderr).toBe(0)
    const token = decodeToken(await readFile(join(dir, `${name}.token`), 'utf8'))
    if (token.kind !== 'member' || token.ticket === undefined) throw new Error('an agent token with a ticket')
    room = await deriveRoomId(token.secret)
    tickets.set(name, token.ticket)
  }
  const v = await run(['token', '--viewer', '--from-file', join(dir, 'east.token'), '--grant', '*'], { cwd: dir, env })
  expect(v.code, v.stderr).toBe(0)
  const viewer = decodeToken(v.stdout.trim())
  if (viewer.kind !== 'viewer' || viewer.ticket === undefined) throw new Error('a viewer token with a ticket')
  network = { room, ticket: name => tickets.get(name) ?? '', viewer: viewer.ticket }
}, 60_000)
afterAll(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

/** What a try to take a seat ended with: `welcome`, an error code, or `upgrade <status>`. */
const outcome = (s: Seated): string => s.answer.type === 'welcome' ? 'welcome' : s.answer.type === 'error' ? String(s.answer.code) : `${String(s.answer.type)} ${String(s.answer.status ?? '')}`
const tally = (seats: Seated[]): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const s of seats) out[outcome(s)] = (out[outcome(s)] ?? 0) + 1
  return out
}

/** Waits for a message of `type` (and `peer`) on a seat, skipping others (bounded). */
async function waitFor (s: Seated, type: string, peer?: string, ms = 5000): Promise<Msg> {
  const deadline = Date.now() + ms
  for (let i = 0; i < 1000; i++) {
    const m = await s.next(Math.max(1, deadline - Date.now()))
    if (m.type === type && (peer === undefined || m.peer === peer)) return m
  }
  throw new Error(`no ${type}`)
}

for (const kind of KINDS) {
  describe.skipIf(!kind.ok())(`seats and rooms per sender: ${kind.name}`, () => {
    let service: Service
    const open: Seated[] = []
    beforeAll(async () => { service = await kind.start(TICKETED) }, 120_000)
    afterAll(async () => {
      for (const s of open) s.close()
      await service?.close()
    })

    let n = 0
    /** One try to take a seat, through the replicas in turn. */
    const take = async (room: string, opts: { ticket: string, from: string, role?: JoinRole }): Promise<Seated> => {
      const base = service.bases[n++ % service.bases.length] ?? ''
      const s = await seatJoin(base, room, { key: await generatePeerKey(), ticket: opts.ticket, localAddress: opts.from, ...(opts.role !== undefined ? { role: opts.role } : {}) })
      open.push(s)
      return s
    }
    const takeMany = async (count: number, room: string, opts: { ticket: string, from: string | string[], role?: JoinRole }): Promise<Seated[]> => {
      const out: Seated[] = []
      const froms = Array.isArray(opts.from) ? opts.from : [opts.from]
      for (let i = 0; i < count; i++) out.push(await take(room, { ...opts, from: froms[i % froms.length] ?? '' }))
      return out
    }
    const expectRefused = async (s: Seated, code: string, close: number): Promise<void> => {
      expect(outcome(s)).toBe(code)
      expect(await s.closed).toBe(close)
    }

    it('a member opens seats from one address until SEAT_LIMIT; the network\'s other agents, from other addresses, still join; viewers are capped per address and in all', { timeout: 60_000 }, async () => {
      const room = newRoom()
      // Tickets that name no agent (as the previous version minted): seats are charged to the address.
      const ticket = await signTicket(SECRET, { room, ttlSeconds: 600 })
      const viewerTicket = await signTicket(SECRET, { room, ttlSeconds: 600, role: 'viewer' })
      const before = await service.metric?.('causeway_signaling_join_refusals_total', 'reason="address"')
      const flood = await takeMany(20, room, { ticket, from: '127.0.0.2' })
      expect(tally(flood)).toEqual({ welcome: 16, SEAT_LIMIT: 4 })
      for (const s of flood.filter(x => outcome(x) !== 'welcome')) expect(await s.closed).toBe(4431)
      const others = await takeMany(3, room, { ticket, from: ['127.0.0.3', '127.0.0.4'] })
      expect(tally(others)).toEqual({ welcome: 3 })
      expect((others[2]?.answer.peers as string[]).length).toBe(18)
      const viewers = [
        ...await takeMany(10, room, { ticket: viewerTicket, from: '127.0.0.5', role: 'viewer' }),
        ...await takeMany(10, room, { ticket: viewerTicket, from: '127.0.0.6', role: 'viewer' }),
      ]
      // 8 from each address, 16 in all.
      expect(tally(viewers)).toEqual({ welcome: 16, SEAT_LIMIT: 4 })
      await expectRefused(await take(room, { ticket: viewerTicket, from: '127.0.0.7', role: 'viewer' }), 'ROOM_FULL', 4409)
      // Agents still get in from a fresh address.
      expect(outcome(await take(room, { ticket, from: '127.0.0.7' }))).toBe('welcome')
      if (service.metric !== undefined && before !== undefined) {
        expect(await service.metric('causeway_signaling_join_refusals_total', 'reason="address"') - before).toBe(4)
        expect(await service.metric('causeway_signaling_join_refusals_total', 'reason="viewers_full"')).toBeGreaterThanOrEqual(1)
      }
    })

    it('with tickets naming their agent: a member\'s own ticket takes at most 8 seats from any addresses, and a full room still seats the network\'s other agents, evicting the newest viewer', { timeout: 60_000 }, async () => {
      const { room } = network
      const before = { subject: await service.metric?.('causeway_signaling_join_refusals_total', 'reason="subject"'), evicted: await service.metric?.('causeway_signaling_evictions_total') }
      const mallory = await takeMany(10, room, { ticket: network.ticket('mallory'), from: ['127.0.0.2', '127.0.0.3', '127.0.0.4'] })
      expect(tally(mallory)).toEqual({ welcome: 8, SEAT_LIMIT: 2 })
      // The room fills up: 16 viewers, then agents with tickets that name no agent from three addresses.
      const viewers = await takeMany(16, room, { ticket: network.viewer, from: ['127.0.0.5', '127.0.0.6'], role: 'viewer' })
      expect(tally(viewers)).toEqual({ welcome: 16 })
      const old = await signTicket(SECRET, { room, ttlSeconds: 600 })
      const rest = await takeMany(40, room, { ticket: old, from: ['127.0.0.7', '127.0.0.8', '127.0.0.9'] })
      expect(tally(rest)).toEqual({ welcome: 40 })
      await expectRefused(await take(room, { ticket: old, from: '127.0.0.10' }), 'ROOM_FULL', 4409)
      const watcher = rest[0]
      if (watcher === undefined) throw new Error('no agent')
      // east's own ticket: a seat, and the newest viewer goes.
      for (const [name, victim] of [['east', viewers[15]], ['west', viewers[14]]] as const) {
        const agent = await take(room, { ticket: network.ticket(name), from: '127.0.0.10' })
        expect(outcome(agent)).toBe('welcome')
        if (victim === undefined) throw new Error('no viewer')
        const err = await waitFor(victim, 'error')
        expect(err).toMatchObject({ type: 'error', code: 'ROOM_FULL' })
        expect(String(err.message)).toMatch(/^evicted/)
        expect(await victim.closed).toBe(4409)
        await waitFor(watcher, 'peer-left', String(victim.answer.peer))
        expect((agent.answer.peers as string[])).not.toContain(victim.answer.peer)
      }
      // mallory is still held to its 8, from a fresh address too.
      await expectRefused(await take(room, { ticket: network.ticket('mallory'), from: '127.0.0.11' }), 'SEAT_LIMIT', 4431)
      if (service.metric !== undefined && before.subject !== undefined && before.evicted !== undefined) {
        expect(await service.metric('causeway_signaling_join_refusals_total', 'reason="subject"') - before.subject).toBe(3)
        expect(await service.metric('causeway_signaling_evictions_total') - before.evicted).toBe(2)
      }
    })

    if (kind.rooms) {
      describe('open mode', () => {
        let openService: Service
        beforeAll(async () => { openService = await kind.start(OPEN) }, 120_000)
        afterAll(async () => { await openService?.close() })

        it(`up to ${FLOOD} self-signed joins from one address, each creating a room, leave room for a new network from another address`, { timeout: 90_000 }, async () => {
          const key = await generatePeerKey()
          const held: Seated[] = []
          const outcomes: Record<string, number> = {}
          const started = Date.now()
          let sent = 0
          let m = 0
          try {
            await Promise.all(Array.from({ length: AT_ONCE }, async () => {
              while (sent < FLOOD && Date.now() - started < FLOOD_MS) {
                sent++
                const s = await seatJoin(openService.bases[m++ % openService.bases.length] ?? '', newRoom(), { key, localAddress: kind.flood ?? '127.0.0.2' })
                const o = outcome(s)
                outcomes[o] = (outcomes[o] ?? 0) + 1
                if (o === 'welcome') held.push(s)
                else { s.close(); await s.closed }
              }
            }))
            const ms = Date.now() - started
            console.log(`${kind.name}: ${sent} self-signed joins from one address in ${ms} ms: ${JSON.stringify(outcomes)}`)
            // Past the instance cap: without the per-address cap these joins would have filled it.
            expect(sent).toBeGreaterThan(MAX_ROOMS * openService.bases.length)
            expect(outcomes.welcome).toBe(16)
            // Pre-join sockets whose close was still under way may meet the per-address pre-join cap (429); nothing else.
            expect(Object.keys(outcomes).filter(o => o !== 'welcome' && o !== 'TOO_MANY_ROOMS' && o !== 'upgrade 429')).toEqual([])
            expect(outcomes.TOO_MANY_ROOMS ?? 0).toBeGreaterThan(sent * 0.9)
            if (openService.metric !== undefined) {
              expect(await openService.metric('causeway_signaling_join_refusals_total', 'reason="rooms_address"')).toBe(outcomes.TOO_MANY_ROOMS)
              expect(await openService.metric('causeway_signaling_rooms')).toBe(16)
            }
            // A new network, from another address, through every replica: its agents meet.
            const room = newRoom()
            const a = await seatJoin(openService.bases[0] ?? '', room, { key: await generatePeerKey(), localAddress: '127.0.0.3' })
            const b = await seatJoin(openService.bases.at(-1) ?? '', room, { key: await generatePeerKey(), localAddress: '127.0.0.4' })
            try {
              expect(outcome(a)).toBe('welcome')
              expect(outcome(b)).toBe('welcome')
              expect(b.answer.peers).toEqual([a.answer.peer])
              await waitFor(a, 'peer-joined', String(b.answer.peer))
            } finally {
              a.close()
              b.close()
            }
          } finally {
            for (const s of held) s.close()
          }
        })
      })
    }
  })
}

describe('behind a reverse proxy (CAUSEWAY_CLIENT_IP_HEADER): seats are charged to the address the proxy wrote, IPv6 per /64', () => {
  let target: Target
  beforeAll(async () => { target = await startNode({ CAUSEWAY_CLIENT_IP_HEADER: 'x-forwarded-for', CAUSEWAY_MAX_SEATS_PER_ADDRESS: '2' }) })
  afterAll(async () => { await target?.close() })

  it('addresses of one /64 share a cap; entries a client puts before the proxy\'s own change nothing', async () => {
    const room = newRoom()
    const seats: Seated[] = []
    const from = async (xff: string): Promise<string> => {
      const s = await seatJoin(target.url, room, { key: await generatePeerKey(), headers: { 'x-forwarded-for': xff } })
      seats.push(s)
      return outcome(s)
    }
    try {
      expect(await from('2001:db8:1:2::1')).toBe('welcome')
      expect(await from('2001:db8:1:2:ffff::7')).toBe('welcome')
      expect(await from('2001:db8:1:2::3')).toBe('SEAT_LIMIT')
      expect(await from('198.51.100.1, 2001:db8:1:3::1, 2001:db8:1:2::9')).toBe('SEAT_LIMIT')
      expect(await from('2001:db8:1:2::9, 2001:db8:1:3::1')).toBe('welcome')
    } finally {
      for (const s of seats) s.close()
    }
  })
})
