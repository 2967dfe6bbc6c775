/**
 * Hostile members against per-agent identity (issue 10, finding 1 and item 1), with real
 * agents on loopback: a member holding the network secret claims `site-b` (with its own
 * credential, with site-b's credential copied from a hello, with a shared token); an expired
 * credential; a revoked one, the revocation list reaching other agents through hellos. In
 * every case site-a refuses the claimant, the real site-b stays connected and keeps the share
 * limited to `peers=site-b`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromBase64Url } from '../../protocol/encoding.ts'
import { parseCredential } from '../../protocol/identity.ts'
import { revocationList, revoke, sharedToken } from '../../protocol/identity-owner.ts'
import type { MemberToken } from '../../protocol/token.ts'
import { Mesh } from '../../peer/mesh.ts'
import type { Agent } from '../../agent/agent.ts'
import { createPeerConnection } from '../../agent/wrtc.ts'
import { exchange, hashServer, log, startNet, until, type Net } from './harness.ts'

describe('hostile member vs proven names', () => {
  let net: Net
  let a: Agent
  let b: Agent
  let target: Awaited<ReturnType<typeof hashServer>>
  const refusals: Array<{ from: string, code: string }> = []

  beforeAll(async () => {
    target = await hashServer(64 * 1024)
    net = await startNet()
    a = await net.agent('site-a', { shares: [{ name: 'private', host: '127.0.0.1', port: target.port, peers: ['site-b'] }] })
    a.mesh.events.on('refused', (from, code) => { refusals.push({ from, code }) })
    b = await net.agent('site-b', { connects: [{ share: 'private', peer: 'site-a', host: '127.0.0.1', port: 0 }] })
    await b.peerByName('site-a', 20_000)
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    target?.server.close()
  })

  const realB = (): string | undefined => [...a.mesh.peers.values()].find(p => p.name === 'site-b')?.id
  const viaB = async (): Promise<boolean> => (await exchange(b.listeners[0]!.port, 64 * 1024, 20_000)).ok

  /** Runs a hostile mesh with `token` under the name site-b; returns what site-a did with it. */
  async function claim (token: MemberToken): Promise<{ refusedWith: string[], connected: boolean }> {
    const before = realB()
    expect(before).toBeDefined()
    const mallory = new Mesh({ token, name: 'site-b', createPeerConnection, iceServers: () => [], log: log.child({ agent: 'mallory' }), connectTimeoutMs: 5000 })
    let connected = false
    mallory.events.on('sessionState', (_p, s) => { if (s === 'connected') connected = true })
    await mallory.start()
    try {
      await until(() => refusals.some(r => r.from === mallory.id), 10_000, 'site-a to refuse the claimant')
      await new Promise(resolve => setTimeout(resolve, 3000))
      expect(a.mesh.peers.has(mallory.id)).toBe(false)
      expect(realB()).toBe(before)
      expect(await viaB()).toBe(true)
      return { refusedWith: refusals.filter(r => r.from === mallory.id).map(r => r.code), connected }
    } finally {
      await mallory.close()
    }
  }

  it('the real site-b reaches the peers=site-b share', async () => {
    expect(await viaB()).toBe(true)
  })

  it('a member with its own credential cannot run as site-b', async () => {
    const r = await claim(await net.issue('mallory'))
    expect(r.refusedWith).toContain('IDENTITY_REJECTED')
    expect(r.connected).toBe(false)
  }, 30_000)

  it('a member with site-b\'s credential (seen in a hello) but its own key cannot run as site-b', async () => {
    const mallory = await net.issue('mallory')
    const bCred = (await net.issue('site-b')).identity!.credential
    const r = await claim({ ...mallory, identity: { ...mallory.identity!, credential: bCred } })
    expect(r.refusedWith).toContain('IDENTITY_REJECTED')
    expect(r.connected).toBe(false)
  }, 30_000)

  it('a member with only the network secret (a shared token) cannot run as site-b', async () => {
    const r = await claim(sharedToken(net.owner))
    expect(r.refusedWith).toContain('IDENTITY_REJECTED')
    expect(r.connected).toBe(false)
  }, 30_000)

  it('an expired credential is refused', async () => {
    const token = await net.issue('site-e', 1)
    await new Promise(resolve => setTimeout(resolve, 1100))
    const e = await net.agent('site-e', { token })
    await until(() => refusals.some(r => r.from === e.mesh.id && r.code === 'CREDENTIAL_EXPIRED'), 10_000, 'CREDENTIAL_EXPIRED')
    expect(a.mesh.peers.has(e.mesh.id)).toBe(false)
  }, 30_000)

  it('a credential that expires during a session ends it: the agent is dropped and refused from then on', async () => {
    const token = await net.issue('site-x', 12)
    const expiresAt = parseCredential(token.identity!.credential).expiresAt
    const x = await net.agent('site-x', { token })
    await until(() => a.mesh.peers.get(x.mesh.id)?.session?.state === 'connected', 10_000, 'site-x connected to site-a while its credential is valid')
    expect(Date.now()).toBeLessThan(expiresAt * 1000)
    await until(() => refusals.some(r => r.from === x.mesh.id && r.code === 'CREDENTIAL_EXPIRED'), 15_000, 'site-a to drop site-x at expiry')
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt * 1000)
    expect(a.mesh.peers.has(x.mesh.id)).toBe(false)
    // its session ended on both sides, and it is not let back in with the same credential
    await until(() => x.status().peers.every(p => p.name !== 'site-a' || p.state !== 'connected'), 10_000, 'site-x to lose its session')
    const refusedBefore = refusals.filter(r => r.from === x.mesh.id).length
    x.mesh.setRelay(undefined) // hellos again to everyone
    await until(() => refusals.filter(r => r.from === x.mesh.id).length > refusedBefore, 10_000, 'its next hello refused')
    expect(a.mesh.peers.has(x.mesh.id)).toBe(false)
  }, 60_000)

  it('a revoked agent is dropped, refused when it comes back, and the list reaches the others', async () => {
    const dToken = await net.issue('site-d')
    const d = await net.agent('site-d', { token: dToken })
    await until(() => a.mesh.peers.has(d.mesh.id), 10_000, 'site-d to be known')
    revoke(net.owner, 'site-d')
    const list = await revocationList(net.owner)
    expect(await a.mesh.adoptRevocations(list)).toBe(true)
    expect(a.mesh.peers.has(d.mesh.id)).toBe(false)
    // site-a passes the list on in its hellos: site-b adopts it and drops site-d too.
    await until(() => b.mesh.revocationSeq === a.mesh.revocationSeq, 10_000, 'site-b to adopt the list')
    await until(() => !b.mesh.peers.has(d.mesh.id), 10_000, 'site-b to drop site-d')
    // The same credential again, as a restarted agent: refused.
    const again = await net.agent('site-d', { token: dToken })
    await until(() => refusals.some(r => r.from === again.mesh.id && r.code === 'CREDENTIAL_REVOKED'), 10_000, 'CREDENTIAL_REVOKED')
    expect(a.mesh.peers.has(again.mesh.id)).toBe(false)
    // A list signed by someone else (here: an older one re-signed by nobody) is refused.
    await expect(a.mesh.adoptRevocations(list.slice(0, -4) + 'AAAA')).rejects.toThrow(/not signed/)
    expect(await viaB()).toBe(true)
  }, 40_000)

  it('a shared token refuses peers= shares instead of ignoring them', async () => {
    const shared = sharedToken(net.owner)
    expect(fromBase64Url(net.owner.secret)).toEqual(shared.secret)
    await expect(net.agent('quick', { token: shared, shares: [{ name: 'x', host: '127.0.0.1', port: 1, peers: ['site-b'] }] })).rejects.toThrow(/shared token/)
  })
})
