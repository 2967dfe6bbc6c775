/**
 * Black-box suite of the signaling service, run against each adapter (node.test.ts,
 * workerd.test.ts): HTTP routes and the room WebSocket protocol with every rejection code,
 * with small limits and ticket auth on.
 */
import { createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signTicket } from '../../protocol/ticket.ts'
import { Client, newPeer, newRoom, type Msg } from './client.ts'
import type { Target } from './servers.ts'

export const SUITE_ENV: Record<string, string> = {
  CAUSEWAY_ACCESS_SECRET: 'suite-access-secret-0123456789',
  CAUSEWAY_TURN_SECRET: 'suite-turn-secret',
  CAUSEWAY_TURN_URLS: 'turn:127.0.0.1:3478',
  CAUSEWAY_MAX_PEERS_PER_ROOM: '3',
  CAUSEWAY_JOIN_TIMEOUT_MS: '1000',
  CAUSEWAY_MAX_MESSAGE_BYTES: '8192',
  CAUSEWAY_RATE_PER_SECOND: '20',
  CAUSEWAY_RATE_BURST: '40',
}
const SECRET = SUITE_ENV.CAUSEWAY_ACCESS_SECRET ?? ''

export const ticketFor = async (room: string, init: { secret?: string, ttlSeconds?: number, now?: number } = {}): Promise<string> =>
  await signTicket(init.secret ?? SECRET, { room, ttlSeconds: init.ttlSeconds ?? 300, ...(init.now !== undefined ? { now: init.now } : {}) })

export function signalingSuite (name: string, start: (env: Record<string, string>) => Promise<Target>): void {
  describe(`signaling service (${name})`, () => {
    let target: Target
    const clients: Client[] = []

    beforeAll(async () => { target = await start(SUITE_ENV) })
    afterAll(async () => {
      for (const c of clients) c.close()
      await target?.close()
    })

    const open = async (room: string): Promise<Client> => {
      const c = await Client.open(target.url, room)
      clients.push(c)
      return c
    }
    const join = async (room: string, peer = newPeer()): Promise<{ c: Client, peer: string, welcome: Msg }> => {
      const c = await open(room)
      c.send({ type: 'join', v: 1, peer, ticket: await ticketFor(room) })
      const welcome = await c.next()
      expect(welcome).toMatchObject({ type: 'welcome', v: 1, peer })
      return { c, peer, welcome }
    }
    const expectRejected = async (c: Client, code: string, close: number): Promise<void> => {
      expect(await c.next()).toMatchObject({ type: 'error', code })
      const closed = await c.closedWithin()
      expect(closed.code).toBe(close)
      expect(closed.reason.startsWith(code)).toBe(true)
    }

    it('GET /healthz answers ok', async () => {
      const res = await fetch(`${target.url}/healthz`)
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ ok: true, protocol: 1 })
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
      c.send({ type: 'join', v: 99, peer: newPeer(), ticket: await ticketFor(room) })
      await expectRejected(c, 'VERSION_MISMATCH', 4426)
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
      c.send({ type: 'join', v: 1, peer: newPeer(), ticket: await ticketFor(room) })
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
      expect(Date.now() - started).toBeGreaterThanOrEqual(800)
      expect((await talker.closedWithin()).code).toBe(4408)
      expect((await silent.closedWithin(15_000)).code).toBe(4408)
    })

    it('tickets: missing or forged is UNAUTHORIZED, old is TICKET_EXPIRED, other room is FORBIDDEN', async () => {
      const room = newRoom()
      const cases: Array<[string | undefined, string, number]> = [
        [undefined, 'UNAUTHORIZED', 4401],
        ['not.a-ticket', 'UNAUTHORIZED', 4401],
        [await ticketFor(room, { secret: 'another-secret-0123456789' }), 'UNAUTHORIZED', 4401],
        [await ticketFor(room, { now: Date.now() - 3_600_000, ttlSeconds: 60 }), 'TICKET_EXPIRED', 4410],
        [await ticketFor(newRoom()), 'FORBIDDEN', 4403],
      ]
      await Promise.all(cases.map(async ([ticket, code, close]) => {
        const c = await open(room)
        c.send({ type: 'join', v: 1, peer: newPeer(), ...(ticket !== undefined ? { ticket } : {}) })
        await expectRejected(c, code, close)
      }))
    })

    it('a reconnect replaces the old socket (REPLACED) and the new one works', async () => {
      const room = newRoom()
      const a = await join(room)
      const b = await join(room)
      await a.c.nextOf('peer-joined')
      const again = await join(room, a.peer)
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
