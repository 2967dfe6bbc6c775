/**
 * Fuzzes every parser an agent exposes to other peers (issue 10, "Fuzz"), each with at least
 * FUZZ_COUNT (default 100,000) malformed inputs, against real agents on loopback:
 * - the sealed-envelope opener (protocol/seal.ts), in-process and over the signaling service;
 * - peer signals (hello, description, candidate, bye) sealed with the network key by a hostile
 *   member and sent to a running agent through the signaling service;
 * - control messages on a real `control` data channel;
 * - stream headers: the label and first message of a stream channel (Tunnels.accept), in-process
 *   with data-channel stand-ins and over real data channels.
 * Zero crashes: every rejection is a CausewayError or a clean refusal, nothing escapes as an
 * uncaught exception, and afterwards the fuzzed agent still carries a tunnel to and from its
 * peers. Seeded: failures reproduce (FUZZ_SEED=n). Run inside scripts/netns-run.sh.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { onDrain } from '../../peer/channel.ts'
import type { RemotePeer } from '../../peer/mesh.ts'
import type { PeerSession } from '../../peer/peer-session.ts'
import { SignalingClient } from '../../peer/signaling-client.ts'
import { concatBytes, fromBase64Url, randomBytes, randomId, toBase64Url, utf8 } from '../../protocol/encoding.ts'
import { CausewayError, isErrorCode } from '../../protocol/errors.ts'
import { importSigningKey } from '../../protocol/identity.ts'
import { generatePeerKey } from '../../protocol/join-proof.ts'
import { signHello } from '../../protocol/identity-proof.ts'
import { deriveMemberKeys, type MemberKeys } from '../../protocol/keys.ts'
import type { MemberToken } from '../../protocol/token.ts'
import { SEAL_MAX_SKEW_MS, SEAL_REPLAY_CACHE } from '../../protocol/limits.ts'
import { Opener, seal } from '../../protocol/seal.ts'
import { Gen, mutateText, mutateValue } from '../fuzz.ts'
import { exchange, hashServer, startNet, until, type Net } from '../agent/harness.ts'

const COUNT = Number(process.env.FUZZ_COUNT ?? 100_000)
const SEED = Number(process.env.FUZZ_SEED ?? 20261201)
const WIRE_STREAMS = 600

let net: Net
let victim: Agent
let b: Agent
let fuzzer: Agent
let keys: MemberKeys
/** The agent token of the fuzzing signal peer: its hellos are proven like a real agent's. */
let fuzzToken: MemberToken
let target: Awaited<ReturnType<typeof hashServer>>
const escaped: string[] = []
const onUncaught = (err: unknown): void => { escaped.push(err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err)) }

/** The session `from` holds to `to` (connected). */
function sessionTo (from: Agent, to: Agent): PeerSession {
  const s = from.mesh.peers.get(to.mesh.id)?.session
  if (s === undefined || s.state !== 'connected') throw new Error(`no connected session ${from.status().name} -> ${to.status().name}`)
  return s
}

/** Raw AES-GCM in the envelope's wire format around any plaintext (seal.ts always writes JSON). */
async function sealRaw (key: CryptoKey, from: string, to: string, plaintext: Uint8Array<ArrayBuffer>): Promise<string> {
  const iv = randomBytes(12)
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: utf8(`causeway/seal/1|${keys.room}|${from}|${to}`) }, key, plaintext))
  return toBase64Url(concatBytes(Uint8Array.of(1), iv, ct))
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** A malformed envelope that still passes the signaling service's syntax check (non-empty base64url). */
function garbageEnvelope (g: Gen, valid: string[]): string {
  const e = garbageBytes(g, valid)
  return e === '' ? 'A' : e
}

