/**
 * Network tokens: one string with everything a peer needs to join a network.
 *
 * Format: `cw1.` + base64url(JSON). Fields:
 * - `u`: signaling service URL (http(s)); the WebSocket URL is derived from it.
 * - `k`: the network secret, 32 bytes base64url (member tokens: agents).
 * - `vk`, `r`, `g`, `gs`: viewer tokens carry instead the viewer secret, the room id, the
 *   shares granted to the viewer and the grant signature (HMAC with the grant key, which only
 *   members can derive). A viewer can talk to agents but not impersonate one, and cannot widen
 *   its grants.
 * - `ik`: the network's issuer public key (P-256, raw). Present in agent tokens and in viewer
 *   tokens made from them: peers then accept an agent only with a credential the issuer signed
 *   and proofs made with the credential's key (protocol/identity.ts). A member token without it
 *   is a *shared* token (quick starts): names are claims, so `peers=` is refused with it.
 * - `mk`: viewer tokens: the network's member key (raw Ed25519 public key, 32 bytes; derived
 *   from the secret, protocol/keys.ts). Viewers accept an agent only with a member proof it
 *   verifies (protocol/member-proof.ts): a viewer cannot pass itself off as an agent to
 *   another viewer, with a shared token too.
 * - `ak`, `c`: an agent token's own private key (PKCS#8) and its credential.
 * - `t`: an access ticket, when the deployment requires one.
 * - `n`: an optional network name, for display.
 *
 * Version history (the `cw1.` prefix is unchanged: fields are added, never reinterpreted):
 * - 2026-12 (issue 22): `mk` in viewer tokens. Older viewer tokens keep working where that is
 *   safe: with `ik`, agents are proven by their credentials; without either key only when the
 *   token carries an access ticket (the service then confines roles), see member-proof.ts.
 * - 2026-11: per-agent identity (`ik`, `ak`, `c`); viewer tokens (`vk`, `r`, `g`, `gs`).
 */
import * as z from 'zod'
import { CausewayError } from './errors.ts'
import { fromBase64Url, fromUtf8, randomBytes, toBase64Url, utf8 } from './encoding.ts'
import { deriveGrantKey, deriveMemberSignKey, deriveRoomId, deriveViewerSecret, SECRET_BYTES } from './keys.ts'
import { MAX_CREDENTIAL_LENGTH } from './identity.ts'
import { MAX_TICKET_LENGTH, MAX_TOKEN_LENGTH } from './limits.ts'

const PREFIX = 'cw1.'
const B64 = z.string().regex(/^[A-Za-z0-9_-]+$/)
const ShareName = z.string().regex(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/)

const TokenJson = z.object({
  u: z.string().url().max(2048),
  k: B64.optional(),
  vk: B64.optional(),
  r: B64.optional(),
  g: z.array(z.union([ShareName, z.literal('*')])).max(256).optional(),
  gs: B64.optional(),
  ik: B64.max(128).optional(),
  mk: B64.max(64).optional(),
  ak: B64.max(512).optional(),
  c: z.string().max(MAX_CREDENTIAL_LENGTH).optional(),
  t: z.string().max(MAX_TICKET_LENGTH).optional(),
  n: z.string().max(128).optional(),
}).strict()

/** An agent's own identity, carried by its token. */
export interface AgentIdentity {
  /** The network's issuer public key (raw P-256 point). */
  issuer: Uint8Array<ArrayBuffer>
  /** The agent's private key (PKCS#8). */
  key: Uint8Array<ArrayBuffer>
  /** The credential binding the agent's name to its public key (`cwc1.…`). */
  credential: string
}

export interface MemberToken {
  kind: 'member'
  signaling: string
  secret: Uint8Array<ArrayBuffer>
  /** Absent in a shared token (names unproven). */
  identity?: AgentIdentity
  ticket?: string
  name?: string
}

export interface ViewerToken {
  kind: 'viewer'
  signaling: string
  room: string
  viewerSecret: Uint8Array<ArrayBuffer>
  /** Share names the viewer may reach; `*` means all. */
  grants: string[]
  grantSig: string
  /** The network's issuer public key: agents' names are verified when present. */
  issuer?: Uint8Array<ArrayBuffer>
  /** The network's member key (Ed25519 public): agents' hellos carry a member proof checked with it. */
  memberKey?: Uint8Array<ArrayBuffer>
  ticket?: string
  name?: string
}

export type NetworkToken = MemberToken | ViewerToken

export function newSecret (): Uint8Array<ArrayBuffer> {
  return randomBytes(SECRET_BYTES)
}

export function encodeToken (token: NetworkToken): string {
  const json: z.infer<typeof TokenJson> = token.kind === 'member'
    ? { u: token.signaling, k: toBase64Url(token.secret) }
    : { u: token.signaling, vk: toBase64Url(token.viewerSecret), r: token.room, g: token.grants, gs: token.grantSig }
  if (token.kind === 'member' && token.identity !== undefined) {
    json.ik = toBase64Url(token.identity.issuer)
    json.ak = toBase64Url(token.identity.key)
    json.c = token.identity.credential
  }
  if (token.kind === 'viewer' && token.issuer !== undefined) json.ik = toBase64Url(token.issuer)
  if (token.kind === 'viewer' && token.memberKey !== undefined) json.mk = toBase64Url(token.memberKey)
  if (token.ticket !== undefined) json.t = token.ticket
  if (token.name !== undefined) json.n = token.name
  return PREFIX + toBase64Url(utf8(JSON.stringify(json)))
}

