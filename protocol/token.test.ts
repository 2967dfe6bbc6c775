import { describe, expect, it } from 'vitest'
import { CausewayError } from './errors.ts'
import { deriveGrantKey, deriveMemberKeys, deriveRoomId, deriveViewerSealKey } from './keys.ts'
import { signTicket, subjectOf, ticketSubject, verifyTicket } from './ticket.ts'
import { equalBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from './encoding.ts'
import { decodeToken, encodeToken, newSecret, roomUrl, verifyGrants, viewerTokenFor, type MemberToken } from './token.ts'
import { mintTurnCredential } from './turn.ts'

const code = async (p: Promise<unknown>): Promise<string | undefined> => await p.then(() => undefined, (e: unknown) => e instanceof CausewayError ? e.code : 'not-a-causeway-error')

describe('network token', () => {
  it('round-trips a member token with ticket and name', () => {
    const token: MemberToken = { kind: 'member', signaling: 'https://sig.example:8443', secret: newSecret(), ticket: 'a.b', name: 'prod' }
    const text = encodeToken(token)
    expect(text.startsWith('cw1.')).toBe(true)
    expect(decodeToken(text)).toEqual(token)
  })

  it('derives the same room for the same secret and different rooms for different secrets', async () => {
    const s = newSecret()
    expect(await deriveRoomId(s)).toBe(await deriveRoomId(new Uint8Array(s)))
    expect(await deriveRoomId(s)).not.toBe(await deriveRoomId(newSecret()))
    expect(await deriveRoomId(s)).toMatch(/^[A-Za-z0-9_-]{22}$/)
  })

  it('rejects malformed tokens with BAD_TOKEN', () => {
    for (const bad of ['', 'xyz', 'cw1.', 'cw1.!!!', `cw1.${btoa('{"u":"ftp://x","k":"AA"}')}`, 'cw1.e30', 'x'.repeat(10_000)]) {
      expect(() => decodeToken(bad)).toThrowError(CausewayError)
    }
  })

  it('makes viewer tokens whose grants members can verify and viewers cannot widen', async () => {
    const member: MemberToken = { kind: 'member', signaling: 'http://127.0.0.1:8787', secret: newSecret() }
    const viewer = await viewerTokenFor(member, ['web'])
    const parsed = decodeToken(encodeToken(viewer))
    expect(parsed.kind).toBe('viewer')
    if (parsed.kind !== 'viewer') return
    const keys = await deriveMemberKeys(member.secret)
    expect(parsed.room).toBe(keys.room)
    const grantKey = await deriveGrantKey(member.secret)
    expect(await verifyGrants(grantKey, keys.room, parsed.grants, parsed.grantSig)).toBe(true)
    expect(await verifyGrants(grantKey, keys.room, ['web', 'db'], parsed.grantSig)).toBe(false)
    expect(await verifyGrants(grantKey, keys.room, ['*'], parsed.grantSig)).toBe(false)
    // the viewer's seal key is the one members derive for viewers
    const a = await crypto.subtle.exportKey('jwk', await deriveViewerSealKey(parsed.viewerSecret)).catch(() => 'non-extractable')
    expect(a).toBe('non-extractable')
  })

  it('builds the room WebSocket URL', () => {
    expect(roomUrl('https://x.example/base/', 'r'.repeat(22))).toBe(`wss://x.example/base/v1/rooms/${'r'.repeat(22)}`)
    expect(roomUrl('http://127.0.0.1:8787', 'abc')).toBe('ws://127.0.0.1:8787/v1/rooms/abc')
  })
})

describe('access tickets', () => {
  const secret = 'an access secret of some length'
  const room = 'AAAAAAAAAAAAAAAAAAAAAA'

  it('verifies a fresh ticket for its room', async () => {
    const t = await signTicket(secret, { room, ttlSeconds: 60 })
    expect((await verifyTicket(secret, t, room)).role).toBe('agent')
  })

  it('refuses wrong secret, wrong room, expired and malformed tickets', async () => {
    const t = await signTicket(secret, { room, ttlSeconds: 60 })
    expect(await code(verifyTicket('another secret entirely', t, room))).toBe('UNAUTHORIZED')
    expect(await code(verifyTicket(secret, t, 'BBBBBBBBBBBBBBBBBBBBBB'))).toBe('FORBIDDEN')
    const old = await signTicket(secret, { room, ttlSeconds: 60, now: Date.now() - 3_600_000 })
    expect(await code(verifyTicket(secret, old, room))).toBe('TICKET_EXPIRED')
    for (const bad of ['', 'a', 'a.b.c', '!.!', `${t}x`, t.replace(/^./, 'x'), 'x'.repeat(5000)]) {
      expect(await code(verifyTicket(secret, bad, room))).toBe('UNAUTHORIZED')
    }
  })
})

describe('access tickets with a subject (version 2)', () => {
  const secret = 'an access secret of some length'
  const room = 'AAAAAAAAAAAAAAAAAAAAAA'

  it('carries the subject; a ticket without one is still version 1, and version-1 tickets still verify', async () => {
    const sub = await ticketSubject(newSecret(), 'east')
    const t = await signTicket(secret, { room, ttlSeconds: 60, subject: sub })
    const p = await verifyTicket(secret, t, room)
    expect(p).toMatchObject({ v: 2, sub, role: 'agent' })
    expect(subjectOf(p)).toBe(sub)
    const plain = await signTicket(secret, { room, ttlSeconds: 60 })
    expect(JSON.parse(fromUtf8(fromBase64Url(plain.split('.')[0] ?? '')))).toMatchObject({ v: 1 })
    expect(subjectOf(await verifyTicket(secret, plain, room))).toBeUndefined()
  })

  it('a subject is bound by the signature and its form is strict: changed, malformed or on version 1, the ticket is UNAUTHORIZED', async () => {
    const s = newSecret()
    const [east, west] = [await ticketSubject(s, 'east'), await ticketSubject(s, 'west')]
    expect(east).not.toBe(west)
    expect(await ticketSubject(s, 'east')).toBe(east)
    expect(await ticketSubject(newSecret(), 'east')).not.toBe(east)
    const t = await signTicket(secret, { room, ttlSeconds: 60, subject: east })
    const [head = '', mac = ''] = t.split('.')
    const payload = JSON.parse(fromUtf8(fromBase64Url(head))) as Record<string, unknown>
    const forge = (p: Record<string, unknown>): string => `${toBase64Url(utf8(JSON.stringify(p)))}.${mac}`
    expect(await code(verifyTicket(secret, forge({ ...payload, sub: west }), room))).toBe('UNAUTHORIZED')
    // Well-formed but unsigned payloads of every shape a forger might try are refused before the MAC matters too.
    const sign = async (p: Record<string, unknown>): Promise<string> => {
      const h = toBase64Url(utf8(JSON.stringify(p)))
      const k = await crypto.subtle.importKey('raw', utf8(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
      return `${h}.${toBase64Url(new Uint8Array(await crypto.subtle.sign('HMAC', k, utf8(h))))}`
    }
    expect(equalBytes(fromBase64Url(mac), fromBase64Url((await sign(payload)).split('.')[1] ?? ''))).toBe(true)
    for (const bad of [{ ...payload, v: 1 }, { ...payload, sub: 'short' }, { ...payload, sub: 'x'.repeat(23) }, { ...payload, sub: 42 }, { ...payload, extra: 1 }, { ...payload, v: 3 }]) {
      expect(await code(verifyTicket(secret, await sign(bad), room))).toBe('UNAUTHORIZED')
    }
  })
})

describe('TURN REST credentials', () => {
  it('matches coturn use-auth-secret (HMAC-SHA1 of "expiry:id")', async () => {
    const c = await mintTurnCredential('turnsecret', { ttlSeconds: 3600, id: 'peer', now: 1_700_000_000_000 })
    expect(c.username).toBe('1700003600:peer')
    // computed independently with: printf '1700003600:peer' | openssl dgst -sha1 -hmac turnsecret -binary | base64
    const { createHmac } = await import('node:crypto')
    expect(c.credential).toBe(createHmac('sha1', 'turnsecret').update('1700003600:peer').digest('base64'))
  })
})
