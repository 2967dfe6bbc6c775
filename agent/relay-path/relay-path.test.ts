/**
 * The relay path on loopback (in-process relay, two relay clients, real Tunnels and sockets):
 * a tunnel over a relayed stream carries 4 MiB both ways intact, share checks apply to the
 * identified peer, a stream from an unannounced PeerId is refused, and a dying relay resets
 * the tunnelled TCP connection instead of ending it cleanly. A UDP share works over it too
 * (one datagram per message of the relayed stream).
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { deriveRelayKey } from '../../protocol/keys.ts'
import { newSecret } from '../../protocol/token.ts'
import { admitKeyFromRelayKey } from '../../protocol/relay-admission.ts'
import { startRelay, type Relay } from '../../relay/server.ts'
import type { RemotePeer } from '../../peer/mesh.ts'
import { silentLog } from '../../peer/peer-session.ts'
import { ShareRegistry } from '../tunnel/shares.ts'
import { Tunnels } from '../tunnel/tunnels.ts'
import { listenUdpConnect } from '../tunnel/udp-connect.ts'
import { UdpStats } from '../tunnel/udp-flows.ts'
import { UdpShares } from '../tunnel/udp-share.ts'
import { UDP_MAX_PAYLOAD } from '../../protocol/udp.ts'
import { Emitter } from '../../peer/emitter.ts'
import { RelayPath } from './index.ts'

const log = pino({ level: 'silent' })
const peer = (name: string, relay?: RemotePeer['relay']): RemotePeer => ({ id: `id-${name}`, name, role: 'agent', present: true, deadSids: new Set(), ...(relay !== undefined ? { relay } : {}) })

let relay: Relay
let echo: Server
let echoPort = 0
let udpEcho: UdpSocket
let udpEchoPort = 0
const paths: RelayPath[] = []
let relayKey: Uint8Array<ArrayBuffer>

beforeAll(async () => {
  relayKey = await deriveRelayKey(newSecret())
  relay = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0'], admission: { keys: [await admitKeyFromRelayKey(relayKey)] }, log })
  echo = createServer({ allowHalfOpen: true }, s => { s.pipe(s) })
  await new Promise<void>(resolve => echo.listen(0, '127.0.0.1', resolve))
  echoPort = (echo.address() as AddressInfo).port
  udpEcho = createSocket('udp4')
  udpEcho.on('message', (m, from) => udpEcho.send(m, from.port, from.address))
  await new Promise<void>(resolve => udpEcho.bind(0, '127.0.0.1', resolve))
  udpEchoPort = udpEcho.address().port
})
afterAll(async () => {
  await Promise.all(paths.map(async p => { await p.close() }))
  await relay.close().catch(() => {})
  echo.close()
  udpEcho.close()
})

/** A plain LogLike (not pino): the relay client's logs must reach it. */
const messages: string[] = []
const capture = { debug: (_o: object, m?: string) => { messages.push(m ?? '') }, info: (_o: object, m?: string) => { messages.push(m ?? '') }, warn: (_o: object, m?: string) => { messages.push(m ?? '') } }

/** Stands in for the Mesh's 'hello' events. */
const hellos = new Emitter<{ hello: () => void }>()
const onHello = (fn: () => void): (() => void) => hellos.on('hello', fn)

async function pair (allowed = true): Promise<{ a: RelayPath, b: RelayPath, tunnelsA: Tunnels, pa: RemotePeer, pb: RemotePeer }> {
  const addr = relay.multiaddrs[0]?.toString() ?? ''
  const shares = new ShareRegistry()
  shares.set('test', [{ name: 'echo', host: '127.0.0.1', port: echoPort, ...(allowed ? {} : { peers: ['someone-else'] }) }, { name: 'dgram', host: '127.0.0.1', port: udpEchoPort, protocol: 'udp' }])
  const tunnelsA = new Tunnels(new ShareRegistry(), {}, silentLog)
  const tunnelsB = new Tunnels(shares, {}, silentLog)
  const udpB = new UdpShares(new UdpStats(), {}, silentLog)
  tunnelsB.udp = (p, dc, share) => { udpB.accept(p.id, p.name, dc, share) }
  const pa = peer('a')
  const pb = peer('b')
  const a = await RelayPath.start({ relayKey, relays: [addr], log: capture, identify: () => undefined, onHello, accept: () => {}, onChange: () => {} })
  const b = await RelayPath.start({ relayKey, relays: [addr], log: silentLog, identify: (id) => id === pa.relay?.peer ? pa : undefined, onHello, accept: (p, dc) => { tunnelsB.accept(p, dc) }, onChange: () => {} })
  paths.push(a, b)
  await a.client.waitForReservation({ signal: AbortSignal.timeout(10_000) })
  await b.client.waitForReservation({ signal: AbortSignal.timeout(10_000) })
  pa.relay = a.info()
  pb.relay = b.info()
  return { a, b, tunnelsA, pa, pb }
}