/** Parses a token; throws CausewayError BAD_TOKEN with a reason. */
export function decodeToken (text: string): NetworkToken {
  const trimmed = text.trim()
  if (trimmed.length > MAX_TOKEN_LENGTH) throw new CausewayError('BAD_TOKEN', 'token too long')
  if (!trimmed.startsWith(PREFIX)) throw new CausewayError('BAD_TOKEN', `token must start with "${PREFIX}"`)
  let raw: unknown
  try { raw = JSON.parse(fromUtf8(fromBase64Url(trimmed.slice(PREFIX.length)))) } catch { throw new CausewayError('BAD_TOKEN', 'token is not valid base64url JSON') }
  const parsed = TokenJson.safeParse(raw)
  if (!parsed.success) throw new CausewayError('BAD_TOKEN', `token fields invalid: ${parsed.error.issues.map(i => i.path.join('.') || i.message).join(', ')}`)
  const j = parsed.data
  if (!/^https?:\/\//.test(j.u)) throw new CausewayError('BAD_TOKEN', 'signaling URL must be http(s)')
  const extra = { ...(j.t !== undefined ? { ticket: j.t } : {}), ...(j.n !== undefined ? { name: j.n } : {}) }
  if (j.k !== undefined) {
    const secret = fromBase64Url(j.k)
    if (secret.length !== SECRET_BYTES) throw new CausewayError('BAD_TOKEN', 'secret has the wrong length')
    if (j.ik === undefined && j.ak === undefined && j.c === undefined) return { kind: 'member', signaling: j.u, secret, ...extra }
    if (j.ik === undefined || j.ak === undefined || j.c === undefined) throw new CausewayError('BAD_TOKEN', 'agent token needs all of ik, ak and c')
    return { kind: 'member', signaling: j.u, secret, identity: { issuer: fromBase64Url(j.ik), key: fromBase64Url(j.ak), credential: j.c }, ...extra }
  }
  if (j.vk !== undefined && j.r !== undefined && j.g !== undefined && j.gs !== undefined) {
    const viewerSecret = fromBase64Url(j.vk)
    if (viewerSecret.length !== SECRET_BYTES) throw new CausewayError('BAD_TOKEN', 'viewer secret has the wrong length')
    const memberKey = j.mk !== undefined ? fromBase64Url(j.mk) : undefined
    if (memberKey !== undefined && memberKey.length !== 32) throw new CausewayError('BAD_TOKEN', 'member key has the wrong length')
    return { kind: 'viewer', signaling: j.u, room: j.r, viewerSecret, grants: j.g, grantSig: j.gs, ...(j.ik !== undefined ? { issuer: fromBase64Url(j.ik) } : {}), ...(memberKey !== undefined ? { memberKey } : {}), ...extra }
  }
  throw new CausewayError('BAD_TOKEN', 'token carries neither a secret nor a viewer grant')
}

function grantMessage (room: string, grants: string[]): Uint8Array<ArrayBuffer> {
  return utf8(`causeway/grant/1|${room}|${[...grants].sort().join(',')}`)
}

/** Signs viewer grants with the member-only grant key. */
export async function signGrants (grantKey: CryptoKey, room: string, grants: string[]): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.sign('HMAC', grantKey, grantMessage(room, grants))))
}

export async function verifyGrants (grantKey: CryptoKey, room: string, grants: string[], sig: string): Promise<boolean> {
  let mac: Uint8Array<ArrayBuffer>
  try { mac = fromBase64Url(sig) } catch { return false }
  return await crypto.subtle.verify('HMAC', grantKey, mac, grantMessage(room, grants))
}

export type ViewerSource = Omit<MemberToken, 'identity'> & { identity?: Pick<AgentIdentity, 'issuer'> }

/** Makes a viewer token from a member token (or the owner's records): it can watch and reach only `grants`. */
export async function viewerTokenFor (member: ViewerSource, grants: string[], ticket?: string): Promise<ViewerToken> {
  const room = await deriveRoomId(member.secret)
  const grantSig = await signGrants(await deriveGrantKey(member.secret), room, grants)
  return {
    kind: 'viewer',
    signaling: member.signaling,
    room,
    viewerSecret: await deriveViewerSecret(member.secret),
    grants,
    grantSig,
    ...(member.identity !== undefined ? { issuer: member.identity.issuer } : {}),
    memberKey: (await deriveMemberSignKey(member.secret)).publicKey,
    ...(ticket !== undefined ? { ticket } : member.ticket !== undefined ? { ticket: member.ticket } : {}),
    ...(member.name !== undefined ? { name: member.name } : {}),
  }
}

/** The WebSocket URL of a room on the service named in a token. */
export function roomUrl (signaling: string, room: string): string {
  const u = new URL(signaling)
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
  u.pathname = `${u.pathname.replace(/\/$/, '')}/v1/rooms/${room}`
  u.search = ''
  u.hash = ''
  return u.toString()
}
