/**
 * Finding 11 of issue 10: after 50,000 valid envelopes the replay cache used to evict a nonce
 * still inside the ±120 s window, so the same envelope was accepted again. The attack: a hostile
 * signaling operator (or member) records one envelope, gets 50,000 more delivered within the
 * window, then replays the recorded one. Now the cache never forgets an unexpired nonce: the
 * replay is refused, and envelopes past the limit are refused with REPLAY_CACHE_FULL until the
 * remembered ones expire. Runs with the default limits (SEAL_REPLAY_CACHE, SEAL_MAX_SKEW_MS).
 */
import { describe, expect, it } from 'vitest'
import { CausewayError } from '../../protocol/errors.ts'
import { deriveMemberKeys } from '../../protocol/keys.ts'
import { SEAL_MAX_SKEW_MS, SEAL_REPLAY_CACHE } from '../../protocol/limits.ts'
import { Opener, seal } from '../../protocol/seal.ts'
import { newSecret } from '../../protocol/token.ts'

async function code (p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CausewayError)
  return (err as CausewayError).code
}

describe('replay cache (issue 10, finding 11)', () => {
  it('refuses an early envelope replayed after the cache was filled with 50,000 valid ones', async () => {
    const keys = await deriveMemberKeys(newSecret())
    const opener = new Opener({ room: keys.room, self: 'victimvictim', keys: [{ key: keys.seal, role: 'agent' }] })
    const t0 = Date.now()
    const envelope = async (i: number, now: number): Promise<string> => await seal(keys.seal, { room: keys.room, from: 'attacker', to: 'victimvictim', body: { i }, now })
    const early = await envelope(-1, t0)
    expect((await opener.open('attacker', early, t0)).body).toEqual({ i: -1 })
    // 50,000 more valid envelopes, all inside the window (spread over 60 s of receiver clock)
    // (in parallel batches: the opener handles concurrent opens)
    const outcomes: string[] = []
    for (let i = 0; i < SEAL_REPLAY_CACHE; i += 500) {
      const batch = Array.from({ length: Math.min(500, SEAL_REPLAY_CACHE - i) }, (_, k) => i + k)
      outcomes.push(...await Promise.all(batch.map(async j => {
        const now = t0 + Math.floor(j * 60_000 / SEAL_REPLAY_CACHE)
        return await opener.open('attacker', await envelope(j, now), now).then(() => 'ok', (e: unknown) => e instanceof CausewayError ? e.code : String(e))
      })))
    }
    const replayAt = t0 + 60_000
    expect(Math.abs(replayAt - t0)).toBeLessThanOrEqual(SEAL_MAX_SKEW_MS) // still inside the window
    // the replay: before the fix this returned the body a second time
    const replayed = await opener.open('attacker', early, replayAt).then(() => 'accepted', (e: unknown) => e instanceof CausewayError ? `${e.code}: ${e.message}` : String(e))
    expect(replayed).toBe('SEAL_REJECTED: envelope replayed')
    // the cache holds SEAL_REPLAY_CACHE nonces, the early one included: the last one was refused
    expect(outcomes.filter(o => o !== 'ok')).toEqual(['REPLAY_CACHE_FULL'])
    expect(opener.remembered).toBe(SEAL_REPLAY_CACHE)
    // and a fresh envelope is refused with a code, not accepted by forgetting a nonce
    expect(await code(opener.open('attacker', await envelope(1e6, replayAt), replayAt))).toBe('REPLAY_CACHE_FULL')
    // once the early envelopes expire, the same early envelope is stale and new ones are accepted
    const afterWindow = t0 + SEAL_MAX_SKEW_MS + 1
    expect(await code(opener.open('attacker', early, afterWindow))).toBe('SEAL_REJECTED')
    expect((await opener.open('attacker', await envelope(2e6, afterWindow), afterWindow)).body).toEqual({ i: 2e6 })
    expect(opener.remembered).toBeLessThanOrEqual(SEAL_REPLAY_CACHE)
  }, 120_000)
})
