/**
 * Member proofs: how a viewer tells an agent from another viewer without holding the network
 * secret (Web APIs only: Node, workerd and the browser).
 *
 * Viewers share one viewer secret, so an envelope sealed with the viewer key proves only that
 * its sender holds a viewer token; in an open deployment (no access tickets confining roles) a
 * viewer could join as an agent and send other viewers an agent hello. Agent credentials
 * (protocol/identity.ts) prove agents apart when the viewer token carries the issuer key (`ik`);
 * a network with a shared token has no issuer. So every member signs its hellos with the
 * network's *member signing key* (Ed25519, derived from the network secret, protocol/keys.ts):
 * only members can make the proof, and viewers check it with the public half their token
 * carries (`mk`, protocol/token.ts).
 *
 * Member hello proof (`mproof {ts, sig}` in the hello, protocol/peer.ts): Ed25519 signature over
 * `causeway/member-hello/1|<room>|<from>|<to>|<ts>|<name>|<role>`, bound to both peer ids and a
 * time within the envelope skew window, so it cannot be replayed to another viewer, from another
 * id, or later.
 *
 * A viewer accepts an agent hello when it verifies every proof its token lets it check: the
 * member proof when it holds `mk`, the credential and hello proof when it holds `ik`. A viewer
 * token with neither (made before member proofs existed from a shared token) is safe only where
 * the service confines roles (its token carries an access ticket: a viewer ticket joins only as
 * a viewer, and the service forwards nothing between viewers); in an open deployment it refuses
 * agent hellos, and a new viewer token is needed.
 */
import { fromBase64Url, toBase64Url, utf8 } from './encoding.ts'
import { CausewayError } from './errors.ts'
import { SEAL_MAX_SKEW_MS } from './limits.ts'

export interface MemberHelloClaims { room: string, from: string, to: string, ts: number, name: string, role: string }

function message (c: MemberHelloClaims): Uint8Array<ArrayBuffer> {
  return utf8(`causeway/member-hello/1|${c.room}|${c.from}|${c.to}|${c.ts}|${c.name}|${c.role}`)
}

/** The viewer-side key from a token's `mk` (raw 32-byte Ed25519 public key). Throws CausewayError BAD_TOKEN. */
export async function importMemberKey (raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  if (raw.length !== 32) throw new CausewayError('BAD_TOKEN', 'member key must be a 32-byte Ed25519 public key')
  try {
    return await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify'])
  } catch {
    throw new CausewayError('BAD_TOKEN', 'member key is not an Ed25519 public key')
  }
}

export async function signMemberHello (key: CryptoKey, claims: MemberHelloClaims): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, key, message(claims))))
}

/** Throws CausewayError IDENTITY_REJECTED unless `sig` is a fresh member proof of these claims. */
export async function verifyMemberHello (key: CryptoKey, claims: MemberHelloClaims, sig: string, now = Date.now()): Promise<void> {
  if (!Number.isFinite(claims.ts) || Math.abs(now - claims.ts) > SEAL_MAX_SKEW_MS) throw new CausewayError('IDENTITY_REJECTED', 'member proof is stale')
  let bytes: Uint8Array<ArrayBuffer>
  try { bytes = fromBase64Url(sig) } catch { throw new CausewayError('IDENTITY_REJECTED', 'member proof is not base64url') }
  if (bytes.length !== 64 || !await crypto.subtle.verify({ name: 'Ed25519' }, key, bytes, message(claims))) {
    throw new CausewayError('IDENTITY_REJECTED', `hello of "${claims.name}" carries no valid member proof: only network members can sign one`)
  }
}
