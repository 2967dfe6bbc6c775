/**
 * The pure parts of striping a stream over lanes (protocol/peer.ts, "Striped streams"): the
 * lane message format, the receiver's in-order reassembly (bounded by the stream's window) and
 * the sender's choice of lane. No I/O here: agent/tunnel/lanes.ts and pipe.ts drive them.
 */
import { MAX_STREAM_OFFSET } from '../../protocol/peer.ts'

/** Bytes in front of a lane message's payload: flags u8, stream id u32, offset u48. */
export const LANE_HEADER = 11
/** Lane message flags: who sent it (the receiver looks the stream up in its opened or accepted table). */
export const FROM_OPENER = 1
export const FROM_ACCEPTOR = 2
/** Flag of a lane credit message (with FROM_*): no payload, the offset is the absolute credit. */
export const CREDIT = 4

export interface LaneMessage { from: typeof FROM_OPENER | typeof FROM_ACCEPTOR, id: number, offset: number, bytes: Uint8Array, credit: boolean }

export function encodeLane (from: LaneMessage['from'], id: number, offset: number, bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  if (offset + bytes.length > MAX_STREAM_OFFSET) throw new RangeError('stream offset past u48')
  const out = new Uint8Array(LANE_HEADER + bytes.length)
  const v = new DataView(out.buffer)
  v.setUint8(0, from)
  v.setUint32(1, id)
  v.setUint16(5, Math.floor(offset / 2 ** 32))
  v.setUint32(7, offset >>> 0)
  out.set(bytes, LANE_HEADER)
  return out
}

/** A lane credit message: the receiver of `id`'s bytes allows offsets up to `allowed` (absolute, so a copy that also came on the stream's channel changes nothing). */
export function encodeLaneCredit (from: LaneMessage['from'], id: number, allowed: number): Uint8Array<ArrayBuffer> {
  const out = encodeLane(from, id, allowed, new Uint8Array(0))
  out[0] = from | CREDIT
  return out
}

/** Parses a lane message; null when it is not one (text, too short, unknown flags, bytes without payload, credit with payload). */
export function decodeLane (data: unknown): LaneMessage | null {
  const u8 = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined
  if (u8 === undefined || u8.length < LANE_HEADER) return null
  const v = new DataView(u8.buffer, u8.byteOffset, u8.byteLength)
  const flags = v.getUint8(0)
  const credit = (flags & CREDIT) !== 0
  const from = flags & ~CREDIT
  if (from !== FROM_OPENER && from !== FROM_ACCEPTOR) return null
  if (credit !== (u8.length === LANE_HEADER)) return null
  return { from, id: v.getUint32(1), offset: v.getUint16(5) * 2 ** 32 + v.getUint32(7), bytes: u8.subarray(LANE_HEADER), credit }
}

export type ReassemblyResult = 'ok' | 'FLOW_CONTROL_VIOLATION' | 'BAD_MESSAGE'

/**
 * One stream direction's receive side: bytes arrive at offsets (on the stream's channel in
 * order, on lanes in any order); `deliver` gets them in stream order, each byte once. What is
 * held out of order never exceeds the credit the receiver gave (`allowed` minus what was
 * delivered), so the reorder buffer is bounded by the stream's window.
 */
export class Reassembly {
  /** Next offset to deliver (= bytes delivered). */
  delivered = 0
  /** Bytes held out of order. */
  held = 0
  /** Highest end offset seen (delivered or held). */
  private top = 0
  /** The sender's total, once its fin told it. */
  private end: number | undefined
  private readonly chunks = new Map<number, Uint8Array>()

  /** Chunks held out of order. */
  get pending (): number { return this.chunks.size }
  /** The fin arrived and every byte before it was delivered. */
  get complete (): boolean { return this.end !== undefined && this.delivered === this.end }
  /** The sender's fin arrived. */
  get finKnown (): boolean { return this.end !== undefined }

