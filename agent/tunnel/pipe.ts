/**
 * Moves bytes between a TCP socket and a stream data channel, both ways, with:
 * - backpressure sender-side: the socket is paused while the channel's bufferedAmount is over
 *   `highWater`, and resumed once it drains to `lowWater` (the `bufferedamountlow` event where
 *   the engine has it, polling otherwise: see peer/channel.ts);
 * - flow control receiver-side: a sender never has more unacknowledged bytes in flight than the
 *   credit it was given (STREAM_INITIAL_WINDOW at open, then `credit` grants); the receiver
 *   grants credit only for bytes its socket has flushed, so a slow reader stalls the sender
 *   instead of growing memory on either side;
 * - window auto-tuning: when the receiver's socket consumes a whole window in less than ~4 RTT
 *   (the window, not the path, limits the stream), the receiver doubles the window by granting
 *   extra credit, up to `maxWindow`, the growth reserved from a per-peer `WindowBudget`;
 * - enforcement: a peer that sends past the credit it was given gets the stream reset with
 *   FLOW_CONTROL_VIOLATION (never unbounded buffering);
 * - half-close: a FIN on either socket becomes `fin` and ends only that direction;
 * - reset: a socket error becomes `rst` and the other side resets its socket (TCP RST);
 * - a per-association send budget: the socket also pauses while this peer's channels on the
 *   stream's association hold more than `assocBudget` (agent/tunnel/assoc-queue.ts);
 * - striping (stream version 2, protocol/peer.ts): once the receiver says its window is the
 *   limit (`credit {stripe}`), the sender spreads its chunks over the pair's lanes
 *   (agent/tunnel/lanes.ts) and the receiver reassembles them by offset (stripe.ts).
 */
import type { Socket } from 'node:net'
import { parseJson, STREAM_INITIAL_WINDOW, StreamControl } from '../../protocol/peer.ts'
import { onDrain } from '../../peer/channel.ts'
import type { AssocQueue } from './assoc-queue.ts'
import type { Lane, PeerLanes } from './lanes.ts'
import { encodeLane, encodeLaneCredit, FROM_ACCEPTOR, FROM_OPENER, Reassembly } from './stripe.ts'

export interface PipeOptions {
  /** Largest flow-control window per stream and direction, bytes. Default 16 MiB. */
  maxWindow?: number
  /** Pause the socket above this channel bufferedAmount, bytes. Default 1 MiB. */
  highWater?: number
  /** Resume at or below this bufferedAmount, bytes. Default 256 KiB. */
  lowWater?: number
  /** Largest data-channel message, bytes. Default 64 KiB. */
  chunk?: number
  /**
   * Per-association send budget: the most this peer's channels on one association may hold
   * queued before a stream's socket pauses, bytes. Default 256 KiB (at least `highWater`).
   */
  assocBudget?: number
}

/** A version-2 stream (protocol/peer.ts, "Striped streams"): its id, our role, and the pair's lanes (none: not striped by us, still read as version 2). */
export interface StripeLink { id: number, role: 'opener' | 'acceptor', lanes?: PeerLanes }

export interface PipeHooks {
  onBytes?: (direction: 'in' | 'out', n: number) => void
  /** Called once when both directions are finished or the stream was reset. */
  onClose?: (reason: 'done' | 'reset' | 'error', code?: string) => void
  /** Current round-trip time to the peer, ms (drives window growth); undefined when unknown. */
  rttMs?: () => number | null | undefined
  /** Where window growth beyond STREAM_INITIAL_WINDOW is reserved; none: no growth. */
  budget?: WindowBudget
  /** The stream's association's queue (the send budget's measure); none: no budget. */
  queue?: AssocQueue
  /** Set on version-2 streams. */
  stripe?: StripeLink
  /** A chunk arrived out of order and was held (for metrics and tests). */
  onReorder?: () => void
}

export const PIPE_DEFAULTS: Required<PipeOptions> = { maxWindow: 16 << 20, highWater: 1 << 20, lowWater: 256 << 10, chunk: 64 << 10, assocBudget: 256 << 10 }

/** How long a stream whose channel closed waits for the peer's striped bytes still on other associations, ms. */
const LANE_TAIL_MS = 30_000

/** RTT assumed for window growth while none was measured yet (relay path, first ping), ms. */
const DEFAULT_RTT_MS = 50

/**
 * The receive memory one peer may hold beyond every stream's initial window: the sum of all
 * its streams' window growth. Per-peer worst case = streams x STREAM_INITIAL_WINDOW + limit.
 */
