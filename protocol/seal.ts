/**
 * Sealed envelopes: end-to-end authenticated encryption of everything peers send each other
 * through the signaling service.
 *
 * Wire: `base64url(0x01 || iv[12] || AES-256-GCM(key, iv, aad, plaintext))` where
 * `aad = "causeway/seal/1|" room "|" from "|" to` and `plaintext = JSON {ts, body}`.
 * Binding room, sender and recipient in the AAD means the service cannot redirect or re-label
 * an envelope; the receiver rebuilds the AAD from the `from` the service reports and its own
 * id, so any swap fails authentication. `ts` bounds staleness and the random iv is the replay
 * nonce: a receiver remembers the ivs it accepted within the skew window and refuses repeats.
 */
import { CausewayError } from './errors.ts'
import { concatBytes, fromBase64Url, fromUtf8, randomBytes, toBase64Url, utf8 } from './encoding.ts'
import { SEAL_MAX_SKEW_MS, SEAL_REPLAY_CACHE } from './limits.ts'

const VERSION = 1

function aad (room: string, from: string, to: string): Uint8Array<ArrayBuffer> {
  return utf8(`causeway/seal/1|${room}|${from}|${to}`)
}

export interface SealInit {
  room: string
  from: string
  to: string
  body: unknown
  now?: number
}

export async function seal (key: CryptoKey, init: SealInit): Promise<string> {
  const iv = randomBytes(12)
  const plaintext = utf8(JSON.stringify({ ts: init.now ?? Date.now(), body: init.body }))
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad(init.room, init.from, init.to) }, key, plaintext))
  return toBase64Url(concatBytes(Uint8Array.of(VERSION), iv, ct))
}

export interface OpenerKey<R extends string> { key: CryptoKey, role: R }

export interface OpenerInit<R extends string> {
  room: string
  /** This peer's id: envelopes addressed to anyone else are refused. */
  self: string
  /** Keys to try in order; the role of the key that opens an envelope is reported. */
  keys: Array<OpenerKey<R>>
  maxSkewMs?: number
  replayCache?: number
}

/**
 * Opens envelopes addressed to one peer, refusing tampered, misaddressed, stale and replayed ones.
 *
 * Replay cache: the nonce of every accepted envelope is remembered until the envelope itself
 * expires (its `ts` + `maxSkewMs`; after that the skew check refuses it anyway), in a min-heap by
 * expiry. It never forgets an unexpired nonce: when `replayCache` unexpired nonces are held, new
 * envelopes are refused with REPLAY_CACHE_FULL until some expire (at most 2 x `maxSkewMs`).
 * Memory stays bounded (~100 bytes a nonce: 50,000 by default, ~5 MB); only holders of a
 * sealing key can fill it.
 */
export class Opener<R extends string = string> {
  private readonly seen = new Map<string, number>()
  /** [expiry, nonce] pairs, a binary min-heap by expiry. */
  private readonly expiries: Array<[number, string]> = []
  private readonly init: Required<OpenerInit<R>>

  constructor (init: OpenerInit<R>) {
    this.init = { maxSkewMs: SEAL_MAX_SKEW_MS, replayCache: SEAL_REPLAY_CACHE, ...init }
  }

  /** Nonces currently remembered for replay detection (bounded by `replayCache`). */
  get remembered (): number {
    return this.seen.size
  }

  /** Returns the body and the role of the key that opened it; throws CausewayError SEAL_REJECTED (or REPLAY_CACHE_FULL). */
  async open (from: string, sealed: string, now = Date.now()): Promise<{ body: unknown, role: R }> {
    let bytes: Uint8Array<ArrayBuffer>
    try { bytes = fromBase64Url(sealed) } catch { throw new CausewayError('SEAL_REJECTED', 'envelope is not base64url') }
    if (bytes.length < 1 + 12 + 16 || bytes[0] !== VERSION) throw new CausewayError('SEAL_REJECTED', 'envelope malformed')
    const iv = bytes.subarray(1, 13)
    const ct = bytes.subarray(13)
    const data = aad(this.init.room, from, this.init.self)
    for (const { key, role } of this.init.keys) {
      let plain: ArrayBuffer
      try {
        plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: data }, key, ct)
      } catch {
        continue
      }
      let parsed: unknown
      try { parsed = JSON.parse(fromUtf8(new Uint8Array(plain))) } catch { throw new CausewayError('SEAL_REJECTED', 'envelope body is not JSON') }
      if (typeof parsed !== 'object' || parsed === null || !('ts' in parsed) || typeof parsed.ts !== 'number' || !('body' in parsed)) {
        throw new CausewayError('SEAL_REJECTED', 'envelope body malformed')
      }
      if (!(Math.abs(now - parsed.ts) <= this.init.maxSkewMs)) throw new CausewayError('SEAL_REJECTED', 'envelope is stale')
      const nonce = toBase64Url(iv)
      if (this.seen.has(nonce)) throw new CausewayError('SEAL_REJECTED', 'envelope replayed')
      this.remember(nonce, parsed.ts + this.init.maxSkewMs, now)
      return { body: parsed.body, role }
    }
    throw new CausewayError('SEAL_REJECTED', 'envelope does not open (tampered, misaddressed or wrong key)')
  }

  private remember (nonce: string, expiry: number, now: number): void {
    const heap = this.expiries
    while (heap.length > 0 && (heap[0]?.[0] ?? Infinity) < now) {
      const top = heap[0] as [number, string]
      this.seen.delete(top[1])
      const last = heap.pop() as [number, string]
      if (heap.length > 0) { heap[0] = last; siftDown(heap, 0) }
    }
    if (this.seen.size >= this.init.replayCache) {
      throw new CausewayError('REPLAY_CACHE_FULL', `${this.seen.size} unexpired envelope nonces are remembered; refusing new envelopes until some expire`)
    }
    this.seen.set(nonce, expiry)
    heap.push([expiry, nonce])
    siftUp(heap, heap.length - 1)
  }
}

function siftUp (heap: Array<[number, string]>, i: number): void {
  const item = heap[i] as [number, string]
  while (i > 0) {
    const parent = (i - 1) >> 1
    const p = heap[parent] as [number, string]
    if (p[0] <= item[0]) break
    heap[i] = p
    i = parent
  }
  heap[i] = item
}

function siftDown (heap: Array<[number, string]>, i: number): void {
  const item = heap[i] as [number, string]
  for (;;) {
    let child = 2 * i + 1
    if (child >= heap.length) break
    const right = heap[child + 1]
    if (right !== undefined && right[0] < (heap[child] as [number, string])[0]) child++
    const c = heap[child] as [number, string]
    if (c[0] >= item[0]) break
    heap[i] = c
    i = child
  }
  heap[i] = item
}
