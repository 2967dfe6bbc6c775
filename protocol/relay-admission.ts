/**
 * Relay admission: how a relay checks, statelessly, that a peer holds a network token, without
 * ever learning the network secret.
 *
 * Keys:
 * - relay key `R` = HKDF(secret, `causeway/v1/relay`) (`protocol/keys.ts`), known to members only.
 * - admission seed = HKDF-SHA-256(R, salt `causeway relay admission v1`, info
 *   `causeway/v1/relay-admission`, 32 bytes); the Ed25519 key pair generated from that seed is
 *   the network's admission key pair. Members derive the private key; the relay is configured
 *   with the public key only, as the text "admit key" `cwak1.<base64url(32-byte public key)>`.
 *   A relay may hold several admit keys (one per network it serves).
 *
 * Wire protocol `/causeway/relay-admission/1.0.0` (client → relay, on the client's direct
 * connection to the relay, before it asks for a reservation or a hop):
 * 1. client sends one JSON object, at most 1 KiB, then closes its writable end:
 *    `{"v":1,"ts":<unix ms>,"sig":"<base64url Ed25519 signature>"}`, where the signature covers
 *    the UTF-8 text `causeway/relay-admission/v1\n<client PeerId>\n<relay PeerId>\n<ts>`.
 *    The client PeerId is the one authenticated by noise on that connection, so a proof cannot be
 *    replayed by another peer nor against another relay; `ts` must be within ±5 minutes.
 * 2. relay answers `{"ok":true}` or `{"ok":false,"code":"UNAUTHORIZED"|"BAD_MESSAGE","message":"…"}`
 *    and closes.
 *
 * An admitted peer stays admitted until its last connection to the relay closes. The relay's
 * connection gater refuses reservations (`denyInboundRelayReservation`) and hops
 * (`denyOutboundRelayedConnection`) unless source and destination were admitted under the same
 * admit key; it waits up to `admissionWaitMs` for a proof that is still in flight.
 *
 * Version history: 1.0.0 — first version.
 */
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { Connection, Ed25519PrivateKey, PeerId, PublicKey, Stream } from '@libp2p/interface'
import * as z from 'zod'
import { fromBase64Url, fromUtf8, toBase64Url, utf8 } from './encoding.ts'
import { deriveRelayKey } from './keys.ts'
import { decodeToken } from './token.ts'

export const ADMISSION_PROTOCOL = '/causeway/relay-admission/1.0.0'
export const ADMIT_KEY_PREFIX = 'cwak1.'
/** Largest admission message either side reads. */
export const MAX_ADMISSION_BYTES = 1024
/** Allowed clock skew of an admission proof. */
export const ADMISSION_MAX_SKEW_MS = 5 * 60_000

async function hkdf (ikm: Uint8Array<ArrayBuffer>, salt: string, info: string): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits'])
  return new Uint8Array(await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: utf8(salt), info: utf8(info) }, key, 256))
}

/** The admission private key of a network (members only). */
export async function admissionPrivateKey (relayKey: Uint8Array<ArrayBuffer>): Promise<Ed25519PrivateKey> {
  if (relayKey.byteLength !== 32) throw new Error('relay key must be 32 bytes')
  return await generateKeyPairFromSeed('Ed25519', await hkdf(relayKey, 'causeway relay admission v1', 'causeway/v1/relay-admission'))
}

/** The admit key (public, text form) a relay is configured with, from a relay key. */
export async function admitKeyFromRelayKey (relayKey: Uint8Array<ArrayBuffer>): Promise<string> {
  return ADMIT_KEY_PREFIX + toBase64Url((await admissionPrivateKey(relayKey)).publicKey.raw)
}

/** The admit key for a member network token (text). The secret is only used transiently. */
export async function admitKeyFromToken (tokenText: string): Promise<string> {
  const token = decodeToken(tokenText)
  if (token.kind !== 'member') throw new Error('a relay admit key needs a member token (not a viewer token)')
  return await admitKeyFromRelayKey(await deriveRelayKey(token.secret))
}

