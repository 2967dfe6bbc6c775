/**
 * NAT lab: the topology comes up, the routers behave like the NAT types they claim (checked
 * with coturn's own tools from a LAN host), services on the fake Internet are reachable as the
 * type allows, WebRTC (@roamhq/wrtc, two small peers, not the agent) picks the expected path,
 * and teardown leaves nothing behind. Needs root: otherwise the suite says so loudly and shows
 * a skipped test named with the reason.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { toBase64Url } from '../../protocol/encoding.ts'
import { deriveRelayKey } from '../../protocol/keys.ts'
import { newSecret } from '../../protocol/token.ts'
import { admitKeyFromRelayKey } from '../../protocol/relay-admission.ts'
import { cleanupStale, Lab, labAvailability, type LabNs } from './lab.ts'
import { NODE, ROOT } from './relay-helpers.ts'
import { prerequisite } from '../prereq.ts'

const availability = await labAvailability()
if (!availability.ok) prerequisite(`NAT lab: ${availability.reason}`, false)
if (!availability.ok) {
  console.warn(`\n!!!!!!!! NAT LAB NOT RUN: ${availability.reason} !!!!!!!!\n`)
} else {
  const removed = await cleanupStale()
  if (removed.length > 0) console.warn(`natlab: removed stale namespaces of dead runs: ${removed.join(' ')}`)
}
const labIt = availability.ok ? it : it.skip
const labDescribe = availability.ok ? describe : describe.skip

if (!availability.ok) {
  it.skip(`NAT lab SKIPPED — ${availability.reason}`, () => {})
}

const PEER = join(ROOT, 'test/natlab/wrtc-peer.ts')

interface PeerResult { connected: boolean, local?: string, remote?: string, localAddr?: string, ms?: number, pairs?: string[], error?: string }

let runs = 0
/** Runs the two WebRTC peers in a and b with the given ICE servers; returns both results. */
async function webrtc (lab: Lab, kind: 'stun' | 'turn' | 'turn-tcp' | 'turn-443', timeoutMs: number): Promise<[PeerResult, PeerResult]> {
  const dir = join(lab.dir, `wrtc-${++runs}`)
  await mkdir(dir)
  const ice = JSON.stringify(await lab.iceServers(kind))
  const [a, b] = await Promise.all([
    lab.node('a', PEER, ['offer', dir, ice, String(timeoutMs)], timeoutMs + 15_000),
    lab.node('b', PEER, ['answer', dir, ice, String(timeoutMs)], timeoutMs + 15_000),
  ])
  const parse = (out: string, err: string): PeerResult => {
    try { return JSON.parse(out.trim().split('\n').pop() ?? '') as PeerResult } catch { return { connected: false, error: `no result: ${out} ${err}` } }
  }
  return [parse(a.stdout, a.stderr), parse(b.stdout, b.stderr)]
}

/** TCP connect from a lab namespace: 'open', or the failure (timeout, ECONNREFUSED, ...). */
async function tcpProbe (lab: Lab, ns: LabNs, host: string, port: number): Promise<string> {
  const script = `const s=require('net').connect(${port},'${host}');s.setTimeout(2000);` +
    "s.on('connect',()=>{console.log('open');process.exit(0)});s.on('timeout',()=>{console.log('timeout');process.exit(1)});s.on('error',e=>{console.log(e.code);process.exit(1)})"
  return (await lab.exec(ns, [NODE, '-e', script], 10_000)).stdout.trim()
}

/** One STUN binding over UDP from a lab namespace; the mapped address or undefined. */
async function stunMapped (lab: Lab, ns: LabNs): Promise<string | undefined> {
  const r = await lab.exec(ns, ['timeout', '4', 'turnutils_stunclient', lab.addrs.turn], 8000)
  return /UDP reflexive addr: (\S+)/.exec(r.stdout)?.[1]
}

