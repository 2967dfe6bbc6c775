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
 *
 * The derivations are one-way: the room id reveals nothing of the secret or the keys.
 */
import { toBase64Url, utf8 } from './encoding.ts'

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

/** Everything a full member (agent) derives from the network secret. */
export interface MemberKeys {
  room: string
  seal: CryptoKey
  viewerSeal: CryptoKey
  grant: CryptoKey
  relay: Uint8Array<ArrayBuffer>
}

export async function deriveMemberKeys (secret: Uint8Array<ArrayBuffer>): Promise<MemberKeys> {
  const viewerSecret = await deriveViewerSecret(secret)
  return {
    room: await deriveRoomId(secret),
    seal: await deriveSealKey(secret),
    viewerSeal: await deriveViewerSealKey(viewerSecret),
    grant: await deriveGrantKey(secret),
    relay: await deriveRelayKey(secret),
  }
}