/** Parses an admit key `cwak1.<base64url>` into an Ed25519 public key. */
export function parseAdmitKey (text: string): PublicKey {
  const t = text.trim()
  if (!t.startsWith(ADMIT_KEY_PREFIX)) throw new Error(`admit key must start with "${ADMIT_KEY_PREFIX}"`)
  let raw: Uint8Array
  try { raw = fromBase64Url(t.slice(ADMIT_KEY_PREFIX.length)) } catch { throw new Error('admit key is not base64url') }
  if (raw.byteLength !== 32) throw new Error('admit key must hold a 32-byte Ed25519 public key')
  return publicKeyFromRaw(raw)
}

function proofText (client: PeerId, relay: PeerId, ts: number): Uint8Array {
  return utf8(`causeway/relay-admission/v1\n${client.toString()}\n${relay.toString()}\n${ts}`)
}

const Proof = z.object({ v: z.literal(1), ts: z.number().int().nonnegative(), sig: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/) }).strict()
const Answer = z.union([
  z.object({ ok: z.literal(true) }).strict(),
  z.object({ ok: z.literal(false), code: z.string().max(64), message: z.string().max(256) }).strict(),
])

/** Reads a stream to its end, refusing more than `max` bytes. */
export async function readAll (stream: Stream, max: number, signal: AbortSignal): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let total = 0
  const onAbort = (): void => { stream.abort(new Error('admission timed out')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    for await (const chunk of stream) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      total += bytes.byteLength
      if (total > max) throw new Error(`message over ${max} bytes`)
      parts.push(bytes)
    }
  } finally { signal.removeEventListener('abort', onAbort) }
  signal.throwIfAborted()
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

function parseJson (bytes: Uint8Array): unknown {
  try { return JSON.parse(fromUtf8(bytes)) } catch { return undefined }
}

/** Result of verifying a proof: the index of the admit key that verified it, or a refusal. */
export type Verdict = { ok: true, keyIndex: number } | { ok: false, code: 'UNAUTHORIZED' | 'BAD_MESSAGE', message: string }

/** Checks one admission message from `client` against the relay's admit keys. */
export async function verifyProof (bytes: Uint8Array, client: PeerId, relay: PeerId, keys: PublicKey[], now = Date.now()): Promise<Verdict> {
  const parsed = Proof.safeParse(parseJson(bytes))
  if (!parsed.success) return { ok: false, code: 'BAD_MESSAGE', message: 'not an admission proof' }
  if (Math.abs(now - parsed.data.ts) > ADMISSION_MAX_SKEW_MS) return { ok: false, code: 'UNAUTHORIZED', message: 'proof timestamp outside the allowed clock skew' }
  const sig = fromBase64Url(parsed.data.sig)
  if (sig.byteLength !== 64) return { ok: false, code: 'BAD_MESSAGE', message: 'signature must be 64 bytes' }
  const text = proofText(client, relay, parsed.data.ts)
  for (const [i, key] of keys.entries()) {
    if (await Promise.resolve(key.verify(text, sig)).catch(() => false)) return { ok: true, keyIndex: i }
  }
  return { ok: false, code: 'UNAUTHORIZED', message: 'proof does not verify with any admit key of this relay' }
}

/** Error thrown on the client when a relay refuses its proof. */
export class AdmissionRefusedError extends Error {
  override name = 'AdmissionRefusedError'
  readonly code: string
  constructor (code: string, message: string) { super(`relay refused admission: ${code}: ${message}`); this.code = code }
}

/**
 * Client side: proves membership on an open connection to a relay. Resolves when admitted;
 * throws AdmissionRefusedError when refused, or a transport error.
 */
export async function proveAdmission (connection: Connection, self: PeerId, key: Ed25519PrivateKey, signal: AbortSignal): Promise<void> {
  const ts = Date.now()
  const sig = await key.sign(proofText(self, connection.remotePeer, ts))
  const stream = await connection.newStream(ADMISSION_PROTOCOL, { signal, runOnLimitedConnection: false })
  try {
    stream.send(utf8(JSON.stringify({ v: 1, ts, sig: toBase64Url(sig) })))
    await stream.close({ signal })
    const answer = Answer.safeParse(parseJson(await readAll(stream, MAX_ADMISSION_BYTES, signal)))
    if (!answer.success) throw new AdmissionRefusedError('BAD_MESSAGE', 'relay sent an unreadable admission answer')
    if (!answer.data.ok) throw new AdmissionRefusedError(answer.data.code, answer.data.message)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}
