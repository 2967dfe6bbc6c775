/**
 * A member flooding (issue 22): mallory, a member with its own agent token, floods the victim
 * with validly sealed envelopes from ten signaling connections, 10x the victim's replay cache
 * in all, so that the cache stays full. While it floods, a third agent joins and connects to the victim and moves bytes
 * through its share within 10 s: the flood evicted only mallory's own nonces (before, the full
 * cache refused every peer's envelopes for 120 s). The replay protection holds throughout: an
 * old `bye` mallory recorded and replays after the flood is refused (the victim keeps mallory as
 * a peer), while a fresh one is obeyed.
 *
 * The victim runs with a replay cache of 2,000 nonces (250 per sender) instead of 50,000, so
 * that 10x its size takes seconds here; the code path is the same (protocol/seal.ts; the
 * default sizes are flooded in test/security/replay.test.ts). The signaling service's
 * per-connection rate limit is lifted so that the flood reaches the victim as fast as it is sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { importSigningKey } from '../../protocol/identity.ts'
import { signHello } from '../../protocol/identity-proof.ts'
import { generatePeerKey } from '../../protocol/join-proof.ts'
import { deriveMemberKeys } from '../../protocol/keys.ts'
import { seal } from '../../protocol/seal.ts'
import type { MemberToken } from '../../protocol/token.ts'
import { SignalingClient } from '../../peer/signaling-client.ts'
import type { Agent } from '../../agent/agent.ts'
import { exchange, hashServer, startNet, until, type Net } from './harness.ts'

const CACHE = 2000
const SOCKETS = 10

describe('a member flooding', () => {
  let net: Net
  let victim: Agent
  let target: Awaited<ReturnType<typeof hashServer>>
  let malloryToken: MemberToken

  beforeAll(async () => {
    target = await hashServer(64 * 1024)
    net = await startNet({ CAUSEWAY_RATE_PER_SECOND: '1000000', CAUSEWAY_RATE_BURST: '1000000' })
    victim = await net.agent('victim', { replayCache: CACHE, shares: [{ name: 'web', host: '127.0.0.1', port: target.port }] })
    malloryToken = await net.issue('mallory')
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    target?.server.close()
  })

  it('a third agent connects within 10 s while mallory floods 10x the cache; a replay is still refused', async () => {
    const keys = await deriveMemberKeys(malloryToken.secret)
    const identity = await importSigningKey(malloryToken.identity!.key)
    const sockets = await Promise.all(Array.from({ length: SOCKETS }, async () => {
      const key = await generatePeerKey()
      const sc = new SignalingClient({ signaling: malloryToken.signaling, room: keys.room, key })
      const joined = new Promise<void>(resolve => sc.on('welcome', () => resolve()))
      sc.start()
      await joined
      return { sc, id: key.id }
    }))
    const to = victim.mesh.id
    const sealFrom = async (from: string, body: unknown): Promise<string> => await seal(keys.seal, { room: keys.room, from, to, body })
    const main = sockets[0]!
    const hello = async (): Promise<unknown> => {
      const ts = Date.now()
      return { type: 'hello', name: 'mallory', role: 'agent', caps: ['tcp/1'], cred: malloryToken.identity!.credential, proof: { ts, sig: await signHello(identity, { room: keys.room, from: main.id, to, ts, name: 'mallory', role: 'agent' }) } }
    }
    // Mallory is a peer of the victim, and records a `bye` the victim obeys.
    main.sc.send(to, await sealFrom(main.id, await hello()))
    await until(() => victim.mesh.peers.has(main.id), 10_000, 'the victim to accept mallory')
    const recordedBye = await sealFrom(main.id, { type: 'bye' })
    main.sc.send(to, recordedBye)
    await until(() => !victim.mesh.peers.has(main.id), 10_000, 'the victim to obey the bye')

    // The flood: 10x the cache, from every socket, in bursts over about 4 s.
    let sent = 0
    const flood = (async () => {
      for (let burst = 0; burst < 40; burst++) {
        for (const s of sockets) {
          const batch = await Promise.all(Array.from({ length: (CACHE * 10) / 40 / SOCKETS }, async (_, i) => await sealFrom(s.id, { junk: burst * 1000 + i })))
          for (const env of batch) { s.sc.send(to, env); sent++ }
        }
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    })()
    // ten senders together fill the whole cache: from here on every new nonce evicts one of theirs
    await until(() => victim.mesh.remembered() >= CACHE * 0.95, 10_000, 'mallory to fill the victim\'s cache')
    const t0 = performance.now()
    const third = await net.agent('third', { connects: [{ share: 'web', peer: 'victim', host: '127.0.0.1', port: 0 }] })
    await third.peerByName('victim', 10_000)
    expect((await exchange(third.listeners[0]!.port, 64 * 1024, 10_000)).ok).toBe(true)
    const took = performance.now() - t0
    expect(took).toBeLessThan(10_000)
    const floodingStill = sent < CACHE * 10
    await flood
    expect(sent).toBe(CACHE * 10)
    // every burst reached the victim: it remembers a full share for mallory's sockets
    await until(() => sockets.every(s => victim.mesh.remembered(s.id) > 0), 10_000, 'the flood to reach the victim')
    expect(victim.mesh.remembered()).toBeLessThanOrEqual(CACHE)
    console.log(`third agent connected and moved 64 KiB in ${Math.round(took)} ms; the flood was ${floodingStill ? 'still running' : 'over'} by then`)

    // The replay protection is intact: mallory is a peer again; its recorded bye is refused…
    main.sc.send(to, await sealFrom(main.id, await hello()))
    await until(() => victim.mesh.peers.has(main.id), 10_000, 'the victim to accept mallory again')
    main.sc.send(to, recordedBye)
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(victim.mesh.peers.has(main.id)).toBe(true)
    // …while a fresh bye is obeyed (so the check above could have failed)
    main.sc.send(to, await sealFrom(main.id, { type: 'bye' }))
    await until(() => !victim.mesh.peers.has(main.id), 10_000, 'the victim to obey a fresh bye')
    for (const s of sockets) s.sc.close()
  }, 90_000)
})
