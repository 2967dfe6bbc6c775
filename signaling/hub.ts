/**
 * The room logic of the signaling service, independent of runtime: parses every frame, checks
 * join proofs, admits joins, forwards sealed signals, enforces limits. Adapters feed it socket
 * events and give it a RoomDirectory: the stores of the rooms that exist. A room is opened in
 * the directory only by a verified join and dropped when its last peer leaves, so sockets that
 * never join create nothing.
 */
import { CausewayError, publicError, type ErrorCode, ERRORS } from '../protocol/errors.ts'
import { verifyJoinProof } from '../protocol/join-proof.ts'
import type { SignalingLimits } from '../protocol/limits.ts'
import { otherJoinVersion, parseClientMessage, PROTOCOL_VERSION, type ClientMessage } from '../protocol/messages.ts'
import type { Conn, Role, RoomStore } from './store.ts'

export interface HubEvents<C extends Conn = Conn> {
  relayed?: () => void
  rejected?: (code: ErrorCode) => void
  /** A socket's join was verified and admitted (it is no longer a pre-join socket). */
  joined?: (conn: C) => void
  left?: () => void
}

/** What the service decided about a socket before it reached the hub (at the upgrade). */
export interface Admission {
  room: string
  /** The challenge this socket must sign (sent as its first frame). */
  challenge: string
  /** The most its access ticket allows; undefined in open mode (any role). */
  ticketRole?: Role
}

/** The rooms that exist: one store per room id. */
export interface RoomDirectory<C extends Conn> {
  get: (room: string) => RoomStore<C> | undefined
  /** The room's store, created if needed; throws CausewayError TOO_MANY_ROOMS. Only called for a verified join. */
  open: (room: string) => RoomStore<C>
  /** The room has no peers left. */
  drop: (room: string) => void
}

export interface HubInit<C extends Conn> {
  rooms: RoomDirectory<C>
  /** The admission of an accepted socket (undefined: not one of ours). */
  admissionOf: (conn: C) => Admission | undefined
  limits: SignalingLimits
  events?: HubEvents<C>
  /** Timer functions (injectable for tests and for the Durable Object's alarm). */
  setTimer?: (fn: () => void, ms: number) => unknown
  clearTimer?: (handle: unknown) => void
}

interface Bucket { tokens: number, at: number }

const encoder = new TextEncoder()

/** Whether a peer of role `viewer` is told about a peer of role `other`: viewers see only agents. */
const sees = (viewer: Role, other: Role | undefined): boolean => viewer === 'agent' || other === 'agent'

export class RoomHub<C extends Conn = Conn> {
  private readonly init: HubInit<C>
  private readonly buckets = new Map<string, Bucket>()
  private readonly timers = new Map<string, unknown>()
  private readonly pending = new Set<string>()
  /** Sockets already rejected: their remaining frames are dropped unread. */
  private readonly rejected = new Set<string>()

  constructor (init: HubInit<C>) {
    this.init = init
  }

  /** Number of sockets the hub tracks (joined or not). */
  get activeConnections (): number {
    return this.buckets.size
  }

  /** A socket was accepted: send its challenge and start its join timer. */
  opened (conn: C): void {
    this.buckets.set(conn.id, { tokens: this.init.limits.rateBurst, at: Date.now() })
    const admission = this.init.admissionOf(conn)
    if (admission === undefined) { this.reject(conn, new CausewayError('INTERNAL', 'socket without admission')); return }
    const set = this.init.setTimer ?? ((fn, ms) => setTimeout(fn, ms))
    this.timers.set(conn.id, set(() => {
      this.timers.delete(conn.id)
      if (this.storeOf(conn)?.peerOf(conn) === undefined) this.reject(conn, new CausewayError('JOIN_TIMEOUT', 'no join message in time'))
    }, this.init.limits.joinTimeoutMs))
    try { conn.send(JSON.stringify({ type: 'challenge', v: PROTOCOL_VERSION, nonce: admission.challenge })) } catch { /* closing */ }
  }

  /** A frame arrived. Never throws: every failure becomes an error message or a close. */
  async message (conn: C, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    if (this.rejected.has(conn.id)) return
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
    this.rejected.delete(conn.id)
    const admission = this.init.admissionOf(conn)
    if (admission === undefined) return
    const store = this.init.rooms.get(admission.room)
    if (store === undefined) return
    const joinedAs = store.peerOf(conn)
    const role = joinedAs === undefined ? undefined : store.roleOf(joinedAs)
    const peer = store.leave(conn)
    if (peer !== undefined) {
      this.init.events?.left?.()
      this.broadcast(store, peer, role ?? 'agent', JSON.stringify({ type: 'peer-left', peer }))
    }
    if (store.size() === 0) this.init.rooms.drop(admission.room)
  }