  push (offset: number, bytes: Uint8Array, allowed: number, deliver: (b: Uint8Array) => void): ReassemblyResult {
    const n = bytes.length
    if (n === 0 || offset < this.delivered) return 'BAD_MESSAGE'
    if (this.end !== undefined && offset + n > this.end) return 'BAD_MESSAGE'
    if (offset + n > allowed) return 'FLOW_CONTROL_VIOLATION'
    this.top = Math.max(this.top, offset + n)
    if (offset !== this.delivered) {
      if (this.chunks.has(offset)) return 'BAD_MESSAGE'
      // overlapping chunks (a broken or hostile sender) cannot make us hold more than the window
      if (this.held + n > allowed - this.delivered) return 'FLOW_CONTROL_VIOLATION'
      this.chunks.set(offset, bytes)
      this.held += n
      return 'ok'
    }
    this.delivered += n
    deliver(bytes)
    for (let next = this.chunks.get(this.delivered); next !== undefined; next = this.chunks.get(this.delivered)) {
      this.chunks.delete(this.delivered)
      this.held -= next.length
      this.delivered += next.length
      deliver(next)
    }
    return 'ok'
  }

  /** The sender's fin: `total` bytes in all. */
  fin (total: number): ReassemblyResult {
    if (this.end !== undefined || total < this.top) return 'BAD_MESSAGE'
    this.end = total
    return 'ok'
  }

  clear (): void { this.chunks.clear(); this.held = 0 }
}

/** What the scheduler sees of one lane. */
export interface LaneView {
  /** Bytes queued in the lane's association (all of this peer's channels on it). */
  queued: number
  /** Bytes queued in the lane's own channel. */
  buffered: number
  /** Most its own channel should hold queued (the engine's queue cap, or the pipe's high water). */
  highWater: number
  /** Most its association should hold queued (the per-association send budget). */
  budget: number
  /** Measured drain rate, bytes/ms; 0 while unknown. */
  rate: number
}

/**
 * The lane a chunk of `len` bytes goes to: among lanes with room (own channel under its
 * high water, association under its send budget), the one that would deliver it first
 * (queued bytes over measured drain rate: a lane stalled in loss recovery or a T3 timeout
 * drains at ~0 and gets nothing new). Lanes whose rate is not known yet count as the best rate
 * seen. -1: no lane has room.
 */
export function pickLane (lanes: readonly LaneView[], len: number): number {
  let best = -1
  let bestScore = Infinity
  let known = 0
  for (const l of lanes) known = Math.max(known, l.rate)
  for (let i = 0; i < lanes.length; i++) {
    const l = lanes[i]!
    if (l.buffered >= l.highWater || l.queued >= l.budget) continue
    const rate = l.rate > 0 ? l.rate : known > 0 ? known : 1
    const score = (l.queued + len) / rate
    if (score < bestScore) { best = i; bestScore = score }
  }
  return best
}

/**
 * A lane's drain rate: bytes that left its association's queue per ms, as an exponentially
 * weighted average over samples at least `minMs` apart. `sent` counts what was queued on it.
 */
export class LaneMeter {
  rate = 0
  private at: number
  private lastQueued = 0
  private sentSince = 0
  private readonly minMs: number
  constructor (now: number, minMs = 20) { this.at = now; this.minMs = minMs }

  sent (n: number): void { this.sentSince += n }

  sample (now: number, queued: number): void {
    const dt = now - this.at
    if (dt < this.minMs) return
    const drained = Math.max(0, this.lastQueued + this.sentSince - queued)
    // a lane with nothing queued and nothing sent says nothing about its rate
    if (this.lastQueued > 0 || this.sentSince > 0) {
      const r = drained / dt
      this.rate = this.rate === 0 ? r : 0.7 * this.rate + 0.3 * r
    }
    this.at = now
    this.lastQueued = queued
    this.sentSince = 0
  }
}
