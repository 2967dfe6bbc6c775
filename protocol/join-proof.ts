/**
 * Join proof: how a peer proves to the signaling service that the peer id it joins with is its
 * own (protocol version 2, see messages.ts for the message flow).
 *
 * - Each peer holds an ECDSA P-256 key pair (WebCrypto: Node, workerd and every browser have
 *   it). Its peer id is `base64url(SHA-256("causeway/peer-id/v1\n" || raw public key)[0..16])`,
 *   22 characters: whoever knows an id cannot make a key for it (a second preimage of 128 bits).
 * - The service sends each new socket a random `challenge` (16 bytes, base64url) as its first
 *   frame and keeps it with the socket (Node: in memory; Durable Object: in the socket's
 *   attachment, so it survives hibernation). Each socket gets one challenge and one join.
 * - `join` carries the public key (`key`, base64url of the 65-byte uncompressed point) and
 *   `sig`, the ECDSA-SHA-256 signature (IEEE P1363, 64 bytes, base64url) of the UTF-8 text
 *   `causeway/join/v2\n<room>\n<peer>\n<role>\n<challenge>`.
 * - The service accepts the join only if `peer` is the id of `key` and `sig` verifies;
 *   otherwise UNAUTHORIZED. A join with the id of a peer already in the room therefore replaces
 *   it only when it comes from the holder of the same private key (a reconnect), never from a
 *   peer that merely learned the id from `welcome.peers`.
 */
import { fromBase64Url, toBase64Url, utf8, concatBytes } from './encoding.ts'

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const
/** Raw uncompressed P-256 public key length. */
export const PEER_KEY_BYTES = 65
/** Bytes of the public key's hash that make the peer id. */
export const PEER_ID_BYTES = 16
/** Challenge bytes the service sends. */
export const CHALLENGE_BYTES = 16

export type JoinRole = 'agent' | 'viewer'

/** A peer's signaling key: its id and what it needs to sign joins. */
export interface PeerKey {
  /** The peer id derived from the public key. */
  readonly id: string
  /** base64url of the raw public key, sent in `join.key`. */
  readonly publicKey: string
  readonly privateKey: CryptoKey
}

/** The peer id of a raw public key. */
export async function peerIdOf (rawPublicKey: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', concatBytes(utf8('causeway/peer-id/v1\n'), rawPublicKey)))
  return toBase64Url(digest.subarray(0, PEER_ID_BYTES))
}

/** A fresh key pair and its peer id (the private key is not extractable). */
export async function generatePeerKey (): Promise<PeerKey> {
  const pair = await crypto.subtle.generateKey(ALG, false, ['sign', 'verify'])
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey))
  return { id: await peerIdOf(raw), publicKey: toBase64Url(raw), privateKey: pair.privateKey }
}

function proofText (p: { room: string, peer: string, role: JoinRole, challenge: string }): Uint8Array<ArrayBuffer> {
  return utf8(`causeway/join/v2\n${p.room}\n${p.peer}\n${p.role}\n${p.challenge}`)
}

/** Signs a join for `room` answering `challenge`; returns the `sig` field. */
export async function signJoin (key: PeerKey, init: { room: string, role: JoinRole, challenge: string }): Promise<string> {
  const sig = await crypto.subtle.sign(SIGN, key.privateKey, proofText({ ...init, peer: key.id }))
  return toBase64Url(new Uint8Array(sig))
}

/**
 * Checks a join proof. Returns false (never throws) for a key that is not a P-256 point, an
 * id that is not the key's, or a signature that does not verify.
 */
export async function verifyJoinProof (p: { room: string, peer: string, role: JoinRole, challenge: string, key: string, sig: string }): Promise<boolean> {
  try {
    const raw = fromBase64Url(p.key)
    const sig = fromBase64Url(p.sig)
    if (raw.length !== PEER_KEY_BYTES || sig.length !== 64) return false
    if (await peerIdOf(raw) !== p.peer) return false
    const key = await crypto.subtle.importKey('raw', raw, ALG, false, ['verify'])
    return await crypto.subtle.verify(SIGN, key, sig, proofText(p))
  } catch {
    return false
  }
}