export class WindowBudget {
  readonly limit: number
  used = 0
  constructor (limit: number) { this.limit = limit }
  /** Reserves up to `want` bytes; returns what was reserved. */
  take (want: number): number {
    const n = Math.max(0, Math.min(want, this.limit - this.used))
    this.used += n
    return n
  }

  give (n: number): void { this.used = Math.max(0, this.used - n) }
}

export class StreamPipe {
  private readonly socket: Socket
  private readonly dc: RTCDataChannel
  private readonly opts: Required<PipeOptions>
  private readonly hooks: PipeHooks
  /** Bytes we may still send (peer's credit). */
  private credit = STREAM_INITIAL_WINDOW
  /** Socket bytes read but not sent yet for lack of credit. */
  private pending: Buffer | undefined
  /** Receive side: our window, bytes received, flushed bytes granted back, and everything we allowed the peer to send. */
  private window = STREAM_INITIAL_WINDOW
  private received = 0
  private sent = 0
  private granted = 0
  private allowed = STREAM_INITIAL_WINDOW
  private reserved = 0
  private epochAt = performance.now()
  private epochGranted = 0
  private drainHooked = false
  private localFin = false
  private finPending = false
  private remoteFin = false
  private finished = false
  private cancelDrain?: () => void
  private waitingCredit = false
  private closeTimer?: ReturnType<typeof setTimeout>
  /** Receive side: bytes in stream order (raw channel bytes and lane chunks), and the raw bytes' count. */
  private readonly reasm = new Reassembly()
  private rawIn = 0
  /** Send side of a version-2 stream: the receiver asked to stripe; we do (every chunk on a lane from the first); the lanes we used. */
  private stripeWanted = false
  private striping = false
  private readonly lanesUsed = new Set<Lane>()
  private stripeAsked = false
  private cancelRoom?: () => void
  private unregister?: () => void
  /** Send side: `blocked` went out since the last credit. Receive side: the peer said it is blocked by our window. */
  private blockedSent = false
  private peerBlocked = false
  /** The peer sent us bytes over lanes (so we also send our credit over one). */
  private laneSeen = false
  /** The channel closed after both fins while striped bytes of the peer were still on their way. */
  private closedEarly = false

  constructor (socket: Socket, dc: RTCDataChannel, opts: PipeOptions = {}, hooks: PipeHooks = {}) {
    this.socket = socket
    this.dc = dc
    this.opts = { ...PIPE_DEFAULTS, ...opts }
    // An engine whose channels share one FIFO send queue per association (node-datachannel:
    // libdatachannel queues every stream's overflow in one queue in front of usrsctp) asks for
    // lower water marks: bytes parked there delay every other stream's messages (credit, fin,
    // a new channel's open), and usrsctp's own send buffer keeps the link busy meanwhile.
    const cap = (dc as { queueHighWater?: number }).queueHighWater
    if (cap !== undefined && this.opts.highWater > cap) this.opts = { ...this.opts, highWater: cap, lowWater: Math.min(this.opts.lowWater, cap >> 2) }
    this.hooks = hooks
    this.opts = { ...this.opts, assocBudget: Math.max(this.opts.assocBudget, this.opts.highWater) }
  }

  /** Whether bytes of this stream went over lanes (striped). */
  get striped (): boolean { return this.striping }

  /** Bytes sent and received on this stream so far, and its half-close state (for logs). */
  get counters (): { sent: number, received: number, localFin: boolean, remoteFin: boolean } {
    return { sent: this.sent, received: this.received, localFin: this.localFin, remoteFin: this.remoteFin }
  }

  /** This stream's current receive window, bytes. */
  get receiveWindow (): number { return this.window }

