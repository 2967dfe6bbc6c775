import { describe, expect, it } from 'vitest'
import { CausewayError } from './errors.ts'
import { deriveMemberSignKey } from './keys.ts'
import { importMemberKey, signMemberHello, verifyMemberHello } from './member-proof.ts'
import { decodeToken, encodeToken, newSecret, viewerTokenFor } from './token.ts'

async function code (p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CausewayError)
  return `${(err as CausewayError).code}: ${(err as CausewayError).message}`
}

describe('member proofs', () => {
  it('only the network secret makes a proof the viewer token\'s member key accepts, for exactly these claims', async () => {
    const secret = newSecret()
    const member = await deriveMemberSignKey(secret)
    expect((await deriveMemberSignKey(secret)).publicKey).toEqual(member.publicKey) // deterministic
    const viewer = decodeToken(encodeToken(await viewerTokenFor({ kind: 'member', signaling: 'http://127.0.0.1:1', secret }, ['*'])))
    if (viewer.kind !== 'viewer' || viewer.memberKey === undefined) throw new Error('viewer token without member key')
    expect(viewer.memberKey).toEqual(member.publicKey)
    const key = await importMemberKey(viewer.memberKey)
    const claims = { room: 'roomroomroomroom', from: 'agentagent', to: 'viewerview', ts: Date.now(), name: 'site-a', role: 'agent' }
    const sig = await signMemberHello(member.privateKey, claims)
    await verifyMemberHello(key, claims, sig)
    // another recipient, sender, name or role; another network's key; stale; garbage
    for (const other of [{ to: 'victimvict' }, { from: 'attackerxx' }, { name: 'site-b' }, { role: 'viewer' }]) {
      expect(await code(verifyMemberHello(key, { ...claims, ...other }, sig))).toMatch(/^IDENTITY_REJECTED: .*no valid member proof/)
    }
    const stranger = await deriveMemberSignKey(newSecret())
    expect(await code(verifyMemberHello(key, claims, await signMemberHello(stranger.privateKey, claims)))).toMatch(/^IDENTITY_REJECTED/)
    expect(await code(verifyMemberHello(key, claims, sig, claims.ts + 121_000))).toMatch(/stale/)
    expect(await code(verifyMemberHello(key, claims, 'A'.repeat(86)))).toMatch(/^IDENTITY_REJECTED/)
    expect(await code(importMemberKey(new Uint8Array(31)))).toMatch(/^BAD_TOKEN/)
  })
})
