/**
 * The room logic of the signaling service, independent of runtime: parses every frame, admits
 * joins, forwards sealed signals, enforces limits. Adapters feed it socket events and give it
 * a RoomStore.
 */
import { CausewayError, publicError, type ErrorCode, ERRORS } from '../protocol/errors.ts'
import type { SignalingLimits } from '../protocol/limits.ts'
import { parseClientMessage, PROTOCOL_VERSION, type ClientMessage } from '../protocol/messages.ts'
import type { Conn, RoomStore } from './store.ts'

export interface HubEvents {
  relayed?: () => void
  rejected?: (code: ErrorCode) => void
  joined?: () => void
  left?: () => void
}

export interface HubInit<C extends Conn> {
  room: string
  store: RoomStore<C>
  limits: SignalingLimits
  /** Throws CausewayError when the ticket does not admit a join to this room. */
  verifyJoin: (ticket: string | undefined, room: string) => Promise<void>
  events?: HubEvents
  /** Timer functions (injectable for tests). */
  setTimer?: (fn: () => void, ms: number) => unknown
  clearTimer?: (handle: unknown) => void
}

interface Bucket { tokens: number, at: number }

const encoder = new TextEncoder()

export class RoomHub<C extends Conn = Conn> {
  private readonly init: HubInit<C>
  private readonly buckets = new Map<string, Bucket>()
  private readonly timers = new Map<string, unknown>()
  private readonly pending = new Set<string>()

  constructor (init: HubInit<C>) {
    this.init = init
  }

  /** Number of sockets the hub still tracks (joined or not); 0 means the room can be dropped. */
  get activeConnections (): number {
    return Math.max(this.buckets.size, this.init.store.size())
  }

  /** A socket was accepted: start its join timer. */
  opened (conn: C): void {
    this.buckets.set(conn.id, { tokens: this.init.limits.rateBurst, at: Date.now() })
    const set = this.init.setTimer ?? ((fn, ms) => setTimeout(fn, ms))
    this.timers.set(conn.id, set(() => {
      this.timers.delete(conn.id)
      if (this.init.store.peerOf(conn) === undefined) this.reject(conn, new CausewayError('JOIN_TIMEOUT', 'no join message in time'))
    }, this.init.limits.joinTimeoutMs))
  }

  /** A frame arrived. Never throws: every failure becomes an error message or a close. */
  async message (conn: C, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    try {
      await this.handle(conn, data)
    } catch (err) {
      this.reject(conn, err)
    }
  }

  /** The socket closed (either side). */
  closed (conn: C): void {
    this.clearJoinTimer(conn)
    this.buckets.delete(conn.id)
    this.pending.delete(conn.id)
    const peer = this.init.store.leave(conn)
    if (peer !== undefined) {
      this.init.events?.left?.()
      this.broadcast(peer, JSON.stringify({ type: 'peer-left', peer }))
    }
  }

  private async handle (conn: C, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    const { limits } = this.init
    if (typeof data !== 'string') {
      const size = data.byteLength
      throw new CausewayError(size > limits.maxMessageBytes ? 'MESSAGE_TOO_LARGE' : 'BAD_MESSAGE', size > limits.maxMessageBytes ? `frame over ${limits.maxMessageBytes} bytes` : 'binary frames are not part of the protocol')
    }
    if (data.length > limits.maxMessageBytes || (data.length * 3 > limits.maxMessageBytes && encoder.encode(data).length > limits.maxMessageBytes)) {
      throw new CausewayError('MESSAGE_TOO_LARGE', `frame over ${limits.maxMessageBytes} bytes`)
    }
    if (!this.take(conn)) throw new CausewayError('RATE_LIMITED', `more than ${limits.ratePerSecond} messages per second`)
    const msg = parseClientMessage(data)
    if (msg === null) throw new CausewayError('BAD_MESSAGE', 'not a valid protocol message')
    await this.dispatch(conn, msg)
  }