  /**
   * Starts moving bytes; the channel must be open and the handshake done. `early`: messages
   * that arrived after the handshake's answer but before this (an engine may deliver several
   * messages before the code awaiting the answer runs), processed first, in order.
   */
  start (early: readonly unknown[] = []): void {
    const { socket, dc } = this
    dc.binaryType = 'arraybuffer'
    dc.onmessage = (ev: MessageEvent) => this.onMessage(ev.data)
    const onClose = (): void => {
      clearTimeout(this.closeTimer)
      if (this.finished) return
      if (this.localFin && this.remoteFin) this.done(false)
      else if (this.localFin && this.reasm.finKnown) {
        // version 2: the peer read our fin and closed, but some of its striped bytes (sent
        // before its fin, on other associations) are still on their way: wait for them, bounded
        this.closedEarly = true
        this.closeTimer = setTimeout(() => this.finish('reset', 'CHANNEL_CLOSED'), LANE_TAIL_MS)
        this.closeTimer.unref?.()
      } else this.finish('reset', 'CHANNEL_CLOSED')
    }
    dc.onclose = onClose
    socket.on('data', (buf: Buffer) => this.onSocketData(buf))
    socket.on('end', () => this.onSocketEnd())
    socket.on('error', () => this.reset('SOCKET_ERROR'))
    // Both directions ended is a normal close, also while our fin still waits behind bytes
    // that wait for credit (`finPending`): those go out when the credit comes.
    socket.on('close', () => { if (!this.finished && !((this.localFin || this.finPending) && this.remoteFin)) this.reset('SOCKET_CLOSED') })
    const link = this.hooks.stripe
    if (link?.lanes !== undefined) {
      this.unregister = link.lanes.register(link.role, link.id, {
        onLaneBytes: (offset, bytes) => { if (!this.finished) { this.laneSeen = true; this.acceptBytes(offset, bytes) } },
        onLaneCredit: (allowed) => { if (!this.finished) this.raiseAllowance(allowed, false) },
        onLaneLost: (lane) => { if (!this.finished && this.lanesUsed.has(lane)) this.reset('STREAM_RESET') },
      })
    }
    for (const data of early) this.onMessage(data)
    // a close delivered with those early messages went to the handshake's handler
    if (dc.readyState === 'closed') onClose()
    if (!this.finished) socket.resume()
  }

  private onSocketData (buf: Buffer): void {
    if (this.finished) return
    if (this.pending !== undefined) { this.pending = Buffer.concat([this.pending, buf]); this.socket.pause(); this.waitingCredit = true; return }
    this.sendBytes(buf)
    this.maybePause()
  }

  /** Sends as much of `buf` as the credit allows; keeps the rest pending. False on failure. */
  private sendBytes (buf: Buffer): boolean {
    const { chunk } = this.opts
    const n = Math.min(buf.length, Math.max(0, this.credit))
    let off = 0
    try {
      while (off < n) {
        const part = buf.subarray(off, Math.min(off + chunk, n))
        if (this.useLanes()) {
          const lanes = this.hooks.stripe!.lanes!
          const lane = lanes.pick(part.length)
          // no lane has room: the rest waits (maybePause waits for room)
          if (lane === undefined) break
          lanes.send(lane, encodeLane(this.hooks.stripe!.role === 'opener' ? FROM_OPENER : FROM_ACCEPTOR, this.hooks.stripe!.id, this.sent + off, part))
          this.lanesUsed.add(lane)
        } else {
          this.dc.send(part as Uint8Array<ArrayBuffer>)
        }
        off += part.length
      }
    } catch {
      this.reset('STREAM_RESET')
      return false
    }
    this.credit -= off
    this.sent += off
    this.pending = off < buf.length ? buf.subarray(off) : undefined
    if (off > 0) this.hooks.onBytes?.('out', off)
    return true
  }

  /** Whether the next chunk goes over a lane: striping started, or was asked for and two lanes are open (it starts now, for good). */
  private useLanes (): boolean {
    if (this.striping) return true
    const lanes = this.hooks.stripe?.lanes
    this.striping = this.stripeWanted && lanes !== undefined && lanes.ready >= 2
    return this.striping
  }

  private maybePause (): void {
    if (this.finished) return
    if (this.pending !== undefined && this.credit > 0 && this.striping) {
      // credit left, but no lane has room
      this.socket.pause()
      if (this.cancelRoom === undefined) this.cancelRoom = this.hooks.stripe!.lanes!.onRoom(() => { this.cancelRoom = undefined; this.flush() })
      return
    }
    if (this.pending !== undefined || this.credit <= 0) {
      this.socket.pause()
      this.waitingCredit = true
      // a bulk version-2 stream held back by the peer's window: stripe, and ask for a larger window
      if (this.credit <= 0 && this.hooks.stripe !== undefined && this.sent >= STREAM_INITIAL_WINDOW) {
        this.wantStripe()
        if (!this.blockedSent) { this.blockedSent = true; this.sendText('{"t":"blocked"}') }
      }
      return
    }
    if (this.striping || this.cancelDrain !== undefined) return
    const resume = (): void => {
      this.cancelDrain = undefined
      if (!this.finished && this.credit > 0 && !this.localFin) this.socket.resume()
      else if (this.credit <= 0) this.waitingCredit = true
    }
    if (this.dc.bufferedAmount > this.opts.highWater) {
      this.socket.pause()
      this.wantStripe()
      this.cancelDrain = onDrain(this.dc, this.opts.lowWater, resume)
    } else if (this.hooks.queue !== undefined && this.hooks.queue.queued() > this.opts.assocBudget) {
      // the association holds this peer's whole send budget (other streams' bytes, or ones reset)
      this.socket.pause()
      this.wantStripe()
      this.cancelDrain = this.hooks.queue.whenBelow(this.opts.assocBudget >> 1, resume)
    }
  }

