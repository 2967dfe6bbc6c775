/**
 * Relay + relay client on loopback: admission, 8 MiB both ways, refusal of a wrong token,
 * relay restart (reservations come back within 10 s), and a clean error when the relay dies.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Stream } from '@libp2p/interface'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RelayPathLostError, startRelayClient, type RelayClient } from '../../agent/relay-transport/index.ts'
import { deriveRelayKey } from '../../protocol/keys.ts'
import { newSecret } from '../../protocol/token.ts'
import { admitKeyFromRelayKey } from '../../protocol/relay-admission.ts'
import { startRelay, type Relay } from '../../relay/server.ts'
import { hashAll, randomData, sendAll, sha256, spawnRelay, until, type RelayProcess } from './relay-helpers.ts'

const log = pino({ level: process.env.CAUSEWAY_TEST_LOG ?? 'silent' })
const PROTO = '/causeway-test/xfer/1.0.0'
const MiB = 1024 * 1024

let relayKey: Uint8Array<ArrayBuffer>
let admitKey: string
const clients: RelayClient[] = []

async function client (relays: string[], key = relayKey, checkIntervalMs?: number): Promise<RelayClient> {
  const c = await startRelayClient({ relayKey: key, relays, log, ...(checkIntervalMs !== undefined ? { checkIntervalMs } : {}) })
  clients.push(c)
  return c
}

beforeAll(async () => {
  relayKey = await deriveRelayKey(newSecret())
  admitKey = await admitKeyFromRelayKey(relayKey)
})
afterEach(async () => { await Promise.all(clients.splice(0).map(async c => { await c.close() })) })

describe('relay in process', () => {
  let relay: Relay
  let addr: string
  beforeAll(async () => {
    relay = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'], admission: { keys: [admitKey] }, log })
    addr = relay.multiaddrs[0]?.toString() ?? ''
  })
  afterAll(async () => { await relay.close() })

  it('carries 8 MiB both ways intact between two members (TCP and WebSockets relay addresses)', async () => {
    const wsAddr = relay.multiaddrs.find(ma => ma.toString().includes('/ws'))?.toString() ?? ''
    const a = await client([addr])
    const b = await client([wsAddr])
    const [bAddr] = await b.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    await a.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    expect(bAddr).toContain('/p2p-circuit/p2p/')

    const fromA = randomData(8 * MiB)
    const fromB = randomData(8 * MiB)
    const signal = AbortSignal.timeout(60_000)
    const bReceived = new Promise<{ hash: string, bytes: number }>((resolve, reject) => {
      void b.handle(PROTO, async (stream: Stream) => {
        const [got] = await Promise.all([hashAll(stream), sendAll(stream, fromB, signal)])
        resolve(got)
      }).catch(reject)
    })
    const started = Date.now()
    const stream = await a.dial(bAddr ?? '', PROTO, { signal })
    const [aGot] = await Promise.all([hashAll(stream), sendAll(stream, fromA, signal)])
    const bGot = await bReceived
    const secs = (Date.now() - started) / 1000
    console.log(`relay: 2 x 8 MiB in ${secs.toFixed(2)} s (${(16 / secs).toFixed(1)} MiB/s aggregate)`)
    expect(aGot).toEqual({ hash: sha256(fromB), bytes: 8 * MiB })
    expect(bGot).toEqual({ hash: sha256(fromA), bytes: 8 * MiB })
    const text = await relay.metrics.registry.metrics()
    expect(text).toMatch(/causeway_relay_admissions_total\{result="ok"\} [2-9]/)
    expect(text).toMatch(/causeway_relay_circuits_total [1-9]/)
    expect(text).toMatch(/causeway_relay_reservations [2-9]/)
  })

  it('refuses a reservation and a hop to a client with the wrong token', async () => {
    const good = await client([addr])
    const [goodAddr] = await good.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    const wrongKey = await deriveRelayKey(newSecret())
    const bad = await client([addr], wrongKey)
    await expect(bad.waitForReservation({ signal: AbortSignal.timeout(3000) })).rejects.toThrow()
    expect(bad.multiaddrs()).toEqual([])
    expect(bad.status()[0]?.lastError).toMatch(/refused admission: UNAUTHORIZED/)
    await good.handle(PROTO, (stream: Stream) => { stream.abort(new Error('must not be reached')) })
    await expect(bad.dial(goodAddr ?? '', PROTO, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow(/could not open/)
    const text = await relay.metrics.registry.metrics()
    expect(text).toMatch(/causeway_relay_admissions_total\{result="denied"\} [1-9]/)
    expect(text).toMatch(/causeway_relay_denied_total\{what="hop"\} [1-9]/)
  })
})

describe('relay with a per-connection data limit', () => {
  it('cuts a relayed connection that passes the configured data limit', async () => {
    const relay = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0'], admission: { keys: [admitKey] }, limits: { applyLimit: true, dataLimitBytes: 65_536n, durationLimitMs: 60_000 }, log })
    try {
      const addr = relay.multiaddrs[0]?.toString() ?? ''
      const a = await client([addr])
      const b = await client([addr])
      const [bAddr] = await b.waitForReservation({ signal: AbortSignal.timeout(10_000) })
      await b.handle(PROTO, async (stream: Stream) => { await hashAll(stream).catch(() => undefined) })
      const stream = await a.dial(bAddr ?? '', PROTO, { signal: AbortSignal.timeout(10_000) })
      const outcome = await sendAll(stream, randomData(MiB), AbortSignal.timeout(20_000)).then(() => 'sent', (err: unknown) => err)
      expect(outcome).toBeInstanceOf(Error)
    } finally { await relay.close() }
  })
})

describe('relay process restart and death', () => {
  let dir: string
  let proc: RelayProcess | undefined
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'cw-relay-')) })
  afterAll(async () => { await proc?.stop(); await rm(dir, { recursive: true, force: true }) })

  it('re-establishes reservations within 10 s after a restart, and new streams work', async () => {
    // Events drive the repair: a safety check every minute must not be what brings them back.
    const slowCheck = 60_000
    const idFile = join(dir, 'identity')
    proc = await spawnRelay(['--listen', '/ip4/127.0.0.1/tcp/0', '--admit-key', admitKey, '--identity-file', idFile])
    const addr = proc.addrs[0] ?? ''
    const port = /\/tcp\/(\d+)\//.exec(addr)?.[1] ?? ''
    const a = await client([addr], relayKey, slowCheck)
    const b = await client([addr], relayKey, slowCheck)
    const [bAddr] = await b.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    await a.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    await b.handle(PROTO, async (stream: Stream) => { await sendAll(stream, new TextEncoder().encode('pong'), AbortSignal.timeout(5000)) })

    await proc.stop()
    await until(() => a.multiaddrs().length === 0 && b.multiaddrs().length === 0, 5000, 'reservations to be dropped')
    proc = await spawnRelay(['--listen', `/ip4/127.0.0.1/tcp/${port}`, '--admit-key', admitKey, '--identity-file', idFile])
    expect(proc.addrs[0]).toBe(addr)
    const back = await until(() => a.multiaddrs().length === 1 && b.multiaddrs().length === 1, 10_000, 'reservations after restart')
    console.log(`relay: reservations back ${back} ms after the restarted relay listened`)
    expect(b.multiaddrs()[0]).toBe(bAddr)
    const stream = await a.dial(bAddr ?? '', PROTO, { signal: AbortSignal.timeout(10_000) })
    const reading = hashAll(stream)
    await stream.close()
    const got = await reading
    expect(got).toEqual({ hash: sha256(new TextEncoder().encode('pong')), bytes: 4 })
  })

  it('fails a relayed stream with a clean error when the relay dies', async () => {
    await proc?.stop()
    proc = await spawnRelay(['--listen', '/ip4/127.0.0.1/tcp/0', '--admit-key', admitKey])
    const addr = proc.addrs[0] ?? ''
    const a = await client([addr])
    const b = await client([addr])
    const [bAddr] = await b.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    let remote: Stream | undefined
    await b.handle(PROTO, (stream: Stream) => { remote = stream })
    const stream = await a.dial(bAddr ?? '', PROTO, { signal: AbortSignal.timeout(10_000) })
    stream.send(new Uint8Array(1000))
    await until(() => remote !== undefined, 5000, 'the remote stream')
    const closed = (s: Stream): Promise<Error | undefined> => new Promise(resolve => {
      if (s.status !== 'open') { resolve(new Error(`already ${s.status}`)); return }
      s.addEventListener('close', evt => { resolve(evt.error) }, { once: true })
    })
    const aClosed = closed(stream)
    const bClosed = closed(remote as Stream)
    const reading = hashAll(stream).then(() => undefined, (err: unknown) => err)
    const killedAt = Date.now()
    await proc.stop()
    const timeout = new Promise<string>(resolve => setTimeout(() => resolve('timeout'), 10_000))
    const [errA, errB, readErr] = await Promise.all([Promise.race([aClosed, timeout]), Promise.race([bClosed, timeout]), Promise.race([reading, timeout])])
    console.log(`relay: streams closed ${Date.now() - killedAt} ms after the relay died: ${String(errA)} / ${String(errB)}`)
    expect(errA).toBeInstanceOf(RelayPathLostError)
    expect(errB).toBeInstanceOf(RelayPathLostError)
    expect(readErr).toBeInstanceOf(RelayPathLostError)
    expect(() => stream.send(new Uint8Array(1))).toThrow()
  })
})

describe('several relays side by side', () => {
  const procs: RelayProcess[] = []
  afterAll(async () => { await Promise.all(procs.map(async p => { await p.stop() })) })

  it('a client holds a reservation on each; when one relay dies, the other keeps carrying new streams', async () => {
    for (let i = 0; i < 2; i++) procs.push(await spawnRelay(['--listen', '/ip4/127.0.0.1/tcp/0', '--admit-key', admitKey]))
    const relays = procs.map(p => p.addrs[0] ?? '')
    const a = await client(relays)
    const b = await client(relays)
    await until(() => a.multiaddrs().length === 2 && b.multiaddrs().length === 2, 10_000, 'a reservation on each relay')
    await b.handle(PROTO, async (stream: Stream) => { await sendAll(stream, new TextEncoder().encode('pong'), AbortSignal.timeout(5000)) })
    const [dead, alive] = procs as [RelayProcess, RelayProcess]
    const deadId = relays[0]!.split('/p2p/')[1] ?? ''
    await dead.stop()
    await until(() => b.multiaddrs().length === 1 && !b.multiaddrs()[0]!.includes(deadId), 10_000, 'the dead relay\'s reservation to go')
    expect(b.multiaddrs()[0]).toContain(alive.addrs[0]!.split('/p2p/')[1] ?? '?')
    // by the address b announces now, and by PeerId (every configured relay in turn, the dead one first)
    for (const target of [b.multiaddrs()[0] ?? '', b.peerId.toString()]) {
      const stream = await a.dial(target, PROTO, { signal: AbortSignal.timeout(10_000) })
      const reading = hashAll(stream)
      await stream.close()
      expect(await reading).toEqual({ hash: sha256(new TextEncoder().encode('pong')), bytes: 4 })
    }
  })
})
