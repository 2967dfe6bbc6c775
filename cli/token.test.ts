import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
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
})
