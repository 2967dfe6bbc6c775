/**
 * Relay admission: how a relay checks, statelessly, that a peer holds a network token (and, for
 * networks with per-agent identity, which credential it holds), without ever learning the
 * network secret.
 *
 * Keys:
 * - relay key `R` = HKDF(secret, `causeway/v1/relay`) (`protocol/keys.ts`), known to members only.
 * - admission seed = HKDF-SHA-256(R, salt `causeway relay admission v1`, info
 *   `causeway/v1/relay-admission`, 32 bytes); the Ed25519 key pair generated from that seed is
 *   the network's admission key pair. Members derive the private key; the relay is configured
 *   with the public key only, as the text "admit key".
 * - admit key `cwak1.<base64url(admission public key)>`: the network only (shared tokens, or a
 *   relay configured without the issuer). `cwak2.<base64url(admission public key)>.<base64url(issuer
 *   public key)>`: also the network's issuer key (P-256 raw, protocol/identity.ts): the relay
 *   then admits only agents presenting a credential the issuer signed, and tells them apart by
 *   it. `--admit-token-file` with an agent token gives `cwak2`. A relay may hold several admit
 *   keys (one per network it serves).
 *
 * Wire protocol `/causeway/relay-admission/1.0.0` (client → relay, on the client's direct
 * connection to the relay, before it asks for a reservation or a hop):
 * 1. client sends one JSON object, at most 32 KiB, then closes its writable end:
 *    `{"v":2,"ts":<unix ms>,"sig":"<base64url Ed25519 signature>","cred"?:"cwc1…","csig"?:"…","crl"?:"cwr1…"}`,
 *    where `sig` covers the UTF-8 text `causeway/relay-admission/v1\n<client PeerId>\n<relay PeerId>\n<ts>`
 *    (the network's admission key), `cred` is the agent's credential and `csig` its signature
 *    (ECDSA P-256, the credential's key) over the same text, and `crl` the newest signed
 *    revocation list the agent holds. The client PeerId is the one authenticated by noise on that
 *    connection, so a proof cannot be replayed by another peer nor against another relay; `ts`
 *    must be within ±5 minutes. `{"v":1,"ts","sig"}` (no credential) is still accepted by
 *    `cwak1` keys.
 * 2. relay answers `{"ok":true}` or `{"ok":false,"code":…,"message":"…"}` and closes. Codes:
 *    `UNAUTHORIZED` (the network proof does not verify), `BAD_MESSAGE`, `IDENTITY_REJECTED` (a
 *    `cwak2` network without a valid credential and key proof), `CREDENTIAL_EXPIRED`,
 *    `CREDENTIAL_REVOKED`.
 *
 * What the relay learns: with `cwak2`, the credentials of the agents that reserve on it (name,
 * public key, serial, expiry), so that it can cap reservations per credential and refuse and
 * release revoked ones (relay/admission.ts). With `cwak1`, only that a peer holds the network's
 * token; its cap then applies per client address.
 *
 * An admitted peer stays admitted until its last connection to the relay closes (its reservation
 * is released then too). The relay's connection gater refuses reservations
 * (`denyInboundRelayReservation`) and hops (`denyOutboundRelayedConnection`) unless source and
 * destination were admitted under the same admit key; it waits up to `admissionWaitMs` for a
 * proof that is still in flight.
 *
 * Version history:
 * - message v2 (2026-12, issue 22): `cred`, `csig`, `crl`; `cwak2` admit keys; messages up to
 *   32 KiB. A v2 client falls back to a v1 message when a relay answers BAD_MESSAGE (an older
 *   relay), so new agents keep reserving on older relays (without per-credential limits).
 * - 1.0.0: first version.
 */
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { Connection, Ed25519PrivateKey, PeerId, PublicKey, Stream } from '@libp2p/interface'
import * as z from 'zod'
import { fromBase64Url, fromUtf8, toBase64Url, utf8 } from './encoding.ts'
import { CausewayError } from './errors.ts'
import { importVerifyKey, MAX_CREDENTIAL_LENGTH, MAX_CRL_LENGTH, sign, verify, verifyCredential, type Credential } from './identity.ts'
import { deriveRelayKey } from './keys.ts'
import { decodeToken } from './token.ts'

export const ADMISSION_PROTOCOL = '/causeway/relay-admission/1.0.0'
export const ADMIT_KEY_PREFIX = 'cwak1.'
export const ADMIT_KEY_V2_PREFIX = 'cwak2.'
/** Largest admission message either side reads (a credential and a revocation list fit). */
export const MAX_ADMISSION_BYTES = 32 * 1024
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