  private async dispatch (conn: C, msg: ClientMessage): Promise<void> {
    const { store } = this.init
    switch (msg.type) {
      case 'join': {
        if (msg.v !== PROTOCOL_VERSION) throw new CausewayError('VERSION_MISMATCH', `this service speaks protocol version ${PROTOCOL_VERSION}`)
        if (store.peerOf(conn) !== undefined || this.pending.has(conn.id)) throw new CausewayError('BAD_MESSAGE', 'already joined')
        this.pending.add(conn.id)
        try {
          await this.init.verifyJoin(msg.ticket, this.init.room)
        } finally {
          this.pending.delete(conn.id)
        }
        if (!this.buckets.has(conn.id)) return // closed while verifying
        if (store.get(msg.peer) === undefined && store.size() >= this.init.limits.maxPeersPerRoom) {
          throw new CausewayError('ROOM_FULL', `room holds ${this.init.limits.maxPeersPerRoom} peers`)
        }
        this.clearJoinTimer(conn)
        const replaced = store.join(msg.peer, conn)
        if (replaced !== undefined) {
          this.buckets.delete(replaced.id)
          this.clearJoinTimer(replaced)
          safeClose(replaced, 'REPLACED', 'replaced by a newer connection of the same peer')
        }
        this.init.events?.joined?.()
        const { maxMessageBytes, maxPeersPerRoom, ratePerSecond, rateBurst } = this.init.limits
        conn.send(JSON.stringify({
          type: 'welcome',
          v: PROTOCOL_VERSION,
          peer: msg.peer,
          peers: store.peers().filter(p => p !== msg.peer),
          limits: { maxMessageBytes, maxPeersPerRoom, ratePerSecond, rateBurst },
        }))
        this.broadcast(msg.peer, JSON.stringify({ type: 'peer-joined', peer: msg.peer }))
        return
      }
      case 'signal': {
        const from = store.peerOf(conn)
        if (from === undefined) throw new CausewayError('NOT_JOINED', 'join first')
        const target = store.get(msg.to)
        if (target === undefined) {
          this.init.events?.rejected?.('UNKNOWN_PEER')
          conn.send(JSON.stringify({ type: 'error', code: 'UNKNOWN_PEER', message: `no peer ${msg.to} in this room` }))
          return
        }
        target.send(JSON.stringify({ type: 'signal', from, sealed: msg.sealed }))
        this.init.events?.relayed?.()
        return
      }
      case 'ping':
        conn.send(JSON.stringify({ type: 'pong', id: msg.id }))
        return
      default: {
        const never: never = msg
        throw new CausewayError('BAD_MESSAGE', `unknown message ${String(never)}`)
      }
    }
  }

  private take (conn: C): boolean {
    const { ratePerSecond, rateBurst } = this.init.limits
    const now = Date.now()
    const b = this.buckets.get(conn.id) ?? { tokens: rateBurst, at: now }
    b.tokens = Math.min(rateBurst, b.tokens + ((now - b.at) / 1000) * ratePerSecond)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    this.buckets.set(conn.id, b)
    return true
  }

  private broadcast (except: string, text: string): void {
    const { store } = this.init
    for (const peer of store.peers()) {
      if (peer === except) continue
      const c = store.get(peer)
      if (c === undefined) continue
      try { c.send(text) } catch { /* a dying socket; its close event cleans up */ }
    }
  }

  private clearJoinTimer (conn: Conn): void {
    const t = this.timers.get(conn.id)
    if (t === undefined) return
    this.timers.delete(conn.id);
    (this.init.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>)))(t)
  }

  private reject (conn: C, err: unknown): void {
    const { code, message } = publicError(err)
    this.init.events?.rejected?.(code)
    try { conn.send(JSON.stringify({ type: 'error', code, message })) } catch { /* already closing */ }
    safeClose(conn, code, message)
  }
}

function safeClose (conn: Conn, code: ErrorCode, reason: string): void {
  const close = ERRORS[code].close || 1008
  try { conn.close(close, `${code}: ${reason}`.slice(0, 120)) } catch { /* already closed */ }
}

/** The verifyJoin of a deployment: open without an access secret, ticket-gated with one. */
export function ticketVerifier (accessSecret: string | undefined, verify: (secret: string, ticket: string, room: string) => Promise<unknown>): (ticket: string | undefined, room: string) => Promise<void> {
  return async (ticket, room) => {
    if (accessSecret === undefined) return
    if (ticket === undefined) throw new CausewayError('UNAUTHORIZED', 'this deployment requires an access ticket')
    await verify(accessSecret, ticket, room)
  }
}
