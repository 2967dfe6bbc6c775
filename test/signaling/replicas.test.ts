/**
 * Two signaling replicas on one redis-server, through bin/causeway as users run them
 * (`causeway signaling --store redis://…`), behind a small TCP load balancer written in the
 * test (balancer.ts: the stand-in for a Kubernetes Service in front of the pods). Two real
 * agents (`causeway agent`) join through different replicas and tunnel a TCP service to each
 * other. Then:
 *
 * 1. the replica one agent is on is killed with SIGKILL while a request loop runs through the
 *    tunnel on one long-lived connection and on a new connection every 100 ms: the agent is
 *    back (joined on the other replica, `signaling: joined` in its /status) within 3 s, nothing
 *    is lost, and a peer of the dead replica that does not come back is announced gone to the
 *    other replica's peers within the presence bound (TTL 5 s + one 1 s heartbeat);
 * 2. redis-server itself is killed: joins answer STORE_UNAVAILABLE (close 4503), /healthz 503,
 *    the agents' sockets are closed and their tunnels carry on; redis-server starts again on
 *    the same port (empty): the replicas recover by themselves, both agents rejoin and meet,
 *    and a third agent started afterwards reaches the service through signaling.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, run, start, stopAll, type Proc } from '../smoke/causeway.ts'
import { until } from '../until.ts'
import { startBalancer, type Balancer } from './balancer.ts'
import { Client, newKey, newRoom } from './client.ts'
import { haveRedis, startRedis, type RedisServer } from './redis.ts'

/** Kill of a replica to its agent joined on another one (measured well under 1 s here). */
const REJOIN_BOUND_MS = 3000
/** Presence TTL + one heartbeat (the defaults), plus scheduling slack on a shared machine. */
const PRESENCE_BOUND_MS = 5000 + 1000 + 500

let dir: string
let redis: RedisServer
let lb: Balancer
let echo: Server
let echoPort: number
const replicas: Array<{ proc: Proc, port: number }> = []
const agents: Record<string, { proc: Proc, status: number }> = {}
let local: number

async function startReplica (i: number): Promise<void> {
  const port = replicas[i]?.port ?? await freePort()
  const proc = start(['signaling', '--listen', `127.0.0.1:${port}`, '--store', redis.url])
  await proc.waitFor(/signaling listening on http:\/\/127\.0\.0\.1:\d+ \(rooms in redis:\/\/127\.0\.0\.1:\d+\)/)
  replicas[i] = { proc, port }
  await until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 10_000, `replica ${i} healthy`)
}

async function statusOf (name: string): Promise<{ signaling: string, peers: Array<{ name: string, state: string }> }> {
  const res = await fetch(`http://127.0.0.1:${agents[name]?.status ?? 0}/status`, { signal: AbortSignal.timeout(2000) })
  return await res.json() as { signaling: string, peers: Array<{ name: string, state: string }> }
}

/** A gauge or counter of a replica's /metrics (the sum over its label sets). */
async function metric (replica: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${replicas[replica]?.port ?? 0}/metrics`, { signal: AbortSignal.timeout(2000) })).text()
  let sum = 0
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`).exec(line)
    if (m?.[1] !== undefined) sum += Number(m[1])
  }
  return sum
}

function startAgent (name: string, args: string[], status: number): Proc {
  const proc = start(['agent', '--token-file', join(dir, `${name}.token`), '--status', `127.0.0.1:${status}`, ...args])
  agents[name] = { proc, status }
  return proc
}

async function joined (name: string, ms: number): Promise<void> {
  await until(async () => (await statusOf(name)).signaling === 'joined', ms, () => `${name} joined:\n${agents[name]?.proc.output().slice(-3000) ?? ''}`)
}

/** One echo round trip on a fresh connection through the tunnel. */
async function request (port: number, size = 256): Promise<void> {
  const payload = Buffer.alloc(size, Math.floor(Math.random() * 256))
  await new Promise<void>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port })
    let got = Buffer.alloc(0)
    const t = setTimeout(() => { s.destroy(); reject(new Error('request timed out')) }, 5000)
    s.on('error', (err) => { clearTimeout(t); reject(err) })
    s.on('connect', () => s.write(payload))
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d])
      if (got.length < size) return
      clearTimeout(t)
      s.end()
      if (got.equals(payload)) resolve(); else reject(new Error('echo differs'))
    })
  })
}