/**
 * The admit key for a member network token (text): `cwak2` with the issuer key for an agent
 * token, `cwak1` for a shared token. The secret is only used transiently.
 */
export async function admitKeyFromToken (tokenText: string): Promise<string> {
  const token = decodeToken(tokenText)
  if (token.kind !== 'member') throw new Error('a relay admit key needs a member token (not a viewer token)')
  const v1 = await admitKeyFromRelayKey(await deriveRelayKey(token.secret))
  return token.identity === undefined ? v1 : `${ADMIT_KEY_V2_PREFIX}${v1.slice(ADMIT_KEY_PREFIX.length)}.${toBase64Url(token.identity.issuer)}`
}

/** A parsed admit key: the network's admission public key and, for `cwak2`, its issuer key (raw P-256). */
export interface AdmitKey { key: PublicKey, issuer?: Uint8Array<ArrayBuffer> }

/** Parses an admit key (`cwak1.<base64url>` or `cwak2.<base64url>.<base64url>`). */
export function parseAdmitKey (text: string): AdmitKey {
  const t = text.trim()
  const v2 = t.startsWith(ADMIT_KEY_V2_PREFIX)
  if (!v2 && !t.startsWith(ADMIT_KEY_PREFIX)) throw new Error(`admit key must start with "${ADMIT_KEY_PREFIX}" or "${ADMIT_KEY_V2_PREFIX}"`)
  const [adm = '', issuer, ...rest] = t.slice(ADMIT_KEY_PREFIX.length).split('.')
  if (rest.length > 0 || (v2 !== (issuer !== undefined))) throw new Error('admit key malformed')
  let raw: Uint8Array
  let issuerRaw: Uint8Array<ArrayBuffer> | undefined
  try {
    raw = fromBase64Url(adm)
    if (issuer !== undefined) issuerRaw = fromBase64Url(issuer)
  } catch { throw new Error('admit key is not base64url') }
  if (raw.byteLength !== 32) throw new Error('admit key must hold a 32-byte Ed25519 public key')
  if (issuerRaw !== undefined && issuerRaw.byteLength !== 65) throw new Error('admit key must hold a 65-byte P-256 issuer key')
  return { key: publicKeyFromRaw(raw), ...(issuerRaw !== undefined ? { issuer: issuerRaw } : {}) }
}

function proofText (client: PeerId, relay: PeerId, ts: number): Uint8Array {
  return utf8(`causeway/relay-admission/v1\n${client.toString()}\n${relay.toString()}\n${ts}`)
}

const Sig = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/)
const Proof = z.union([
  z.object({ v: z.literal(1), ts: z.number().int().nonnegative(), sig: Sig }).strict(),
  z.object({
    v: z.literal(2),
    ts: z.number().int().nonnegative(),
    sig: Sig,
    cred: z.string().max(MAX_CREDENTIAL_LENGTH).optional(),
    csig: Sig.optional(),
    crl: z.string().max(MAX_CRL_LENGTH).optional(),
  }).strict(),
])
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

export type RefusalCode = 'UNAUTHORIZED' | 'BAD_MESSAGE' | 'IDENTITY_REJECTED' | 'CREDENTIAL_EXPIRED' | 'CREDENTIAL_REVOKED'

/**
 * Result of verifying a proof: the index of the admit key that verified it, the credential
 * (verified against that key's issuer; `cwak2` keys only) and the revocation list the client
 * passed (not yet verified: the relay adopts it, relay/admission.ts); or a refusal.
 */
export type Verdict =
  | { ok: true, keyIndex: number, credential?: Credential, crl?: string }
  | { ok: false, code: RefusalCode, message: string }

/** A parsed admit key ready for verifying (the issuer imported once). */
export interface AdmitVerifier { key: PublicKey, issuer?: CryptoKey }

export async function admitVerifier (k: AdmitKey): Promise<AdmitVerifier> {
  return { key: k.key, ...(k.issuer !== undefined ? { issuer: await importVerifyKey(k.issuer) } : {}) }
}

/**
 * Checks one admission message from `client` against the relay's admit keys. For a `cwak2` key
 * the message must carry a credential its issuer signed, unexpired, with `csig` made by the
 * credential's key over the same proof text (so a credential seen elsewhere is worthless
 * without its key). `revoked(keyIndex)` names the serials revoked in that network.
 */
