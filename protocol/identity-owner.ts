/**
 * The network owner's records (what `causeway token` keeps in the owner file): the signaling
 * URL, the network secret, the issuer key pair, the credentials issued and the serials revoked.
 * Whoever holds this file can admit agents under any name: keep it off the agents' hosts.
 *
 * Owner file: JSON `{v: 1, signaling, name?, secret, issuer: {pub, key}, seq, issued: [{name,
 * serial, exp}], revoked: [{name, serial, exp}]}` (byte fields base64url).
 */
import * as z from 'zod'
import { CausewayError } from './errors.ts'
import { fromBase64Url, toBase64Url } from './encoding.ts'
import { generateKeyPair, importSigningKey, issueCredential, parseCredential, signRevocationList } from './identity.ts'
import { deriveRoomId, SECRET_BYTES } from './keys.ts'
import { newSecret, type MemberToken } from './token.ts'

const B64 = z.string().regex(/^[A-Za-z0-9_-]+$/)
const Entry = z.object({ name: z.string().max(64), serial: z.string().max(32), exp: z.number().int() }).strict()
const OwnerJson = z.object({
  v: z.literal(1),
  signaling: z.string().url(),
  name: z.string().max(128).optional(),
  secret: B64,
  issuer: z.object({ pub: B64, key: B64 }).strict(),
  seq: z.number().int().nonnegative(),
  issued: z.array(Entry).max(100_000),
  revoked: z.array(Entry).max(100_000),
}).strict()

export type NetworkOwner = z.infer<typeof OwnerJson>

/** A new network: fresh secret and issuer key pair. */
export async function newNetwork (signaling: string, name?: string): Promise<NetworkOwner> {
  const issuer = await generateKeyPair()
  return {
    v: 1,
    signaling: signaling.replace(/\/$/, ''),
    ...(name !== undefined ? { name } : {}),
    secret: toBase64Url(newSecret()),
    issuer: { pub: toBase64Url(issuer.publicKey), key: toBase64Url(issuer.privateKey) },
    seq: 0,
    issued: [],
    revoked: [],
  }
}

export function decodeOwner (text: string): NetworkOwner {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { throw new CausewayError('BAD_TOKEN', 'owner file is not JSON') }
  const r = OwnerJson.safeParse(raw)
  if (!r.success) throw new CausewayError('BAD_TOKEN', `owner file invalid: ${r.error.issues.map(i => i.path.join('.')).join(', ')}`)
  if (fromBase64Url(r.data.secret).length !== SECRET_BYTES) throw new CausewayError('BAD_TOKEN', 'owner file secret has the wrong length')
  return r.data
}

export function encodeOwner (owner: NetworkOwner): string {
  return JSON.stringify(owner, null, 2) + '\n'
}

/** The shared token of the network (no per-agent identity: quick starts only). */
export function sharedToken (owner: NetworkOwner): MemberToken {
  return { kind: 'member', signaling: owner.signaling, secret: fromBase64Url(owner.secret), ...(owner.name !== undefined ? { name: owner.name } : {}) }
}

/** Issues an agent token for `name` (records it in `owner`, which the caller saves). */
export async function issueAgentToken (owner: NetworkOwner, name: string, opts: { ttlSeconds: number, ticket?: string, now?: number }): Promise<MemberToken> {
  const secret = fromBase64Url(owner.secret)
  const agent = await generateKeyPair()
  const credential = await issueCredential(await importSigningKey(fromBase64Url(owner.issuer.key)), {
    network: await deriveRoomId(secret), name, publicKey: agent.publicKey, ttlSeconds: opts.ttlSeconds, ...(opts.now !== undefined ? { now: opts.now } : {}),
  })
  const c = parseCredential(credential)
  owner.issued.push({ name, serial: c.serial, exp: c.expiresAt })
  return {
    ...sharedToken(owner),
    identity: { issuer: fromBase64Url(owner.issuer.pub), key: agent.privateKey, credential },
    ...(opts.ticket !== undefined ? { ticket: opts.ticket } : {}),
  }
}

/**
 * Revokes every unexpired credential issued to `nameOrSerial` (a name or a serial); returns
 * the serials newly revoked. Throws when nothing matches.
 */
export function revoke (owner: NetworkOwner, nameOrSerial: string, now = Date.now()): string[] {
  const nowS = Math.floor(now / 1000)
  const hits = owner.issued.filter(e => (e.name === nameOrSerial || e.serial === nameOrSerial) && e.exp > nowS && !owner.revoked.some(r => r.serial === e.serial))
  if (hits.length === 0) throw new CausewayError('BAD_TOKEN', `no unexpired, unrevoked credential named or numbered "${nameOrSerial}"`)
  owner.revoked.push(...hits)
  return hits.map(h => h.serial)
}

/** The signed revocation list (expired credentials drop out); bumps the sequence number. */
export async function revocationList (owner: NetworkOwner, now = Date.now()): Promise<string> {
  const nowS = Math.floor(now / 1000)
  owner.revoked = owner.revoked.filter(r => r.exp > nowS)
  owner.seq++
  return await signRevocationList(await importSigningKey(fromBase64Url(owner.issuer.key)), {
    network: await deriveRoomId(fromBase64Url(owner.secret)), seq: owner.seq, issuedAt: nowS, serials: owner.revoked.map(r => r.serial),
  })
}
