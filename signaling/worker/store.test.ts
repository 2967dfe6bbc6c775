/**
 * Runs inside workerd (vitest project "workerd", @cloudflare/vitest-plugin): the RoomStore
 * contract against DurableObjectRoomStore on real hibernatable WebSockets of a real Durable
 * Object, and the Worker end to end across a hibernation (eviction) of the room's object.
 */
import { env, exports } from 'cloudflare:workers'
import { evictDurableObject, runInDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { generatePeerKey, signJoin } from '../../protocol/join-proof.ts'
import { seatContract } from '../seats.contract.ts'
import { CONTRACT_ROOM, roomStoreContract, type StoreFactory } from '../store.contract.ts'
import type { WorkerEnv } from './env.ts'
import { DurableObjectRoomStore, type SocketConn } from './store.ts'

const testEnv = env as unknown as WorkerEnv
let rooms = 0
const freshRoom = (): string => `contract-room-${Date.now()}-${++rooms}`.padEnd(20, 'x')

const durableObject: StoreFactory<SocketConn> = async (body) => {
  const stub = testEnv.ROOMS.get(testEnv.ROOMS.idFromName(freshRoom()))
  await runInDurableObject(stub, async (_instance, state) => {
    const store = new DurableObjectRoomStore(state)
    let n = 0
    const replica = {
      store,
      conn: () => {
        const pair = new WebSocketPair()
        const conn = store.accept(pair[1], { id: `conn-${++n}`, room: CONTRACT_ROOM })
        pair[0].accept()
        return conn
      },
    }
    // One object holds every socket of its room: one replica.
    await body({ ...replica, other: replica, reload: () => new DurableObjectRoomStore(state) })
    for (const ws of state.getWebSockets()) ws.close(1000, 'test done')
  })
}
roomStoreContract<SocketConn>('DurableObjectRoomStore (workerd)', durableObject)
// No rooms per address: one object is one room.
seatContract<SocketConn>('DurableObjectRoomStore (workerd)', durableObject)

interface Socket { ws: WebSocket, next: (timeoutMs?: number) => Promise<Record<string, unknown>>, closed: Promise<number> }

/** Joins (open mode) answering the challenge; returns the peer id. */
async function join (s: Socket, room: string): Promise<string> {
  const challenge = await s.next()
  expect(challenge).toMatchObject({ type: 'challenge', v: 2 })
  const key = await generatePeerKey()
  const sig = await signJoin(key, { room, role: 'agent', challenge: String(challenge.nonce) })
  s.ws.send(JSON.stringify({ type: 'join', v: 2, peer: key.id, role: 'agent', key: key.publicKey, sig }))
  return key.id
}

async function open (room: string): Promise<Socket> {
  const res = await exports.default.fetch(`http://signaling.test/v1/rooms/${room}`, { headers: { upgrade: 'websocket' } })
  expect(res.status).toBe(101)
  const ws = res.webSocket
  if (ws === null) throw new Error('no webSocket on the 101 response')
  ws.accept()
  const queue: Array<Record<string, unknown>> = []
  const waiters: Array<(m: Record<string, unknown>) => void> = []
  ws.addEventListener('message', (e: MessageEvent) => {
    const m = JSON.parse(String(e.data)) as Record<string, unknown>
    const w = waiters.shift()
    if (w !== undefined) w(m); else queue.push(m)
  })
  const closed = new Promise<number>(resolve => ws.addEventListener('close', (e: CloseEvent) => resolve(e.code)))
  return {
    ws,
    closed,
    next: async (timeoutMs = 3000) => {
      const m = queue.shift()
      if (m !== undefined) return m
      return await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no message in time')), timeoutMs)
        waiters.push((msg) => { clearTimeout(t); resolve(msg) })
      })
    },
  }
}

describe('SignalingRoom across hibernation', () => {
  it('keeps joined peers and forwards signals after its object is evicted', async () => {
    const room = freshRoom()
    const a = await open(room)
    const pa = await join(a, room)
    expect(await a.next()).toMatchObject({ type: 'welcome', peers: [] })
    const b = await open(room)
    const pb = await join(b, room)
    expect(await b.next()).toMatchObject({ type: 'welcome', peers: [pa] })
    expect(await a.next()).toMatchObject({ type: 'peer-joined', peer: pb })

    const stub = testEnv.ROOMS.get(testEnv.ROOMS.idFromName(room))
    await evictDurableObject(stub, { webSockets: 'hibernate' })

    a.ws.send(JSON.stringify({ type: 'signal', to: pb, sealed: 'c2VhbGVk' }))
    expect(await b.next()).toEqual({ type: 'signal', from: pa, sealed: 'c2VhbGVk' })
    await runInDurableObject(stub, async (_i, state) => {
      expect((await new DurableObjectRoomStore(state).members(room)).map(m => m.peer).sort()).toEqual([pa, pb].sort())
    })
    // A socket opened before the eviction joins after it: its challenge lives in its attachment.
    const c = await open(room)
    const challenge = await c.next()
    await evictDurableObject(stub, { webSockets: 'hibernate' })
    const key = await generatePeerKey()
    c.ws.send(JSON.stringify({ type: 'join', v: 2, peer: key.id, role: 'agent', key: key.publicKey, sig: await signJoin(key, { room, role: 'agent', challenge: String(challenge.nonce) }) }))
    expect(await c.next()).toMatchObject({ type: 'welcome', peer: key.id })
    c.ws.close(1000, 'bye')
    expect(await a.next()).toEqual({ type: 'peer-joined', peer: key.id })
    expect(await a.next()).toEqual({ type: 'peer-left', peer: key.id })
    b.ws.close(1000, 'bye')
    expect(await a.next()).toEqual({ type: 'peer-left', peer: pb })
    a.ws.close(1000, 'bye')
  })
})

describe('SignalingRoom join timeout', () => {
  it('closes a socket that does not join in time (timer inside the object)', async () => {
    const s = await open(freshRoom())
    expect(await s.next(3000)).toMatchObject({ type: 'challenge' })
    expect(await s.next(3000)).toMatchObject({ type: 'error', code: 'JOIN_TIMEOUT' })
    const code = await Promise.race([s.closed, new Promise(resolve => setTimeout(() => resolve('no close'), 3000))])
    expect(code).toBe(4408)
  })
})
