/**
 * Moves bytes between a TCP socket and a stream data channel, both ways, with:
 * - backpressure sender-side: the socket is paused while the channel's bufferedAmount is over
 *   `highWater`, and resumed once it drains to `lowWater` (polled: @roamhq/wrtc has no
 *   bufferedamountlow event);
 * - flow control receiver-side: a sender never has more than `window` unacknowledged bytes in
 *   flight; the receiver grants `credit` only for bytes its socket has flushed, so a slow
 *   reader stalls the sender instead of growing memory on either side;
 * - half-close: a FIN on either socket becomes `fin` and ends only that direction;
 * - reset: a socket error becomes `rst` and the other side resets its socket (TCP RST).
 */
import type { Socket } from 'node:net'
import { parseJson, StreamControl } from '../../protocol/peer.ts'
import { onDrain } from '../../peer/channel.ts'

export interface PipeOptions {
  /** Flow-control window per stream and direction, bytes. Default 1 MiB. */
  window?: number
  /** Pause the socket above this channel bufferedAmount, bytes. Default 1 MiB. */
  highWater?: number
  /** Resume at or below this bufferedAmount, bytes. Default 256 KiB. */
  lowWater?: number
  /** Largest data-channel message, bytes. Default 64 KiB. */
  chunk?: number
}

export interface PipeHooks {
  onBytes?: (direction: 'in' | 'out', n: number) => void
  /** Called once when both directions are finished or the stream was reset. */
  onClose?: (reason: 'done' | 'reset' | 'error', code?: string) => void
}

export const PIPE_DEFAULTS: Required<PipeOptions> = { window: 1 << 20, highWater: 1 << 20, lowWater: 256 << 10, chunk: 64 << 10 }

export class StreamPipe {
  private readonly socket: Socket
  private readonly dc: RTCDataChannel
  private readonly opts: Required<PipeOptions>
  private readonly hooks: PipeHooks
  private credit: number
  /** Bytes received from the channel, and how many of them were granted back as credit. */
  private received = 0
  private granted = 0
  private drainHooked = false
  private localFin = false
  private remoteFin = false
  private finished = false
  private cancelDrain?: () => void
  private waitingCredit = false
  private closeTimer?: ReturnType<typeof setTimeout>

  constructor (socket: Socket, dc: RTCDataChannel, opts: PipeOptions = {}, hooks: PipeHooks = {}) {
    this.socket = socket
    this.dc = dc
    this.opts = { ...PIPE_DEFAULTS, ...opts }
    this.hooks = hooks
    this.credit = this.opts.window
  }

  /** Starts moving bytes; the channel must be open and the handshake done. */
  start (): void {
    const { socket, dc } = this
    dc.binaryType = 'arraybuffer'
    dc.onmessage = (ev: MessageEvent) => this.onMessage(ev.data)
    dc.onclose = () => {
      clearTimeout(this.closeTimer)
      if (this.finished) return
      if (this.localFin && this.remoteFin) this.done(false)
      else this.finish('reset', 'CHANNEL_CLOSED')
    }
    socket.on('data', (buf: Buffer) => this.onSocketData(buf))
    socket.on('end', () => this.onSocketEnd())
    socket.on('error', () => this.reset('SOCKET_ERROR'))
    socket.on('close', () => { if (!this.finished && !(this.localFin && this.remoteFin)) this.reset('SOCKET_CLOSED') })
    socket.resume()
  }

  private onSocketData (buf: Buffer): void {
    if (this.finished) return
    const { chunk } = this.opts
    try {
      for (let off = 0; off < buf.length; off += chunk) {
        const part = buf.subarray(off, Math.min(off + chunk, buf.length))
        this.dc.send(part as Uint8Array<ArrayBuffer>)
        this.credit -= part.length
      }
    } catch {
      this.reset('STREAM_RESET')
      return
    }
    this.hooks.onBytes?.('out', buf.length)
    this.maybePause()
  }

  private maybePause (): void {
    if (this.finished) return
    if (this.credit <= 0) {
      this.socket.pause()
      this.waitingCredit = true
      return
    }
    if (this.dc.bufferedAmount > this.opts.highWater && this.cancelDrain === undefined) {
      this.socket.pause()
      this.cancelDrain = onDrain(this.dc, this.opts.lowWater, () => {
        this.cancelDrain = undefined
        if (!this.finished && this.credit > 0 && !this.localFin) this.socket.resume()
        else if (this.credit <= 0) this.waitingCredit = true
      })
    }
  }

  private onMessage (data: unknown): void {
    if (this.finished) return
    if (typeof data === 'string') {
      const ctl = parseJson(StreamControl, data)
      if (ctl === null) { this.reset('BAD_MESSAGE'); return }
      switch (ctl.t) {
        case 'credit':
          this.credit += ctl.n
          if (this.waitingCredit && this.credit > 0) {
            this.waitingCredit = false
            if (!this.localFin) { this.socket.resume(); this.maybePause() }
          }
          return
        case 'fin':
          this.remoteFin = true
          this.socket.end()
          // we received the last fin: every byte of both directions has arrived; close.
          if (this.localFin) this.done(true)
          return
        case 'rst':
          this.finish('reset', ctl.code)
          return
        default:
          this.reset('BAD_MESSAGE')
          return
      }
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined
    if (bytes === undefined || this.remoteFin) { this.reset('BAD_MESSAGE'); return }
    const n = bytes.length
    this.hooks.onBytes?.('in', n)
    this.received += n
    this.socket.write(bytes)
    this.grantCredit()
  }

  /**
   * Grants the sender credit for every byte that left our socket's user-space buffer (bytes
   * still in `writableLength` stay unacknowledged), in steps of a quarter window; re-checked
   * on the socket's `drain`.
   */
  private grantCredit (): void {
    if (this.finished) return
    const flushed = this.received - this.socket.writableLength
    const grant = flushed - this.granted
    if (grant >= this.opts.window / 4) {
      this.granted = flushed
      this.sendText(`{"t":"credit","n":${grant}}`)
    } else if (grant > 0 && this.socket.writableLength > 0 && !this.drainHooked) {
      this.drainHooked = true
      this.socket.once('drain', () => { this.drainHooked = false; this.grantCredit() })
    }
  }

  private onSocketEnd (): void {
    if (this.finished || this.localFin) return
    this.localFin = true
    this.sendText('{"t":"fin"}')
    // We sent the last fin: the other side closes the channel once it has read it (closing
    // here could drop the fin and the bytes before it). Bounded wait, then close anyway.
    if (this.remoteFin) {
      this.closeTimer = setTimeout(() => { if (!this.finished) this.done(true) }, 30_000)
      this.closeTimer.unref?.()
    }
  }

  private done (closeChannel: boolean): void {
    if (this.finished) return
    this.finished = true
    this.cancelDrain?.()
    clearTimeout(this.closeTimer)
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
    this.cancelDrain?.()
    clearTimeout(this.closeTimer)
    if (!this.socket.destroyed) this.socket.resetAndDestroy()
    try { this.dc.close() } catch { /* closed */ }
    this.hooks.onClose?.(reason, code)
  }
}
