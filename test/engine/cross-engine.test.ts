/**
 * Engines interoperate: an agent on @roamhq/wrtc and an agent on node-datachannel connect and
 * tunnel (both directions, bytes checked by hash), and each one's status shows its own engine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { exchange, hashServer, startNet, until, type Net } from '../agent/harness.ts'

describe('cross-engine tunnel', () => {
  let net: Net
  let onWrtc: Agent
  let onDc: Agent
  let target: Awaited<ReturnType<typeof hashServer>>

  beforeAll(async () => {
    target = await hashServer(8 << 20)
    net = await startNet()
    onWrtc = await net.agent('on-wrtc', { engine: 'wrtc', associations: 1, shares: [{ name: 'blob', host: '127.0.0.1', port: target.port }], connects: [{ share: 'blob', peer: 'on-dc', host: '127.0.0.1', port: 0 }] })
    onDc = await net.agent('on-dc', { engine: 'datachannel', associations: 1, shares: [{ name: 'blob', host: '127.0.0.1', port: target.port }], connects: [{ share: 'blob', peer: 'on-wrtc', host: '127.0.0.1', port: 0 }] })
    await onDc.peerByName('on-wrtc', 20_000)
    await until(() => onWrtc.status().peers.some(p => p.state === 'connected') && onDc.status().peers.some(p => p.state === 'connected'), 20_000, 'connected both ways')
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    target?.server.close()
  })

  it('each side reports its own engine and one association', () => {
    const w = onWrtc.status()
    const d = onDc.status()
    expect(w.engine.engine).toBe('wrtc')
    expect(d.engine.engine).toBe('datachannel')
    expect(w.peers[0]).toMatchObject({ name: 'on-dc', engine: 'wrtc', associations: 1 })
    expect(d.peers[0]).toMatchObject({ name: 'on-wrtc', engine: 'datachannel', associations: 1 })
  })

  it('tunnels 8 MiB each way from the datachannel agent to the wrtc agent and back, intact', async () => {
    const results = await Promise.all([
      exchange(onDc.listeners[0]!.port, 8 << 20),
      exchange(onWrtc.listeners[0]!.port, 8 << 20),
    ])
    expect(results).toEqual([{ ok: true }, { ok: true }])
    // goodput is measured per peer every 2 s
    await until(() => onDc.status().peers[0]!.bytesIn > 0, 5000, 'bytes counted')
  }, 90_000)
})
