/**
 * Sealed envelopes: end-to-end authenticated encryption of everything peers send each other
 * through the signaling service.
 *
 * Wire: `base64url(0x01 || iv[12] || AES-256-GCM(key, iv, aad, plaintext))` where
 * `aad = "causeway/seal/1|" room "|" from "|" to` and `plaintext = JSON {ts, body}`.
 * Binding room, sender and recipient in the AAD means the service cannot redirect or re-label
 * an envelope; the receiver rebuilds the AAD from the `from` the service reports and its own
 * id, so any swap fails authentication. `ts` bounds staleness and the random iv is the replay
 * nonce: a receiver remembers the ivs it accepted within the skew window, per sender, and
 * refuses repeats (see Opener).
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
  /** Unexpired nonces remembered in total. Default SEAL_REPLAY_CACHE. */
  replayCache?: number
  /** Unexpired nonces remembered per sender. Default max(16, replayCache / 8). */
  replayPerSender?: number
}

/** One sender's replay window: its remembered nonces, oldest first, and the floor below which it is refused. */
interface SenderWindow {
  nonces: Set<string>
  /** [ts, nonce] pairs, a binary min-heap by ts. */
  heap: Array<[number, string]>
  /** Envelopes of this sender with `ts <= floor` are refused: their nonces may have been evicted. */
  floor: number
}

/**
 * Opens envelopes addressed to one peer, refusing tampered, misaddressed, stale and replayed ones.
 *
 * Replay cache, per sender (the `from` the signaling service reports, which is bound into the
 * AAD, so an envelope counts against the sender that sealed it): every accepted envelope's
 * nonce is remembered until the envelope itself expires (its `ts` + `maxSkewMs`; after that the
 * skew check refuses it anyway). A sender holds at most `replayPerSender` nonces, and all
 * senders together at most `replayCache`. Past a bound, the oldest nonces of that sender (or,
 * when the total is reached, of the sender holding the most) are forgotten and the sender's
 * *floor* rises to their `ts`: from then on, envelopes of that sender with a `ts` at or below
 * the floor are refused as stale. So a forgotten nonce can never be replayed, and one sender's
 * flood evicts only its own entries: every other sender keeps its window, and the flooder's
 * newer envelopes still open (in `ts` order; its late, reordered ones are refused).
 * Memory stays bounded (~100 bytes a nonce: 50,000 by default, ~5 MB).
 */
export class Opener<R extends string = string> {
  private readonly senders = new Map<string, SenderWindow>()
  private total = 0
  private readonly init: Required<OpenerInit<R>>

  constructor (init: OpenerInit<R>) {
    const replayCache = init.replayCache ?? SEAL_REPLAY_CACHE
    this.init = { maxSkewMs: SEAL_MAX_SKEW_MS, replayPerSender: Math.max(16, Math.floor(replayCache / 8)), ...init, replayCache }
  }

  /** Nonces currently remembered for replay detection (bounded by `replayCache`). */
  get remembered (): number {
    return this.total
  }

  /** Nonces remembered for one sender (bounded by `replayPerSender`). */
  rememberedFrom (from: string): number {
    return this.senders.get(from)?.nonces.size ?? 0
  }

  /** Returns the body and the role of the key that opened it; throws CausewayError SEAL_REJECTED. */
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
      this.remember(from, toBase64Url(iv), parsed.ts, now)
      return { body: parsed.body, role }
    }
    throw new CausewayError('SEAL_REJECTED', 'envelope does not open (tampered, misaddressed or wrong key)')
  }

  private remember (from: string, nonce: string, ts: number, now: number): void {
    let w = this.senders.get(from)
    if (w === undefined) {
      w = { nonces: new Set(), heap: [], floor: -Infinity }
      this.senders.set(from, w)
    }
    this.expire(w, now)
    if (w.nonces.has(nonce)) throw new CausewayError('SEAL_REJECTED', 'envelope replayed')
    if (ts <= w.floor) throw new CausewayError('SEAL_REJECTED', 'envelope is stale: older than what is remembered for its sender')
    if (w.nonces.size >= this.init.replayPerSender) {
      if (ts <= (w.heap[0]?.[0] ?? -Infinity)) throw new CausewayError('SEAL_REJECTED', 'envelope is stale: older than what is remembered for its sender')
      this.evict(w, 1)
    }
    if (this.total >= this.init.replayCache) {
      this.sweep(now, w)
      if (this.total >= this.init.replayCache) {
        // The sender holding the most gives up its oldest (a batch: the scan is O(senders)).
        let largest = w
        for (const s of this.senders.values()) if (s.nonces.size > largest.nonces.size) largest = s
        this.evict(largest, Math.max(1, Math.min(largest.nonces.size, Math.ceil(this.init.replayCache / 64))))
        if (ts <= w.floor) throw new CausewayError('SEAL_REJECTED', 'envelope is stale: older than what is remembered for its sender')
      }
    }
    w.nonces.add(nonce)
    w.heap.push([ts, nonce])
    siftUp(w.heap, w.heap.length - 1)
    this.total++
  }

  /** Forgets a sender's `n` oldest nonces and raises its floor to the newest of them. */
  private evict (w: SenderWindow, n: number): void {
    for (let i = 0; i < n && w.heap.length > 0; i++) {
      const [ts, nonce] = popMin(w.heap)
      w.nonces.delete(nonce)
      this.total--
      if (ts > w.floor) w.floor = ts
    }
  }

  /** Drops a sender's expired nonces (their envelopes are stale by now anyway). */
  private expire (w: SenderWindow, now: number): void {
    while (w.heap.length > 0 && (w.heap[0]?.[0] ?? Infinity) + this.init.maxSkewMs < now) {
      w.nonces.delete(popMin(w.heap)[1])
      this.total--
    }
  }

  /** Expires every sender's old nonces; forgets senders (but `keep`) with nothing left to remember. */
  private sweep (now: number, keep: SenderWindow): void {
    for (const [from, w] of this.senders) {
      this.expire(w, now)
      if (w !== keep && w.nonces.size === 0 && w.floor + this.init.maxSkewMs < now) this.senders.delete(from)
    }
  }
}

function popMin (heap: Array<[number, string]>): [number, string] {
  const top = heap[0] as [number, string]
  const last = heap.pop() as [number, string]
  if (heap.length > 0) { heap[0] = last; siftDown(heap, 0) }
  return top
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
