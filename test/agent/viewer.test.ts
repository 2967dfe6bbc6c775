/**
 * Hostile viewers against real agents (issue 10 findings 2, 3 and 9):
 * - a viewer token granting `*` opens a stream to a share limited by `peers=`: refused
 *   (SHARE_FORBIDDEN), while an unrestricted share works;
 * - a viewer seals `hello {role: 'agent', name: 'site-a'}` with the viewer key all viewers
 *   share and sends it to another viewer: refused (no credential), never listed as site-a;
 * - a viewer granted only `web` is told only about `web`: no other share, no connect listener,
 *   no import, no candidate pair (IP addresses) in the agents' status reports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generatePeerKey } from '../../protocol/join-proof.ts'
import { deriveViewerSealKey } from '../../protocol/keys.ts'
import { parseJson, StreamControl, type StatusMessage } from '../../protocol/peer.ts'
import { seal } from '../../protocol/seal.ts'
import { viewerTokenFor, type ViewerToken } from '../../protocol/token.ts'
import { sharedToken } from '../../protocol/identity-owner.ts'
import { Opener } from '../../protocol/seal.ts'
import { Mesh, type RemotePeer } from '../../peer/mesh.ts'
import { SignalingClient } from '../../peer/signaling-client.ts'
import type { Agent } from '../../agent/agent.ts'
import { createPeerConnection } from '../../agent/wrtc.ts'
import { hashServer, log, startNet, until, type Net } from './harness.ts'

interface Watcher { mesh: Mesh, statuses: Map<string, StatusMessage>, refused: Array<{ from: string, code: string }>, close: () => Promise<void> }

async function watch (token: ViewerToken, name: string): Promise<Watcher> {
  const mesh = new Mesh({ token, name, createPeerConnection, iceServers: () => [], log: log.child({ viewer: name }) })
  const statuses = new Map<string, StatusMessage>()
  const refused: Watcher['refused'] = []
  mesh.events.on('session', (peer, session) => { session.onControl = (m) => { if (m.type === 'status') statuses.set(peer.name, m) } })
  mesh.events.on('refused', (from, code) => { refused.push({ from, code }) })
  await mesh.start()
  return { mesh, statuses, refused, close: async () => await mesh.close() }
}

const connected = (w: Watcher, name: string): RemotePeer | undefined =>
  [...w.mesh.peers.values()].find(p => p.name === name && p.role === 'agent' && p.session?.state === 'connected')

/** Opens `tcp:<share>` from a viewer and returns the agent's first answer. */
async function openShare (peer: RemotePeer, share: string): Promise<StreamControl | null> {
  const dc = peer.session!.pc.createDataChannel(`tcp:${share}`, { ordered: true })
  return await new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), 10_000)
    dc.onmessage = (ev: MessageEvent) => { clearTimeout(t); resolve(typeof ev.data === 'string' ? parseJson(StreamControl, ev.data) : null); dc.close() }
  })
}

describe('hostile viewers', () => {
  let net: Net
  let a: Agent
  let target: Awaited<ReturnType<typeof hashServer>>
  const watchers: Watcher[] = []

  beforeAll(async () => {
    target = await hashServer(1024)
    net = await startNet()
    a = await net.agent('site-a', {
      shares: [
        { name: 'web', host: '127.0.0.1', port: target.port },
        { name: 'db', host: '127.0.0.1', port: target.port },
        { name: 'private', host: '127.0.0.1', port: target.port, peers: ['site-b'] },
      ],
    })
    const b = await net.agent('site-b', { connects: [{ share: 'private', peer: 'site-a', host: '127.0.0.1', port: 0 }] })
    await b.peerByName('site-a', 20_000)
  }, 60_000)

  afterAll(async () => {
    await Promise.allSettled(watchers.map(async w => await w.close()))
    await net?.close()
    target?.server.close()
  })

  it('a viewer granted * cannot reach a peers= share (finding 2)', async () => {
    const w = await watch(await viewerTokenFor(await net.issue('viewer-src'), ['*']), 'wide')
    watchers.push(w)
    await until(() => connected(w, 'site-a') !== undefined, 20_000, 'the viewer to connect to site-a')
    const peer = connected(w, 'site-a')!
    expect(await openShare(peer, 'private')).toMatchObject({ t: 'err', code: 'SHARE_FORBIDDEN' })
    expect(await openShare(peer, 'web')).toEqual({ t: 'ok' })
    // Its catalog and status never list the peers= share either.
    await until(() => w.statuses.has('site-a'), 10_000, 'a status report')
    expect(w.statuses.get('site-a')!.shares.map(s => s.name).sort()).toEqual(['db', 'web'])
  }, 40_000)

  it('a viewer cannot pass itself off as an agent to another viewer (finding 3)', async () => {
    const token = await viewerTokenFor(await net.issue('viewer-src'), [])
    const victim = await watch(token, 'victim')
    watchers.push(victim)
    await until(() => connected(victim, 'site-a') !== undefined, 20_000, 'the victim to see site-a')
    const realA = connected(victim, 'site-a')!.id
    // The attacker: a viewer that seals an agent hello for site-a with the shared viewer key.
    // It joins the room as an agent (the service has no access secret, so no ticket limits its
    // role; with one, its viewer ticket would confine it to viewer, and the service forwards
    // nothing from a viewer to a viewer): the victim itself must refuse the hello.
    const key = await deriveViewerSealKey(token.viewerSecret)
    const peerKey = await generatePeerKey()
    const id = peerKey.id
    const sc = new SignalingClient({ signaling: token.signaling, room: token.room, key: peerKey, role: 'agent' })
    const forge = async (to: string): Promise<void> => {
      sc.send(to, await seal(key, { room: token.room, from: id, to, body: { type: 'hello', name: 'site-a', role: 'agent', caps: ['tcp/1'] } }))
    }
    sc.on('welcome', peers => { for (const p of peers) void forge(p) })
    sc.start()
    try {
      await until(() => victim.refused.some(r => r.from === id), 10_000, 'the victim to refuse the forged hello')
      expect(victim.refused.find(r => r.from === id)?.code).toBe('IDENTITY_REJECTED')
      expect(victim.mesh.peers.has(id)).toBe(false)
      expect(connected(victim, 'site-a')?.id).toBe(realA)
    } finally {
      sc.close()
    }
  }, 40_000)

  it('a viewer granted only web sees only web: no other share, listener, import or IP (finding 9)', async () => {
    const w = await watch(await viewerTokenFor(await net.issue('viewer-src'), ['web']), 'narrow')
    watchers.push(w)
    await until(() => w.statuses.has('site-a') && w.statuses.has('site-b'), 20_000, 'status from both agents')
    // Two rounds, so the agents have measured their paths (pairs exist to be hidden).
    await new Promise(resolve => setTimeout(resolve, 4500))
    for (const name of ['site-a', 'site-b']) {
      const s = w.statuses.get(name)!
      expect(s.shares.map(x => x.name)).toEqual(name === 'site-a' ? ['web'] : [])
      expect(s.connects).toEqual([])
      expect(s.imports).toEqual([])
      for (const p of s.peers) {
        expect(p.pair).toBeUndefined()
        expect(p.shares.every(x => x.name === 'web')).toBe(true)
      }
    }
    expect(w.statuses.get('site-b')!.peers.find(p => p.name === 'site-a')?.path).toBe('direct')
    // The agent's own full status has what the viewer was not shown.
    const full = a.status()
    expect(full.peers.find(p => p.name === 'site-b')?.pair).toBeDefined()
  }, 40_000)
})