function garbageBytes (g: Gen, valid: string[]): string {
  const k = g.int(6)
  if (k === 0) return Array.from({ length: 1 + g.int(400) }, () => g.pick([...B64])).join('')
  if (k === 1) return toBase64Url(g.bytes(g.int(300)))
  const bytes = fromBase64Url(g.pick(valid))
  if (k === 2) { for (let i = 1 + g.int(4); i > 0; i--) { const at = g.int(bytes.length); bytes[at] = (bytes[at] ?? 0) ^ (1 << g.int(8)) } return toBase64Url(bytes) }
  if (k === 3) return toBase64Url(bytes.subarray(0, g.int(bytes.length)))
  if (k === 4) { bytes[0] = g.int(256); return toBase64Url(bytes) }
  return toBase64Url(concatBytes(bytes, g.bytes(1 + g.int(64))))
}

/** Plaintexts a hostile key holder could seal: not JSON, not {ts, body}, odd timestamps. */
function badPlaintext (g: Gen, now: number): Uint8Array<ArrayBuffer> {
  const k = g.int(6)
  if (k === 0) return g.bytes(g.int(200))
  if (k === 1) return utf8(mutateText(g, JSON.stringify({ ts: now, body: { type: 'bye' } })))
  if (k === 2) return utf8(JSON.stringify(mutateValue(g, { ts: now, body: { type: 'bye' } }, ['ts', 'body'])))
  if (k === 3) return utf8(JSON.stringify({ ts: g.pick([now - 10 * SEAL_MAX_SKEW_MS, now + 10 * SEAL_MAX_SKEW_MS, 1e308, -1e308, 0, '1', null]), body: 1 }))
  if (k === 4) { const d = 100 + g.int(5000); return utf8('['.repeat(d) + ']'.repeat(d)) }
  return utf8(`{"ts":${now},"body":${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}}`)
}

const RELAY_PEER = '12D3KooWHpGm2vxrpEDrjfXb1YVg2pdR2HgoK1sNsCAtNHXzA6g9'

