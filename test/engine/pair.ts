/** Two PeerSessions in one process wired to each other (signals delivered on the next tick), on any engines. */
import { createPeerConnection, ENGINE_NAMES, type EngineName } from '../../agent/engine/index.ts'
import { whenOpen } from '../../peer/channel.ts'
import { PeerSession } from '../../peer/peer-session.ts'
import type { PeerSignal } from '../../protocol/peer.ts'

/** Every engine with itself and each cross pairing, both ways round. */
export const ENGINE_PAIRS: Array<[EngineName, EngineName]> = [...ENGINE_NAMES.map(e => [e, e] as [EngineName, EngineName]), ['wrtc', 'datachannel'], ['datachannel', 'wrtc']]

export interface Pair { a: PeerSession, b: PeerSession, close: () => void, /** candidates `a` signalled */ candidates: string[] }

export interface SessionPairOptions {
  config?: RTCConfiguration
  connectTimeoutMs?: number
  handshakeTimeoutMs?: number
  /** Rewrites each signal `b` sends to `a` (a hostile path). */
  toA?: (s: PeerSignal) => PeerSignal
}

/** The two sessions, wired, not yet connected: `a` is impolite, `b` polite. */
export function sessionPair (engineA: EngineName, engineB: EngineName, opts: SessionPairOptions = {}): Pair {
  let a: PeerSession | undefined
  let b: PeerSession | undefined
  const config = opts.config ?? {}
  const factory = (engine: EngineName) => (c: RTCConfiguration) => createPeerConnection(engine, { ...c, ...config })
  const timeouts = { connectTimeoutMs: opts.connectTimeoutMs ?? 20_000, ...(opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}) }
  const candidates: string[] = []
  a = new PeerSession({
    remote: 'b',
    polite: false,
    createPeerConnection: factory(engineA),
    iceServers: config.iceServers ?? [],
    send: (s) => { if (s.type === 'candidate' && s.candidate !== null) candidates.push(s.candidate.candidate); setTimeout(() => b?.handleSignal(s), 1) },
    ...timeouts,
  })
  const toA = opts.toA ?? (s => s)
  b = new PeerSession({ remote: 'a', polite: true, createPeerConnection: factory(engineB), iceServers: config.iceServers ?? [], send: s => { const t = toA(s); setTimeout(() => a?.handleSignal(t), 1) }, ...timeouts })
  return { a, b, close: () => { a?.close(); b?.close() }, candidates }
}

export async function connectPair (engineA: EngineName, engineB: EngineName, config: RTCConfiguration = {}, timeoutMs = 20_000): Promise<Pair> {
  const { a, b, close, candidates } = sessionPair(engineA, engineB, { config, connectTimeoutMs: timeoutMs })
  try {
    await Promise.all([whenOpen(a.control, undefined, timeoutMs), whenOpen(b.control, undefined, timeoutMs)])
  } catch (err) {
    close()
    throw err
  }
  return { a, b, close, candidates }
}
