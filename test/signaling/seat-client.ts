/**
 * A signaling client for the seat tests on the `ws` package, which can pick its source
 * address (`localAddress`: any 127.x on Linux loopback, so each test address is a real client
 * address, no proxy header needed) and set request headers. Joins with a proof of `key`,
 * then hands over the first answer (welcome or error) and everything after it. Every wait is
 * bounded.
 */
import { WebSocket } from 'ws'
import { signJoin, type JoinRole, type PeerKey } from '../../protocol/join-proof.ts'
import { PROTOCOL_VERSION, SUBPROTOCOL, TICKET_SUBPROTOCOL_PREFIX } from '../../protocol/messages.ts'
import { withTimeout, type Msg } from './client.ts'

export interface SeatOptions {
  key: PeerKey
  role?: JoinRole
  ticket?: string
  localAddress?: string
  headers?: Record<string, string>
  timeoutMs?: number
}

export interface Seated {
  /** The answer to the join: a welcome, or an error (code, message); `upgrade` when the HTTP upgrade was refused (status). */
  answer: Msg
  /** The close code, once closed. */
  closed: Promise<number>
  /** The next message after the answer. */
  next: (timeoutMs?: number) => Promise<Msg>
  close: () => void
}

export async function seatJoin (base: string, room: string, opts: SeatOptions): Promise<Seated> {
  const role = opts.role ?? 'agent'
  const protocols = [SUBPROTOCOL, ...(opts.ticket !== undefined ? [TICKET_SUBPROTOCOL_PREFIX + opts.ticket] : [])]
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/rooms/${room}`, protocols, {
    perMessageDeflate: false,
    ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    ...(opts.headers !== undefined ? { headers: opts.headers } : {}),
  })
  const queue: Msg[] = []
  const waiters: Array<(m: Msg) => void> = []
  const push = (m: Msg): void => { const w = waiters.shift(); if (w !== undefined) w(m); else queue.push(m) }
  const closed = new Promise<number>(resolve => ws.once('close', (code: number) => { resolve(code); push({ type: 'closed', code }) }))
  ws.on('error', () => {})
  ws.once('unexpected-response', (_req, res) => { push({ type: 'upgrade', status: res.statusCode ?? 0 }); res.resume(); ws.terminate() })
  ws.on('message', (data: Buffer) => {
    let m: Msg
    try { m = JSON.parse(data.toString()) as Msg } catch { m = { type: 'unparsable' } }
    push(m)
  })
  const next = async (timeoutMs = opts.timeoutMs ?? 5000): Promise<Msg> => {
    const m = queue.shift()
    if (m !== undefined) return m
    let w: ((m: Msg) => void) | undefined
    const p = new Promise<Msg>(resolve => { w = resolve; waiters.push(resolve) })
    try { return await withTimeout(p, timeoutMs, 'a message') } finally {
      const i = w === undefined ? -1 : waiters.indexOf(w)
      if (i >= 0) waiters.splice(i, 1)
    }
  }
  const close = (): void => { try { ws.close(1000, 'done') } catch { ws.terminate() } }
  const first = await next()
  if (first.type !== 'challenge' || typeof first.nonce !== 'string') return { answer: first, closed, next, close }
  const sig = await signJoin(opts.key, { room, role, challenge: first.nonce })
  ws.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, peer: opts.key.id, role, key: opts.key.publicKey, sig }))
  return { answer: await next(), closed, next, close }
}
