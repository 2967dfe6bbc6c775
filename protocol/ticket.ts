/**
 * Access tickets: how a deployment that sets an access secret admits joins statelessly.
 *
 * A ticket is `base64url(payload JSON) "." base64url(HMAC-SHA-256(accessSecret, first part))`.
 * The payload names the room it is good for, the role (`agent` or `viewer`), its expiry in
 * Unix seconds and, optionally, a subject: who the seats taken with it are charged to. The
 * service checks signature, expiry and room on every join; it stores nothing.
 *
 * The subject is opaque to the service: `causeway token --name NAME` puts in the HMAC of the
 * agent name under a key derived from the network secret (`ticketSubject`, keys.ts), so every
 * instance of one agent carries the same subject, different agents different ones, and the
 * service learns no name. With it the service caps the seats of one agent in a room
 * (`maxSeatsPerSubject`) instead of those of a client address, and gives it a seat in a full
 * room (signaling/seats.ts). Shared-token and viewer tickets carry none (a shared token is
 * every agent at once; viewers are capped as viewers).
 *
 * ## Version history
 * - 2 (2026-12): optional `sub` (22 base64url characters). A ticket without a subject is still
 *   minted as version 1, so services of either version take it; a ticket with one needs a
 *   service of this version (an older one refuses it as malformed: upgrade the service first).
 * - 1 (2026-11): `room`, `role`, `iat`, `exp`.
 */
import * as z from 'zod'
import { CausewayError } from './errors.ts'
import { equalBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from './encoding.ts'
import { deriveSubjectKey } from './keys.ts'
import { MAX_TICKET_LENGTH } from './limits.ts'
import { RoomId } from './messages.ts'

/** A ticket subject: 16 bytes, base64url. */
export const TicketSubject = z.string().regex(/^[A-Za-z0-9_-]{22}$/)

const Common = {
  room: RoomId,
  role: z.enum(['agent', 'viewer']),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
}
const TicketV1 = z.object({ v: z.literal(1), ...Common }).strict()
const TicketV2 = z.object({ v: z.literal(2), ...Common, sub: TicketSubject.optional() }).strict()
export const TicketPayload = z.discriminatedUnion('v', [TicketV1, TicketV2])
export type TicketPayload = z.infer<typeof TicketPayload>

async function hmacKey (accessSecret: string): Promise<CryptoKey> {
  return await crypto.subtle.importKey('raw', utf8(accessSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
}

/** The subject of agent `name`'s tickets in the network of `secret` (opaque to the service). */
export async function ticketSubject (secret: Uint8Array<ArrayBuffer>, name: string): Promise<string> {
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await deriveSubjectKey(secret), utf8(name)))
  return toBase64Url(mac.subarray(0, 16))
}

export async function signTicket (accessSecret: string, init: { room: string, role?: 'agent' | 'viewer', ttlSeconds: number, subject?: string, now?: number }): Promise<string> {
  const iat = Math.floor((init.now ?? Date.now()) / 1000)
  const common = { room: init.room, role: init.role ?? 'agent', iat, exp: iat + Math.max(1, Math.floor(init.ttlSeconds)) }
  const payload: TicketPayload = TicketPayload.parse(init.subject === undefined ? { v: 1, ...common } : { v: 2, ...common, sub: init.subject })
  const head = toBase64Url(utf8(JSON.stringify(payload)))
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await hmacKey(accessSecret), utf8(head)))
  return `${head}.${toBase64Url(mac)}`
}

/**
 * Verifies a ticket for `room`. Throws CausewayError UNAUTHORIZED (malformed or bad
 * signature), TICKET_EXPIRED or FORBIDDEN (another room).
 */
export async function verifyTicket (accessSecret: string, ticket: string, room: string, now = Date.now()): Promise<TicketPayload> {
  if (ticket.length > MAX_TICKET_LENGTH) throw new CausewayError('UNAUTHORIZED', 'ticket too long')
  const parts = ticket.split('.')
  const [head, sig] = parts
  if (parts.length !== 2 || head === undefined || sig === undefined) throw new CausewayError('UNAUTHORIZED', 'malformed ticket')
  let mac: Uint8Array
  let payload: TicketPayload
  try {
    mac = fromBase64Url(sig)
    const parsed = TicketPayload.safeParse(JSON.parse(fromUtf8(fromBase64Url(head))))
    if (!parsed.success) throw new Error('schema')
    payload = parsed.data
  } catch {
    throw new CausewayError('UNAUTHORIZED', 'malformed ticket')
  }
  const expected = new Uint8Array(await crypto.subtle.sign('HMAC', await hmacKey(accessSecret), utf8(head)))
  if (!equalBytes(mac, expected)) throw new CausewayError('UNAUTHORIZED', 'ticket signature does not verify')
  if (payload.exp * 1000 <= now) throw new CausewayError('TICKET_EXPIRED', 'ticket expired')
  if (payload.room !== room) throw new CausewayError('FORBIDDEN', 'ticket is for another room')
  return payload
}

/** The subject a verified ticket names, if any. */
export function subjectOf (payload: TicketPayload): string | undefined {
  return payload.v === 2 ? payload.sub : undefined
}
