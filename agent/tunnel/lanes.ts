/**
 * The lanes of one peer session (protocol/peer.ts, "Striped streams"): one `lane` channel this
 * agent opens on each association of the pair for all its striped streams, the peer's lanes
 * it receives on, and the table of striped streams both are for.
 *
 * Sending: a striped stream hands each chunk to `pick()`, the lane with room that would
 * deliver it first (agent/tunnel/stripe.ts pickLane: each association's queued bytes against
 * its measured drain rate, within the per-association send budget), so a stalled association
 * gets nothing new while the others carry the stream. Receiving: a lane message goes to the
 * stream its id names, which reassembles by offset; messages for streams that ended are dropped.
 * A lane that closes (its association failed or ended) is reported to every stream, and a
 * stream that sent over it resets (nothing retransmits bytes lost with an association).
 */
import { LANE_LABEL } from '../../protocol/peer.ts'
import { whenOpen } from '../../peer/channel.ts'
import type { AssocQueue } from './assoc-queue.ts'
import { decodeLane, FROM_OPENER, LaneMeter, pickLane, type LaneMessage } from './stripe.ts'

/** One association as the lanes see it. */
export interface LaneAssociation { pc: RTCPeerConnection, queue: AssocQueue }

export interface Lane {
  readonly dc: RTCDataChannel
  readonly queue: AssocQueue
  readonly meter: LaneMeter
  readonly highWater: number
  readonly budget: number
}

/** A striped stream, as the lanes call it. */
export interface StripeEnd {
  /** Bytes of the stream at `offset` arrived on a lane. */
  onLaneBytes: (offset: number, bytes: Uint8Array) => void
  /** The peer allows our bytes up to `allowed` (absolute credit, on a lane). */
  onLaneCredit: (allowed: number) => void
  /** A lane closed: the stream resets if it sent over it. */
  onLaneLost: (lane: Lane) => void
}

export interface LanesInit {
  /** The pair's ready associations (the session's own first). */
  associations: () => LaneAssociation[]
  /** Most bytes one lane's own channel may hold queued, bytes (lower where the engine caps its queue: `queueHighWater`). */
  highWater: number
  /** Per-association send budget, bytes (at least a lane's high water). */
  budget: number
  /** A lane message arrived (sign of life for keepalive). */
  activity?: () => void
}

/** A stream that stripes re-asks for lanes on associations without one at most this often, ms. */
const ENSURE_EVERY_MS = 1000
/** How long a waiter for room waits between reads of the lanes, ms. */
const ROOM_POLL_MS = 2

export class PeerLanes {
  private readonly init: LanesInit
  private readonly out = new Map<RTCPeerConnection, Lane>()
  private readonly opening = new Set<RTCPeerConnection>()
  /** Streams we accepted (ids we gave), and streams we opened (ids the peer gave). */
  private readonly accepted = new Map<number, StripeEnd>()
  private readonly opened = new Map<number, StripeEnd>()
  private nextId = 0
  private readonly waiters = new Set<() => void>()
  private timer: ReturnType<typeof setInterval> | undefined
  private closed = false
  private ensuredAt = -Infinity

  constructor (init: LanesInit) { this.init = init }


  /** A fresh id for a stream the peer opened to us (unique among our accepted streams). */
  allocate (): number {
    for (let i = 0; i < 0x1_0000_0000; i++) {
      const id = this.nextId
      this.nextId = (this.nextId + 1) >>> 0
      if (!this.accepted.has(id)) return id
    }
    throw new Error('no free stream id')
  }

  /** Registers a striped stream; returns the function that unregisters it. */
  register (role: 'opener' | 'acceptor', id: number, end: StripeEnd): () => void {
    const table = role === 'acceptor' ? this.accepted : this.opened
    table.set(id, end)
    return () => { if (table.get(id) === end) table.delete(id) }
  }

