/**
 * Two connected in-memory stream ends, for shares served inside the agent process (the
 * API-server share's proxy): a tunnelled stream is handed to the server through one end, so
 * no socket exists that anyone else could connect to.
 *
 * Each end behaves like the part of a `net.Socket` the tunnel uses: `write` on one end is
 * read on the other with backpressure (the writer's callback waits until the reader pulls),
 * `end` is a half-close (the other end sees `end`, and can still write back), `destroy` closes
 * both ends, `resetAndDestroy` makes the other end fail with ECONNRESET (like a TCP RST).
 */
import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'

export class PairEnd extends Duplex {
  peer: PairEnd | undefined
  private blocked: ((err?: Error | null) => void) | undefined
  readonly remoteAddress = 'in-process'

  constructor () {
    super({ allowHalfOpen: true })
  }

  override _read (): void {
    const cb = this.peer?.blocked
    if (cb !== undefined && this.peer !== undefined) {
      this.peer.blocked = undefined
      cb()
    }
  }

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    if (peer === undefined || peer.destroyed) { cb(Object.assign(new Error('write after the other end closed'), { code: 'EPIPE' })); return }
    if (peer.push(chunk)) cb(); else this.blocked = cb
  }

  override _final (cb: (err?: Error | null) => void): void {
    if (this.peer !== undefined && !this.peer.destroyed) this.peer.push(null)
    cb()
  }

  override _destroy (err: Error | null, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    const blocked = this.blocked
    this.blocked = undefined
    blocked?.(err ?? undefined)
    if (peer !== undefined && !peer.destroyed) process.nextTick(() => peer.destroy())
    cb(err)
  }

  /** Like `net.Socket#resetAndDestroy`: the other end fails with ECONNRESET. */
  resetAndDestroy (): this {
    const peer = this.peer
    if (peer !== undefined && !peer.destroyed) peer.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))
    this.destroy()
    return this
  }

  // The socket options the tunnel and node:http set: meaningless in memory.
  setNoDelay (): this { return this }
  setKeepAlive (): this { return this }
  setTimeout (_ms: number, cb?: () => void): this {
    if (cb !== undefined) this.once('timeout', cb)
    return this
  }
}

/**
 * A connected pair. The first end is typed as the `net.Socket` the tunnel pipes (it only uses
 * the stream API plus the methods above); the second goes to the in-process server.
 */
export function socketPair (): [Socket, PairEnd] {
  const a = new PairEnd()
  const b = new PairEnd()
  a.peer = b
  b.peer = a
  return [a as unknown as Socket, b]
}
