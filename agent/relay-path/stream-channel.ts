/**
 * A data-channel-like view of one relayed libp2p stream, so tunnels (Tunnels, StreamPipe) run
 * unchanged over the relay. Implements the subset they use: `label`, `readyState`,
 * `binaryType`, `bufferedAmount`, `send(string | bytes)`, `close()`, `onmessage` / `onclose` /
 * `onopen` and `addEventListener('open' | 'close')`. No `bufferedAmountLowThreshold`: the pipe
 * polls `bufferedAmount` (the stream's write buffer) as it does for @roamhq/wrtc.
 *
 * ## Wire format (protocol `/causeway/tunnel/1.0.0`)
 * Every message is one frame: `kind` (1 byte) + payload length (4 bytes, big-endian) + payload.
 * - kind 2 `open`: the channel label (UTF-8, e.g. `tcp:<share>`); the dialer's first frame,
 *   exactly once; the acceptor reads it before anything else.
 * - kind 0 `text`: a UTF-8 text message (StreamControl JSON).
 * - kind 1 `binary`: stream bytes.
 * Payloads are at most MAX_FRAME bytes; anything else (unknown kind, oversize, a second `open`,
 * data before `open`) aborts the stream.
 *
 * Closing: `close()` half-closes the stream's writable end; the remote channel sees `close` when
 * it reads that end, closes its own, and then ours reports `close` too. A reset or a lost relay
 * path (RelayPathLostError from the relay transport) reports `close` at once, so StreamPipe
 * resets its socket instead of mistaking a cut stream for a clean end.
 */
import type { Stream } from '@libp2p/interface'

export const FRAME_TEXT = 0
export const FRAME_BINARY = 1
export const FRAME_OPEN = 2
/** Largest payload of one frame, bytes (the pipe sends 64 KiB chunks). */
export const MAX_FRAME = 1 << 20
const MAX_LABEL = 256
const HEADER = 5

const encoder = new TextEncoder()
const decoder = new TextDecoder()

type Handler = ((ev: Event) => void) | null

export class StreamChannel extends EventTarget {
  label: string
  readyState: RTCDataChannelState = 'open'
  binaryType: BinaryType = 'arraybuffer'
  readonly ordered = true
  readonly protocol = '/causeway/tunnel/1.0.0'
  onmessage: ((ev: MessageEvent) => void) | null = null
  onclose: Handler = null
  onopen: Handler = null
  onerror: Handler = null
  /** Why the channel closed when it was not a clean close (reset, lost relay path, bad frame). */
  closeError?: Error
  readonly stream: Stream
  private chunks: Uint8Array[] = []
  private have = 0
  private labelled: boolean
  private labelWaiters: Array<{ resolve: (label: string) => void, reject: (err: Error) => void }> = []

