/** A small WebSocket client for the signaling tests (Node 22's global WebSocket); every wait is bounded. */
import { randomId } from '../../protocol/encoding.ts'
import { generatePeerKey, signJoin, type JoinRole, type PeerKey } from '../../protocol/join-proof.ts'
import { PROTOCOL_VERSION, SUBPROTOCOL, TICKET_SUBPROTOCOL_PREFIX } from '../../protocol/messages.ts'

export type Msg = Record<string, unknown>
export interface Closed { code: number, reason: string }

export class Client {
  readonly ws: WebSocket
  readonly opened: Promise<void>
  readonly closed: Promise<Closed>
  /** The service's challenge (the first frame of an admitted socket; kept out of the message queue). */
  readonly challenge: Promise<string>
  private readonly queue: Msg[] = []
  private readonly waiters: Array<(m: Msg) => void> = []

  constructor (url: string, protocols: string[] = [SUBPROTOCOL]) {
    this.ws = new WebSocket(url, protocols)
    let gotChallenge: (nonce: string) => void = () => {}
    this.challenge = new Promise(resolve => { gotChallenge = resolve })
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener('open', () => resolve(), { once: true })
      this.ws.addEventListener('error', () => reject(new Error(`cannot open ${url}`)), { once: true })
    })
    this.opened.catch(() => {})
    this.closed = new Promise(resolve => {
      this.ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason }), { once: true })
    })
    this.ws.addEventListener('message', (e) => {
      let m: Msg
      try { m = JSON.parse(String(e.data)) as Msg } catch { m = { type: 'unparsable', data: String(e.data) } }
      if (m.type === 'challenge' && typeof m.nonce === 'string') { gotChallenge(m.nonce); return }
      const w = this.waiters.shift()
      if (w !== undefined) w(m); else this.queue.push(m)
    })
  }

  /** Opens a room socket, offering causeway.2 and the ticket subprotocol when a ticket is given. */
  static async open (base: string, room: string, ticket?: string, timeoutMs = 5000): Promise<Client> {
    const c = new Client(`${base.replace(/^http/, 'ws')}/v1/rooms/${room}`, [SUBPROTOCOL, ...(ticket !== undefined ? [TICKET_SUBPROTOCOL_PREFIX + ticket] : [])])
    await withTimeout(c.opened, timeoutMs, 'websocket open')
    return c
  }

  /** Answers the challenge with a join proven by `key` (fields in `override` replace the proper ones). */
  async join (room: string, key: PeerKey, role: JoinRole = 'agent', override: Msg = {}): Promise<void> {
    const challenge = await withTimeout(this.challenge, 5000, 'challenge')
    const sig = await signJoin(key, { room, role, challenge })
    this.send({ type: 'join', v: PROTOCOL_VERSION, peer: key.id, role, key: key.publicKey, sig, ...override })
  }

  send (m: Msg | string): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m))
  }

  /** The next message, waiting at most timeoutMs. */
  async next (timeoutMs = 3000): Promise<Msg> {
    const m = this.queue.shift()
    if (m !== undefined) return m
    let w: ((m: Msg) => void) | undefined
    const p = new Promise<Msg>(resolve => { w = resolve; this.waiters.push(resolve) })
    try {
      return await withTimeout(p, timeoutMs, 'next message')
    } finally {
      const i = w === undefined ? -1 : this.waiters.indexOf(w)
      if (i >= 0) this.waiters.splice(i, 1)
    }
  }

  /** Skips messages until one of `type` arrives. */
  async nextOf (type: string, timeoutMs = 3000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs
    for (let i = 0; i < 10_000; i++) {
      const m = await this.next(Math.max(1, deadline - Date.now()))
      if (m.type === type) return m
    }
    throw new Error(`no ${type} message`)
  }

  async closedWithin (timeoutMs = 3000): Promise<Closed> {
    return await withTimeout(this.closed, timeoutMs, 'close')
  }

  close (): void {
    try { this.ws.close(1000, 'done') } catch { /* already closed */ }
  }
}

export async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms) })])
  } finally {
    clearTimeout(t)
  }
}

/** A valid random room id and peer id. */
export const newRoom = (): string => `room${randomId(16)}`.replace(/[^A-Za-z0-9_-]/g, 'x').slice(0, 32)
export const newPeer = (): string => `peer${randomId(9)}`.replace(/[^A-Za-z0-9_-]/g, 'x')
/** A fresh peer key (its id is the peer id). */
export const newKey = async (): Promise<PeerKey> => await generatePeerKey()

/**
 * A WebSocket upgrade request over raw TCP (optionally from `localAddress`, any 127.x on
 * Linux loopback); resolves with the HTTP status, or 0 when the connection fails. With `hold`,
 * a 101 socket stays open until its `close` is called. Cheap enough to send thousands.
 */
export async function rawUpgrade (port: number, path: string, opts: { localAddress?: string, protocols?: string[], hold?: boolean } = {}): Promise<{ status: number, close: () => void }> {
  const { connect } = await import('node:net')
  return await new Promise(resolve => {
    const s = connect({ host: '127.0.0.1', port, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) })
    let got = ''
    let settled = false
    const close = (): void => { s.destroy() }
    const done = (status: number): void => {
      if (settled) return
      settled = true
      clearTimeout(t)
      if (!(opts.hold === true && status === 101)) s.destroy()
      resolve({ status, close })
    }
    const t = setTimeout(() => done(0), 5000)
    s.on('error', () => done(0))
    s.on('close', () => done(0))
    s.on('data', d => {
      got += d.toString('latin1')
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got)
      if (m?.[1] !== undefined) done(Number(m[1]))
    })
    s.on('connect', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))))}\r\nSec-WebSocket-Version: 13\r\n` +
        (opts.protocols !== undefined ? `Sec-WebSocket-Protocol: ${opts.protocols.join(', ')}\r\n` : '') + '\r\n')
    })
  })
}
