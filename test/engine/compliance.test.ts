/**
 * One compliance suite, run on every WebRTC engine behind agent/engine (and across engines):
 * what the tunnels rely on. Message before `open`, drain/backpressure, close propagation both
 * ways, 500 channels on one association, TURN (UDP, and TCP where the engine claims it) through
 * a real coturn on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPeerConnection, ENGINE_CAPS, ENGINE_NAMES, type EngineName } from '../../agent/engine/index.ts'
import { onDrain, whenOpen } from '../../peer/channel.ts'
import type { PeerSession } from '../../peer/peer-session.ts'
import { connectPair, ENGINE_PAIRS, sessionPair, type Pair } from './pair.ts'
import { until } from '../until.ts'

const TURN_PORT = 3479
const TURN_USER = 'cw'
const TURN_PASS = 'compliance-secret'

async function selectedPairKind (pc: RTCPeerConnection): Promise<string> {
  const report = await pc.getStats()
  const byId = new Map<string, Record<string, unknown>>()
  report.forEach((s: Record<string, unknown>) => { if (typeof s.id === 'string') byId.set(s.id, s) })
  for (const s of byId.values()) {
    if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') {
      const pair = byId.get(s.selectedCandidatePairId)
      return String(byId.get(String(pair?.localCandidateId))?.candidateType)
    }
  }
  for (const s of byId.values()) {
    if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated === true || s.selected === true)) return String(byId.get(String(s.localCandidateId))?.candidateType)
  }
  return 'none'
}

describe.each(ENGINE_NAMES)('engine %s: negotiation out of order is an error, never a crash', (engine) => {
  // libdatachannel throws a C++ exception for a description the signaling state does not allow,
  // and node-datachannel 0.33 does not catch it in setLocalDescription: the agent aborted
  // ("terminate called after throwing an instance of 'std::logic_error'", seen in the
  // negotiation test when an applied offer could not be answered).
  it('an answer with no offer, and an answer while offering, are rejected; the connection still works', async () => {
    const pc = createPeerConnection(engine, { iceServers: [] })
    try {
      pc.createDataChannel('x')
      await expect(pc.createAnswer()).rejects.toThrow()
      const offer = await pc.createOffer()
      await pc.setLocalDescription(offer)
      expect(pc.signalingState).toBe('have-local-offer')
      await expect(pc.createAnswer()).rejects.toThrow()
      expect(pc.signalingState).toBe('have-local-offer')
      await pc.setLocalDescription({ type: 'rollback' })
      expect(pc.signalingState).toBe('stable')
      const again = await pc.createOffer()
      expect(again.type).toBe('offer')
    } finally {
      pc.close()
    }
  })
})

describe.each(ENGINE_PAIRS)('engine %s <-> %s: a DTLS handshake that fails', (engineA, engineB) => {
  // The offerer is given a wrong fingerprint for the answerer: ICE connects, DTLS cannot. No
  // session may stay up over it until the connect timeout: the mesh must learn within seconds,
  // from at least one side, that it needs a new session (the other side's is then replaced).
  // libdatachannel closes such a connection itself (its state reads `closed`, never `failed`);
  // the same happens when its DTLS handshake completes before its own setRemoteDescription
  // stored the fingerprint (a race a loaded machine hits: the quickstart's first tunnel then
  // waited 20-30 s). @roamhq/wrtc reports no event for the failed DTLS: the handshake deadline
  // catches it once ICE reported `connected` — and when wrtc on both sides misses even that
  // event (1 run in 4 here), only the connect timeout does: that pair gets a short one.
  const wrtcOnly = engineA === 'wrtc' && engineB === 'wrtc'
  const connectTimeoutMs = wrtcOnly ? 8000 : 60_000
  it('fails the session within seconds, long before the connect timeout; none stays connected', async () => {
    const flip = (sdp: string): string => sdp.replace(/(a=fingerprint:sha-256 )([0-9A-F]{2})/i, (_m, p: string, h: string) => `${p}${((parseInt(h, 16) ^ 0xff) & 0xff).toString(16).toUpperCase().padStart(2, '0')}`)
    const states: Record<string, string[]> = { a: [], b: [] }
    const { a, b } = sessionPair(engineA, engineB, {
      connectTimeoutMs,
      handshakeTimeoutMs: 3000,
      toA: (s) => {
        if (s.type !== 'description') return s
        const sdp = flip(s.description.sdp)
        expect(sdp).not.toBe(s.description.sdp)
        return { ...s, description: { ...s.description, sdp } }
      },
    })
    a.onState = st => states.a?.push(st)
    b.onState = st => states.b?.push(st)
    // a stream opened before the connection is up (as a tunnel does when a client comes early)
    const early = [a.pc.createDataChannel('early-a'), b.pc.createDataChannel('early-b')]
    try {
      const settled = (x: PeerSession): boolean => x.state === 'failed' || (x.state === 'connecting' && x.control.readyState !== 'open')
      await until(() => (a.state === 'failed' || b.state === 'failed') && settled(a) && settled(b), wrtcOnly ? 12_000 : 10_000, () => `a session to fail and none to stay up (a: ${states.a?.join(' > ')} ice ${a.pc.iceConnectionState} conn ${a.pc.connectionState}; b: ${states.b?.join(' > ')} ice ${b.pc.iceConnectionState} conn ${b.pc.connectionState})`)
      expect(a.control.readyState).not.toBe('open')
      expect(b.control.readyState).not.toBe('open')
      if (engineA === 'datachannel' && engineB === 'datachannel') expect([a.state, b.state]).toEqual(['failed', 'failed'])
      // The mesh closes a failed session: a channel opened on it must hear of it, or the stream
      // waiting for its answer waits forever (libdatachannel never closes a channel it had not
      // assigned a stream id yet).
      a.close()
      b.close()
      await until(() => early.every(dc => dc.readyState === 'closed'), 5000, () => `the early channels to close (${early.map(dc => dc.readyState).join(', ')})`)
    } finally {
      a.close()
      b.close()
    }
  }, 30_000)
})

describe.each(ENGINE_PAIRS)('engine %s <-> %s', (engineA, engineB) => {
  let pair: Pair

  beforeAll(async () => { pair = await connectPair(engineA, engineB) }, 60_000)
  afterAll(() => pair?.close())

  it('delivers a message sent by the acceptor before the opener saw `open`', async () => {
    pair.b.onDataChannel = (dc) => { dc.send(`hello ${dc.label}`) }
    const got = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const dc = pair.a.pc.createDataChannel(`first-${i}`)
      dc.binaryType = 'arraybuffer'
      const first = new Promise<string>((resolve) => { dc.onmessage = (ev: MessageEvent) => resolve(String(ev.data)) })
      await whenOpen(dc)
      const text = await first
      dc.close()
      return text
    }))
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `hello first-${i}`))
  })

  // KNOWN ENGINE BUGS (open, upstream), why the receiver speaks first here, as the tunnel's
  // acceptor does (its `ok` goes out before the opener sends a byte: agent/tunnel/tunnels.ts):
  // a burst sent the moment a channel opens can reach the receiving application out of order.
  // - libdatachannel 0.24.5 (node-datachannel receiving; seen: wrtc -> datachannel, "at byte
  //   393216: message ... starts with 7, expected 6", 1 of ~20 full runs): an incoming channel's
  //   queued messages are flushed to the callback by whichever thread calls
  //   Channel::flushPendingMessages (src/impl/channel.cpp) — the SCTP thread on arrival, and the
  //   application's thread when it registers onMessage — each pops one message and calls the
  //   callback outside any lock, so two messages can pass each other while the callback is
  //   being registered.
  // - @roamhq/wrtc receiving (datachannel -> wrtc 2 in ~10 runs, wrtc -> wrtc once: "at byte 0:
  //   ... starts with 3, expected 0"): suspected the same kind of hand-over for messages that
  //   arrive before the receiving channel object exists; not verified.
  // Once the receiver has registered its handler and answered, both deliver in order; that is
  // what this checks, with no retry.
  it('backpressure: bufferedAmount drains (event or poll) and 32 MiB arrive in order', { timeout: 60_000 }, async () => {
    const total = 32 << 20
    const chunk = 64 << 10
    let received = 0
    let inOrder = true
    let firstBreak = ''
    const done = new Promise<void>((resolve) => {
      pair.b.onDataChannel = (dc) => {
        dc.binaryType = 'arraybuffer'
        whenOpen(dc).then(() => dc.send('go'), () => {})
        dc.onmessage = (ev: MessageEvent) => {
          const bytes = new Uint8Array(ev.data as ArrayBuffer)
          const expected = Math.floor(received / chunk) & 0xff
          if ((bytes[0] !== expected || bytes[bytes.length - 1] !== expected) && inOrder) {
            inOrder = false
            firstBreak = `at byte ${received}: message of ${bytes.length} bytes starts with ${bytes[0]}, ends with ${bytes[bytes.length - 1]}, expected ${expected}`
          }
          received += bytes.length
          if (received >= total) resolve()
        }
      }
    })
    const dc = pair.a.pc.createDataChannel('bulk')
    const go = new Promise<void>((resolve) => { dc.onmessage = () => resolve() })
    await whenOpen(dc)
    await go
    let maxBuffered = 0
    for (let sent = 0, i = 0; sent < total; sent += chunk, i++) {
      if (dc.bufferedAmount > (1 << 20)) await new Promise<void>(resolve => onDrain(dc, 256 << 10, resolve))
      dc.send(new Uint8Array(chunk).fill(i & 0xff))
      maxBuffered = Math.max(maxBuffered, dc.bufferedAmount)
    }
    await done
    expect(received).toBe(total)
    expect(firstBreak).toBe('')
    expect(inOrder).toBe(true)
    // Bounded, not exact: the sender stops above 1 MiB, so without backpressure this would reach
    // 32 MiB. node-datachannel went 3 chunks over once (1,245,184) in a quiet full run; how is not
    // found (libdatachannel updates the counter under its send lock, synchronously).
    expect(maxBuffered).toBeLessThanOrEqual((1 << 20) + 8 * chunk)
    dc.close()
  })

  it('close propagates both ways', async () => {
    const remote: RTCDataChannel[] = []
    pair.b.onDataChannel = (dc) => { remote.push(dc) }
    const x = pair.a.pc.createDataChannel('close-a')
    const y = pair.a.pc.createDataChannel('close-b')
    await Promise.all([whenOpen(x), whenOpen(y)])
    await until(() => remote.length === 2, 5000, 'both channels announced')
    const rx = remote.find(d => d.label === 'close-a')!
    const ry = remote.find(d => d.label === 'close-b')!
    x.close() // opener closes: the acceptor sees it
    await until(() => rx.readyState === 'closed', 10_000, 'remote close of close-a')
    ry.close() // acceptor closes: the opener sees it
    await until(() => y.readyState === 'closed', 10_000, 'remote close of close-b')
  }, 30_000)

  it('500 channels on one association, each echoes', async () => {
    pair.b.onDataChannel = (dc) => { dc.onmessage = (ev: MessageEvent) => dc.send(`echo ${String(ev.data)}`) }
    const channels = Array.from({ length: 500 }, (_, i) => pair.a.pc.createDataChannel(`many-${i}`))
    const echoes = await Promise.all(channels.map(async (dc, i) => {
      const answer = new Promise<string>((resolve) => { dc.onmessage = (ev: MessageEvent) => resolve(String(ev.data)) })
      await whenOpen(dc, undefined, 30_000)
      dc.send(String(i))
      return await answer
    }))
    expect(echoes.filter((e, i) => e === `echo ${i}`).length).toBe(500)
    for (const dc of channels) dc.close()
    await until(() => channels.every(dc => dc.readyState === 'closed'), 20_000, '500 channels closed')
  }, 90_000)
})

describe('TURN through coturn (loopback)', () => {
  let turn: ChildProcess | undefined
  let dir = ''

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cw-turn-'))
    turn = spawn('turnserver', ['-n', '--no-cli', '--no-tls', '--no-dtls', '--log-file=stdout', '--simple-log',
      '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${TURN_PORT}`, '--min-port=40000', '--max-port=40999',
      '--allow-loopback-peers', '--lt-cred-mech', `--user=${TURN_USER}:${TURN_PASS}`, '--realm=causeway.test',
      `--pidfile=${join(dir, 'turnserver.pid')}`, `--userdb=${join(dir, 'turndb')}`], { stdio: 'ignore' })
    const deadline = Date.now() + 15_000
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: TURN_PORT })
        s.once('connect', () => { s.destroy(); resolve(true) })
        s.once('error', () => resolve(false))
      })
      if (ok) break
      if (Date.now() > deadline) throw new Error('coturn did not start')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }, 30_000)

  afterAll(() => {
    if (turn?.pid !== undefined) { try { process.kill(turn.pid, 'SIGKILL') } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true })
  })

  const cases: Array<[EngineName, 'udp' | 'tcp']> = []
  for (const e of ENGINE_NAMES) {
    if (ENGINE_CAPS[e].turnUdp) cases.push([e, 'udp'])
    if (ENGINE_CAPS[e].turnTcp) cases.push([e, 'tcp'])
  }

  it.each(cases)('%s relays through TURN over %s (relay candidates only)', async (engine, transport) => {
    const iceServers = [{ urls: `turn:127.0.0.1:${TURN_PORT}?transport=${transport}`, username: TURN_USER, credential: TURN_PASS }]
    const pair = await connectPair(engine, engine, { iceServers, iceTransportPolicy: 'relay' }, 30_000)
    try {
      // every candidate signalled is a relayed one from coturn
      expect(pair.candidates.length).toBeGreaterThan(0)
      expect(pair.candidates.every(c => / typ relay/.test(c))).toBe(true)
      // libwebrtc reports the selected pair faithfully; libjuice reports its host socket for a relayed pair
      if (engine === 'wrtc') expect(await selectedPairKind(pair.a.pc)).toBe('relay')
      pair.b.onDataChannel = (dc) => { dc.onmessage = (ev: MessageEvent) => dc.send(`echo ${String(ev.data)}`) }
      const dc = pair.a.pc.createDataChannel('over-turn')
      const answer = new Promise<string>((resolve) => { dc.onmessage = (ev: MessageEvent) => resolve(String(ev.data)) })
      await whenOpen(dc)
      dc.send('ping')
      expect(await answer).toBe('echo ping')
    } finally {
      pair.close()
    }
  }, 60_000)
})