const SIGNALS = (name: string): unknown[] => [
  { type: 'hello', name, role: 'agent', caps: ['tcp/1'] },
  { type: 'hello', name, role: 'agent', caps: [], relay: { peer: RELAY_PEER, addrs: ['/ip4/127.0.0.1/tcp/1/p2p-circuit'] } },
  { type: 'hello', name, role: 'viewer', caps: [], grants: ['*'], grantSig: 'AAAA' },
  { type: 'description', sid: 'fuzzsid1', description: { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n' } },
  { type: 'description', sid: 'fuzzsid1', description: { type: 'answer', sdp: 'v=0\r\n' } },
  { type: 'candidate', sid: 'fuzzsid1', candidate: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 } },
  { type: 'candidate', sid: 'fuzzsid1', candidate: null },
]

const CONTROLS: unknown[] = [
  { type: 'catalog', shares: [{ name: 'web', protocol: 'tcp', port: 80, namespace: 'default' }] },
  { type: 'ping', id: 1, t: 1.5 },
  { type: 'pong', id: 1, t: 1.5 },
  { type: 'status', name: 'x', peers: [{ peer: 'p', name: 'n', role: 'agent', state: 'connected', path: 'direct', rttMs: 1, bytesIn: 0, bytesOut: 0, streams: 0, shares: [] }], shares: [], connects: [], imports: [] },
  {
    type: 'status', name: 'x', peers: [], shares: [], connects: [], imports: [],
    netcheck: { ok: true, verdict: 'eim', site: 'eim', at: '2026-12-01T00:00:00Z', udp: true, mapping: 'endpoint-independent', publicAddress: '203.0.113.2:1', hairpinning: false, ipv6: false, signalingMs: 1, turn: [{ url: 'turn:x', transport: 'udp', allocated: true, rttMs: 1 }], relays: [{ transport: 'ws', reserved: true }], expect: { eim: 'direct', symmetric: 'turn', udpblock: 'turn', tcp443: 'relay' } },
  },
]

const STREAM_CONTROLS: unknown[] = [{ t: 'ok' }, { t: 'err', code: 'STREAM_RESET', message: 'x' }, { t: 'fin' }, { t: 'rst', code: 'X' }, { t: 'credit', n: 65536 }]

function controlFrame (g: Gen): string | Uint8Array<ArrayBuffer> {
  const k = g.int(10)
  if (k < 4) return JSON.stringify(mutateValue(g, g.pick(CONTROLS), ['catalog', 'ping', 'pong', 'status', 'shares', 'peers', 'netcheck', 'turn', 'expect']))
  if (k < 7) return mutateText(g, JSON.stringify(g.pick(CONTROLS)))
  if (k < 8) return g.unicode(1 + g.int(200))
  if (k < 9) return g.bytes(g.int(300))
  const d = 100 + g.int(3000)
  return g.r() < 0.5 ? '['.repeat(d) : '{"type":"catalog","shares":' + '['.repeat(d)
}

/** Is `m` a stream's `ok` answer (any version)? */
function isOk (m: string): boolean {
  try { return (JSON.parse(m) as { t?: unknown }).t === 'ok' } catch { return false }
}

function streamLabel (g: Gen): string {
  const k = g.int(50)
  if (k === 0) return 'tcp:web' // valid: the first message is what gets fuzzed
  if (k < 20) return `tcp:${mutateText(g, 'web')}`
  if (k < 30) return mutateText(g, 'tcp:web')
  if (k < 35) return g.pick(['', 'control', 'tcp:', 'TCP:web', 'tcp:web\u0000', 'tcp:../web', 'tcp:kube-apiserver', `tcp:${'a'.repeat(2000)}`])
  return g.unicode(1 + g.int(100))
}

function firstMessage (g: Gen): string | Uint8Array<ArrayBuffer> {
  const k = g.int(6)
  if (k === 0) return g.bytes(1 + g.int(200))
  if (k === 1) return JSON.stringify(mutateValue(g, g.pick(STREAM_CONTROLS), ['ok', 'err', 'fin', 'rst', 'credit', 't', 'n']))
  if (k === 2) return mutateText(g, JSON.stringify(g.pick(STREAM_CONTROLS)))
  if (k === 3) return JSON.stringify({ t: 'credit', n: g.pick([0, -1, 1e308, 2 ** 31, 0.5]) })
  if (k === 4) return g.unicode(1 + g.int(100))
  return JSON.stringify({ t: 'rst', code: g.unicode(g.int(100)) })
}

/** A data-channel stand-in for Tunnels.accept (the relay path hands it such adapters too). */
class FakeChannel extends EventTarget {
  readyState: RTCDataChannelState = 'open'
  binaryType: BinaryType = 'arraybuffer'
  bufferedAmount = 0
  bufferedAmountLowThreshold = 0
  onmessage: ((ev: MessageEvent) => void) | null = null
  onclose: (() => void) | null = null
  readonly sent: unknown[] = []
  /** Delivered right after the acceptor answers `ok` (the first message of an accepted stream). */
  afterOk?: string | Uint8Array<ArrayBuffer>
  /** True from `ok` until `afterOk` was handed to the acceptor's message handler. */
  delivering = false
  readonly label: string
  constructor (label: string) { super(); this.label = label }
  send (data: unknown): void {
    if (this.readyState !== 'open') throw new Error('closed')
    if (this.sent.length < 4) this.sent.push(data)
    const next = this.afterOk
    if (data === '{"t":"ok"}' && next !== undefined) {
      this.afterOk = undefined
      this.delivering = true
      setImmediate(() => {
        if (this.readyState === 'open') this.onmessage?.(new MessageEvent('message', { data: next }))
        this.delivering = false
      })
    }
  }
  close (): void {
    if (this.readyState === 'closed') return
    this.readyState = 'closed'
    this.onclose?.()
    this.dispatchEvent(new Event('close'))
  }
}

beforeAll(async () => {
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
  target = await hashServer(4096)
  net = await startNet({ CAUSEWAY_RATE_PER_SECOND: '100000', CAUSEWAY_RATE_BURST: '100000' })
  victim = await net.agent('site-a', { shares: [{ name: 'web', host: '127.0.0.1', port: target.port }] })
  b = await net.agent('site-b')
  fuzzer = await net.agent('fuzzer')
  await b.peerByName('site-a', 30_000)
  await fuzzer.peerByName('site-a', 30_000)
  fuzzToken = await net.issue('fuzz-signal')
  keys = await deriveMemberKeys(fuzzToken.secret)
}, 90_000)

afterAll(async () => {
  process.off('uncaughtException', onUncaught)
  process.off('unhandledRejection', onUncaught)
  await net?.close()
  await new Promise<void>(resolve => { if (target === undefined) resolve(); else target.server.close(() => resolve()) })
})

describe('agent-facing parsers under malformed input (issue 10, fuzz)', () => {
  it(`sealed-envelope opener: ${COUNT} malformed envelopes, only CausewayErrors`, async () => {
    const g = new Gen(SEED)
    const self = randomId(12)
    const opener = new Opener({ room: keys.room, self, keys: [{ key: keys.seal, role: 'agent' }, { key: keys.viewerSeal, role: 'viewer' }] })
    const now = Date.now()
    const valid = await Promise.all(Array.from({ length: 64 }, async (_, i) => await seal(keys.seal, { room: keys.room, from: 'fuzzfuzz', to: self, body: { i }, now })))
    const keyed = await Promise.all(Array.from({ length: 500 }, async () => await sealRaw(g.r() < 0.8 ? keys.seal : keys.viewerSeal, 'fuzzfuzz', self, badPlaintext(g, now))))
    const outcomes = new Map<string, number>()
    for (let i = 0; i < COUNT; i++) {
      const k = g.int(20)
      const x = k === 0
        ? { from: 'fuzzfuzz', sealed: g.pick(keyed) } // right key, bad plaintext (some replayed)
        : k === 1
          ? { from: g.pick(['fuzzfuzz', 'other-peer', '', g.unicode(5)]), sealed: g.pick(valid) } // replayed or misaddressed
          : { from: 'fuzzfuzz', sealed: k === 2 ? g.unicode(1 + g.int(200)) : garbageEnvelope(g, valid) }
      const r = await opener.open(x.from, x.sealed, now).then(() => 'opened', (e: unknown) => e instanceof CausewayError ? `${e.code} ${e.message.replace(/\d{3,}/g, 'N')}` : `ESCAPED ${String(e)}`)
      outcomes.set(r, (outcomes.get(r) ?? 0) + 1)
    }
    const summary = Object.fromEntries([...outcomes].sort((x, y) => y[1] - x[1]))
    expect(Object.keys(summary).filter(k => k.startsWith('ESCAPED')), JSON.stringify(summary)).toEqual([])
    expect([...outcomes.values()].reduce((a, n) => a + n, 0)).toBe(COUNT)
    // every refusal path was reached
    for (const m of ['not base64url', 'malformed', 'does not open', 'not JSON', 'body malformed', 'stale', 'replayed']) {
      expect(Object.keys(summary).some(k => k.includes(m)), `${m}: ${JSON.stringify(summary)}`).toBe(true)
    }
  }, 300_000)

  it(`peer signals: ${COUNT} malformed sealed signals and ${COUNT / 10} malformed envelopes to a running agent through the signaling service`, async () => {
    const g = new Gen(SEED + 1)
    const peerKey = await generatePeerKey()
    const fuzzId = peerKey.id
    const sc = new SignalingClient({ signaling: net.signaling.url, room: keys.room, key: peerKey, role: 'agent' })
    const events: string[] = []
    sc.on('error', (code, message) => { if (events.length < 20) events.push(`error ${code} ${message}`) })
    sc.on('state', (state) => { if (events.length < 20) events.push(`state ${state}`) })
    const welcomed = new Promise<void>(resolve => sc.on('welcome', () => resolve()))
    sc.start()
    await welcomed
    try {
      // Timestamps 5 s before the end of the window keep the victim's replay cache small (a hostile
      // member may do the same): a nonce is held only until its envelope would be stale. The cache
      // (SEAL_REPLAY_CACHE) refuses new envelopes while full, so batches are paced to keep fewer
      // than half of it alive (PACE_MS); a starved victim refuses late fuzz frames as stale, which
      // is one more refusal path. The marker is sealed fresh: it must open whatever the backlog.
      const ts = (): number => Date.now() - SEAL_MAX_SKEW_MS + 5000
      const sealFor = async (body: unknown, now = ts()): Promise<string> => await seal(keys.seal, { room: keys.room, from: fuzzId, to: victim.mesh.id, body, now })
      // A proven hello (credential + signature) for 'fuzz-signal', the name its token carries.
      const identity = fuzzToken.identity
      if (identity === undefined) throw new Error('the harness issued a token without identity')
      const signingKey = await importSigningKey(identity.key)
      const proven = async (relayAddr: string): Promise<object> => {
        const t = Date.now()
        const sig = await signHello(signingKey, { room: keys.room, from: fuzzId, to: victim.mesh.id, ts: t, name: 'fuzz-signal', role: 'agent', relayPeer: RELAY_PEER })
        return { type: 'hello', name: 'fuzz-signal', role: 'agent', caps: [], relay: { peer: RELAY_PEER, addrs: [relayAddr] }, cred: identity.credential, proof: { ts: t, sig } }
      }
      const samples = [...SIGNALS('fuzz-signal'), await proven('/fuzz')]
      const valid = await Promise.all(samples.map(async s => await sealFor(s)))
      const BATCH = 500 // with the marker, within the mesh's per-sender queue (512): nothing is dropped unparsed
      const PACE_MS = Math.ceil(5000 / (SEAL_REPLAY_CACHE / 2 / BATCH))
      const GARBAGE = COUNT / 10 // the opener alone takes COUNT in-process above
      let sealedSent = 0
      let garbageSent = 0
      let lastBatchAt = 0
      for (let k = 0; sealedSent < COUNT || garbageSent < GARBAGE; k++) {
        const wait = lastBatchAt + PACE_MS - Date.now()
        if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
        lastBatchAt = Date.now()
        const bodies: unknown[] = []
        const frames: string[] = []
        for (let i = 0; i < BATCH; i++) {
          if (garbageSent < GARBAGE && (i % 10 === 0 || sealedSent >= COUNT)) { frames.push(garbageEnvelope(g, valid)); garbageSent++; continue }
          if (sealedSent >= COUNT) break
          const base = g.pick(samples)
          bodies.push(g.r() < 0.7 ? mutateValue(g, base, ['hello', 'description', 'candidate', 'bye', 'agent', 'viewer', 'offer', 'answer', 'rollback', 'cred', 'proof', 'crl', identity.credential.slice(0, 40)]) : g.r() < 0.5 ? mutateText(g, JSON.stringify(base)) : g.unicode(g.int(64)))
          sealedSent++
        }
        frames.push(...await Promise.all(bodies.map(async b => await sealFor(b))))
        // the marker: a valid, proven hello announcing relay address /marker/k; once the victim shows it
        // for the fuzz peer, every frame before it was opened and handled (signals from one
        // sender are handled in order)
        const marker = async (): Promise<string> => await sealFor(await proven(`/marker/${k}`), Date.now())
        frames.push(await marker())
        const sent = frames.filter(f => sc.send(victim.mesh.id, f)).length
        expect(sent, `batch ${k}: ${events.join('; ')}`).toBe(frames.length)
        // A starved victim may lose frames on the way (its signaling socket closed as a slow
        // consumer, then rejoined): a fresh marker every 5 s, so one lost frame is not a hang.
        const seen = (): boolean => victim.mesh.peers.get(fuzzId)?.relay?.addrs[0] === `/marker/${k}`
        for (let tries = 0; tries < 12 && !seen(); tries++) {
          if (tries > 0) sc.send(victim.mesh.id, await marker())
          await until(seen, 5000, `marker ${k}`, 5).catch(() => {})
        }
        const peer = victim.mesh.peers.get(fuzzId)
        expect(seen(), `marker ${k} not seen in 60 s: the victim has ${peer === undefined ? 'no entry for the fuzz peer' : `relay ${JSON.stringify(peer.relay)}`}; fuzz client: ${events.join('; ')}`).toBe(true)
      }
      expect(sealedSent).toBe(COUNT)
      expect(garbageSent).toBe(GARBAGE)
      expect(escaped).toEqual([])
    } finally {
      sc.close()
    }
  }, 600_000)

  it(`control messages: ${COUNT} malformed messages on a real control channel`, async () => {
    const g = new Gen(SEED + 2)
    const control = sessionTo(fuzzer, victim).control
    for (let i = 0; i < COUNT; i++) {
      const f = controlFrame(g)
      control.send(f as string)
      if (control.bufferedAmount > 1 << 20) await new Promise<void>(resolve => onDrain(control, 256 << 10, resolve))
    }
    // marker: a valid catalog after the fuzz; the channel is ordered
    control.send(JSON.stringify({ type: 'catalog', shares: [{ name: 'fuzz-done', protocol: 'tcp' }] }))
    await until(() => victim.catalogs.get(fuzzer.mesh.id)?.some(s => s.name === 'fuzz-done') === true, 60_000, 'control marker')
    expect(sessionTo(victim, fuzzer).state).toBe('connected')
    expect(escaped).toEqual([])
  }, 600_000)

  it(`stream headers: ${COUNT} malformed labels and first messages (in-process channels), ${WIRE_STREAMS} over real data channels`, async () => {
    const g = new Gen(SEED + 3)
    const peer: RemotePeer = { id: `fuzz-${randomId(6)}`, name: 'fuzzer', role: 'agent', present: true, deadSids: new Set() }
    const answers = new Map<string, number>()
    const count = (key: string): void => { answers.set(key, (answers.get(key) ?? 0) + 1) }
    const channels: FakeChannel[] = []
    for (let i = 0; i < COUNT; i++) {
      const dc = new FakeChannel(streamLabel(g))
      victim.tunnels.accept(peer, dc as unknown as RTCDataChannel)
      if (g.r() < 0.2) dc.onmessage?.(new MessageEvent('message', { data: firstMessage(g) })) // before `ok`
      else dc.afterOk = firstMessage(g)
      channels.push(dc)
      if (channels.length >= 2000) { await settle(channels, count); channels.length = 0 }
    }
    await settle(channels, count)
    const summary = Object.fromEntries(answers)
    expect(Object.keys(summary).every(k => k === 'closed' || k === 'ok' || isErrorCode(k)), JSON.stringify(summary)).toBe(true)
    for (const code of ['BAD_MESSAGE', 'SHARE_NOT_FOUND', 'ok']) expect(summary[code], JSON.stringify(summary)).toBeGreaterThan(0)
    await until(() => victim.tunnels.counter(peer.id).streams === 0, 20_000, 'fuzzed streams released')
    victim.tunnels.forget(peer.id)

    // the same over real data channels from the fuzzing agent
    const session = sessionTo(fuzzer, victim)
    const wire = new Map<string, number>()
    for (let i = 0; i < WIRE_STREAMS; i += 50) {
      await Promise.all(Array.from({ length: 50 }, async () => {
        const label = streamLabel(g)
        let dc: RTCDataChannel
        try { dc = session.pc.createDataChannel(label, { ordered: true }) } catch { wire.set('local-refused', (wire.get('local-refused') ?? 0) + 1); return }
        dc.binaryType = 'arraybuffer'
        const got = await new Promise<string>((resolve) => {
          const t = setTimeout(() => { resolve(`timeout ${JSON.stringify(label.slice(0, 40))}`) }, 15_000)
          let first: string | undefined
          dc.onmessage = (ev: MessageEvent) => {
            if (first === undefined && typeof ev.data === 'string') first = ev.data
            // `ok` (stream version 1) or `ok {v:2,id}` (both agents stripe: protocol/peer.ts)
            if (first !== undefined && ev.data === first && isOk(first)) {
              try { dc.send(firstMessage(g) as string) } catch { /* closed */ }
              setTimeout(() => { try { dc.close() } catch { /* closed */ } }, 500) // the message may be valid: stop there
            }
          }
          dc.onclose = () => { clearTimeout(t); resolve(first ?? 'closed') }
          dc.onopen = () => { if (g.r() < 0.5) { try { dc.send(firstMessage(g) as string) } catch { /* closed */ } } }
        })
        try { dc.close() } catch { /* closed */ }
        let key = got
        try { const m = JSON.parse(got) as { t?: string, code?: string }; key = m.t === 'err' || m.t === 'rst' ? String(m.code) : String(m.t) } catch { /* not JSON */ }
        wire.set(key, (wire.get(key) ?? 0) + 1)
      }))
    }
    const wireSummary = Object.fromEntries(wire)
    expect([...wire.keys()].filter(k => k.startsWith('timeout')), JSON.stringify(wireSummary)).toEqual([])
    expect(Object.keys(wireSummary).every(k => k === 'closed' || k === 'ok' || isErrorCode(k)), JSON.stringify(wireSummary)).toBe(true)
    expect(escaped).toEqual([])
  }, 600_000)

  it('afterwards the fuzzed agent still carries tunnels both ways', async () => {
    expect(escaped).toEqual([])
    expect(sessionTo(b, victim).state).toBe('connected')
    const viaB = await b.addConnect({ share: 'web', peer: 'site-a', host: '127.0.0.1', port: 0 })
    const viaFuzzer = await fuzzer.addConnect({ share: 'web', peer: 'site-a', host: '127.0.0.1', port: 0 })
    expect(await exchange(viaB.port, 4096)).toEqual({ ok: true })
    expect(await exchange(viaFuzzer.port, 4096)).toEqual({ ok: true })
    // and the victim reaches a share on the fuzzing agent
    const back = await hashServer(4096)
    try {
      fuzzer.shares.set('test', [{ name: 'back', host: '127.0.0.1', port: back.port }])
      await until(() => victim.catalogs.get(fuzzer.mesh.id)?.some(s => s.name === 'back') === true, 20_000, 'catalog with back')
      const toFuzzer = await victim.addConnect({ share: 'back', peer: 'fuzzer', host: '127.0.0.1', port: 0 })
      expect(await exchange(toFuzzer.port, 4096)).toEqual({ ok: true })
    } finally {
      await new Promise<void>(resolve => back.server.close(() => resolve()))
    }
  }, 120_000)
})

/**
 * Waits for fuzzed in-process channels to be answered and closed (those whose first message was
 * valid stay open: closed here, as a remote would, once that message was handed to the
 * acceptor, whose handler parses it synchronously); counts what each answered.
 */
async function settle (channels: FakeChannel[], count: (key: string) => void): Promise<void> {
  await until(() => channels.every(c => c.readyState === 'closed' || (c.afterOk === undefined && c.sent.length > 0 && !c.delivering)), 30_000, 'fuzzed channels answered', 5)
  for (const c of channels) c.close()
  for (const c of channels) {
    const first = c.sent[0]
    if (typeof first !== 'string') { count('closed'); continue }
    const m = JSON.parse(first) as { t?: string, code?: string }
    count(m.t === 'err' || m.t === 'rst' ? String(m.code) : String(m.t))
  }
}