  private constructor (stream: Stream, label: string | undefined) {
    super()
    this.stream = stream
    this.label = label ?? ''
    this.labelled = label !== undefined
    // Attach the reader at once (see agent/relay-transport): data must never sit unread.
    stream.addEventListener('message', (evt) => { this.onData(evt.data.subarray()) })
    stream.addEventListener('remoteCloseWrite', () => {
      if (this.readyState === 'closed') return
      void stream.close({ signal: AbortSignal.timeout(30_000) }).catch((err: unknown) => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
      this.closed()
    })
    stream.addEventListener('close', (evt) => {
      if (evt.error !== undefined) this.closeError = evt.error
      this.closed()
    })
    if (stream.status !== 'open') queueMicrotask(() => this.closed())
  }

  /** The dialing side: sends the `open` frame with `label` now. */
  static dial (stream: Stream, label: string): StreamChannel {
    const ch = new StreamChannel(stream, label)
    ch.frame(FRAME_OPEN, encoder.encode(label))
    return ch
  }

  /** The accepting side: the label arrives in the first frame (see `label()`). */
  static accept (stream: Stream): StreamChannel {
    return new StreamChannel(stream, undefined)
  }

  /** Resolves with the label once the `open` frame arrived; rejects on close or after `timeoutMs`. */
  async waitLabel (timeoutMs: number): Promise<string> {
    if (this.labelled) return this.label
    if (this.readyState === 'closed') throw new Error('stream closed before its open frame')
    return await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => { this.fail(new Error('no open frame in time')); }, timeoutMs)
      this.labelWaiters.push({
        resolve: (l) => { clearTimeout(t); resolve(l) },
        reject: (e) => { clearTimeout(t); reject(e) },
      })
    })
  }

  /** This channel typed as the RTCDataChannel that Tunnels and StreamPipe take (the subset they use is implemented). */
  asDataChannel (): RTCDataChannel {
    return this as unknown as RTCDataChannel
  }

  get bufferedAmount (): number {
    return this.readyState === 'closed' ? 0 : this.stream.writeBufferLength
  }

  send (data: string | ArrayBuffer | ArrayBufferView): void {
    if (this.readyState !== 'open') throw new DOMException(`channel is ${this.readyState}`, 'InvalidStateError')
    if (typeof data === 'string') { this.frame(FRAME_TEXT, encoder.encode(data)); return }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    this.frame(FRAME_BINARY, bytes)
  }

  close (): void {
    if (this.readyState === 'closing' || this.readyState === 'closed') return
    this.readyState = 'closing'
    void this.stream.close({ signal: AbortSignal.timeout(30_000) }).catch((err: unknown) => {
      this.stream.abort(err instanceof Error ? err : new Error(String(err)))
    })
  }

  private frame (kind: number, payload: Uint8Array): void {
    if (payload.byteLength > MAX_FRAME) throw new TypeError(`message of ${payload.byteLength} bytes is over ${MAX_FRAME}`)
    const out = new Uint8Array(HEADER + payload.byteLength)
    out[0] = kind
    new DataView(out.buffer).setUint32(1, payload.byteLength)
    out.set(payload, HEADER)
    try {
      this.stream.send(out)
    } catch (err) {
      throw new DOMException(`stream not writable: ${err instanceof Error ? err.message : String(err)}`, 'InvalidStateError')
    }
  }

  private onData (data: Uint8Array): void {
    if (this.readyState === 'closed' || data.byteLength === 0) return
    this.chunks.push(data)
    this.have += data.byteLength
    for (let i = 0; i < 100_000 && this.have >= HEADER; i++) {
      const head = this.peekHeader()
      const kind = head[0] ?? 255
      const len = new DataView(head.buffer).getUint32(1)
      if (kind > FRAME_OPEN || len > MAX_FRAME || (kind === FRAME_OPEN && len > MAX_LABEL)) { this.fail(new Error('bad frame on relayed stream')); return }
      if (this.have < HEADER + len) return
      this.take(HEADER)
      const payload = this.take(len)
      if (!this.deliver(kind, payload)) return
    }
  }

  /** Handles one frame; false when the channel failed. */
  private deliver (kind: number, payload: Uint8Array<ArrayBuffer>): boolean {
    if (kind === FRAME_OPEN) {
      if (this.labelled) { this.fail(new Error('second open frame')); return false }
      this.label = decoder.decode(payload)
      this.labelled = true
      for (const w of this.labelWaiters.splice(0)) w.resolve(this.label)
      return true
    }
    if (!this.labelled) { this.fail(new Error('data before the open frame')); return false }
    if (this.readyState !== 'open' && this.readyState !== 'closing') return true
    const data = kind === FRAME_TEXT ? decoder.decode(payload) : payload.buffer
    const ev = new MessageEvent('message', { data })
    this.onmessage?.(ev)
    return true
  }

  private peekHeader (): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(HEADER)
    let at = 0
    for (const c of this.chunks) {
      const n = Math.min(c.byteLength, HEADER - at)
      out.set(c.subarray(0, n), at)
      at += n
      if (at === HEADER) break
    }
    return out
  }

  /** Removes `n` bytes from the front of the buffered chunks into a fresh array. */
  private take (n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n)
    let at = 0
    while (at < n) {
      const c = this.chunks[0]
      if (c === undefined) break
      const k = Math.min(c.byteLength, n - at)
      out.set(c.subarray(0, k), at)
      at += k
      if (k === c.byteLength) this.chunks.shift(); else this.chunks[0] = c.subarray(k)
    }
    this.have -= n
    return out
  }

  private fail (err: Error): void {
    this.closeError ??= err
    this.stream.abort(err)
    this.closed()
  }

  private closed (): void {
    if (this.readyState === 'closed') return
    this.readyState = 'closed'
    this.chunks = []
    this.have = 0
    const err = this.closeError ?? new Error('stream closed before its open frame')
    for (const w of this.labelWaiters.splice(0)) w.reject(err)
    const ev = new Event('close')
    this.onclose?.(ev)
    this.dispatchEvent(new Event('close'))
  }
}
