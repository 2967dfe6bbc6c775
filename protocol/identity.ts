/**
 * Per-agent identity (Web APIs only: runs in Node, workerd and the browser).
 *
 * Every network has an issuer key pair (ECDSA P-256, SHA-256; signatures are the 64-byte
 * IEEE P1363 form WebCrypto produces). Only the network's owner holds the private half, in
 * the owner file `causeway token` writes. Every agent has its own key pair, and a credential:
 *
 *   `cwc1.` base64url(JSON {net, n, k, s, iat, exp}) `.` base64url(issuer signature)
 *
 * where `net` is the network's room id (a credential of one network is worthless in
 * another), `n` the agent's name, `k` its public key (raw, 65 bytes), `s` a random serial,
 * `iat`/`exp` seconds since the epoch. The signature covers `causeway/cred/1|` + the
 * base64url payload exactly as sent.
 *
 * Revocation: the owner revokes serials; `causeway token --revoke NAME` prints a signed
 * revocation list
 *
 *   `cwr1.` base64url(JSON {net, seq, iat, s: [serial…]}) `.` base64url(issuer signature)
 *
 * (signature over `causeway/crl/1|` + payload). Any agent given it (`--revocations-file`)
 * carries it in its sealed hellos; every agent adopts the list with the highest `seq` it sees
 * and drops peers whose serial it names, so one agent can be revoked without re-keying the
 * others, and handing the list to any one agent reaches the whole mesh. Lists are signed by
 * the issuer: no member can forge or shrink one (a lower `seq` is ignored).
 */
import * as z from 'zod'
import { CausewayError } from './errors.ts'
import { fromBase64Url, fromUtf8, randomId, toBase64Url, utf8 } from './encoding.ts'

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const
const SIG = { name: 'ECDSA', hash: 'SHA-256' } as const
const CRED_PREFIX = 'cwc1.'
const CRL_PREFIX = 'cwr1.'
/** Largest credential / revocation list accepted, in characters. */
export const MAX_CREDENTIAL_LENGTH = 1024
export const MAX_REVOKED = 512
export const MAX_CRL_LENGTH = 24 * 1024
/** Clock skew tolerated on a credential's `iat`, seconds. */
const IAT_SKEW_S = 300

const B64 = z.string().regex(/^[A-Za-z0-9_-]+$/)
const Serial = z.string().regex(/^[A-Za-z0-9_-]{8,32}$/)
const PeerNameRe = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/

const CredentialJson = z.object({
  net: B64.max(64),
  n: z.string().regex(PeerNameRe),
  k: B64.max(128),
  s: Serial,
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
}).strict()

const CrlJson = z.object({
  net: B64.max(64),
  seq: z.number().int().nonnegative(),
  iat: z.number().int().nonnegative(),
  s: z.array(Serial).max(MAX_REVOKED),
}).strict()

export interface Credential {
  /** The room id of the network it belongs to. */
  network: string
  name: string
  /** The agent's public key, raw (uncompressed point). */
  publicKey: Uint8Array<ArrayBuffer>
  serial: string
  issuedAt: number
  expiresAt: number
}

export interface RevocationList { network: string, seq: number, issuedAt: number, serials: string[] }

export interface KeyPairBytes {
  /** Raw public key (65 bytes). */
  publicKey: Uint8Array<ArrayBuffer>
  /** PKCS#8 private key. */
  privateKey: Uint8Array<ArrayBuffer>
}

export async function generateKeyPair (): Promise<KeyPairBytes> {
  const kp = await crypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as CryptoKeyPair
  return {
    publicKey: new Uint8Array(await crypto.subtle.exportKey('raw', kp.publicKey)),
    privateKey: new Uint8Array(await crypto.subtle.exportKey('pkcs8', kp.privateKey)),
  }
}

export async function importSigningKey (pkcs8: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey('pkcs8', pkcs8, ALG, false, ['sign'])
  } catch {
    throw new CausewayError('BAD_TOKEN', 'identity key is not a P-256 PKCS#8 key')
  }
}

export async function importVerifyKey (raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey('raw', raw, ALG, false, ['verify'])
  } catch {
    throw new CausewayError('IDENTITY_REJECTED', 'public key is not a P-256 point')
  }
}

export async function sign (key: CryptoKey, message: string): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.sign(SIG, key, utf8(message))))
}

export async function verify (key: CryptoKey, message: string, signature: string): Promise<boolean> {
  let sig: Uint8Array<ArrayBuffer>
  try { sig = fromBase64Url(signature) } catch { return false }
  if (sig.length !== 64) return false
  return await crypto.subtle.verify(SIG, key, sig, utf8(message))
}

function splitSigned (text: string, prefix: string, max: number): { payload: string, sig: string, json: unknown } {
  if (text.length > max || !text.startsWith(prefix)) throw new CausewayError('IDENTITY_REJECTED', `not a ${prefix} object`)
  const parts = text.slice(prefix.length).split('.')
  if (parts.length !== 2 || parts[0] === undefined || parts[1] === undefined) throw new CausewayError('IDENTITY_REJECTED', `${prefix} object malformed`)
  let json: unknown
  try { json = JSON.parse(fromUtf8(fromBase64Url(parts[0]))) } catch { throw new CausewayError('IDENTITY_REJECTED', `${prefix} payload is not base64url JSON`) }
  return { payload: parts[0], sig: parts[1], json }
}

