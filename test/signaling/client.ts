/** A small WebSocket client for the signaling tests (Node 22's global WebSocket); every wait is bounded. */
import { randomId } from '../../protocol/encoding.ts'

export type Msg = Record<string, unknown>
export interface Closed { code: number, reason: string }

export class Client {
  readonly ws: WebSocket
  readonly opened: Promise<void>
  readonly closed: Promise<Closed>
  private readonly queue: Msg[] = []
  private readonly waiters: Array<(m: Msg) => void> = []

  constructor (url: string) {
    this.ws = new WebSocket(url)
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
      const w = this.waiters.shift()
      if (w !== undefined) w(m); else this.queue.push(m)
    })
  }

  static async open (base: string, room: string): Promise<Client> {
    const c = new Client(`${base.replace(/^http/, 'ws')}/v1/rooms/${room}`)
    await withTimeout(c.opened, 5000, 'websocket open')
    return c
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
