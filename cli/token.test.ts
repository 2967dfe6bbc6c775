import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { deriveRoomId } from '../protocol/keys.ts'
import { subjectOf, ticketSubject, verifyTicket } from '../protocol/ticket.ts'
import { decodeToken } from '../protocol/token.ts'
import { tokenCommand } from './token.ts'

describe('causeway token', () => {
  it('makes a network, issues agent tokens, revokes, and makes viewer tokens from a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cw-token-'))
    const owner = join(dir, 'owner.json')
    expect(await tokenCommand(['--signaling', 'http://127.0.0.1:8787', '--owner', owner])).toBeUndefined()
    expect(statSync(owner).mode & 0o777).toBe(0o600)
    await expect(tokenCommand(['--signaling', 'http://127.0.0.1:8787', '--owner', owner])).rejects.toThrow(/exists/)
    const a = decodeToken((await tokenCommand(['--name', 'site-a', '--owner', owner]))!)
    expect(a.kind === 'member' && a.identity !== undefined).toBe(true)
    const list = await tokenCommand(['--revoke', 'site-a', '--owner', owner])
    expect(list).toMatch(/^cwr1\./)
    await expect(tokenCommand(['--revoke', 'nobody', '--owner', owner])).rejects.toThrow(/no unexpired/)
    const file = join(dir, 'a.token')
    writeFileSync(file, (await tokenCommand(['--name', 'site-a', '--owner', owner]))!)
    const v = decodeToken((await tokenCommand(['--viewer', '--from-file', file, '--grant', 'web']))!)
    expect(v.kind === 'viewer' && v.issuer !== undefined && v.grants).toEqual(['web'])
    expect(JSON.parse(readFileSync(owner, 'utf8')).issued).toHaveLength(2)
  })

  it('with an access secret, an agent token\'s ticket names its agent (the same subject for every token of a name, none for shared and viewer tickets)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cw-token-'))
    const owner = join(dir, 'owner.json')
    const secret = 'token-test-access-secret-0123456789'
    await tokenCommand(['--signaling', 'http://127.0.0.1:8787', '--owner', owner])
    const payloadOf = async (text: string | undefined): Promise<{ room: string, subject?: string, kind: string, secret?: Uint8Array<ArrayBuffer> }> => {
      const t = decodeToken(text ?? '')
      if (t.ticket === undefined) throw new Error('no ticket')
      const room = t.kind === 'viewer' ? t.room : await deriveRoomId(t.secret)
      const p = await verifyTicket(secret, t.ticket, room)
      const subject = subjectOf(p)
      return { room, kind: t.kind, ...(subject !== undefined ? { subject } : {}), ...(t.kind === 'member' ? { secret: t.secret } : {}) }
    }
    const a1 = await payloadOf(await tokenCommand(['--name', 'site-a', '--owner', owner, '--access-secret', secret]))
    const a2 = await payloadOf(await tokenCommand(['--name', 'site-a', '--owner', owner, '--access-secret', secret]))
    const b = await payloadOf(await tokenCommand(['--name', 'site-b', '--owner', owner, '--access-secret', secret]))
    if (a1.secret === undefined) throw new Error('no secret')
    expect(a1.subject).toBe(await ticketSubject(a1.secret, 'site-a'))
    expect(a2.subject).toBe(a1.subject)
    expect(b.subject).toMatch(/^[A-Za-z0-9_-]{22}$/)
    expect(b.subject).not.toBe(a1.subject)
    // The service learns an opaque subject, not the name.
    expect(a1.subject).not.toContain('site')
    const file = join(dir, 'a.token')
    writeFileSync(file, (await tokenCommand(['--name', 'site-a', '--owner', owner, '--access-secret', secret]))!)
    const viewer = await payloadOf(await tokenCommand(['--viewer', '--from-file', file, '--access-secret', secret]))
    expect(viewer.subject).toBeUndefined()
    const shared = await payloadOf(await tokenCommand(['--shared', '--signaling', 'http://127.0.0.1:8787', '--access-secret', secret]))
    expect(shared.subject).toBeUndefined()
  })
})
