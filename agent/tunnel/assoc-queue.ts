/**
 * What one peer's channels have queued in one association (peer connection): the sum of their
 * bufferedAmount. It is the per-association send budget's measure (issue 20): every stream of
 * the peer stops queueing on an association once it holds `budget` bytes, so a stream that is
 * reset or cancelled leaves at most that much ahead of the streams that come after it, and new
 * streams go to the association with the least queued (agent/tunnel/associations.ts).
 */

/** How often a waiter re-reads the sum, ms (engines tell no event for a sum of channels). */
const POLL_MS = 2
/** A sum read less than this long ago is reused, ms (it reads every channel's bufferedAmount). */
const FRESH_MS = 1

export class AssocQueue {
  private readonly channels = new Set<RTCDataChannel>()
  private cached = 0
  private at = -Infinity
  private readonly waiters = new Set<{ low: number, fn: () => void }>()
  private timer: ReturnType<typeof setInterval> | undefined

  /** Channels counted (open or opening). */
  get size (): number { return this.channels.size }

  add (dc: RTCDataChannel): void {
    if (this.channels.has(dc) || dc.readyState === 'closed') return
    this.channels.add(dc)
    dc.addEventListener('close', () => { this.channels.delete(dc); this.at = -Infinity }, { once: true })
  }

  has (dc: RTCDataChannel): boolean { return this.channels.has(dc) }

  /** Bytes queued over every channel counted. */
  queued (): number {
    const now = performance.now()
    if (now - this.at < FRESH_MS) return this.cached
    let sum = 0
    for (const dc of this.channels) sum += dc.bufferedAmount
    this.cached = sum
    this.at = now
    return sum
  }

  /** Calls `fn` once the queue is at or below `low`; returns a cancel function. One timer serves every waiter. */
  whenBelow (low: number, fn: () => void): () => void {
    if (this.queued() <= low) { fn(); return () => {} }
    const w = { low, fn }
    this.waiters.add(w)
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.poll(), POLL_MS)
      this.timer.unref?.()
    }
    return () => { this.waiters.delete(w); this.idle() }
  }

  private poll (): void {
    this.at = -Infinity
    const q = this.queued()
    for (const w of [...this.waiters]) {
      if (q <= w.low) { this.waiters.delete(w); w.fn() }
    }
    this.idle()
  }

  private idle (): void {
    if (this.waiters.size === 0 && this.timer !== undefined) { clearInterval(this.timer); this.timer = undefined }
  }

  /** Wakes every waiter (the association ended: they find their channels closed). */
  close (): void {
    const ws = [...this.waiters]
    this.waiters.clear()
    this.idle()
    for (const w of ws) w.fn()
  }
}