/** Load through the tunnel: one long-lived connection echoing a numbered 1 KiB chunk every 20 ms, and a new connection every 100 ms. */
function load (port: number): { stop: () => Promise<{ chunks: number, requests: number, failures: string[] }> } {
  const failures: string[] = []
  let chunks = 0
  let requests = 0
  let running = true
  const long: Socket = connect({ host: '127.0.0.1', port })
  long.on('error', (err) => failures.push(`long-lived connection: ${err.message}`))
  long.on('close', () => { if (running) failures.push('long-lived connection closed') })
  let pending = Buffer.alloc(0)
  let expected: Buffer | undefined
  long.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d])
    if (expected !== undefined && pending.length >= expected.length) {
      if (!pending.subarray(0, expected.length).equals(expected)) failures.push(`chunk ${chunks} differs`)
      pending = pending.subarray(expected.length)
      expected = undefined
      chunks++
    }
  })
  const longLoop = (async () => {
    await new Promise<void>(resolve => long.once('connect', () => resolve()))
    for (let i = 0; running && i < 5000; i++) {
      if (expected !== undefined) { failures.push(`chunk ${chunks} not echoed within 1 s`); break }
      const chunk = Buffer.alloc(1024, i % 251)
      chunk.writeUInt32BE(i)
      expected = chunk
      long.write(chunk)
      const t0 = Date.now()
      while (expected !== undefined && Date.now() - t0 < 1000) await new Promise(resolve => setTimeout(resolve, 5))
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  })()
  const newLoop = (async () => {
    for (let i = 0; running && i < 2000; i++) {
      try { await request(port); requests++ } catch (err) { failures.push(`new connection ${i}: ${err instanceof Error ? err.message : String(err)}`) }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  })()
  return {
    stop: async () => {
      running = false
      await Promise.all([longLoop, newLoop])
      long.destroy()
      return { chunks, requests, failures }
    },
  }
}

describe.skipIf(!haveRedis())('signaling replicas on Redis, through bin/causeway', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'causeway-replicas-'))
    redis = await startRedis()
    echo = createServer((s) => { s.on('error', () => {}); s.pipe(s) })
    await new Promise<void>(resolve => echo.listen(0, '127.0.0.1', resolve))
    echoPort = (echo.address() as { port: number }).port
    await Promise.all([startReplica(0), startReplica(1)])
    lb = await startBalancer(replicas.map(r => r.port))
    const r = await run(['token', '--signaling', lb.url], { cwd: dir })
    expect(r.code, r.stderr).toBe(0)
    await Promise.all(['east', 'west', 'north'].map(async name => {
      const t = await run(['token', '--name', name, '--out', `${name}.token`], { cwd: dir })
      expect(t.code, t.stderr).toBe(0)
    }))
    // east through replica 0, west through replica 1.
    lb.pin = 0
    startAgent('east', ['--share', `echo=127.0.0.1:${echoPort}`], await freePort())
    await joined('east', 20_000)
    lb.pin = 1
    local = await freePort()
    startAgent('west', ['--connect', `echo@east=127.0.0.1:${local}`], await freePort())
    await joined('west', 20_000)
    lb.pin = undefined
    expect(await metric(0, 'causeway_signaling_peers')).toBe(1)
    expect(await metric(1, 'causeway_signaling_peers')).toBe(1)
    await until(async () => { await request(local); return true }, 30_000, () => `the tunnel west -> east:\n--- east:\n${agents.east?.proc.output().slice(-3000)}\n--- west:\n${agents.west?.proc.output().slice(-3000)}`)
  })

  afterAll(async () => {
    stopAll()
    await lb?.close()
    await new Promise<void>(resolve => echo?.close(() => resolve()))
    await redis?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('kill -9 of the replica an agent is on: it is back through the other within the bound, the tunnel loses nothing, a lone peer of the dead replica is announced gone', async () => {
    // Two raw peers in a room of their own: one on each replica; the one on replica 0 never comes back.
    const room = newRoom()
    const lone = await Client.open(`http://127.0.0.1:${replicas[0]?.port ?? 0}`, room)
    const loneKey = await newKey()
    await lone.join(room, loneKey)
    expect(await lone.next()).toMatchObject({ type: 'welcome' })
    const watcher = await Client.open(`http://127.0.0.1:${replicas[1]?.port ?? 0}`, room)
    await watcher.join(room, await newKey())
    expect(await watcher.next()).toMatchObject({ type: 'welcome', peers: [loneKey.id] })

    const traffic = load(local)
    await new Promise(resolve => setTimeout(resolve, 1000))
    const killedAt = Date.now()
    const victim = replicas[0]?.proc.child
    if (victim?.pid === undefined) throw new Error('no replica 0')
    process.kill(victim.pid, 'SIGKILL')
    await until(async () => (await statusOf('east')).signaling === 'joined' && await metric(1, 'causeway_signaling_peers') === 3 ? true : undefined,
      REJOIN_BOUND_MS + 2000, () => `east joined on replica 1:\n${agents.east?.proc.output().slice(-3000)}`, 20)
    const rejoinMs = Date.now() - killedAt
    const left = await watcher.nextOf('peer-left', PRESENCE_BOUND_MS + 2000)
    const presenceMs = Date.now() - killedAt
    expect(left).toEqual({ type: 'peer-left', peer: loneKey.id })
    await new Promise(resolve => setTimeout(resolve, 500))
    const { chunks, requests, failures } = await traffic.stop()
    console.log(`replica killed: east back on the other replica after ${rejoinMs} ms; the lone peer announced gone after ${presenceMs} ms; through the tunnel meanwhile ${chunks} echoed chunks on one connection and ${requests} new connections, ${failures.length} failures`)
    expect(failures).toEqual([])
    expect(rejoinMs).toBeLessThanOrEqual(REJOIN_BOUND_MS)
    expect(presenceMs).toBeLessThanOrEqual(PRESENCE_BOUND_MS)
    expect(chunks).toBeGreaterThan(20)
    expect(requests).toBeGreaterThan(10)
    // a new connection after the failover
    await request(local, 64 * 1024)
    expect((await statusOf('west')).peers.find(p => p.name === 'east')?.state).toBe('connected')
    watcher.close()
  })

  it('losing Redis: STORE_UNAVAILABLE for joins, /healthz 503, tunnels unharmed; Redis back on the same port: the replicas recover, the agents rejoin and meet, a new agent gets through', async () => {
    await startReplica(0)
    await redis.stop()
    const downAt = Date.now()
    for (const i of [0, 1]) {
      await until(async () => (await fetch(`http://127.0.0.1:${replicas[i]?.port ?? 0}/healthz`)).status === 503, 5000, `replica ${i} /healthz 503`)
    }
    const health = await (await fetch(`http://127.0.0.1:${replicas[1]?.port ?? 0}/healthz`)).json()
    expect(health).toMatchObject({ ok: false, store: 'redis', error: { code: 'STORE_UNAVAILABLE' } })
    expect((await fetch(`http://127.0.0.1:${replicas[1]?.port ?? 0}/livez`)).status).toBe(200)
    const room = newRoom()
    const refused = await Client.open(lb.url, room)
    await refused.join(room, await newKey())
    expect(await refused.next()).toMatchObject({ type: 'error', code: 'STORE_UNAVAILABLE' })
    expect((await refused.closedWithin()).code).toBe(4503)
    for (const name of ['east', 'west']) await until(async () => (await statusOf(name)).signaling !== 'joined', 5000, `${name} told`)
    expect(await metric(1, 'causeway_signaling_store_up')).toBe(0)
    expect(await metric(1, 'causeway_signaling_store_losses_total')).toBeGreaterThanOrEqual(1)
    // Tunnels never needed the signaling service.
    await request(local, 16 * 1024)

    await new Promise(resolve => setTimeout(resolve, Math.max(0, 2000 - (Date.now() - downAt))))
    await redis.start()
    const upAt = Date.now()
    for (const i of [0, 1]) await until(async () => (await fetch(`http://127.0.0.1:${replicas[i]?.port ?? 0}/healthz`)).ok, 5000, `replica ${i} healthy again`)
    const healthyMs = Date.now() - upAt
    await joined('east', 20_000)
    await joined('west', 20_000)
    const rejoinedMs = Date.now() - upAt
    // They met again through the (empty) Redis: both are members of one room there.
    const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    await admin.connect()
    try {
      const rooms = await admin.keys('causeway:room:*:m')
      expect(rooms).toHaveLength(1)
      expect(await admin.hlen(rooms[0] ?? '')).toBe(2)
    } finally {
      admin.disconnect()
    }
    expect(await metric(1, 'causeway_signaling_store_up')).toBe(1)
    expect(await metric(1, 'causeway_signaling_store_messages_total')).toBeGreaterThan(0)
    // A new agent negotiates its session through the recovered replicas.
    const north = await freePort()
    startAgent('north', ['--connect', `echo@east=127.0.0.1:${north}`], await freePort())
    await until(async () => { await request(north); return true }, 30_000, () => `the tunnel north -> east:\n${agents.north?.proc.output().slice(-3000)}`)
    console.log(`Redis back: replicas healthy after ${healthyMs} ms, both agents joined again after ${rejoinedMs} ms`)
  })
})
