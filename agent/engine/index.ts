/**
 * The WebRTC engine seam. Two engines, interoperable over standard WebRTC, so each agent
 * chooses alone:
 * - `wrtc` (@roamhq/wrtc, agent/wrtc.ts): libwebrtc's dcSCTP; does TURN over TCP/TLS.
 * - `datachannel` (node-datachannel, ./datachannel.ts): usrsctp with tunable buffers; several
 *   times faster across WAN distance (bench/RESULTS.md), but no TURN over TCP and no ICE restart.
 * `auto` picks per peer connection: `datachannel` when this host reaches its STUN/TURN servers
 * over UDP (or has none: LAN, loopback), `wrtc` when UDP is blocked and only TURN over TCP/TLS
 * can work. The UDP probe is a STUN binding request, re-run when the ICE servers change.
 */
import { networkInterfaces } from 'node:os'
import { udpEndpoints } from '../netcheck/probe-udp.ts'
import { StunSocket, type Endpoint } from '../netcheck/udp.ts'
import { createPeerConnection as wrtcPeerConnection } from '../wrtc.ts'
import { DcPeerConnection, sctpSettings } from './datachannel.ts'

export const ENGINE_NAMES = ['wrtc', 'datachannel'] as const
export type EngineName = typeof ENGINE_NAMES[number]
export type EngineChoice = EngineName | 'auto'
export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', ...ENGINE_NAMES]

export function isEngineChoice (v: unknown): v is EngineChoice {
  return typeof v === 'string' && (ENGINE_CHOICES as readonly string[]).includes(v)
}

/** What each engine can do (the compliance suite checks every claim). */
export const ENGINE_CAPS: Record<EngineName, { turnUdp: boolean, turnTcp: boolean, iceRestart: boolean }> = {
  wrtc: { turnUdp: true, turnTcp: true, iceRestart: true },
  datachannel: { turnUdp: true, turnTcp: false, iceRestart: false },
}

export const ENGINE_PACKAGES: Record<EngineName, string> = { wrtc: '@roamhq/wrtc', datachannel: 'node-datachannel' }

export interface EngineOptions {
  /** node-datachannel: gather host candidates on this address only (loopback tests). */
  bindAddress?: string
}

/** Creates a peer connection on the named engine. ICE servers always come from the caller. */
export function createPeerConnection (engine: EngineName, config: RTCConfiguration, opts: EngineOptions = {}): RTCPeerConnection {
  const iceServers = config.iceServers ?? []
  if (engine === 'wrtc') return wrtcPeerConnection({ ...config, iceServers })
  const bindAddress = opts.bindAddress ?? (onlyLoopback() ? '127.0.0.1' : undefined)
  return new DcPeerConnection({ ...config, iceServers, ...(bindAddress !== undefined ? { bindAddress } : {}) }) as unknown as RTCPeerConnection
}

/** libjuice ignores loopback interfaces: on a host with nothing else (a test namespace), bind to 127.0.0.1. */
function onlyLoopback (): boolean {
  return Object.values(networkInterfaces()).every(list => (list ?? []).every(a => a.internal || a.family !== 'IPv4'))
}

/** Which engine a peer connection created now uses (tracked so status can show it). */
export function engineOf (pc: RTCPeerConnection): EngineName {
  return pc instanceof DcPeerConnection ? 'datachannel' : 'wrtc'
}

/** How long `auto` waits for a STUN answer before it decides UDP is blocked (ms). */
export const UDP_PROBE_MS = 1500

/** Sends STUN binding requests over UDP (netcheck's client); true when any endpoint answers within `timeoutMs`. */
export async function udpReachable (endpoints: Endpoint[], timeoutMs = UDP_PROBE_MS): Promise<boolean> {
  if (endpoints.length === 0) return false
  const sock = await StunSocket.open(4)
  try {
    const answers = endpoints.map(async e => { if ((await sock.binding(e, timeoutMs)) === null) throw new Error('no answer') })
    return await Promise.any(answers).then(() => true, () => false)
  } finally {
    sock.close()
  }
}

/**
 * Picks the engine for new peer connections. `auto` starts on `wrtc` (it does everything) until
 * the first probe says UDP works (or there are no servers to need TCP for).
 */
export class EngineSelector {
  readonly choice: EngineChoice
  private current: EngineName
  private probedFor = ''
  udp: boolean | null = null

  constructor (choice: EngineChoice) {
    this.choice = choice
    this.current = choice === 'auto' ? 'wrtc' : choice
  }

  /**
   * Re-probes when the server list changed (auto only). `probe` answers whether UDP reaches any
   * of the endpoints: by default its own STUN binding (udpReachable); an agent at start passes
   * its netcheck's answer instead, so start-up sends one STUN probe, not two.
   */
  async update (servers: RTCIceServer[], probe: (endpoints: Endpoint[]) => Promise<boolean> = udpReachable): Promise<void> {
    if (this.choice !== 'auto') return
    const key = JSON.stringify(servers.map(s => s.urls))
    if (key === this.probedFor) return
    this.probedFor = key
    const tcpOnly = servers.some(s => (Array.isArray(s.urls) ? s.urls : [s.urls]).some(u => /^turns:|transport=tcp/i.test(u)))
    const endpoints = udpEndpoints(servers)
    if (endpoints.length === 0) { this.udp = null; this.current = tcpOnly ? 'wrtc' : 'datachannel'; return }
    this.udp = await probe(endpoints)
    this.current = this.udp ? 'datachannel' : 'wrtc'
  }

  get engine (): EngineName { return this.current }

  describe (): { choice: EngineChoice, engine: EngineName, udp: boolean | null, sctp?: object } {
    return { choice: this.choice, engine: this.current, udp: this.udp, ...(this.current === 'datachannel' ? { sctp: sctpSettings() } : {}) }
  }
}
