import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { startNodeSignaling } from '../../signaling/node/server.ts'
import { configFromEnv } from '../../signaling/config.ts'
import { log, listen, startNet, until, type Net } from './harness.ts'

/** An HTTP-less byte source: sends `mib` MiB of a fixed pattern at a bounded rate, then closes. */
async function slowSource (mib: number, mibPerSecond: number) {
  const block = Buffer.alloc(1 << 20)
  for (let i = 0; i < block.length; i++) block[i] = (i * 13 + 5) & 0xff
  const server = createServer()
  const net = await import('node:net')
  const tcp = net.createServer((s) => {
    let sent = 0
    const t = setInterval(() => {
      if (sent >= mib) { clearInterval(t); s.end(); return }
      s.write(block); sent++
    }, 1000 / mibPerSecond)
    s.on('error', () => clearInterval(t))
    s.on('close', () => clearInterval(t))
  })
  const port = await listen(tcp)
  const expected = createHash('sha256')
  for (let i = 0; i < mib; i++) expected.update(block)
  return { tcp, server, port, hash: expected.digest('hex') }
}

async function fetchAll (port: number, ms: number): Promise<{ hash: string, bytes: number }> {
  return await new Promise((resolve, reject) => {
    const h = createHash('sha256')
    let bytes = 0
    const s = connect({ host: '127.0.0.1', port })
    const t = setTimeout(() => { s.destroy(); reject(new Error('fetch timed out')) }, ms)
    s.on('data', (d: Buffer) => { h.update(d); bytes += d.length })
    s.on('end', () => { clearTimeout(t); resolve({ hash: h.digest('hex'), bytes }) })
    s.on('error', (e) => { clearTimeout(t); reject(e) })
  })
}

describe('agent lifecycle', () => {
  let net: Net | undefined
  afterEach(async () => { await net?.close(); net = undefined })

  it('keeps a transfer going while the signaling service is down, and admits new peers after it returns', async () => {
    const src = await slowSource(24, 8) // ~3 s
    net = await startNet()
    const port = net.signaling.port
    await net.agent('exporter', { shares: [{ name: 'src', host: '127.0.0.1', port: src.port }] })
    const importer = await net.agent('importer', { connects: [{ share: 'src', peer: 'exporter', host: '127.0.0.1', port: 0 }] })
    await importer.peerByName('exporter')
    const transfer = fetchAll(importer.listeners[0]!.port, 30_000)
    // killed mid-transfer: once the first MiB has come through the tunnel (of 24, over ~3 s)
    await until(() => (importer.status().peers.find(p => p.name === 'exporter')?.bytesIn ?? 0) > 1 << 20, 10_000, 'the transfer to be under way')
    await net.signaling.close()
    await until(() => importer.status().signaling !== 'joined', 5000, 'agents to notice')
    const got = await transfer
    expect(got.bytes).toBe(24 << 20)
    expect(got.hash).toBe(src.hash)
    // the service returns on the same address; agents rejoin, and a new peer joins and connects
    net.signaling = await startNodeSignaling({ host: '127.0.0.1', port, config: configFromEnv({}), log })
    await until(() => importer.status().signaling === 'joined', 30_000, 'rejoin')
    const late = await net.agent('late', { connects: [{ share: 'src', peer: 'exporter', host: '127.0.0.1', port: 0 }] })
    await late.peerByName('exporter', 20_000)
    const again = await fetchAll(late.listeners[0]!.port, 30_000)
    expect(again.hash).toBe(src.hash)
    src.tcp.close()
  })

  it('a stream whose connection ends before the peer answered is opened again on the next connection', async () => {
    // What a DTLS handshake that fails under load does (PeerSession): the session was up (ICE),
    // a client connected, its stream went out, and the connection died before any answer. Here
    // the exporter drops its session when the first stream is announced, without answering.
    const src = await slowSource(1, 100)
    net = await startNet()
    const exporter = await net.agent('exporter', { engine: 'datachannel', shares: [{ name: 'src', host: '127.0.0.1', port: src.port }] })
    const importer = await net.agent('importer', { engine: 'datachannel', connects: [{ share: 'src', peer: 'exporter', host: '127.0.0.1', port: 0 }] })
    const peer = await importer.peerByName('exporter')
    const first = peer.session
    const accept = exporter.tunnels.accept.bind(exporter.tunnels)
    let dropped = 0
    exporter.tunnels.accept = (p, dc) => {
      if (dropped === 0) { dropped++; p.session?.close(); return }
      accept(p, dc)
    }
    const got = await fetchAll(importer.listeners[0]!.port, 30_000)
    expect(dropped).toBe(1)
    expect(peer.session).not.toBe(first)
    expect(got.hash).toBe(src.hash)
    src.tcp.close()
  })

  it('notices a peer restart, cleans up and reconnects', async () => {
    const src = await slowSource(1, 100)
    net = await startNet()
    const share = { name: 'src', host: '127.0.0.1', port: src.port }
    const first = await net.agent('exporter', { shares: [share] })
    const importer = await net.agent('importer', { connects: [{ share: 'src', peer: 'exporter', host: '127.0.0.1', port: 0 }] })
    const oldPeer = await importer.peerByName('exporter')
    expect((await fetchAll(importer.listeners[0]!.port, 10_000)).hash).toBe(src.hash)
    // crash-like restart: no goodbye, the old connection just dies
    await first.mesh.signaling?.close()
    for (const p of first.mesh.peers.values()) p.session?.close()
    net.agents.splice(net.agents.indexOf(first), 1)
    const second = await net.agent('exporter', { shares: [share] })
    await until(() => importer.mesh.peers.get(oldPeer.id) === undefined, 20_000, 'old incarnation removed')
    const newPeer = await importer.peerByName('exporter', 20_000)
    expect(newPeer.id).toBe(second.mesh.id)
    expect([...importer.mesh.peers.values()].filter(p => p.name === 'exporter')).toHaveLength(1)
    expect((await fetchAll(importer.listeners[0]!.port, 10_000)).hash).toBe(src.hash)
    await first.stop()
    src.tcp.close()
  })
})
