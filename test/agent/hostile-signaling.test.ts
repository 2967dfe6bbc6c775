/**
 * A hostile signaling operator holding the network secret (test/agent/hostile-signaling.ts)
 * sits between two real agents: it swaps the DTLS fingerprint in offers and answers, replays
 * and reorders envelopes, and forges a welcome with a fake `site-b`. It never gets a session:
 * swapped descriptions are refused (IDENTITY_REJECTED) and never applied, the fake site-b is
 * refused, replays are dropped; once it stops swapping, the two agents connect to each other
 * and only to each other, every session proven.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromBase64Url } from '../../protocol/encoding.ts'
import type { Agent } from '../../agent/agent.ts'
import { startHostileSignaling, type HostileSignaling } from './hostile-signaling.ts'
import { exchange, hashServer, startNet, until, type Net } from './harness.ts'

describe('hostile signaling operator', () => {
  let net: Net
  let evil: HostileSignaling
  let a: Agent
  let b: Agent
  let target: Awaited<ReturnType<typeof hashServer>>
  const refusals: Array<{ at: string, from: string, code: string, message: string }> = []

  beforeAll(async () => {
    target = await hashServer(32 * 1024)
    net = await startNet()
    const mallory = await net.issue('mallory')
    evil = await startHostileSignaling(net.signaling.url, fromBase64Url(net.owner.secret), mallory.identity!.key)
    evil.modes.swapFingerprint = true
    evil.modes.forgeWelcome = true
    const via = async (name: string): Promise<Agent> => {
      const token = { ...await net.issue(name), signaling: evil.url }
      return await net.agent(name, { token, useServiceIce: false, connectTimeoutMs: 4000 })
    }
    a = await via('site-a')
    a.mesh.events.on('refused', (from, code, message) => { refusals.push({ at: 'site-a', from, code, message }) })
    b = await via('site-b')
    b.mesh.events.on('refused', (from, code, message) => { refusals.push({ at: 'site-b', from, code, message }) })
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    await evil?.close()
    target?.server.close()
  })

  it('a swapped DTLS fingerprint is refused and no session comes up', async () => {
    await until(() => evil.done.swapped >= 1 && refusals.some(r => /DTLS fingerprint/.test(r.message)), 15_000, 'a swapped description to be refused')
    await new Promise(resolve => setTimeout(resolve, 3000))
    for (const p of [...a.mesh.peers.values(), ...b.mesh.peers.values()]) expect(p.session?.state).not.toBe('connected')
  }, 30_000)

  it('a forged welcome with a fake site-b gets no peer', async () => {
    await until(() => evil.done.forged >= 1 && refusals.some(r => r.from === 'forgedPeerIdFromTheOperator'), 15_000, 'the forged hello to be refused')
    expect(refusals.find(r => r.from === 'forgedPeerIdFromTheOperator')?.code).toBe('IDENTITY_REJECTED')
    expect(a.mesh.peers.has('forgedPeerIdFromTheOperator')).toBe(false)
  }, 30_000)

  it('replayed and reordered envelopes: the genuine pair connects, only to each other', async () => {
    evil.modes.swapFingerprint = false
    evil.modes.replay = true
    evil.modes.reorder = true
    a.shares.set('test', [{ name: 'h', host: '127.0.0.1', port: target.port, peers: ['site-b'] }])
    const l = await b.addConnect({ share: 'h', peer: 'site-a', host: '127.0.0.1', port: 0 })
    await until(() => [...b.mesh.peers.values()].some(p => p.name === 'site-a' && p.session?.state === 'connected'), 40_000, 'site-a and site-b to connect')
    expect(evil.done.replayed).toBeGreaterThan(0)
    expect(evil.done.reordered).toBeGreaterThan(0)
    expect((await exchange(l.port, 32 * 1024, 20_000)).ok).toBe(true)
    for (const [m, other] of [[a, b], [b, a]] as const) {
      for (const p of m.mesh.peers.values()) {
        expect(p.proven).toBeDefined()
        if (p.session?.state === 'connected') expect(p.id).toBe(other.mesh.id)
      }
    }
  }, 60_000)
})
