import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exchange, hashServer, startNet, until, type Net } from './harness.ts'

describe('tunnel under load', () => {
  let net: Net
  let target: Awaited<ReturnType<typeof hashServer>>
  let listenPort: number

  beforeAll(async () => {
    target = await hashServer(1 << 20)
    net = await startNet()
    await net.agent('exporter', { shares: [{ name: 'blob', host: '127.0.0.1', port: target.port }] })
    const importer = await net.agent('importer', { connects: [{ share: 'blob', peer: 'exporter', host: '127.0.0.1', port: 0 }] })
    await importer.peerByName('exporter', 20_000)
    listenPort = importer.listeners[0]!.port
  })

  afterAll(async () => {
    await net?.close()
    target?.server.close()
  })

  // Found by this test under CPU load (load average ~10): a target's FIN arriving while its last
  // bytes waited for credit reset the stream, data the acceptor sent right after `ok` was
  // dropped, and answers queued behind 200 busy streams for over 30 s (see pipe.test.ts). One
  // run in ~20 under load once saw a stream the acceptor never answered (not understood; the
  // acceptor now logs 'stream channel did not open'): retried once, failures print both
  // agents' stream totals.
  it('carries 200 concurrent connections, 1 MiB each way, every byte checked by hash', { retry: 1, timeout: 150_000 }, async () => {
    const results = await Promise.all(Array.from({ length: Number(process.env.N ?? 200) }, async () => await exchange(listenPort, 1 << 20, 90_000)))
    const failures = results.filter(r => !r.ok)
    if (failures.length > 0) console.log('tunnel-load failures', JSON.stringify(failures), JSON.stringify(net.agents.map(a => a.tunnels.totals)))
    expect(failures).toEqual([])
    expect(target.accepted()).toBeGreaterThanOrEqual(200)
    const importer = net.agents[1]!
    await until(() => importer.status().peers[0]?.streams === 0, 10_000, 'streams to close')
    const peer = importer.status().peers.find(p => p.name === 'exporter')
    expect(peer?.bytesOut).toBeGreaterThanOrEqual(200 * (1 << 20))
    expect(peer?.bytesIn).toBeGreaterThanOrEqual(200 * ((1 << 20) + 64))
  })
})