  /**
   * The association (its channel or the association's budget is full) or the peer's window
   * holds this stream back: a version-2 stream that already sent a whole initial window is a
   * bulk stream, and stripes (the receiver's `credit {stripe}` is another way in).
   */
  private wantStripe (): void {
    const lanes = this.hooks.stripe?.lanes
    if (lanes === undefined || this.stripeWanted || this.sent < STREAM_INITIAL_WINDOW) return
    this.stripeWanted = true
    lanes.ensure()
  }

  /** Sends what waited (for credit or a lane's room), then the fin that waited behind it. */
  private flush (): void {
    if (this.finished) return
    if (this.pending !== undefined && !this.sendBytes(this.pending)) return
    if (this.pending === undefined && this.finPending) { this.finPending = false; this.sendFin(); return }
    if (this.pending === undefined && !this.localFin) this.socket.resume()
    this.maybePause()
  }

  /** Version 2: the peer allows our bytes up to `allowed` (absolute: a copy of a credit already seen changes nothing). */
  private raiseAllowance (allowed: number, stripe: boolean): void {
    const more = allowed - this.sent - this.credit
    if (more > 0) this.onCredit(more, stripe)
    else if (stripe) this.onCredit(0, true)
  }

  private onCredit (n: number, stripe: boolean): void {
    this.credit += n
    this.blockedSent = false
    if (stripe && this.hooks.stripe?.lanes !== undefined && !this.stripeWanted) {
      this.stripeWanted = true
      this.hooks.stripe.lanes.ensure()
    }
    if (!this.waitingCredit || this.credit <= 0) return
    this.waitingCredit = false
    this.flush()
  }

