/**
 * The UDP half of netcheck, all from one socket:
 * - a binding request to every STUN endpoint (stun: URLs and TURN-over-UDP servers, which
 *   answer bindings too): UDP works when any answers;
 * - mapping behaviour: the reflexive address seen by two different destinations (two servers,
 *   or the RFC 5780 OTHER-ADDRESS a server announces): the same address = endpoint-independent,
 *   different = endpoint-dependent; one destination only = unknown;
 * - the public address, and whether it is stable: one public IP from every server, and the same
 *   mapping when the first server is asked again at the end;
 * - hairpinning: a second socket sends a binding request to our own public address; it is on
 *   when the request arrives on the first socket.
 * Destinations a server names (RFC 5780 OTHER-ADDRESS, our mapped address for hairpinning) are
 * probed only within the agent's ICE policy (agent/ice-policy.ts): a hostile STUN server cannot
 * make netcheck send to an internal host. `probed` lists every destination a request went to.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { ATTR, decodeAddress, attr, type TransportAddress } from './stun.ts'
import { parseIceUrl, round } from './turn.ts'
import { StunSocket, type Endpoint } from './udp.ts'
import type { Mapping } from './expect.ts'
import { addressRefusal, icePolicy, type IcePolicy } from '../ice-policy.ts'

export interface UdpReport {
  udp: {
    /** null: no STUN endpoint to ask. */
    reachable: boolean | null
    servers: Array<{ server: string, mapped: string | null, rttMs: number | null }>
    /** Datagrams that were not STUN or answered nothing of ours. */
    ignored: number
  }
  nat: {
    mapping: Mapping
    publicAddress: string | null
    stable: boolean | null
    hairpinning: boolean | null
  }
  /** A STUN server answered over IPv6 (its URL names an IPv6 address, or a host name with one); null: no such server. */
  v6Reachable: boolean | null
  /** Every destination a binding request went to (`host:port`, with why when it is not a listed server). */
  probed: string[]
}

export function iceUrls (s: RTCIceServer): string[] {
  return Array.isArray(s.urls) ? s.urls : [s.urls]
}

/** STUN-over-UDP endpoints among the servers (stun: and turn: over UDP), each once. */
export function udpEndpoints (servers: RTCIceServer[]): Endpoint[] {
  const seen = new Map<string, Endpoint>()
  for (const s of servers) {
    for (const url of iceUrls(s)) {
      const u = parseIceUrl(url)
      if (u === null || u.transport !== 'udp') continue
      seen.set(`${u.host}|${u.port}`, { host: u.host, port: u.port })
    }
  }
  return [...seen.values()]
}

/** IPv6 endpoints: literal ones, and the IPv6 addresses of named ones (DNS bounded by `ms`). */
async function v6Targets (all: Endpoint[], ms: number): Promise<Endpoint[]> {
  const named = all.filter(e => isIP(e.host) === 0)
  const resolve = Promise.all(named.map(async e => {
    try { return (await lookup(e.host, { all: true, family: 6 })).map(a => ({ host: a.address, port: e.port })) } catch { return [] }
  }))
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<Endpoint[][]>(resolve => { timer = setTimeout(() => resolve([]), ms) })
  try {
    return [...all.filter(e => isIP(e.host) === 6), ...(await Promise.race([resolve, late])).flat()]
  } finally { clearTimeout(timer) }
}

