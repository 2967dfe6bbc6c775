/**
 * netcheck: what this machine's network allows, measured against the servers the network's
 * signaling service hands out (`/v1/ice`): signaling latency, UDP, the NAT's mapping
 * behaviour, the public address and its stability, hairpinning, IPv6, every TURN URL (a real
 * allocation) and every relay (a real reservation); then the path to expect to each kind of
 * site (expect.ts). Used by `causeway netcheck` and by every agent at start. Only what the
 * agent's ICE policy allows is probed (agent/ice-policy.ts); the report lists what was probed
 * (`probed`) and the `/v1/ice` entries the policy refused (`refused`).
 *
 * Bounded: the whole run finishes within `timeoutMs` (default 5 s; loading the relay client's
 * code comes before and is not counted): the signaling checks get at most 40 % of it, the
 * probes after them (all in parallel) the rest; a server that has not answered within 60 % of
 * the limit counts as unreachable.
 */
import { networkInterfaces } from 'node:os'
import { importSigningKey } from '../../protocol/identity.ts'
import { deriveRoomId, deriveRelayKey } from '../../protocol/keys.ts'
import type { NetcheckView } from '../../protocol/peer.ts'
import type { MemberToken } from '../../protocol/token.ts'
import { fetchIceConfig } from '../ice.ts'
import { icePolicy, type IcePolicy, type Refused } from '../ice-policy.ts'
import { classify, expectations, type ExpectedPath, type Offer, type SideFacts, type SiteClass, type SiteKind } from './expect.ts'
import { relayProber, type RelayProber, type RelayResult } from './relay.ts'
import { iceUrls, probeUdp, type UdpReport } from './probe-udp.ts'
import { probeTurn, round, type TurnResult } from './turn.ts'
import { verdictOf } from './render.ts'

export { SITE_KINDS, type SiteKind, type SiteClass, type ExpectedPath } from './expect.ts'

export interface NetcheckInit {
  token: MemberToken
  /** The whole run's limit, ms. Default 5000. */
  timeoutMs?: number
  /** ICE servers and relays already known (an agent's, already within its policy, with what the policy refused); default: fetched from `/v1/ice`. */
  ice?: { iceServers: RTCIceServer[], relays: string[], refused?: Refused[] }
  /** What of `/v1/ice` may be probed (agent/ice-policy.ts). Default: the default policy. */
  policy?: IcePolicy
  /** Extra ICE servers (`--ice`), probed too. */
  extraIce?: RTCIceServer[]
  /** How relays are probed. Default: a throw-away relay client per relay address. */
  relayProber?: RelayProber
  /** Aborting it ends the run early (an agent that stops): open probes end as failed. */
  signal?: AbortSignal
  /**
   * Told whether UDP reaches a STUN server as soon as the first answer (or the first round's
   * end) says so. With `ice` given, the UDP probe starts at once, beside the signaling probe:
   * an agent decides its WebRTC engine from this instead of probing STUN a second time.
   */
  onUdp?: (reachable: boolean) => void
}

export interface NetcheckReport {
  /** Some path to some kind of site is possible (the CLI exits 0). */
  ok: boolean
  /** One line: this machine's kind of site and the paths it can expect. */
  verdict: string
  site: SiteClass
  at: string
  tookMs: number
  signaling: { url: string, reachable: boolean, latencyMs: number | null, ice: boolean, error?: string }
  udp: UdpReport['udp']
  nat: UdpReport['nat']
  ipv6: { address: boolean, reachable: boolean | null }
  turn: TurnResult[]
  relays: RelayResult[]
  /** The path to expect to each kind of site. */
  expect: Record<SiteKind, ExpectedPath>
  /** Every destination a probe went to: STUN bindings (`host:port`), TURN URLs, relay multiaddrs. */
  probed: { stun: string[], turn: string[], relays: string[] }
  /** `/v1/ice` entries outside the ICE policy: never probed nor used. */
  refused: Refused[]
}

