/**
 * Keys derived from a network secret with HKDF-SHA-256 (WebCrypto only).
 *
 * | derived | info string | used for | who learns it |
 * |---|---|---|---|
 * | room id (16 bytes, base64url) | `causeway/v1/room` | the signaling room | the signaling service |
 * | seal key (AES-256-GCM) | `causeway/v1/seal` | sealed envelopes between agents | peers only |
 * | viewer secret (32 bytes) | `causeway/v1/viewer` | carried by viewer tokens instead of the secret | viewers and agents |
 * | viewer seal key (AES-256-GCM) | `causeway/v1/viewer-seal` (from the viewer secret) | envelopes to and from viewers | viewers and agents |
 * | grant key (HMAC-SHA-256) | `causeway/v1/grant` | signs the share grants inside viewer tokens | agents only |
 * | relay key (32 bytes) | `causeway/v1/relay` | relay admission proofs | peers only |
 * | member signing key (Ed25519, seed) | `causeway/v1/member-sign` | signs members' hellos to viewers (protocol/member-proof.ts) | members only; its public half goes into viewer tokens (`mk`) |
 * | subject key (HMAC-SHA-256) | `causeway/v1/ticket-subject` | turns an agent name into the opaque subject of its access ticket (protocol/ticket.ts) | the owner; the signaling service sees only the subjects |
 *
 * The derivations are one-way: the room id reveals nothing of the secret or the keys.
 */
import { fromBase64Url, toBase64Url, utf8 } from './encoding.ts'

export const SECRET_BYTES = 32
const SALT = utf8('causeway network secret v1')

async function hkdfBits (secret: Uint8Array<ArrayBuffer>, info: string, bytes: number): Promise<Uint8Array<ArrayBuffer>> {
  const ikm = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits'])
  const bits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: SALT, info: utf8(info) }, ikm, bytes * 8)
  return new Uint8Array(bits)
}

async function aesKey (raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt'])
}

export async function deriveRoomId (secret: Uint8Array<ArrayBuffer>): Promise<string> {
  return toBase64Url(await hkdfBits(secret, 'causeway/v1/room', 16))
}

export async function deriveViewerSecret (secret: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return await hkdfBits(secret, 'causeway/v1/viewer', SECRET_BYTES)
}

export async function deriveSealKey (secret: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return await aesKey(await hkdfBits(secret, 'causeway/v1/seal', 32))
}

export async function deriveViewerSealKey (viewerSecret: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return await aesKey(await hkdfBits(viewerSecret, 'causeway/v1/viewer-seal', 32))
}

export async function deriveGrantKey (secret: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  const raw = await hkdfBits(secret, 'causeway/v1/grant', 32)
  return await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
}

export async function deriveRelayKey (secret: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return await hkdfBits(secret, 'causeway/v1/relay', 32)
}

/** The key that makes an agent name into its ticket subject (ticket.ts `ticketSubject`). */
export async function deriveSubjectKey (secret: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  const raw = await hkdfBits(secret, 'causeway/v1/ticket-subject', 32)
  return await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
}

/** PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20)

/** The network's member signing key pair (Ed25519): only members can sign with it; viewers verify with the public half. */
export async function deriveMemberSignKey (secret: Uint8Array<ArrayBuffer>): Promise<{ privateKey: CryptoKey, publicKey: Uint8Array<ArrayBuffer> }> {
  const seed = await hkdfBits(secret, 'causeway/v1/member-sign', 32)
  const pkcs8 = new Uint8Array(ED25519_PKCS8_PREFIX.length + seed.length)
  pkcs8.set(ED25519_PKCS8_PREFIX)
  pkcs8.set(seed, ED25519_PKCS8_PREFIX.length)
  // Imported once extractable, only to read the public half (JWK `x`); the key kept signs only.
  const jwk = await crypto.subtle.exportKey('jwk', await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']))
  if (jwk.x === undefined) throw new Error('Ed25519 key without a public half')
  return { privateKey: await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']), publicKey: fromBase64Url(jwk.x) }
}

/** Everything a full member (agent) derives from the network secret. */
export interface MemberKeys {
  room: string
  seal: CryptoKey
  viewerSeal: CryptoKey
  grant: CryptoKey
  relay: Uint8Array<ArrayBuffer>
  /** The member signing key pair (Ed25519). */
  member: { privateKey: CryptoKey, publicKey: Uint8Array<ArrayBuffer> }
}

export async function deriveMemberKeys (secret: Uint8Array<ArrayBuffer>): Promise<MemberKeys> {
  const viewerSecret = await deriveViewerSecret(secret)
  return {
    room: await deriveRoomId(secret),
    seal: await deriveSealKey(secret),
    viewerSeal: await deriveViewerSealKey(viewerSecret),
    grant: await deriveGrantKey(secret),
    relay: await deriveRelayKey(secret),
    member: await deriveMemberSignKey(secret),
  }
}
