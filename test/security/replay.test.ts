/**
 * The replay cache under attack, with the default limits (SEAL_REPLAY_CACHE, SEAL_MAX_SKEW_MS).
 *
 * Finding 11 of issue 10: after 50,000 valid envelopes the cache used to evict a nonce still
 * inside the ±120 s window, so the same envelope was accepted again. Issue 22: the fix for that
 * (refuse every new envelope while the cache is full) let one member's flood lock out every
 * other peer for the whole window (REPLAY_CACHE_FULL). Now the cache is kept per sender: a
 * flood evicts only the flooder's own oldest nonces and raises its floor, so
 * - a recorded envelope replayed after the flood is refused, the flooder's own included;
 * - another sender's envelopes keep opening during and after the flood, and its replays stay
 *   refused;
 * - many flooding senders (one member with several peer ids) evict from the largest of them.
 */
import { describe, expect, it } from 'vitest'
import { CausewayError } from '../../protocol/errors.ts'
import { deriveMemberKeys } from '../../protocol/keys.ts'
import { SEAL_MAX_SKEW_MS, SEAL_REPLAY_CACHE } from '../../protocol/limits.ts'
import { Opener, seal } from '../../protocol/seal.ts'
import { newSecret } from '../../protocol/token.ts'

async function outcome (p: Promise<unknown>): Promise<string> {
  return await p.then(() => 'ok', (e: unknown) => e instanceof CausewayError ? `${e.code}: ${e.message}` : String(e))
}

describe('replay cache under a flood', () => {
  it('a flood by one sender, then by nine, evicts only the flooders; no recorded envelope is accepted twice', async () => {
    const keys = await deriveMemberKeys(newSecret())
    const opener = new Opener({ room: keys.room, self: 'victimvictim', keys: [{ key: keys.seal, role: 'agent' }] })
    const envelope = async (from: string, i: number, now: number): Promise<string> => await seal(keys.seal, { room: keys.room, from, to: 'victimvictim', body: { i }, now })
    const t0 = Date.now()
    const early = await envelope('attacker', -1, t0)
    const honest = await envelope('honesthonest', -2, t0)
    expect(await outcome(opener.open('attacker', early, t0))).toBe('ok')
    expect(await outcome(opener.open('honesthonest', honest, t0))).toBe('ok')
    /** `count` envelopes from each sender, spread over `spanMs` of receiver clock after `from`, in parallel batches. */
    const flood = async (senders: string[], count: number, start: number, spanMs: number): Promise<string[]> => {
      const out: string[] = []
      for (let i = 0; i < count; i += 500) {
        const batch = Array.from({ length: Math.min(500, count - i) }, (_, k) => i + k)
        for (const s of senders) {
          out.push(...await Promise.all(batch.map(async j => {
            const now = start + Math.floor(j * spanMs / count)
            return await outcome(opener.open(s, await envelope(s, j, now), now))
          })))
        }
        // the honest peer keeps talking during the flood
        const now = start + Math.floor(i * spanMs / count)
        expect(await outcome(opener.open('honesthonest', await envelope('honesthonest', i, now), now))).toBe('ok')
      }
      return out
    }
    // One sender, 10x its own bound (an eighth of the cache) and more than the whole cache.
    const perSender = SEAL_REPLAY_CACHE / 8
    const one = await flood(['attacker'], 10 * perSender, t0 + 1, 30_000)
    // Its envelopes come in ts order and are all accepted: only its own oldest nonces went.
    expect(one.filter(o => o !== 'ok')).toEqual([])
    expect(opener.rememberedFrom('attacker')).toBe(perSender)
    const at = t0 + 40_000
    expect(Math.abs(at - t0)).toBeLessThanOrEqual(SEAL_MAX_SKEW_MS) // still inside the window
    expect(await outcome(opener.open('attacker', early, at))).toBe('SEAL_REJECTED: envelope is stale: older than what is remembered for its sender')
    expect(await outcome(opener.open('honesthonest', honest, at))).toBe('SEAL_REJECTED: envelope replayed')

    // Nine senders (one member's several peer ids) together past the whole cache.
    const sybils = Array.from({ length: 9 }, (_, i) => `sybil${i}sybil`)
    const honestBefore = opener.rememberedFrom('honesthonest')
    const many = await flood(sybils, perSender, at, 30_000)
    expect(many.filter(o => o !== 'ok')).toEqual([])
    expect(opener.remembered).toBeLessThanOrEqual(SEAL_REPLAY_CACHE)
    // the honest sender lost nothing (its count only grew by what it sent during the flood)
    expect(opener.rememberedFrom('honesthonest')).toBeGreaterThanOrEqual(honestBefore)
    const end = at + 31_000
    expect(await outcome(opener.open('honesthonest', honest, end))).toBe('SEAL_REJECTED: envelope replayed')
    expect(await outcome(opener.open('attacker', early, end))).toMatch(/^SEAL_REJECTED: envelope is stale/)
    expect(await outcome(opener.open('honesthonest', await envelope('honesthonest', 1e6, end), end))).toBe('ok')

    // once the window has passed, old envelopes are plainly stale and new ones open
    const afterWindow = t0 + SEAL_MAX_SKEW_MS + 1
    expect(await outcome(opener.open('attacker', early, afterWindow))).toMatch(/^SEAL_REJECTED: envelope is stale/)
    expect(await outcome(opener.open('attacker', await envelope('attacker', 2e6, afterWindow + 40_000), afterWindow + 40_000))).toBe('ok')
  }, 120_000)
})