export async function verifyProof (bytes: Uint8Array, client: PeerId, relay: PeerId, keys: AdmitVerifier[], opts: { now?: number, revoked?: (keyIndex: number) => ReadonlySet<string> } = {}): Promise<Verdict> {
  const now = opts.now ?? Date.now()
  const parsed = Proof.safeParse(parseJson(bytes))
  if (!parsed.success) return { ok: false, code: 'BAD_MESSAGE', message: 'not an admission proof' }
  const m = parsed.data
  if (Math.abs(now - m.ts) > ADMISSION_MAX_SKEW_MS) return { ok: false, code: 'UNAUTHORIZED', message: 'proof timestamp outside the allowed clock skew' }
  const sig = fromBase64Url(m.sig)
  if (sig.byteLength !== 64) return { ok: false, code: 'BAD_MESSAGE', message: 'signature must be 64 bytes' }
  const text = proofText(client, relay, m.ts)
  let keyIndex = -1
  for (const [i, k] of keys.entries()) {
    if (await Promise.resolve(k.key.verify(text, sig)).catch(() => false)) { keyIndex = i; break }
  }
  if (keyIndex < 0) return { ok: false, code: 'UNAUTHORIZED', message: 'proof does not verify with any admit key of this relay' }
  const crl = m.v === 2 ? m.crl : undefined
  const issuer = keys[keyIndex]?.issuer
  if (issuer === undefined) return { ok: true, keyIndex, ...(crl !== undefined ? { crl } : {}) }
  if (m.v !== 2 || m.cred === undefined || m.csig === undefined) return { ok: false, code: 'IDENTITY_REJECTED', message: 'this relay admits agents of this network by their credential: none was presented' }
  let credential: Credential
  try {
    credential = await verifyCredential(issuer, m.cred, { now, ...(opts.revoked !== undefined ? { revoked: opts.revoked(keyIndex) } : {}) })
    if (!await verify(await importVerifyKey(credential.publicKey), fromUtf8(text), m.csig)) throw new CausewayError('IDENTITY_REJECTED', `the proof is not signed by the key of "${credential.name}"'s credential`)
  } catch (err) {
    if (err instanceof CausewayError && (err.code === 'IDENTITY_REJECTED' || err.code === 'CREDENTIAL_EXPIRED' || err.code === 'CREDENTIAL_REVOKED')) return { ok: false, code: err.code, message: err.message }
    return { ok: false, code: 'IDENTITY_REJECTED', message: 'credential malformed' }
  }
  return { ok: true, keyIndex, credential, ...(crl !== undefined ? { crl } : {}) }
}

/** What an agent with an identity adds to its admission message (v2). */
export interface AdmissionIdentity {
  /** The agent's identity key (ECDSA P-256, signing). */
  key: CryptoKey
  /** Its credential (`cwc1.…`). */
  credential: string
  /** The newest signed revocation list the agent holds, passed on to the relay. */
  crl?: () => string | undefined
}

/** Error thrown on the client when a relay refuses its proof. */
export class AdmissionRefusedError extends Error {
  override name = 'AdmissionRefusedError'
  readonly code: string
  constructor (code: string, message: string) { super(`relay refused admission: ${code}: ${message}`); this.code = code }
}

/**
 * Client side: proves membership (and, with `identity`, the agent's credential) on an open
 * connection to a relay. Resolves when admitted; throws AdmissionRefusedError when refused, or a
 * transport error. A relay that does not read v2 messages (BAD_MESSAGE) is asked again with v1.
 */
export async function proveAdmission (connection: Connection, self: PeerId, key: Ed25519PrivateKey, signal: AbortSignal, identity?: AdmissionIdentity): Promise<void> {
  const ts = Date.now()
  const text = proofText(self, connection.remotePeer, ts)
  const sig = toBase64Url(await key.sign(text))
  if (identity === undefined) { await sendProof(connection, { v: 1, ts, sig }, signal); return }
  const crl = identity.crl?.()
  try {
    await sendProof(connection, { v: 2, ts, sig, cred: identity.credential, csig: await sign(identity.key, fromUtf8(text)), ...(crl !== undefined ? { crl } : {}) }, signal)
  } catch (err) {
    if (!(err instanceof AdmissionRefusedError) || err.code !== 'BAD_MESSAGE') throw err
    await sendProof(connection, { v: 1, ts, sig }, signal)
  }
}

async function sendProof (connection: Connection, message: object, signal: AbortSignal): Promise<void> {
  const stream = await connection.newStream(ADMISSION_PROTOCOL, { signal, runOnLimitedConnection: false })
  try {
    stream.send(utf8(JSON.stringify(message)))
    await stream.close({ signal })
    const answer = Answer.safeParse(parseJson(await readAll(stream, MAX_ADMISSION_BYTES, signal)))
    if (!answer.success) throw new AdmissionRefusedError('BAD_MESSAGE', 'relay sent an unreadable admission answer')
    if (!answer.data.ok) throw new AdmissionRefusedError(answer.data.code, answer.data.message)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}