const show = (a: TransportAddress): string => a.family === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
const showEp = (e: Endpoint): string => isIP(e.host) === 6 ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`

const aborted = (signal?: AbortSignal): boolean => signal?.aborted === true

/**
 * Aborting `signal` ends every step at once (sockets closed, pending answers null).
 * `onReachable` hears whether UDP works as soon as that is known — at the first answer — long
 * before the mapping steps end (an agent's engine choice waits on it; see agent.ts).
 */
export async function probeUdp (servers: RTCIceServer[], timeoutMs: number, signal?: AbortSignal, onReachable?: (reachable: boolean) => void, policy: IcePolicy = icePolicy()): Promise<UdpReport> {
  let told = false
  const tell = (reachable: boolean): void => { if (!told) { told = true; onReachable?.(reachable) } }
  const all = udpEndpoints(servers)
  const v4 = all.filter(e => isIP(e.host) !== 6)
  const none: UdpReport = { udp: { reachable: null, servers: [], ignored: 0 }, nat: { mapping: 'unknown', publicAddress: null, stable: null, hairpinning: null }, v6Reachable: null, probed: [] }
  if (all.length === 0 || timeoutMs <= 0 || signal?.aborted === true) return none
  const started = performance.now()
  const left = (): number => Math.max(50, timeoutMs - (performance.now() - started))
  const sock = await StunSocket.open(4, signal)
  const hair = await StunSocket.open(4, signal)
  try {
    const probed = v4.map(showEp)
    const v6Check = v6Targets(all, timeoutMs * 0.1).then(async targets => { probed.push(...targets.map(showEp)); return targets }).then(async targets => targets.length === 0
      ? null
      : await StunSocket.open(6, signal).then(async s => {
        try { return (await Promise.all(targets.map(async e => await s.binding(e, Math.min(timeoutMs * 0.3, left()))))).some(r => r !== null) } finally { s.close() }
      }, () => false))
    // Each step waits a share of the whole limit (under CPU load answers come late, not never).
    // First round: every endpoint (UDP may be blocked: then this is all).
    const first = await Promise.all(v4.map(async e => {
      const r = await sock.binding(e, Math.min(timeoutMs * 0.3, left()))
      if (r?.mapped != null) tell(true)
      return { e, r }
    }))
    const answered = first.filter(x => x.r !== null && x.r.mapped !== null)
    if (v4.length > 0) tell(answered.length > 0)
    const servers: UdpReport['udp']['servers'] = first.map(x => ({ server: showEp(x.e), mapped: x.r?.mapped != null ? show(x.r.mapped) : null, rttMs: x.r !== null ? round(x.r.answer.rttMs) : null }))
    const mapped: Array<{ dest: string, addr: TransportAddress }> = answered.map(x => ({ dest: showEp(x.e), addr: x.r!.mapped! }))
    const head = answered[0]
    if (head !== undefined) {
      // RFC 5780: the other address of the first server is one more destination, when it is new.
      const other = decodeAddress(attr(head.r!.answer.msg, ATTR.OTHER_ADDRESS), false, head.r!.answer.msg.tid)
      const otherEp = other !== null && other.family === 4 && addressRefusal(policy, other.address, other.port) === null ? { host: other.address, port: other.port } : undefined
      if (otherEp !== undefined && !mapped.some(m => m.dest === showEp(otherEp))) {
        probed.push(`${showEp(otherEp)} (the server's other address)`)
        const r = await sock.binding(otherEp, Math.min(timeoutMs * 0.3, left()))
        if (r?.mapped != null) mapped.push({ dest: showEp(otherEp), addr: r.mapped })
      }
    }
    const addrs = [...new Set(mapped.map(m => show(m.addr)))]
    const mapping: Mapping = mapped.length < 2 ? 'unknown' : addrs.length === 1 ? 'endpoint-independent' : 'endpoint-dependent'
    let hairpinning: boolean | null = null
    let stable: boolean | null = null
    if (head !== undefined) {
      const pub = head.r!.mapped!
      if (pub.family === 4 && addressRefusal(policy, pub.address, pub.port, true) === null) {
        probed.push(`${show(pub)} (our mapped address: hairpinning)`)
        const tid = hair.sendRequest({ host: pub.address, port: pub.port })
        const until = performance.now() + Math.min(timeoutMs * 0.1, left())
        while (!sock.sawRequest(tid) && performance.now() < until && !aborted(signal)) await new Promise(resolve => setTimeout(resolve, 25))
        hairpinning = sock.sawRequest(tid)
      }
      const again = await sock.binding(head.e, Math.min(timeoutMs * 0.2, left()))
      // The warm round trip is the truer figure (the first one may wait for a busy event loop).
      const row = servers.find(s => s.server === showEp(head.e))
      if (row !== undefined && again !== null) row.rttMs = round(Math.min(row.rttMs ?? Infinity, again.answer.rttMs))
      const ips = new Set(mapped.map(m => m.addr.address))
      stable = again?.mapped != null ? show(again.mapped) === show(pub) && ips.size === 1 : null
    }
    const reachable = v4.length === 0 ? (await v6Check) ?? false : answered.length > 0
    tell(reachable)
    return {
      udp: { reachable, servers, ignored: sock.ignored + hair.ignored },
      nat: { mapping, publicAddress: head !== undefined ? show(head.r!.mapped!) : null, stable, hairpinning },
      v6Reachable: await v6Check,
      probed,
    }
  } finally {
    sock.close()
    hair.close()
  }
}
