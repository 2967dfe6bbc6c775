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

  it('carries 200 concurrent connections, 1 MiB each way, every byte checked by hash', async () => {
    const results = await Promise.all(Array.from({ length: Number(process.env.N ?? 200) }, async () => await exchange(listenPort, 1 << 20, 90_000)))
    const failures = results.filter(r => !r.ok)
    expect(failures).toEqual([])
    expect(target.accepted()).toBe(200)
    const importer = net.agents[1]!
    await until(() => importer.status().peers[0]?.streams === 0, 10_000, 'streams to close')
    const peer = importer.status().peers.find(p => p.name === 'exporter')
    expect(peer?.bytesOut).toBeGreaterThanOrEqual(200 * (1 << 20))
    expect(peer?.bytesIn).toBeGreaterThanOrEqual(200 * ((1 << 20) + 64))
  })
})
