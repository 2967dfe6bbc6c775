/**
 * Relay probes: for each relay multiaddr `/v1/ice` lists, a TCP connection to its address
 * (reachable, connect time) and a circuit-relay-v2 reservation with the network's admission
 * proof (reservation possible), made by a throw-away relay client (agent/relay-transport) that
 * is closed right after. An agent passes the state of its own relay client instead
 * (`fromRelayStatus`): it already holds (or tries) those reservations.
 */
import { connect } from 'node:net'
import { silentLog } from '../../peer/log.ts'
import type { AdmissionIdentity } from '../../protocol/relay-admission.ts'
import type { RelayStatus } from '../relay-transport/index.ts'
import { round, UNANSWERED_SHARE } from './turn.ts'

export interface RelayResult {
  addr: string
  transport: 'tcp' | 'ws' | 'wss'
  port: number
  /** A TCP connection to the relay's address worked. */
  reachable: boolean
  /** The relay granted a reservation (our admission proof was accepted). */
  reserved: boolean
  /** TCP connect time, ms. */
  connectMs: number | null
  /** Time from start to the reservation, ms. */
  reserveMs: number | null
  error?: string
}

export type RelayProber = (addrs: string[], timeoutMs: number, signal?: AbortSignal) => Promise<RelayResult[]>

/** Host, port and transport of a relay multiaddr; null when it is not a TCP-based one. */
export function relayEndpoint (addr: string): { host: string, port: number, transport: RelayResult['transport'] } | null {
  const m = /^\/(?:ip4|ip6|dns4|dns6|dns)\/([^/]+)\/tcp\/(\d{1,5})(\/tls\/ws|\/wss|\/ws)?(?:\/|$)/.exec(addr)
  if (m === null) return null
  const transport = m[3] === undefined ? 'tcp' : m[3] === '/ws' ? 'ws' : 'wss'
  return { host: m[1]!, port: Number(m[2]), transport }
}

async function tcpConnectMs (host: string, port: number, timeoutMs: number): Promise<number> {
  const started = performance.now()
  const sock = connect({ host, port })
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error('TCP connect timed out')) }, timeoutMs)
      sock.once('connect', () => { clearTimeout(t); resolve() })
      sock.once('error', (err) => { clearTimeout(t); reject(err) })
    })
    return round(performance.now() - started)
  } finally { sock.destroy() }
}

/**
 * Probes each relay with a fresh relay client holding the network's relay key. libp2p is
 * loaded only when there is a relay to probe, and before any probe's clock starts (loading it
 * blocks the event loop for a while, which would make concurrent probes miss their answers).
 */
export async function relayProber (relayKey: Uint8Array<ArrayBuffer>, identity?: AdmissionIdentity): Promise<RelayProber> {
  const { startRelayClient } = await import('../relay-transport/index.ts')
  return async (addrs, timeoutMs, signal) => await Promise.all(addrs.map(async (addr): Promise<RelayResult> => {
    const ep = relayEndpoint(addr)
    const base: RelayResult = { addr, transport: ep?.transport ?? 'tcp', port: ep?.port ?? 0, reachable: false, reserved: false, connectMs: null, reserveMs: null }
    if (ep === null) return { ...base, error: 'not a TCP or WebSocket multiaddr' }
    const started = performance.now()
    try {
      base.connectMs = await tcpConnectMs(ep.host, ep.port, Math.round(timeoutMs * UNANSWERED_SHARE))
      base.reachable = true
    } catch (err) {
      return { ...base, error: err instanceof Error ? err.message : String(err) }
    }
    const left = Math.round(Math.max(200, timeoutMs - (performance.now() - started)))
    const client = await startRelayClient({ relayKey, relays: [addr], log: silentLog, relayTimeoutMs: left, ...(identity !== undefined ? { identity } : {}) })
    try {
      await client.waitForReservation({ signal: signal !== undefined ? AbortSignal.any([signal, AbortSignal.timeout(left)]) : AbortSignal.timeout(left) })
      return { ...base, reserved: true, reserveMs: round(performance.now() - started) }
    } catch {
      return { ...base, error: client.status()[0]?.lastError ?? 'no reservation in time' }
    } finally {
      await client.close().catch(() => {})
    }
  }))
}

/**
 * A prober that reads an agent's own relay client: waits (bounded) for its reservations and
 * reports them per relay address (no second reservation is made).
 */
export function fromRelayStatus (status: () => RelayStatus[] | undefined): RelayProber {
  return async (addrs, timeoutMs, signal) => {
    const deadline = Date.now() + timeoutMs
    const read = (): RelayStatus[] => status() ?? []
    while (Date.now() < deadline && signal?.aborted !== true && !addrs.every(a => read().some(s => s.relay === a && (s.reserved || s.lastError !== undefined)))) {
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return addrs.map(addr => {
      const ep = relayEndpoint(addr)
      const s = read().find(x => x.relay === addr)
      return {
        addr,
        transport: ep?.transport ?? 'tcp',
        port: ep?.port ?? 0,
        reachable: s?.connected === true || s?.reserved === true,
        reserved: s?.reserved === true,
        connectMs: null,
        reserveMs: null,
        ...(s?.lastError !== undefined ? { error: s.lastError } : s === undefined ? { error: 'not used by this agent' } : {}),
      }
    })
  }
}
