/**
 * Proofs an agent makes with its identity key inside sealed signals (see protocol/identity.ts
 * for keys and credentials, protocol/peer.ts for where they travel).
 *
 * - Hello proof: signature over
 *   `causeway/hello/1|<room>|<from>|<to>|<ts>|<name>|<role>|<relay PeerId or ->`.
 *   Binding the sender's and the recipient's peer ids and a timestamp means a hello cannot be
 *   replayed to another peer, from another id, or later than the skew window; binding the relay
 *   PeerId means nobody else can announce which relayed streams count as this agent's.
 * - DTLS proof (on every offer/answer): signature over
 *   `causeway/dtls/1|<room>|<from>|<to>|<sid>|<ts>|<type>|<fingerprints>` where fingerprints
 *   are the SDP's `a=fingerprint:` values (hash name lowercased, hex uppercased, sorted, joined
 *   by `,`). The receiver recomputes them from the SDP it is about to apply, so a swapped
 *   fingerprint (a man in the middle: the signaling operator, or a member holding the network
 *   secret) fails verification and the description is dropped; the WebRTC engine then checks the
 *   DTLS certificate against the verified fingerprint.
 */
import { CausewayError } from './errors.ts'
import { SEAL_MAX_SKEW_MS } from './limits.ts'
import { sign, verify } from './identity.ts'

export interface HelloClaims { room: string, from: string, to: string, ts: number, name: string, role: string, relayPeer?: string }
export interface DtlsClaims { room: string, from: string, to: string, sid: string, ts: number, type: string, sdp: string }

function helloMessage (c: HelloClaims): string {
  return `causeway/hello/1|${c.room}|${c.from}|${c.to}|${c.ts}|${c.name}|${c.role}|${c.relayPeer ?? '-'}`
}

/** The DTLS fingerprints of an SDP, normalized and sorted (empty when it has none). */
export function sdpFingerprints (sdp: string): string[] {
  const out = new Set<string>()
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$/.exec(line)
    if (m?.[1] !== undefined && m[2] !== undefined) out.add(`${m[1].toLowerCase()} ${m[2].toUpperCase()}`)
  }
  return [...out].sort()
}

function dtlsMessage (c: DtlsClaims, fps: string[]): string {
  return `causeway/dtls/1|${c.room}|${c.from}|${c.to}|${c.sid}|${c.ts}|${c.type}|${fps.join(',')}`
}

export async function signHello (key: CryptoKey, claims: HelloClaims): Promise<string> {
  return await sign(key, helloMessage(claims))
}

function fresh (ts: number, now: number, what: string): void {
  if (!Number.isFinite(ts) || Math.abs(now - ts) > SEAL_MAX_SKEW_MS) throw new CausewayError('IDENTITY_REJECTED', `${what} proof is stale`)
}

/** Throws CausewayError IDENTITY_REJECTED unless `sig` is the key's fresh proof of these claims. */
export async function verifyHello (key: CryptoKey, claims: HelloClaims, sig: string, now = Date.now()): Promise<void> {
  fresh(claims.ts, now, 'hello')
  if (!await verify(key, helloMessage(claims), sig)) throw new CausewayError('IDENTITY_REJECTED', `hello proof of "${claims.name}" does not verify`)
}

export async function signDtls (key: CryptoKey, claims: DtlsClaims): Promise<string> {
  const fps = sdpFingerprints(claims.sdp)
  if (fps.length === 0) throw new CausewayError('IDENTITY_REJECTED', 'local description has no DTLS fingerprint')
  return await sign(key, dtlsMessage(claims, fps))
}

/** Throws CausewayError IDENTITY_REJECTED unless the SDP's fingerprints are the ones the key signed. */
export async function verifyDtls (key: CryptoKey, claims: DtlsClaims, sig: string, now = Date.now()): Promise<void> {
  fresh(claims.ts, now, 'DTLS')
  const fps = sdpFingerprints(claims.sdp)
  if (fps.length === 0) throw new CausewayError('IDENTITY_REJECTED', 'remote description has no DTLS fingerprint')
  if (!await verify(key, dtlsMessage(claims, fps), sig)) throw new CausewayError('IDENTITY_REJECTED', 'DTLS fingerprint is not the one the peer signed')
}