describe('a viewer claiming the agent role in an open deployment (issue 22)', () => {
  let net: Net
  let a: Agent
  const watchers: Watcher[] = []

  beforeAll(async () => {
    net = await startNet() // no access secret: the service admits any role as claimed
    a = await net.agent('site-a', { token: sharedToken(net.owner) })
  }, 60_000)

  afterAll(async () => {
    await Promise.allSettled(watchers.map(async w => await w.close()))
    await net?.close()
  })

  it('other viewers and the agents refuse its agent hellos, forged or replayed; the real agent stays', async () => {
    const token = await viewerTokenFor(sharedToken(net.owner), ['*'])
    expect(token.issuer).toBeUndefined() // a shared token: no credentials to check
    expect(token.memberKey).toBeDefined()
    const victim = await watch(token, 'victim')
    watchers.push(victim)
    await until(() => connected(victim, 'site-a') !== undefined, 20_000, 'the victim to see site-a')
    const realA = connected(victim, 'site-a')!.id
    // The attacker holds a viewer token (the same one: viewers share the viewer secret), joins as
    // an agent, and (1) seals a forged agent hello for site-a to everyone, (2) forwards to the
    // victim the hello site-a sent it (sealed for viewers, carrying site-a's member proof).
    const key = await deriveViewerSealKey(token.viewerSecret)
    const peerKey = await generatePeerKey()
    const id = peerKey.id
    const opener = new Opener({ room: token.room, self: id, keys: [{ key, role: 'viewer' }] })
    const sc = new SignalingClient({ signaling: token.signaling, room: token.room, key: peerKey, role: 'agent' })
    let replayed = 0
    const forged = { type: 'hello', name: 'site-a', role: 'agent', caps: ['tcp/1'], mproof: { ts: Date.now(), sig: 'A'.repeat(86) } }
    const send = async (to: string, body: unknown): Promise<void> => { sc.send(to, await seal(key, { room: token.room, from: id, to, body })) }
    sc.on('welcome', peers => { for (const p of peers) void send(p, { ...forged, mproof: { ts: Date.now(), sig: 'A'.repeat(86) } }) })
    sc.on('signal', (from, sealed) => {
      void opener.open(from, sealed).then(async ({ body }) => {
        if (from !== realA || typeof body !== 'object' || body === null || !('type' in body) || body.type !== 'hello') return
        replayed++
        await send(victim.mesh.id, body)
      }, () => {})
    })
    sc.start()
    try {
      await until(() => replayed > 0 && victim.refused.filter(r => r.from === id).length >= 2, 10_000, 'the victim to refuse the forged and the replayed hello')
      expect(new Set(victim.refused.filter(r => r.from === id).map(r => r.code))).toEqual(new Set(['IDENTITY_REJECTED']))
      expect(victim.mesh.peers.has(id)).toBe(false)
      expect(connected(victim, 'site-a')?.id).toBe(realA)
      // site-a opens the forged hello with the viewer key: an agent hello there is never taken
      expect(a.mesh.peers.has(id)).toBe(false)
      expect([...a.mesh.peers.values()].filter(p => p.role === 'agent' && p.name === 'site-a')).toEqual([])
    } finally {
      sc.close()
    }
  }, 40_000)

  it('a viewer token without the member key (older) refuses every agent in an open deployment', async () => {
    const { memberKey: _, ...old } = await viewerTokenFor(sharedToken(net.owner), ['*'])
    const w = await watch(old, 'old')
    watchers.push(w)
    await until(() => w.refused.length > 0, 10_000, 'the old viewer to refuse site-a')
    expect(w.refused[0]?.code).toBe('IDENTITY_REJECTED')
    expect([...w.mesh.peers.values()].filter(p => p.role === 'agent')).toEqual([])
  }, 20_000)
})