labDescribe('NAT lab: eim (a) and symmetric (b)', () => {
  const lab = new Lab({ a: 'eim', b: 'symmetric' })
  beforeAll(async () => {
    const t = Date.now()
    await lab.setup()
    await lab.startTurn()
    await lab.startSignaling()
    await lab.startRelay([await admitKeyFromRelayKey(await deriveRelayKey(newSecret()))])
    console.log(`natlab: eim/symmetric lab with coturn, signaling and relay up in ${Date.now() - t} ms`)
  })
  afterAll(async () => { await lab.teardown() })

  it('comes up: LAN hosts reach STUN through their NAT, with the router WAN address as mapping', async () => {
    const [a, b] = await Promise.all([stunMapped(lab, 'a'), stunMapped(lab, 'b')])
    expect(a).toMatch(/^203\.0\.113\.2:\d+$/)
    expect(b).toMatch(/^203\.0\.113\.18:\d+$/)
  })

  it('eim keeps one mapping for every destination; symmetric maps each destination anew', async () => {
    const [a, b] = await Promise.all((['a', 'b'] as const).map(async ns => await lab.exec(ns, ['timeout', '15', 'turnutils_natdiscovery', '-m', lab.addrs.turn], 20_000)))
    if (a === undefined || b === undefined) throw new Error('natdiscovery did not run')
    expect(a.stdout).toContain('NAT with Endpoint Independent Mapping')
    expect(b.stdout).toContain('NAT with Address and Port Dependent Mapping')
    // the same, seen as ports: two bindings from one local port to two server addresses
    const ports = (out: string): string[] => [...out.matchAll(/UDP reflexive addr: \S+:(\d+)/g)].map(m => m[1] ?? '')
    const pa = ports(a.stdout)
    const pb = ports(b.stdout)
    console.log(`natlab: mapped ports from one local port to two server addresses: eim ${pa.join(',')} symmetric ${pb.join(',')}`)
    expect(pa.length).toBeGreaterThanOrEqual(2)
    expect(pb.length).toBeGreaterThanOrEqual(2)
    expect(new Set(pa).size).toBe(1)
    expect(new Set(pb).size).toBeGreaterThan(1)
  })

  it('serves signaling on 443 and the relay on 4001 and 443 to both sites', async () => {
    for (const ns of ['a', 'b'] as const) {
      expect(await tcpProbe(lab, ns, lab.addrs.signaling, 443)).toBe('open')
      expect(await tcpProbe(lab, ns, lab.addrs.relay, 4001)).toBe('open')
      expect(await tcpProbe(lab, ns, lab.addrs.relay, 443)).toBe('open')
    }
  })

  it('does not route private addresses across the fake Internet', async () => {
    expect(await tcpProbe(lab, 'a', lab.addrs.b, 22)).toBe('timeout')
  })
})

labDescribe('NAT lab: udpblock (a) and tcp443 (b)', () => {
  const lab = new Lab({ a: 'udpblock', b: 'tcp443' })
  beforeAll(async () => {
    await lab.setup()
    await lab.startTurn()
    await lab.startSignaling()
  })
  afterAll(async () => { await lab.teardown() })

  // The probes of one case run at once: the blocked ones end only at their timeouts.
  it('udpblock drops UDP but lets TCP out', async () => {
    const [stun, turnTcp, signaling] = await Promise.all([stunMapped(lab, 'a'), tcpProbe(lab, 'a', lab.addrs.turn, 3478), tcpProbe(lab, 'a', lab.addrs.signaling, 443)])
    expect(stun).toBeUndefined()
    expect(turnTcp).toBe('open')
    expect(signaling).toBe('open')
  })

  it('tcp443 lets only TCP to port 443 out', async () => {
    const [stun, turnTcp, turn443, signaling] = await Promise.all([stunMapped(lab, 'b'), tcpProbe(lab, 'b', lab.addrs.turn, 3478), tcpProbe(lab, 'b', lab.addrs.turn, 443), tcpProbe(lab, 'b', lab.addrs.signaling, 443)])
    expect(stun).toBeUndefined()
    expect(turnTcp).toBe('timeout')
    expect(turn443).toBe('open')
    expect(signaling).toBe('open')
  })

  it('WebRTC between them connects only through TURN over TCP 443', async () => {
    const [a, b] = await webrtc(lab, 'turn-443', 25_000)
    console.log(`natlab: udpblock<->tcp443 via turn:443/tcp: ${JSON.stringify(a)} | ${JSON.stringify(b)}`)
    expect(a.connected).toBe(true)
    expect(b.connected).toBe(true)
    expect(a.local).toBe('relay')
    expect(b.local).toBe('relay')
  })
})

