/**
 * The Node adapter with its rooms in a real redis-server (started here):
 * - the black-box suite of the signaling service (ws.suite.ts: every route, message and
 *   rejection code) against one instance on Redis, so the protocol is the same whatever the store;
 * - two instances on one Redis, clients split between them: what crosses replicas (welcome,
 *   peer-joined/peer-left, signals in order, REPLACED, the room limit, viewers' visibility), and
 *   a hostile member who tries to take a victim's peer id through the other replica.
 * Replicas as processes, killed, and Redis lost: replicas.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JoinRole, PeerKey } from '../../protocol/join-proof.ts'
import { signJoin } from '../../protocol/join-proof.ts'
import { Client, newKey, newRoom, type Msg } from './client.ts'
import { haveRedis, startRedis, type RedisServer } from './redis.ts'
import { startNode, type Target } from './servers.ts'
import { signalingSuite, SUITE_ENV, ticketFor } from './ws.suite.ts'

describe.skipIf(!haveRedis())('on Redis', () => {
  signalingSuite('node on redis', async (env) => {
    const redis = await startRedis()
    const target = await startNode({ ...env, CAUSEWAY_STORE: redis.url })
    return { ...target, close: async () => { await target.close(); await redis.close() } }
  })

  describe('two replicas on one Redis', () => {
    let redis: RedisServer
    let r1: Target
    let r2: Target
    const clients: Client[] = []

    beforeAll(async () => {
      redis = await startRedis()
      ;[r1, r2] = await Promise.all([startNode({ ...SUITE_ENV, CAUSEWAY_STORE: redis.url }), startNode({ ...SUITE_ENV, CAUSEWAY_STORE: redis.url })])
    })
    afterAll(async () => {
      for (const c of clients) c.close()
      await Promise.all([r1?.close(), r2?.close()])
      await redis?.close()
    })

    const open = async (t: Target, room: string, role: JoinRole = 'agent'): Promise<Client> => {
      const c = await Client.open(t.url, room, await ticketFor(room, { role }))
      clients.push(c)
      return c
    }
    const join = async (t: Target, room: string, key?: PeerKey, role: JoinRole = 'agent'): Promise<{ c: Client, key: PeerKey, welcome: Msg }> => {
      const k = key ?? await newKey()
      const c = await open(t, room, role)
      await c.join(room, k, role)
      const welcome = await c.next()
      expect(welcome).toMatchObject({ type: 'welcome', peer: k.id, role })
      return { c, key: k, welcome }
    }

    it('welcome, peer-joined, peer-left and signals cross replicas; one sender\'s signals arrive in order', async () => {
      const room = newRoom()
      const a = await join(r1, room)
      const b = await join(r2, room)
      expect(b.welcome.peers).toEqual([a.key.id])
      expect(await a.c.next()).toEqual({ type: 'peer-joined', peer: b.key.id })
      // (at once, within the suite's rate burst of 40)
      for (let i = 0; i < 35; i++) a.c.send({ type: 'signal', to: b.key.id, sealed: `n${i}` })
      for (let i = 0; i < 35; i++) expect(await b.c.next()).toEqual({ type: 'signal', from: a.key.id, sealed: `n${i}` })
      b.c.send({ type: 'signal', to: a.key.id, sealed: 'YmFjaw' })
      expect(await a.c.next()).toEqual({ type: 'signal', from: b.key.id, sealed: 'YmFjaw' })
      b.c.close()
      expect(await a.c.next()).toEqual({ type: 'peer-left', peer: b.key.id })
    })

    it('a reconnect through the other replica closes the old socket (REPLACED) and takes its signals', async () => {
      const room = newRoom()
      const a = await join(r1, room)
      const b = await join(r1, room)
      await a.c.nextOf('peer-joined')
      const again = await join(r2, room, a.key)
      expect(again.welcome.peers).toEqual([b.key.id])
      const old = await a.c.closedWithin()
      expect(old.code).toBe(4001)
      expect(old.reason.startsWith('REPLACED')).toBe(true)
      expect(await b.c.next()).toEqual({ type: 'peer-joined', peer: a.key.id })
      b.c.send({ type: 'signal', to: a.key.id, sealed: 'bmV3' })
      expect(await again.c.next()).toEqual({ type: 'signal', from: b.key.id, sealed: 'bmV3' })
      // The old socket's close announced nothing.
      b.c.send({ type: 'ping', id: 'after' })
      expect(await b.c.next()).toEqual({ type: 'pong', id: 'after' })
    })

    it('the room limit holds across replicas (ROOM_FULL), and a viewer on one replica sees only the agents of both', async () => {
      const room = newRoom()
      const a = await join(r1, room)
      const v = await join(r2, room, undefined, 'viewer')
      expect(v.welcome.peers).toEqual([a.key.id])
      const w = await join(r1, room, undefined, 'viewer')
      expect(w.welcome.peers).toEqual([a.key.id])
      w.c.send({ type: 'signal', to: v.key.id, sealed: 'dmlld2Vy' })
      expect(await w.c.next()).toMatchObject({ type: 'error', code: 'UNKNOWN_PEER' })
      // SUITE_ENV: 3 peers per room.
      for (const t of [r2, r1]) {
        const c = await open(t, room)
        await c.join(room, await newKey())
        expect(await c.next()).toMatchObject({ type: 'error', code: 'ROOM_FULL' })
        expect((await c.closedWithin()).code).toBe(4409)
      }
    })

    it('hostile member: a stolen peer id through the other replica does not verify and replaces nobody', async () => {
      const room = newRoom()
      const victim = await join(r1, room)
      const other = await join(r1, room)
      await victim.c.nextOf('peer-joined')
      const thief = await newKey()
      // The victim's id and public key (public knowledge) with the thief's signature, then a
      // replay of a join the victim really signed for another socket's challenge.
      const a = await open(r2, room)
      await a.join(room, thief, 'agent', { peer: victim.key.id, key: victim.key.publicKey })
      expect(await a.next()).toMatchObject({ type: 'error', code: 'UNAUTHORIZED' })
      const captured = await open(r2, room)
      const sig = await signJoin(victim.key, { room, role: 'agent', challenge: await captured.challenge })
      const b = await open(r2, room)
      await b.join(room, thief, 'agent', { peer: victim.key.id, key: victim.key.publicKey, sig })
      expect(await b.next()).toMatchObject({ type: 'error', code: 'UNAUTHORIZED' })
      other.c.send({ type: 'signal', to: victim.key.id, sealed: 'Zm9yLXZpY3RpbQ' })
      expect(await victim.c.next()).toEqual({ type: 'signal', from: other.key.id, sealed: 'Zm9yLXZpY3RpbQ' })
      other.c.send({ type: 'ping', id: 'nobody-left' })
      expect(await other.c.next()).toEqual({ type: 'pong', id: 'nobody-left' })
    })
  })
})
