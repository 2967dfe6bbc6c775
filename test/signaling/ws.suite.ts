/**
 * Black-box suite of the signaling service, run against each adapter (node.test.ts,
 * workerd.test.ts): HTTP routes and the room WebSocket protocol with every rejection code,
 * with small limits and ticket auth on.
 */
import { createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JoinRole, PeerKey } from '../../protocol/join-proof.ts'
import { signTicket } from '../../protocol/ticket.ts'
import { Client, newKey, newRoom, rawUpgrade, type Msg } from './client.ts'
import type { Target } from './servers.ts'

export const SUITE_ENV: Record<string, string> = {
  CAUSEWAY_ACCESS_SECRET: 'suite-access-secret-0123456789',
  CAUSEWAY_TURN_SECRET: 'suite-turn-secret',
  CAUSEWAY_TURN_URLS: 'turn:127.0.0.1:3478',
  CAUSEWAY_MAX_PEERS_PER_ROOM: '3',
  CAUSEWAY_JOIN_TIMEOUT_MS: '3000',
  CAUSEWAY_MAX_MESSAGE_BYTES: '8192',
  CAUSEWAY_RATE_PER_SECOND: '20',
  CAUSEWAY_RATE_BURST: '40',
  CAUSEWAY_MAX_PREJOIN_PER_ADDRESS: '12',
  CAUSEWAY_MAX_PREJOIN: '200',
}
const SECRET = SUITE_ENV.CAUSEWAY_ACCESS_SECRET ?? ''

export const ticketFor = async (room: string, init: { secret?: string, ttlSeconds?: number, now?: number, role?: JoinRole } = {}): Promise<string> =>
  await signTicket(init.secret ?? SECRET, { room, ttlSeconds: init.ttlSeconds ?? 300, ...(init.now !== undefined ? { now: init.now } : {}), ...(init.role !== undefined ? { role: init.role } : {}) })