labDescribe('NAT lab: WebRTC path selection', () => {
  let lab: Lab | undefined
  afterAll(async () => { await lab?.teardown() })

  it('eim <-> eim connects directly, server-reflexive on both sides, with STUN only', async () => {
    lab = new Lab({ a: 'eim', b: 'eim' })
    await lab.setup()
    await lab.startTurn()
    const [a, b] = await webrtc(lab, 'stun', 15_000)
    console.log(`natlab: eim<->eim STUN: ${JSON.stringify(a)} | ${JSON.stringify(b)}`)
    expect(a).toMatchObject({ connected: true, local: 'srflx', remote: 'srflx' })
    expect(b).toMatchObject({ connected: true, local: 'srflx', remote: 'srflx' })
    await lab.teardown()
  })

  it('symmetric <-> symmetric does not connect with STUN only, and connects through TURN', async () => {
    lab = new Lab({ a: 'symmetric', b: 'symmetric' })
    await lab.setup()
    await lab.startTurn()
    // Both attempts at once (separate peer connections): the STUN-only one fails only at its timeout.
    const [[a1, b1], [a2, b2]] = await Promise.all([webrtc(lab, 'stun', 8000), webrtc(lab, 'turn', 15_000)])
    console.log(`natlab: symmetric<->symmetric STUN: ${a1.connected} / ${b1.connected}`)
    expect(a1.connected).toBe(false)
    expect(b1.connected).toBe(false)
    console.log(`natlab: symmetric<->symmetric TURN: ${JSON.stringify(a2)} | ${JSON.stringify(b2)}`)
    expect(a2.connected).toBe(true)
    expect(b2.connected).toBe(true)
    expect([a2.local, a2.remote]).toContain('relay')
    expect([b2.local, b2.remote]).toContain('relay')
    await lab.teardown()
  })
})

labDescribe('NAT lab: relay fallback between symmetric (a) and tcp443 (b)', () => {
  const lab = new Lab({ a: 'symmetric', b: 'tcp443' })
  const secret = newSecret()
  let relayAddrs: string[] = []
  beforeAll(async () => {
    await lab.setup()
    relayAddrs = (await lab.startRelay([await admitKeyFromRelayKey(await deriveRelayKey(secret))])).addrs
  })
  afterAll(async () => { await lab.teardown() })

  it('carries 8 MiB from a to b through the relay (b reaches it only over WebSockets on 443)', async () => {
    const key = toBase64Url(await deriveRelayKey(secret))
    const tcp = relayAddrs.find(a => a.includes('/tcp/4001/')) ?? ''
    const ws = relayAddrs.find(a => a.includes('/tcp/443/ws/')) ?? ''
    expect(tcp).not.toBe('')
    expect(ws).not.toBe('')
    const script = join(ROOT, 'test/natlab/relay-peer.ts')
    const [b, a] = await Promise.all([
      lab.node('b', script, ['listen', lab.dir, key, ws, '0', '45000'], 60_000),
      lab.node('a', script, ['dial', lab.dir, key, tcp, String(8 * 1024 * 1024), '45000'], 60_000),
    ])
    console.log(`natlab: relay fallback: listener ${b.stdout.trim()} | dialer ${a.stdout.trim()} ${a.stderr.slice(-500)}`)
    expect(JSON.parse(b.stdout.trim())).toMatchObject({ ok: true })
    expect(JSON.parse(a.stdout.trim())).toMatchObject({ ok: true })
  })
})

labDescribe('NAT lab: teardown', () => {
  labIt('removes every namespace and process it made', async () => {
    const lab = new Lab({ a: 'eim', b: 'tcp443' })
    await lab.setup()
    const turn = await lab.startTurn()
    expect((await lab.leftovers()).length).toBe(5)
    const pid = turn.child.pid ?? -1
    await lab.teardown()
    expect(await lab.leftovers()).toEqual([])
    expect(() => process.kill(pid, 0)).toThrow()
    const links = await lab.exec('pub', ['true'])
    expect(links.code).not.toBe(0)
    await lab.teardown()
    expect(await lab.leftovers()).toEqual([])
  })
})
