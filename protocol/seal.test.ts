import { describe, expect, it } from 'vitest'
import { CausewayError } from './errors.ts'
import { fromBase64Url, toBase64Url } from './encoding.ts'
import { deriveMemberKeys } from './keys.ts'
import { Opener, seal } from './seal.ts'
import { newSecret } from './token.ts'

async function setup () {
  const keys = await deriveMemberKeys(newSecret())
  const opener = new Opener({ room: keys.room, self: 'bobbobbob', keys: [{ key: keys.seal, role: 'agent' as const }, { key: keys.viewerSeal, role: 'viewer' as const }] })
  return { keys, opener }
}

async function rejected (p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CausewayError)
  expect((err as CausewayError).code).toBe('SEAL_REJECTED')
  return (err as CausewayError).message
}

describe('sealed envelopes', () => {
  it('round-trips a body and reports the role of the key', async () => {
    const { keys, opener } = await setup()
    const sealed = await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: { hello: 1 } })
    expect(await opener.open('alicealice', sealed)).toEqual({ body: { hello: 1 }, role: 'agent' })
    const v = await seal(keys.viewerSeal, { room: keys.room, from: 'viewerview', to: 'bobbobbob', body: 'x' })
    expect((await opener.open('viewerview', v)).role).toBe('viewer')
  })

  it('refuses a tampered envelope', async () => {
    const { keys, opener } = await setup()
    const bytes = fromBase64Url(await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 'secret' }))
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 1
    await rejected(opener.open('alicealice', toBase64Url(bytes)))
  })

  it('refuses an envelope for another recipient, sender or room', async () => {
    const { keys, opener } = await setup()
    await rejected(opener.open('alicealice', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'carolcarol', body: 1 })))
    await rejected(opener.open('malloryxx', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 1 })))
    await rejected(opener.open('alicealice', await seal(keys.seal, { room: 'AAAAAAAAAAAAAAAAAAAAAA', from: 'alicealice', to: 'bobbobbob', body: 1 })))
  })

  it('refuses a stale envelope and one from the future', async () => {
    const { keys, opener } = await setup()
    const now = Date.now()
    expect(await rejected(opener.open('alicealice', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 1, now: now - 10 * 60_000 })))).toMatch(/stale/)
    expect(await rejected(opener.open('alicealice', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 1, now: now + 10 * 60_000 })))).toMatch(/stale/)
  })

  it('refuses a replayed envelope', async () => {
    const { keys, opener } = await setup()
    const sealed = await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 1 })
    await opener.open('alicealice', sealed)
    expect(await rejected(opener.open('alicealice', sealed))).toMatch(/replayed/)
  })

  it('refuses an envelope sealed with another network key and garbage', async () => {
    const { keys, opener } = await setup()
    const other = await deriveMemberKeys(newSecret())
    await rejected(opener.open('alicealice', await seal(other.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 1 })))
    await rejected(opener.open('alicealice', 'not+base64'))
    await rejected(opener.open('alicealice', 'AAAA'))
  })

  it('keeps the replay cache bounded: refuses new envelopes rather than forget an unexpired nonce', async () => {
    const keys = await deriveMemberKeys(newSecret())
    const opener = new Opener({ room: keys.room, self: 'bobbobbob', keys: [{ key: keys.seal, role: 'agent' }], replayCache: 10 })
    const now = Date.now()
    for (let i = 0; i < 10; i++) await opener.open('alicealice', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: i, now }), now)
    const full = await opener.open('alicealice', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 10, now }), now).then(() => undefined, (e: unknown) => e)
    expect(full).toBeInstanceOf(CausewayError)
    expect((full as CausewayError).code).toBe('REPLAY_CACHE_FULL')
    expect(opener.remembered).toBe(10)
    // once those envelopes expired (ts + skew), their nonces go and new envelopes are accepted
    const later = now + 120_001
    expect((await opener.open('alicealice', await seal(keys.seal, { room: keys.room, from: 'alicealice', to: 'bobbobbob', body: 11, now: later }), later)).body).toBe(11)
    expect(opener.remembered).toBe(1)
  })
})