/** Two GETs of `/healthz`: reachable, and the round trip of the warm (second) one. */
async function probeSignaling (url: string, timeoutMs: number, stop?: AbortSignal): Promise<{ reachable: boolean, latencyMs: number | null, error?: string }> {
  const signal = stop !== undefined ? AbortSignal.any([stop, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs)
  const times: number[] = []
  try {
    for (let i = 0; i < 2; i++) {
      const started = performance.now()
      const res = await fetch(`${url.replace(/\/$/, '')}/healthz`, { signal })
      await res.arrayBuffer()
      if (!res.ok) return { reachable: false, latencyMs: null, error: `HTTP ${res.status}` }
      times.push(performance.now() - started)
    }
  } catch (err) {
    if (times.length > 0) return { reachable: true, latencyMs: round(times[0]!) }
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return { reachable: false, latencyMs: null, error: `${err instanceof Error ? err.message : String(err)}${cause}` }
  }
  return { reachable: true, latencyMs: round(Math.min(...times)) }
}

function hasIpv6Address (): boolean {
  return Object.values(networkInterfaces()).some(list => (list ?? []).some(a => a.family === 'IPv6' && !a.internal && !/^fe80:/i.test(a.address)))
}

function portOfUrl (url: string): number {
  try { const u = new URL(url); return u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80 } catch { return 0 }
}

export async function runNetcheck (init: NetcheckInit): Promise<NetcheckReport> {
  // libp2p (the relay probes) loads before the clock starts: loading it blocks the event loop,
  // which must not happen while probes time their answers.
  const id = init.token.identity
  const prober = init.relayProber ?? await relayProber(await deriveRelayKey(init.token.secret), id !== undefined ? { key: await importSigningKey(id.key), credential: id.credential } : undefined)
  const started = performance.now()
  const total = init.timeoutMs ?? 5000
  const left = (): number => Math.max(100, total - (performance.now() - started) - 100)
  const url = init.token.signaling
  const room = await deriveRoomId(init.token.secret)
  const policy = init.policy ?? icePolicy()
  const sigBudget = Math.round(total * 0.4)
  // An agent knows its ICE servers: the UDP probe need not wait for the signaling probe.
  const early = init.ice !== undefined
    ? probeUdp([...(init.extraIce ?? []), ...init.ice.iceServers], left(), init.signal, init.onUdp, policy)
    : undefined
  early?.catch(() => {}) // awaited below unless signaling is unreachable
  const [sig, ice] = await Promise.all([
    probeSignaling(url, sigBudget, init.signal),
    init.ice !== undefined
      ? Promise.resolve({ ok: true as const, cfg: init.ice })
      : fetchIceConfig(init.token, room, AbortSignal.timeout(sigBudget), policy).then(cfg => ({ ok: true as const, cfg }), (err: unknown) => ({ ok: false as const, err: err instanceof Error ? err.message : String(err) })),
  ])
  const servers = [...(init.extraIce ?? []), ...(ice.ok ? ice.cfg.iceServers : [])]
  const relays = ice.ok ? ice.cfg.relays : []
  const signaling = { url, reachable: sig.reachable, latencyMs: sig.latencyMs, ice: ice.ok, ...(sig.error !== undefined ? { error: sig.error } : !ice.ok ? { error: `/v1/ice: ${ice.err}` } : {}) }

  const turnTargets = servers.flatMap(s => iceUrls(s).filter(u => /^turns?:/i.test(u)).map(u => ({ url: u, username: s.username, credential: typeof s.credential === 'string' ? s.credential : undefined })))
  const budget = left()
  const [udp, turn, relayResults] = sig.reachable
    ? await Promise.all([
      early ?? probeUdp(servers, budget, init.signal, init.onUdp, policy),
      Promise.all(turnTargets.map(async t => await probeTurn(t.url, t, budget, init.signal))),
      relays.length > 0 ? prober(relays, budget, init.signal) : Promise.resolve([]),
    ])
    : [await probeUdp([], 0), [], []]
  const ipv6 = { address: hasIpv6Address(), reachable: udp.v6Reachable }

  // What this machine can do, and what the network offers the other kinds of site.
  const tcpTried = [
    ...turn.filter(t => t.transport !== 'udp').map(t => ({ port: t.port, ok: t.reachable })),
    ...relayResults.map(r => ({ port: r.port, ok: r.reachable })),
    { port: portOfUrl(url), ok: sig.reachable },
  ]
  const some = (list: typeof tcpTried): boolean | null => list.length === 0 ? null : list.some(x => x.ok)
  const site = classify({ udp: udp.udp.reachable, mapping: udp.nat.mapping, tcpOther: some(tcpTried.filter(x => x.port !== 443)), tcp443: some(tcpTried.filter(x => x.port === 443)) })
  const me: SideFacts = {
    udp: udp.udp.reachable === true,
    eim: udp.nat.mapping === 'endpoint-independent',
    turn: turn.some(t => t.allocated),
    relay: relayResults.some(r => r.reserved),
  }
  const relayPeer = (addr: string): string => /\/p2p\/([^/]+)$/.exec(addr)?.[1] ?? addr
  const offer: Offer = {
    turn: turn.map(t => ({ transport: t.transport, port: t.port, alive: turn.some(x => x.allocated && x.host === t.host) })),
    relays: relayResults.map(r => ({ port: r.port, alive: relayResults.some(x => x.reserved && relayPeer(x.addr) === relayPeer(r.addr)) })),
  }
  const expect = expectations(me, offer)
  const nothingOffered = ice.ok && turnTargets.length === 0 && relays.length === 0 && udp.udp.reachable === null
  // Without /v1/ice (e.g. a refused ticket) agents cannot join either: no path.
  const ok = sig.reachable && ice.ok && (nothingOffered || Object.values(expect).some(p => p !== 'none'))
  const report: NetcheckReport = {
    ok,
    verdict: '',
    site: sig.reachable ? site : 'offline',
    at: new Date().toISOString(),
    tookMs: 0,
    signaling,
    udp: udp.udp,
    nat: udp.nat,
    ipv6,
    turn,
    relays: relayResults,
    expect: sig.reachable ? expect : { eim: 'none', symmetric: 'none', udpblock: 'none', tcp443: 'none' },
    probed: { stun: udp.probed, turn: turn.map(t => t.url), relays: relayResults.map(r => r.addr) },
    refused: ice.ok ? ice.cfg.refused ?? [] : [],
  }
  report.verdict = verdictOf(report, nothingOffered)
  report.tookMs = Math.round(performance.now() - started)
  return report
}

/** The part of a report agents publish in /status and (addresses only to `*` viewers) to the debug page. */
export type NetcheckSummary = NetcheckView

export function summarize (r: NetcheckReport): NetcheckSummary {
  return {
    ok: r.ok,
    verdict: r.verdict.slice(0, 512),
    site: r.site,
    at: r.at,
    udp: r.udp.reachable,
    mapping: r.nat.mapping,
    publicAddress: r.nat.publicAddress,
    hairpinning: r.nat.hairpinning,
    ipv6: r.ipv6.address,
    signalingMs: r.signaling.latencyMs,
    turn: r.turn.slice(0, 32).map(t => ({ url: t.url.slice(0, 256), transport: t.transport, allocated: t.allocated, rttMs: t.rttMs })),
    relays: r.relays.slice(0, 32).map(x => ({ addr: x.addr.slice(0, 256), transport: x.transport, reserved: x.reserved })),
    expect: r.expect,
  }
}

/** What a viewer may see of a summary: without the `*` grant, no addresses (public address, server URLs). */
export function viewerSummary (s: NetcheckSummary, all: boolean): NetcheckSummary {
  if (all) return s
  const { publicAddress: _p, ...rest } = s
  return { ...rest, turn: s.turn.map(({ url: _u, ...t }) => t), relays: s.relays.map(({ addr: _a, ...x }) => x) }
}
