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

  it('bounds each sender: a flood evicts only the flooder\'s own nonces, and an evicted one is never accepted again', async () => {
    const keys = await deriveMemberKeys(newSecret())
    const opener = new Opener({ room: keys.room, self: 'bobbobbob', keys: [{ key: keys.seal, role: 'agent' }], replayCache: 1000, replayPerSender: 10 })
    const env = async (from: string, body: number, now: number): Promise<string> => await seal(keys.seal, { room: keys.room, from, to: 'bobbobbob', body, now })
    const t0 = Date.now()
    const carol = await env('carolcarol', -1, t0)
    await opener.open('carolcarol', carol, t0)
    const early = await env('malloryxx', 0, t0)
    await opener.open('malloryxx', early, t0)
    // mallory floods 100 envelopes (10x its bound), each a millisecond newer: all accepted
    for (let i = 1; i <= 100; i++) expect((await opener.open('malloryxx', await env('malloryxx', i, t0 + i), t0 + i)).body).toBe(i)
    expect(opener.rememberedFrom('malloryxx')).toBe(10)
    expect(opener.rememberedFrom('carolcarol')).toBe(1)
    // carol's window is intact: her replay is still a replay; mallory's evicted envelope is refused as stale
    expect(await rejected(opener.open('carolcarol', carol, t0 + 200))).toMatch(/replayed/)
    expect(await rejected(opener.open('malloryxx', early, t0 + 200))).toMatch(/older than what is remembered/)
    // an envelope older than mallory's window (reordered, or a forgery with an old ts) is refused too
    expect(await rejected(opener.open('malloryxx', await env('malloryxx', 999, t0 + 50), t0 + 200))).toMatch(/older than what is remembered/)
    // carol's new envelopes open as ever
    expect((await opener.open('carolcarol', await env('carolcarol', 7, t0 + 200), t0 + 200)).body).toBe(7)
  })

  it('bounds the total: many senders flooding evict the largest holder, never a quiet sender', async () => {
    const keys = await deriveMemberKeys(newSecret())
    const opener = new Opener({ room: keys.room, self: 'bobbobbob', keys: [{ key: keys.seal, role: 'agent' }], replayCache: 64, replayPerSender: 16 })
    const env = async (from: string, body: number, now: number): Promise<string> => await seal(keys.seal, { room: keys.room, from, to: 'bobbobbob', body, now })
    const t0 = Date.now()
    const quiet = [await env('carolcarol', 1, t0), await env('carolcarol', 2, t0)]
    for (const q of quiet) await opener.open('carolcarol', q, t0)
    for (let s = 0; s < 10; s++) {
      for (let i = 0; i < 16; i++) await opener.open(`sybil${s}xx`, await env(`sybil${s}xx`, i, t0 + i), t0 + i)
    }
    expect(opener.remembered).toBeLessThanOrEqual(64)
    expect(opener.rememberedFrom('carolcarol')).toBe(2)
    for (const q of quiet) expect(await rejected(opener.open('carolcarol', q, t0 + 100))).toMatch(/replayed/)
    // once everything expired (ts + skew), nonces go and the same old envelope is plainly stale
    const later = t0 + 120_100
    expect(await rejected(opener.open('carolcarol', quiet[0]!, later))).toMatch(/stale/)
    expect((await opener.open('carolcarol', await env('carolcarol', 3, later), later)).body).toBe(3)
    expect(opener.remembered).toBeLessThanOrEqual(64)
  })
})