  /** Opens a lane on every ready association that has none yet (once a stream wants to stripe). */
  ensure (): void {
    if (this.closed) return
    this.ensuredAt = performance.now()
    for (const { pc, queue } of this.init.associations()) {
      if (this.out.has(pc) || this.opening.has(pc)) continue
      let dc: RTCDataChannel
      try { dc = pc.createDataChannel(LANE_LABEL, { ordered: true }) } catch { continue }
      dc.binaryType = 'arraybuffer'
      queue.add(dc)
      this.opening.add(pc)
      // nothing comes back on our own lane; a message on it is ignored
      dc.onmessage = () => {}
      whenOpen(dc).then(() => {
        this.opening.delete(pc)
        if (this.closed || dc.readyState !== 'open') { try { dc.close() } catch { /* closed */ } return }
        const cap = (dc as { queueHighWater?: number }).queueHighWater
        const highWater = Math.min(this.init.highWater, cap ?? Infinity)
        const lane: Lane = { dc, queue, meter: new LaneMeter(performance.now()), highWater, budget: Math.max(this.init.budget, highWater) }
        this.out.set(pc, lane)
        dc.addEventListener('close', () => this.lost(pc, lane), { once: true })
        this.wake()
      }, () => { this.opening.delete(pc) })
    }
  }

  /** Open lanes (asking for the missing ones at most once a second: associations come up after the session, and a lane's open may time out). */
  get ready (): number {
    if (performance.now() - this.ensuredAt > ENSURE_EVERY_MS) this.ensure()
    return this.out.size
  }

  /** The lane a chunk of `len` bytes should go to now; undefined: none has room. */
  pick (len: number): Lane | undefined {
    const now = performance.now()
    if (now - this.ensuredAt > ENSURE_EVERY_MS) this.ensure()
    const lanes = [...this.out.values()]
    const views = lanes.map(l => {
      const buffered = l.dc.bufferedAmount
      l.meter.sample(now, buffered)
      return { queued: l.queue.queued(), buffered, highWater: l.highWater, budget: l.budget, rate: l.meter.rate }
    })
    const i = pickLane(views, len)
    return i < 0 ? undefined : lanes[i]
  }

  /** Sends one lane message on `lane` (throws when the channel cannot take it). */
  send (lane: Lane, msg: Uint8Array<ArrayBuffer>): void {
    lane.dc.send(msg)
    lane.meter.sent(msg.length)
  }

  /**
   * Sends a small control message (lane credit) on the lane that would deliver it first,
   * room or not: the stream's own channel may sit on an association stalled in loss recovery.
   * False: no lane (or it failed).
   */
  sendControl (msg: Uint8Array<ArrayBuffer>): boolean {
    let best: Lane | undefined
    let score = Infinity
    for (const l of this.out.values()) {
      const s = (l.queue.queued() + 1) / Math.max(l.meter.rate, 1e-3)
      if (s < score) { best = l; score = s }
    }
    if (best === undefined) return false
    try { best.dc.send(msg); return true } catch { return false }
  }

  /** Calls `fn` once some lane may have room again; returns a cancel function. */
  onRoom (fn: () => void): () => void {
    this.waiters.add(fn)
    if (this.timer === undefined) {
      this.timer = setInterval(() => { if (this.pick(1) !== undefined || this.out.size === 0) this.wake() }, ROOM_POLL_MS)
      this.timer.unref?.()
    }
    return () => { this.waiters.delete(fn); this.idle() }
  }

  private wake (): void {
    const ws = [...this.waiters]
    this.waiters.clear()
    this.idle()
    for (const w of ws) w()
  }

  private idle (): void {
    if (this.waiters.size === 0 && this.timer !== undefined) { clearInterval(this.timer); this.timer = undefined }
  }

  /** A lane channel the peer opened (on any association). */
  incoming (dc: RTCDataChannel): void {
    dc.binaryType = 'arraybuffer'
    dc.onmessage = (ev: MessageEvent) => {
      this.init.activity?.()
      const msg = decodeLane(ev.data)
      // a lane carries only lane messages; anything else is dropped (the stream's own window
      // check catches a sender that abuses them)
      if (msg !== null) this.deliver(msg)
    }
  }

  private deliver (msg: LaneMessage): void {
    // sent by the opener: a stream we accepted (our id); by the acceptor: one we opened
    const end = (msg.from === FROM_OPENER ? this.accepted : this.opened).get(msg.id)
    if (msg.credit) end?.onLaneCredit(msg.offset); else end?.onLaneBytes(msg.offset, msg.bytes)
  }

  private lost (pc: RTCPeerConnection, lane: Lane): void {
    if (this.out.get(pc) === lane) this.out.delete(pc)
    for (const end of [...this.accepted.values(), ...this.opened.values()]) end.onLaneLost(lane)
    this.wake()
  }

  close (): void {
    this.closed = true
    for (const lane of this.out.values()) { try { lane.dc.close() } catch { /* closed */ } }
    this.wake()
  }
}