  private onMessage (data: unknown): void {
    if (this.finished) return
    if (typeof data === 'string') {
      const ctl = parseJson(StreamControl, data)
      if (ctl === null) { this.reset('BAD_MESSAGE'); return }
      switch (ctl.t) {
        case 'credit':
          // version 2: the absolute credit (it may also have come, or come later, on a lane)
          if (this.hooks.stripe !== undefined && ctl.max !== undefined) this.raiseAllowance(ctl.max, ctl.stripe === true)
          else this.onCredit(ctl.n, ctl.stripe === true)
          return
        case 'fin': {
          // version 2: the fin tells the total (it may overtake lane bytes); version 1: all came on this channel
          const r = this.reasm.fin(ctl.n ?? this.rawIn)
          if (r !== 'ok') { this.reset(r); return }
          if (this.reasm.complete) this.onRemoteFin()
          return
        }
        case 'rst':
          this.finish('reset', ctl.code)
          return
        case 'blocked':
          // only on version-2 streams
          if (this.hooks.stripe === undefined) { this.reset('BAD_MESSAGE'); return }
          this.peerBlocked = true
          return
        default:
          this.reset('BAD_MESSAGE')
          return
      }
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined
    if (bytes === undefined || this.remoteFin) { this.reset('BAD_MESSAGE'); return }
    const offset = this.rawIn
    this.rawIn += bytes.length
    this.acceptBytes(offset, bytes)
  }

  /**
   * Bytes at `offset` of the peer's direction (this channel's, or a lane's): written to the
   * socket in stream order. Past the credit we gave, or more held out of order than the window:
   * FLOW_CONTROL_VIOLATION (never unbounded buffering).
   */
  private acceptBytes (offset: number, bytes: Uint8Array): void {
    const before = this.reasm.pending
    const r = this.reasm.push(offset, bytes, this.allowed, (b) => {
      this.received += b.length
      this.hooks.onBytes?.('in', b.length)
      this.socket.write(b)
    })
    if (r !== 'ok') { this.reset(r); return }
    if (this.reasm.pending > before) this.hooks.onReorder?.()
    if (this.reasm.complete && !this.remoteFin) { this.onRemoteFin(); return }
    this.grantCredit()
  }

  private onRemoteFin (): void {
    this.remoteFin = true
    this.socket.end()
    // we received the last fin: every byte of both directions has arrived; close.
    if (this.localFin) this.done(!this.closedEarly)
  }

  /**
   * Grants the sender credit for every byte that left our socket's user-space buffer (bytes
   * still in `writableLength` stay unacknowledged), in steps of a quarter window; re-checked
   * on the socket's `drain`. Grows the window when it is what limits the stream.
   */
  private grantCredit (): void {
    if (this.finished) return
    const flushed = this.received - this.socket.writableLength
    const grant = flushed - this.granted
    if (grant >= this.window / 4) {
      this.granted = flushed
      const extra = this.grow(flushed)
      this.allowed += grant + extra
      // version 2: the first growth says the window is the limit: the sender may stripe
      const ask = extra > 0 && this.hooks.stripe !== undefined && !this.stripeAsked
      if (ask) this.stripeAsked = true
      const link = this.hooks.stripe
      this.sendText(`{"t":"credit","n":${grant + extra}${link !== undefined ? `,"max":${this.allowed}` : ''}${ask ? ',"stripe":true' : ''}}`)
      if (link?.lanes !== undefined && this.laneSeen) link.lanes.sendControl(encodeLaneCredit(link.role === 'opener' ? FROM_OPENER : FROM_ACCEPTOR, link.id, this.allowed))
    } else if (grant > 0 && this.socket.writableLength > 0 && !this.drainHooked) {
      this.drainHooked = true
      this.socket.once('drain', () => { this.drainHooked = false; this.grantCredit() })
    }
  }

  /**
   * Auto-tuning (as QUIC receivers do): when the bytes consumed since the epoch started would
   * use the whole window in under 4 RTT (as quic-go), the peer is window-limited: double the window (from
   * the budget). Returns the extra credit to grant.
   */
  private grow (flushed: number): number {
    const now = performance.now()
    const consumed = flushed - this.epochGranted
    const elapsed = now - this.epochAt
    if (consumed < this.window / 2) return 0
    const rtt = Math.max(1, this.hooks.rttMs?.() ?? DEFAULT_RTT_MS)
    let extra = 0
    const blocked = this.peerBlocked
    this.peerBlocked = false
    if (this.hooks.budget !== undefined && this.window < this.opts.maxWindow && (blocked || elapsed < 4 * rtt * (consumed / this.window))) {
      extra = this.hooks.budget.take(Math.min(this.window, this.opts.maxWindow - this.window))
      this.reserved += extra
      this.window += extra
    }
    this.epochAt = now
    this.epochGranted = flushed
    return extra
  }

  private onSocketEnd (): void {
    if (this.finished || this.localFin || this.finPending) return
    // bytes still waiting for credit go first
    if (this.pending !== undefined) { this.finPending = true; return }
    this.sendFin()
  }

  private sendFin (): void {
    this.localFin = true
    this.sendText(this.hooks.stripe !== undefined ? `{"t":"fin","n":${this.sent}}` : '{"t":"fin"}')
    // We sent the last fin: the other side closes the channel once it has read it (closing
    // here could drop the fin and the bytes before it). Bounded wait, then close anyway.
    if (this.remoteFin) {
      this.closeTimer = setTimeout(() => { if (!this.finished) this.done(true) }, 30_000)
      this.closeTimer.unref?.()
    }
  }

  private release (): void {
    this.cancelDrain?.()
    this.cancelRoom?.()
    this.unregister?.()
    this.reasm.clear()
    clearTimeout(this.closeTimer)
    this.hooks.budget?.give(this.reserved)
    this.reserved = 0
    this.pending = undefined
  }

  private done (closeChannel: boolean): void {
    if (this.finished) return
    this.finished = true
    this.release()
    if (closeChannel) {
      onDrain(this.dc, 0, () => {
        try { this.dc.close() } catch { /* closed */ }
      })
    }
    this.hooks.onClose?.('done')
  }

  private sendText (text: string): void {
    try { if (this.dc.readyState === 'open') this.dc.send(text) } catch { /* closing */ }
  }

  /** Aborts both directions and tells the other side. */
  reset (code = 'STREAM_RESET'): void {
    if (this.finished) return
    this.sendText(JSON.stringify({ t: 'rst', code }))
    this.finish('reset', code)
  }

  private finish (reason: 'reset' | 'error', code?: string): void {
    if (this.finished) return
    this.finished = true
    this.release()
    if (!this.socket.destroyed) this.socket.resetAndDestroy()
    try { this.dc.close() } catch { /* closed */ }
    this.hooks.onClose?.(reason, code)
  }
}
