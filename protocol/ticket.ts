/**
 * Access tickets: how a deployment that sets an access secret admits joins statelessly.
 *
 * A ticket is `base64url(payload JSON) "." base64url(HMAC-SHA-256(accessSecret, first part))`.
 * The payload names the room it is good for, the role (`agent` or `viewer`), and its expiry in
 * Unix seconds. The service checks signature, expiry and room on every join; it stores nothing.
 */
import * as z from 'zod'
import { CausewayError } from './errors.ts'
import { equalBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from './encoding.ts'
import { MAX_TICKET_LENGTH } from './limits.ts'
import { RoomId } from './messages.ts'

export const TicketPayload = z.object({
  v: z.literal(1),
  room: RoomId,
  role: z.enum(['agent', 'viewer']),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
}).strict()
export type TicketPayload = z.infer<typeof TicketPayload>

async function hmacKey (accessSecret: string): Promise<CryptoKey> {
  return await crypto.subtle.importKey('raw', utf8(accessSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
}

export async function signTicket (accessSecret: string, init: { room: string, role?: 'agent' | 'viewer', ttlSeconds: number, now?: number }): Promise<string> {
  const iat = Math.floor((init.now ?? Date.now()) / 1000)
  const payload: TicketPayload = TicketPayload.parse({ v: 1, room: init.room, role: init.role ?? 'agent', iat, exp: iat + Math.max(1, Math.floor(init.ttlSeconds)) })
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