/** A local socket pair: `inner` goes to the tunnel, `outer` is the application's end. */
async function socketPair (): Promise<{ inner: Socket, outer: Socket, close: () => void }> {
  const server = createServer({ allowHalfOpen: true })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>(resolve => server.once('connection', resolve))
  const outer = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  const inner = await accepted
  inner.pause()
  return { inner, outer, close: () => server.close() }
}

describe('relay path', () => {
  it('tunnels 4 MiB both ways intact over a relayed stream, counting bytes', async () => {
    const { a, tunnelsA, pb } = await pair()
    const { inner, outer, close } = await socketPair()
    await tunnelsA.open(pb, a.opener(pb), 'echo', inner)
    const data = randomBytes(4 << 20)
    const h = createHash('sha256')
    let got = 0
    const done = new Promise<void>((resolve, reject) => {
      outer.on('data', (b: Buffer) => { h.update(b); got += b.length })
      outer.on('end', resolve)
      outer.on('error', reject)
    })
    outer.end(data)
    await done
    close()
    expect(got).toBe(data.length)
    expect(h.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
    expect(tunnelsA.counter(pb.id).bytesOut).toBe(data.length)
    expect(tunnelsA.counter(pb.id).bytesIn).toBe(data.length)
    // the relay client logs through the agent's logger, whatever its type
    expect(messages).toContain('relayed addresses changed')
  })

  it('carries a UDP share: datagrams up to the payload limit come back through the relayed stream', async () => {
    const { a, pb } = await pair()
    const stats = new UdpStats()
    const l = await listenUdpConnect({ share: 'dgram', peer: 'b', host: '127.0.0.1', port: 0, protocol: 'udp' }, async (_peer, label) => await a.opener(pb).open(label, { ordered: false, maxRetransmits: 0 }), stats, {}, silentLog)
    const client = createSocket('udp4')
    try {
      for (const payload of [Buffer.from('ping'), Buffer.alloc(UDP_MAX_PAYLOAD, 0x33)]) {
        const back = await new Promise<Buffer | undefined>((resolve) => {
          const t = setInterval(() => client.send(payload, l.port, '127.0.0.1'), 1000)
          const got = (m: Buffer): void => { if (m.length === payload.length) { clearInterval(t); client.off('message', got); resolve(m) } }
          client.on('message', got)
          client.send(payload, l.port, '127.0.0.1')
        })
        expect(back?.equals(payload)).toBe(true)
      }
      expect(stats.flows.connect).toBe(1)
    } finally {
      client.close()
      await l.close()
    }
  })

  it('applies share checks to the identified peer', async () => {
    const { a, tunnelsA, pb } = await pair(false)
    const { inner, close } = await socketPair()
    await expect(tunnelsA.open(pb, a.opener(pb), 'echo', inner)).rejects.toMatchObject({ code: 'SHARE_FORBIDDEN' })
    close()
  })

  it('accepts a relayed stream whose announcing hello arrives after it, as soon as it arrives', async () => {
    const { a, tunnelsA, pa, pb } = await pair()
    const announced = pa.relay
    delete pa.relay // a's hello is still on its way to b
    const { inner, outer, close } = await socketPair()
    const opened = tunnelsA.open(pb, a.opener(pb), 'echo', inner)
    await new Promise(resolve => setTimeout(resolve, 300))
    const t = Date.now()
    pa.relay = announced
    hellos.emit('hello')
    await opened
    expect(Date.now() - t).toBeLessThan(1500)
    const echoed = new Promise<string>(resolve => { outer.once('data', (b: Buffer) => resolve(b.toString())) })
    outer.write('ping')
    expect(await echoed).toBe('ping')
    outer.destroy()
    close()
    expect(hellos.count('hello')).toBe(0)
  })

  it('refuses a relayed stream from a PeerId no hello announced', async () => {
    const { b, pb } = await pair()
    const addr = relay.multiaddrs[0]?.toString() ?? ''
    const stranger = await RelayPath.start({ relayKey, relays: [addr], log: silentLog, identify: () => undefined, onHello, accept: () => {}, onChange: () => {} })
    paths.push(stranger)
    await stranger.client.waitForReservation({ signal: AbortSignal.timeout(10_000) })
    const tunnels = new Tunnels(new ShareRegistry(), { openTimeoutMs: 5000 }, silentLog)
    const { inner, close } = await socketPair()
    await expect(tunnels.open(pb, stranger.opener(pb), 'echo', inner)).rejects.toMatchObject({ code: 'STREAM_RESET' })
    close()
    expect(b.info().addrs.length).toBe(1)
  })
})
