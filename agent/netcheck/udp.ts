/**
 * STUN over one UDP socket: request/response transactions with retransmission, bounded in
 * time. Every datagram that is not a STUN message, or answers no transaction of ours, is
 * counted in `ignored` and dropped. Binding *requests* that reach the socket are recorded by
 * transaction id (the hairpinning probe sends one to our own mapped address).
 */
import { createSocket, type Socket } from 'node:dgram'
import { encodeStun, mappedAddress, METHOD, newTransactionId, parseStun, type StunMessage, type TransportAddress } from './stun.ts'

export interface Endpoint { host: string, port: number }
export interface StunAnswer { msg: StunMessage, from: Endpoint, rttMs: number }

/** Retransmissions (ms after the first send) inside one transaction's time limit. */
const RESENDS_MS = [0, 250, 650, 1250, 2050]

export class StunSocket {
  readonly sock: Socket
  ignored = 0
  private readonly pending = new Map<string, (a: StunAnswer | null) => void>()
  private readonly requestsSeen = new Set<string>()
  private closed = false
  private readonly signal?: AbortSignal
  private readonly onAbort = (): void => { this.close() }

  private constructor (sock: Socket, signal?: AbortSignal) {
    this.sock = sock
    this.signal = signal
    signal?.addEventListener('abort', this.onAbort, { once: true })
    sock.on('error', () => {})
    sock.on('message', (buf, rinfo) => {
      const msg = parseStun(buf)
      if (msg === null) { this.ignored++; return }
      const key = msg.tid.toString('hex')
      if (msg.cls === 'request') { if (this.requestsSeen.size < 64) this.requestsSeen.add(key); return }
      const done = this.pending.get(key)
      if (done === undefined) { this.ignored++; return }
      done({ msg, from: { host: rinfo.address, port: rinfo.port }, rttMs: 0 })
    })
  }

  /** Binds a socket (any port on every address of `family`); aborting `signal` closes it (pending transactions end with null). */
  static async open (family: 4 | 6 = 4, signal?: AbortSignal): Promise<StunSocket> {
    signal?.throwIfAborted()
    const sock = createSocket({ type: family === 4 ? 'udp4' : 'udp6', ...(family === 6 ? { ipv6Only: true } : {}) })
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, () => { sock.off('error', reject); resolve() })
    })
    return new StunSocket(sock, signal)
  }

  get port (): number { return this.sock.address().port }

  /** Sends `build(tid)` to `to` (resent while unanswered); the answer, or null after `timeoutMs`. */
  async transact (to: Endpoint, request: Buffer | ((tid: Buffer) => Buffer), timeoutMs: number, tid = newTransactionId()): Promise<StunAnswer | null> {
    if (this.closed) return null
    const bytes = typeof request === 'function' ? request(tid) : request
    const key = tid.toString('hex')
    const started = performance.now()
    const timers: Array<ReturnType<typeof setTimeout>> = []
    try {
      return await new Promise<StunAnswer | null>((resolve) => {
        this.pending.set(key, (a) => resolve(a === null ? null : { ...a, rttMs: performance.now() - started }))
        timers.push(setTimeout(() => resolve(null), timeoutMs))
        for (const at of RESENDS_MS) {
          if (at >= timeoutMs) break
          timers.push(setTimeout(() => { if (!this.closed) this.sock.send(bytes, to.port, to.host, () => {}) }, at))
        }
      })
    } finally {
      for (const t of timers) clearTimeout(t)
      this.pending.delete(key)
    }
  }

  /** A binding request to `to`: the reflexive address it saw, with the whole answer. */
  async binding (to: Endpoint, timeoutMs: number): Promise<{ mapped: TransportAddress | null, answer: StunAnswer } | null> {
    const answer = await this.transact(to, tid => encodeStun({ method: METHOD.binding, cls: 'request', tid }), timeoutMs)
    if (answer === null || answer.msg.cls !== 'success') return null
    return { mapped: mappedAddress(answer.msg), answer }
  }

  /** Sends one binding request without waiting for anything (the hairpin probe); returns its transaction id. */
  sendRequest (to: Endpoint): Buffer {
    const tid = newTransactionId()
    if (!this.closed) this.sock.send(encodeStun({ method: METHOD.binding, cls: 'request', tid }), to.port, to.host, () => {})
    return tid
  }

  /** Whether a binding request with this transaction id reached this socket. */
  sawRequest (tid: Buffer): boolean { return this.requestsSeen.has(tid.toString('hex')) }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.signal?.removeEventListener('abort', this.onAbort)
    for (const done of [...this.pending.values()]) done(null)
    this.sock.close()
  }
}
