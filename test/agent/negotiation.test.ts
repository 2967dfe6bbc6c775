import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { exchange, hashServer, startNet, until, type Net } from './harness.ts'

describe('negotiation', () => {
  let net: Net
  let a: Agent
  let b: Agent
  let target: Awaited<ReturnType<typeof hashServer>>

  beforeAll(async () => {
    target = await hashServer(256 << 10)
    net = await startNet()
    a = await net.agent('a', { shares: [{ name: 'h', host: '127.0.0.1', port: target.port }] })
    b = await net.agent('b', { connects: [{ share: 'h', peer: 'a', host: '127.0.0.1', port: 0 }] })
    await b.peerByName('a')
  })

  afterAll(async () => {
    await net?.close()
    target?.server.close()
  })

  const ufrag = (agent: Agent): string | undefined => /a=ice-ufrag:(\S+)/.exec([...agent.mesh.peers.values()][0]?.session?.pc.localDescription?.sdp ?? '')?.[1]

  it('an ICE restart from one side renegotiates and keeps tunnels working', async () => {
    const before = ufrag(b)
    const peer = [...b.mesh.peers.values()][0]!
    peer.session!.restartIce()
    await until(() => ufrag(b) !== before && peer.session!.pc.signalingState === 'stable', 10_000, 'new ICE credentials')
    await until(() => peer.session!.state === 'connected', 10_000, 'connected again')
    expect(await exchange(b.listeners[0]!.port, 256 << 10)).toEqual({ ok: true })
  })

  it('simultaneous ICE restarts from both sides (glare) resolve and keep tunnels working', async () => {
    const before = [ufrag(a), ufrag(b)]
    const pa = [...a.mesh.peers.values()][0]!
    const pb = [...b.mesh.peers.values()][0]!
    pa.session!.restartIce()
    pb.session!.restartIce()
    await until(() => ufrag(a) !== before[0] && ufrag(b) !== before[1] && pa.session!.pc.signalingState === 'stable' && pb.session!.pc.signalingState === 'stable', 10_000, 'both renegotiated')
    await until(() => pa.session!.state === 'connected' && pb.session!.state === 'connected', 10_000, 'connected again')
    expect(pa.session).toBe([...a.mesh.peers.values()][0]!.session) // same session: no teardown needed
    const results = await Promise.all(Array.from({ length: 8 }, async () => await exchange(b.listeners[0]!.port, 256 << 10)))
    expect(results.every(r => r.ok)).toBe(true)
  })
})