  private storeOf (conn: C): RoomStore<C> | undefined {
    const admission = this.init.admissionOf(conn)
    return admission === undefined ? undefined : this.init.rooms.get(admission.room)
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
    if (msg === null) {
      if (otherJoinVersion(data) !== undefined) throw new CausewayError('VERSION_MISMATCH', `this service speaks protocol version ${PROTOCOL_VERSION}`)
      throw new CausewayError('BAD_MESSAGE', 'not a valid protocol message')
    }
    await this.dispatch(conn, msg)
  }

  private async dispatch (conn: C, msg: ClientMessage): Promise<void> {
    switch (msg.type) {
      case 'join': { await this.join(conn, msg); return }
      case 'signal': {
        const store = this.storeOf(conn)
        const from = store?.peerOf(conn)
        if (store === undefined || from === undefined) throw new CausewayError('NOT_JOINED', 'join first')
        const target = store.get(msg.to)
        if (target === undefined || !sees(store.roleOf(from) ?? 'agent', store.roleOf(msg.to))) {
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

  private async join (conn: C, msg: Extract<ClientMessage, { type: 'join' }>): Promise<void> {
    if (msg.v !== PROTOCOL_VERSION) throw new CausewayError('VERSION_MISMATCH', `this service speaks protocol version ${PROTOCOL_VERSION}`)
    const admission = this.init.admissionOf(conn)
    if (admission === undefined) throw new CausewayError('INTERNAL', 'socket without admission')
    if (this.storeOf(conn)?.peerOf(conn) !== undefined || this.pending.has(conn.id)) throw new CausewayError('BAD_MESSAGE', 'already joined')
    this.pending.add(conn.id)
    let proven: boolean
    try {
      proven = await verifyJoinProof({ room: admission.room, peer: msg.peer, role: msg.role, challenge: admission.challenge, key: msg.key, sig: msg.sig })
    } finally {
      this.pending.delete(conn.id)
    }
    if (!proven) throw new CausewayError('UNAUTHORIZED', 'join proof does not verify: the peer id must be the hash of `key` and `sig` its signature over this socket\'s challenge')
    if (admission.ticketRole === 'viewer' && msg.role !== 'viewer') throw new CausewayError('FORBIDDEN', `a ${admission.ticketRole} ticket cannot join as ${msg.role}`)
    if (!this.buckets.has(conn.id) || this.rejected.has(conn.id)) return // closed while verifying
    const { limits } = this.init
    const existing = this.init.rooms.get(admission.room)
    if (existing !== undefined && existing.get(msg.peer) === undefined && existing.size() >= limits.maxPeersPerRoom) {
      throw new CausewayError('ROOM_FULL', `room holds ${limits.maxPeersPerRoom} peers`)
    }
    const store = existing ?? this.init.rooms.open(admission.room)
    this.clearJoinTimer(conn)
    const replaced = store.join(msg.peer, conn, msg.role)
    if (replaced !== undefined) {
      this.buckets.delete(replaced.id)
      this.clearJoinTimer(replaced)
      this.rejected.add(replaced.id)
      safeClose(replaced, 'REPLACED', 'replaced by a newer connection of the same peer')
    }
    this.init.events?.joined?.(conn)
    const { maxMessageBytes, maxPeersPerRoom, ratePerSecond, rateBurst } = limits
    conn.send(JSON.stringify({
      type: 'welcome',
      v: PROTOCOL_VERSION,
      peer: msg.peer,
      role: msg.role,
      peers: store.peers().filter(p => p !== msg.peer && sees(msg.role, store.roleOf(p))),
      limits: { maxMessageBytes, maxPeersPerRoom, ratePerSecond, rateBurst },
    }))
    this.broadcast(store, msg.peer, msg.role, JSON.stringify({ type: 'peer-joined', peer: msg.peer }))
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

  /** Sends `text` to every peer of the room but `about` that may see a peer of `role`. */
  private broadcast (store: RoomStore<C>, about: string, role: Role, text: string): void {
    for (const peer of store.peers()) {
      if (peer === about || !sees(store.roleOf(peer) ?? 'agent', role)) continue
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
    this.rejected.add(conn.id)
    this.init.events?.rejected?.(code)
    try { conn.send(JSON.stringify({ type: 'error', code, message })) } catch { /* already closing */ }
    safeClose(conn, code, message)
  }
}

function safeClose (conn: Conn, code: ErrorCode, reason: string): void {
  const close = ERRORS[code].close || 1008
  try { conn.close(close, `${code}: ${reason}`.slice(0, 120)) } catch { /* already closed */ }
}

/** Sends the error of a socket refused at admission (bad ticket) and closes it; for adapters. */
export function refuseSocket (conn: Pick<Conn, 'send' | 'close'>, err: unknown): void {
  const { code, message } = publicError(err)
  try { conn.send(JSON.stringify({ type: 'error', code, message })) } catch { /* already closing */ }
  safeClose({ id: '', ...conn }, code, message)
}