/** Signs a credential binding `name` to `publicKey` in network `network` (room id). */
export async function issueCredential (issuer: CryptoKey, init: { network: string, name: string, publicKey: Uint8Array, ttlSeconds: number, now?: number }): Promise<string> {
  if (!PeerNameRe.test(init.name)) throw new CausewayError('BAD_TOKEN', 'agent names are 1-64 letters, digits, ., _ or -')
  const iat = Math.floor((init.now ?? Date.now()) / 1000)
  const body: z.infer<typeof CredentialJson> = { net: init.network, n: init.name, k: toBase64Url(init.publicKey), s: randomId(12), iat, exp: iat + Math.max(1, Math.floor(init.ttlSeconds)) }
  const payload = toBase64Url(utf8(JSON.stringify(body)))
  return `${CRED_PREFIX}${payload}.${await sign(issuer, `causeway/cred/1|${payload}`)}`
}

/** Parses a credential without checking its signature (for display and for the owner's records). */
export function parseCredential (text: string): Credential {
  const { json } = splitSigned(text, CRED_PREFIX, MAX_CREDENTIAL_LENGTH)
  const c = CredentialJson.safeParse(json)
  if (!c.success) throw new CausewayError('IDENTITY_REJECTED', 'credential fields invalid')
  let publicKey: Uint8Array<ArrayBuffer>
  try { publicKey = fromBase64Url(c.data.k) } catch { throw new CausewayError('IDENTITY_REJECTED', 'credential key is not base64url') }
  return { network: c.data.net, name: c.data.n, publicKey, serial: c.data.s, issuedAt: c.data.iat, expiresAt: c.data.exp }
}

/**
 * Verifies a credential against the issuer key, the network, the clock and a revocation list.
 * Throws CausewayError IDENTITY_REJECTED (bad signature, other network), CREDENTIAL_EXPIRED
 * or CREDENTIAL_REVOKED. Without `network` (a relay, which never learns the room id) any
 * network of this issuer is accepted: an issuer key belongs to one network.
 */
export async function verifyCredential (issuer: CryptoKey, text: string, opts: { network?: string, revoked?: ReadonlySet<string>, now?: number }): Promise<Credential> {
  const { payload, sig } = splitSigned(text, CRED_PREFIX, MAX_CREDENTIAL_LENGTH)
  if (!await verify(issuer, `causeway/cred/1|${payload}`, sig)) throw new CausewayError('IDENTITY_REJECTED', 'credential is not signed by this network\'s issuer')
  const cred = parseCredential(text)
  if (opts.network !== undefined && cred.network !== opts.network) throw new CausewayError('IDENTITY_REJECTED', 'credential belongs to another network')
  const now = Math.floor((opts.now ?? Date.now()) / 1000)
  if (now >= cred.expiresAt) throw new CausewayError('CREDENTIAL_EXPIRED', `credential of "${cred.name}" expired at ${new Date(cred.expiresAt * 1000).toISOString()}`)
  if (cred.issuedAt > now + IAT_SKEW_S) throw new CausewayError('IDENTITY_REJECTED', 'credential issued in the future')
  if (opts.revoked?.has(cred.serial) === true) throw new CausewayError('CREDENTIAL_REVOKED', `credential ${cred.serial} of "${cred.name}" is revoked`)
  return cred
}

export async function signRevocationList (issuer: CryptoKey, list: RevocationList): Promise<string> {
  if (list.serials.length > MAX_REVOKED) throw new CausewayError('BAD_TOKEN', `at most ${MAX_REVOKED} revoked credentials at once (expired ones drop out)`)
  const body: z.infer<typeof CrlJson> = { net: list.network, seq: list.seq, iat: list.issuedAt, s: list.serials }
  const payload = toBase64Url(utf8(JSON.stringify(body)))
  return `${CRL_PREFIX}${payload}.${await sign(issuer, `causeway/crl/1|${payload}`)}`
}

/** Verifies a signed revocation list (of `network`; undefined: any network of this issuer, see verifyCredential); throws CausewayError IDENTITY_REJECTED. */
export async function verifyRevocationList (issuer: CryptoKey, text: string, network: string | undefined): Promise<RevocationList> {
  const { payload, sig, json } = splitSigned(text.trim(), CRL_PREFIX, MAX_CRL_LENGTH)
  if (!await verify(issuer, `causeway/crl/1|${payload}`, sig)) throw new CausewayError('IDENTITY_REJECTED', 'revocation list is not signed by this network\'s issuer')
  const l = CrlJson.safeParse(json)
  if (!l.success) throw new CausewayError('IDENTITY_REJECTED', 'revocation list fields invalid')
  if (network !== undefined && l.data.net !== network) throw new CausewayError('IDENTITY_REJECTED', 'revocation list belongs to another network')
  return { network: l.data.net, seq: l.data.seq, issuedAt: l.data.iat, serials: l.data.s }
}