export function signalingSuite (name: string, start: (env: Record<string, string>) => Promise<Target>): void {
  describe(`signaling service (${name})`, () => {
    let target: Target
    const clients: Client[] = []

    beforeAll(async () => { target = await start(SUITE_ENV) })
    afterAll(async () => {
      for (const c of clients) c.close()
      await target?.close()
    })

    /** A socket with a valid agent ticket (or `ticket`; null: none). */
    const open = async (room: string, ticket?: string | null): Promise<Client> => {
      const c = await Client.open(target.url, room, ticket === null ? undefined : ticket ?? await ticketFor(room))
      clients.push(c)
      return c
    }
    const join = async (room: string, key?: PeerKey, role: JoinRole = 'agent', ticket?: string): Promise<{ c: Client, peer: string, key: PeerKey, welcome: Msg }> => {
      const k = key ?? await newKey()
      const c = await open(room, ticket)
      await c.join(room, k, role)
      const welcome = await c.next()
      expect(welcome).toMatchObject({ type: 'welcome', v: 2, peer: k.id, role })
      return { c, peer: k.id, key: k, welcome }
    }
    const expectRejected = async (c: Client, code: string, close: number, closeWithinMs = 3000): Promise<void> => {
      expect(await c.next()).toMatchObject({ type: 'error', code })
      const closed = await c.closedWithin(closeWithinMs)
      expect(closed.code).toBe(close)
      expect(closed.reason.startsWith(code)).toBe(true)
    }

    it('GET /healthz and /livez answer ok', async () => {
      const res = await fetch(`${target.url}/healthz`)
      expect(res.status).toBe(200)
      const body = await res.json() as Record<string, unknown>
      expect(body).toMatchObject({ ok: true, protocol: 2 })
      expect(Object.keys(body).filter(k => !['ok', 'protocol', 'store'].includes(k))).toEqual([])
      const live = await fetch(`${target.url}/livez`)
      expect(live.status).toBe(200)
      expect(await live.json()).toEqual({ ok: true })
    })

    it('unknown routes answer 404 with a JSON error', async () => {
      const res = await fetch(`${target.url}/no/such/route`)
      expect(res.status).toBe(404)
      expect(await res.json()).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } })
      const bad = await fetch(`${target.url}/v1/rooms/short`)
      expect(bad.status).toBe(404)
      expect(await bad.json()).toMatchObject({ error: { code: 'NOT_FOUND' } })
    })

    it('a room without a WebSocket upgrade answers 426', async () => {
      const res = await fetch(`${target.url}/v1/rooms/${newRoom()}`)
      expect(res.status).toBe(426)
      expect(await res.json()).toMatchObject({ error: { code: 'BAD_MESSAGE' } })
    })

    it('/v1/ice requires the bearer ticket and mints TURN REST credentials', async () => {
      const room = newRoom()
      const none = await fetch(`${target.url}/v1/ice?room=${room}`)
      expect(none.status).toBe(401)
      expect(await none.json()).toMatchObject({ error: { code: 'UNAUTHORIZED' } })
      const wrong = await fetch(`${target.url}/v1/ice?room=${room}`, { headers: { authorization: `Bearer ${await ticketFor(newRoom())}` } })
      expect(wrong.status).toBe(403)
      const forged = await fetch(`${target.url}/v1/ice?room=${room}`, { headers: { authorization: `Bearer ${await ticketFor(room, { secret: 'another-secret-0123456789' })}` } })
      expect(forged.status).toBe(401)
      const res = await fetch(`${target.url}/v1/ice?room=${room}`, { headers: { authorization: `Bearer ${await ticketFor(room)}` } })
      expect(res.status).toBe(200)
      expect(res.headers.get('cache-control')).toBe('no-store')
      const body = await res.json() as { iceServers: Array<{ urls: string[], username: string, credential: string }>, ttlSeconds: number }
      const turn = body.iceServers.find(s => s.username !== undefined)
      expect(turn?.urls).toEqual(['turn:127.0.0.1:3478'])
      const [expiry] = (turn?.username ?? '').split(':')
      expect(Number(expiry)).toBeGreaterThan(Date.now() / 1000)
      const expected = createHmac('sha1', SUITE_ENV.CAUSEWAY_TURN_SECRET ?? '').update(turn?.username ?? '').digest('base64')
      expect(turn?.credential).toBe(expected)
    })

    it('join, welcome, peer-joined, signal forwarding and peer-left', async () => {
      const room = newRoom()
      const a = await join(room)
      expect(a.welcome).toMatchObject({ peers: [], limits: { maxMessageBytes: 8192, maxPeersPerRoom: 3, ratePerSecond: 20, rateBurst: 40 } })
      const b = await join(room)
      expect(b.welcome.peers).toEqual([a.peer])
      expect(await a.c.next()).toEqual({ type: 'peer-joined', peer: b.peer })
      a.c.send({ type: 'signal', to: b.peer, sealed: 'c2VhbGVkLW9mZmVy' })
      expect(await b.c.next()).toEqual({ type: 'signal', from: a.peer, sealed: 'c2VhbGVkLW9mZmVy' })
      b.c.send({ type: 'signal', to: a.peer, sealed: 'YW5zd2Vy' })
      expect(await a.c.next()).toEqual({ type: 'signal', from: b.peer, sealed: 'YW5zd2Vy' })
      a.c.send({ type: 'ping', id: 'p1' })
      expect(await a.c.next()).toEqual({ type: 'pong', id: 'p1' })
      b.c.close()
      expect(await a.c.next()).toEqual({ type: 'peer-left', peer: b.peer })
    })

    it('a signal to an absent peer is UNKNOWN_PEER and the socket stays open', async () => {
      const { c } = await join(newRoom())
      c.send({ type: 'signal', to: 'peer-not-here', sealed: 'eA' })
      expect(await c.next()).toMatchObject({ type: 'error', code: 'UNKNOWN_PEER' })
      c.send({ type: 'ping', id: 2 })
      expect(await c.next()).toEqual({ type: 'pong', id: 2 })
    })

    it('a signal before join is NOT_JOINED', async () => {
      const c = await open(newRoom())
      c.send({ type: 'signal', to: 'peer-somebody', sealed: 'eA' })
      await expectRejected(c, 'NOT_JOINED', 4402)
    })

    it('garbage is BAD_MESSAGE', async () => {
      const c = await open(newRoom())
      c.send('{"type":"join",')
      await expectRejected(c, 'BAD_MESSAGE', 4400)
      const d = await open(newRoom())
      d.send({ type: 'teleport', to: 'x' })
      await expectRejected(d, 'BAD_MESSAGE', 4400)
    })

    it('another protocol version is VERSION_MISMATCH', async () => {
      const room = newRoom()
      const c = await open(room)
      c.send({ type: 'join', v: 1, peer: 'peer-of-version-1', ticket: await ticketFor(room) })
      await expectRejected(c, 'VERSION_MISMATCH', 4426)
      const d = await open(room)
      await d.join(room, await newKey(), 'agent', { v: 99 })
      await expectRejected(d, 'VERSION_MISMATCH', 4426)
    })

    it('a frame over maxMessageBytes is MESSAGE_TOO_LARGE', async () => {
      const { c } = await join(newRoom())
      c.send({ type: 'signal', to: 'peer-somebody', sealed: 'A'.repeat(9000) })
      await expectRejected(c, 'MESSAGE_TOO_LARGE', 4413)
    })

    it('the peer after maxPeersPerRoom is ROOM_FULL', async () => {
      const room = newRoom()
      for (let i = 0; i < 3; i++) await join(room)
      const c = await open(room)
      await c.join(room, await newKey())
      await expectRejected(c, 'ROOM_FULL', 4409)
    })

    it('messages over the rate limit are RATE_LIMITED', async () => {
      const { c } = await join(newRoom())
      for (let i = 0; i < 100; i++) c.send({ type: 'ping', id: i })
      const err = await c.nextOf('error', 5000)
      expect(err.code).toBe('RATE_LIMITED')
      expect((await c.closedWithin()).code).toBe(4429)
    })

    it('a socket that does not join in time is JOIN_TIMEOUT', async () => {
      const started = Date.now()
      // One socket pings but never joins; the other never sends a frame at all. (Under wrangler
      // dev the close of a socket that never sent a frame reaches the client ~10 s late; the
      // error message and the close code are on time and right, so that one gets more time.)
      const talker = await open(newRoom())
      const silent = await open(newRoom())
      talker.send({ type: 'ping', id: 'still-here' })
      expect(await talker.next()).toEqual({ type: 'pong', id: 'still-here' })
      for (const c of [talker, silent]) expect(await c.next(5000)).toMatchObject({ type: 'error', code: 'JOIN_TIMEOUT' })
      expect(Date.now() - started).toBeGreaterThanOrEqual(2800)
      expect((await talker.closedWithin()).code).toBe(4408)
      expect((await silent.closedWithin(15_000)).code).toBe(4408)
    })

    it('tickets, checked at the upgrade: missing or forged is UNAUTHORIZED, old is TICKET_EXPIRED, other room is FORBIDDEN', async () => {
      const room = newRoom()
      const cases: Array<[string | null, string, number]> = [
        [null, 'UNAUTHORIZED', 4401],
        ['not.a-ticket', 'UNAUTHORIZED', 4401],
        [await ticketFor(room, { secret: 'another-secret-0123456789' }), 'UNAUTHORIZED', 4401],
        [await ticketFor(room, { now: Date.now() - 3_600_000, ttlSeconds: 60 }), 'TICKET_EXPIRED', 4410],
        [await ticketFor(newRoom()), 'FORBIDDEN', 4403],
      ]
      // (The error frame is immediate everywhere; under wrangler dev the close of a socket that never
      // sent a frame reaches the client up to ~10 s late, as in the JOIN_TIMEOUT test below.)
      await Promise.all(cases.map(async ([ticket, code, close]) => {
        const c = await open(room, ticket)
        await expectRejected(c, code, close, 15_000)
      }))
    })

    it('a stolen peer id cannot take over: the join proof fails and the victim keeps its signals', async () => {
      const room = newRoom()
      const victim = await join(room)
      const other = await join(room)
      await victim.c.nextOf('peer-joined')
      expect(other.welcome.peers).toEqual([victim.peer])
      const thiefKey = await newKey()
      // 1. the victim's id with the thief's own key and a valid signature of that key
      const a = await open(room)
      await a.join(room, thiefKey, 'agent', { peer: victim.peer })
      await expectRejected(a, 'UNAUTHORIZED', 4401)
      // 2. the victim's id and public key (public knowledge), signed with the thief's key
      const b = await open(room)
      await b.join(room, thiefKey, 'agent', { peer: victim.peer, key: victim.key.publicKey })
      await expectRejected(b, 'UNAUTHORIZED', 4401)
      // 3. a replay of a join the victim really signed, for another socket's challenge
      const captured = await open(room)
      const nonce = await captured.challenge
      const { signJoin } = await import('../../protocol/join-proof.ts')
      const sig = await signJoin(victim.key, { room, role: 'agent', challenge: nonce })
      const c = await open(room)
      await c.join(room, thiefKey, 'agent', { peer: victim.peer, key: victim.key.publicKey, sig })
      await expectRejected(c, 'UNAUTHORIZED', 4401)
      captured.close()
      // The victim was never replaced and still gets what is sent to its id.
      other.c.send({ type: 'signal', to: victim.peer, sealed: 'Zm9yLXZpY3RpbQ' })
      expect(await victim.c.next()).toEqual({ type: 'signal', from: other.peer, sealed: 'Zm9yLXZpY3RpbQ' })
      other.c.send({ type: 'ping', id: 'no-peer-left' })
      expect(await other.c.next()).toEqual({ type: 'pong', id: 'no-peer-left' })
    })

    it('roles: a viewer ticket cannot join as agent; viewers see only agents', async () => {
      const room = newRoom()
      const viewerTicket = await ticketFor(room, { role: 'viewer' })
      const posing = await open(room, viewerTicket)
      await posing.join(room, await newKey(), 'agent')
      await expectRejected(posing, 'FORBIDDEN', 4403)
      const agent = await join(room)
      const v1 = await join(room, undefined, 'viewer', viewerTicket)
      expect(v1.welcome.peers).toEqual([agent.peer])
      expect(await agent.c.next()).toEqual({ type: 'peer-joined', peer: v1.peer })
      // An agent ticket may join as viewer (a member's debug page).
      const v2 = await join(room, undefined, 'viewer')
      expect(v2.welcome.peers).toEqual([agent.peer])
      expect(await agent.c.next()).toEqual({ type: 'peer-joined', peer: v2.peer })
      v2.c.send({ type: 'signal', to: v1.peer, sealed: 'dmlld2VyLXRvLXZpZXdlcg' })
      expect(await v2.c.next()).toMatchObject({ type: 'error', code: 'UNKNOWN_PEER' })
      v1.c.send({ type: 'signal', to: agent.peer, sealed: 'dG8tYWdlbnQ' })
      expect(await agent.c.next()).toEqual({ type: 'signal', from: v1.peer, sealed: 'dG8tYWdlbnQ' })
      agent.c.send({ type: 'signal', to: v2.peer, sealed: 'dG8tdmlld2Vy' })
      expect(await v2.c.next()).toEqual({ type: 'signal', from: agent.peer, sealed: 'dG8tdmlld2Vy' })
      v2.c.close()
      expect(await agent.c.next()).toEqual({ type: 'peer-left', peer: v2.peer })
      v1.c.send({ type: 'ping', id: 'viewer-quiet' })
      expect(await v1.c.next()).toEqual({ type: 'pong', id: 'viewer-quiet' })
    })

    it('pre-join sockets are capped per address (HTTP 429 TOO_MANY_CONNECTIONS); a join frees a slot', async () => {
      const room = newRoom()
      const ticket = await ticketFor(room)
      // (All within the suite's 3 s join timeout, which would free the slots.)
      const held = await Promise.all(Array.from({ length: 12 }, async () => await open(room, ticket)))
      await Promise.all(held.map(async c => await c.challenge))
      const refused = await rawUpgrade(target.port, `/v1/rooms/${room}`, { protocols: ['causeway.2', `causeway.ticket.${ticket}`] })
      expect(refused.status).toBe(429)
      await expect(Client.open(target.url, room, ticket)).rejects.toThrow()
      const first = held[0] as Client
      await first.join(room, await newKey())
      expect(await first.next()).toMatchObject({ type: 'welcome' })
      const after = await open(room, ticket)
      await after.join(room, await newKey())
      expect(await after.next()).toMatchObject({ type: 'welcome' })
      for (const c of held) c.close()
    })

    it('a reconnect with the same key replaces the old socket (REPLACED) and the new one works', async () => {
      const room = newRoom()
      const a = await join(room)
      const b = await join(room)
      await a.c.nextOf('peer-joined')
      const again = await join(room, a.key)
      expect(again.welcome.peers).toEqual([b.peer])
      const old = await a.c.closedWithin()
      expect(old.code).toBe(4001)
      expect(old.reason.startsWith('REPLACED')).toBe(true)
      expect(await b.c.next()).toEqual({ type: 'peer-joined', peer: a.peer })
      b.c.send({ type: 'signal', to: a.peer, sealed: 'bmV3' })
      expect(await again.c.next()).toEqual({ type: 'signal', from: b.peer, sealed: 'bmV3' })
      // The old socket's close did not announce the peer as gone.
      b.c.send({ type: 'ping', id: 'after' })
      expect(await b.c.next()).toEqual({ type: 'pong', id: 'after' })
    })
  })
}
