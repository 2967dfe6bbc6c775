/**
 * The room logic of the signaling service, independent of runtime: parses every frame, checks
 * join proofs, admits joins, forwards sealed signals, enforces limits. Adapters feed it socket
 * events and give it a RoomStore (store.ts): the rooms' membership and the delivery of frames
 * to whichever replica holds a peer's socket. The hub registers itself as the store's listener
 * and turns what the store reports (a member joined or left, a signal for a local socket, a
 * local socket replaced, the store lost) into protocol frames for this process's sockets; the
 * visibility rule (viewers see only agents) is applied here and nowhere else. A room exists in
 * the store only once a verified join is recorded, so sockets that never join create nothing.
 *
 * Per socket, frames are handled in arrival order; a signal is handed to the store before the
 * next frame is looked at, so one sender's signals reach the store (and, through it, their
 * recipient) in order. Frames the store hands over for a socket whose join is still being
 * recorded are held (bounded) and sent right after its `welcome`.
 *
 * Seats: the hub charges a join to its sender (the ticket's subject, else the client address
 * the adapter saw) and passes the caps to the store, which applies them atomically (seats.ts);
 * rooms per address only in open mode (with an access secret only the deployment's networks
 * can create rooms). A socket the store evicts for an agent is closed with ROOM_FULL.
 */
import { CausewayError, publicError, type ErrorCode, ERRORS } from '../protocol/errors.ts'
import { verifyJoinProof } from '../protocol/join-proof.ts'
import type { SignalingLimits } from '../protocol/limits.ts'
import { otherJoinVersion, parseClientMessage, PROTOCOL_VERSION, type ClientMessage } from '../protocol/messages.ts'
import { EVICTED_MESSAGE, JoinRefused, type RefusalReason } from './seats.ts'
import type { Conn, JoinLimits, Member, Role, RoomListener, RoomStore } from './store.ts'

export interface HubEvents<C extends Conn = Conn> {
  relayed?: () => void
  rejected?: (code: ErrorCode) => void
  /** A socket's join was verified and admitted (it is no longer a pre-join socket). */
  joined?: (conn: C) => void
  left?: () => void
  /** A verified join was refused by a seat or room cap (seats.ts). */
  refused?: (reason: RefusalReason) => void
  /** A socket of this process lost its seat to an agent joining a full room. */
  evicted?: () => void
}

/** What the service decided about a socket before it reached the hub (at the upgrade). */
export interface Admission {
  room: string
  /** The challenge this socket must sign (sent as its first frame). */
  challenge: string
  /** The most its access ticket allows; undefined in open mode (any role). */
  ticketRole?: Role
  /** The client address's key (seats.ts seatAddress): its seats, and in open mode its rooms, are charged to it. */
  address: string
  /** The subject its access ticket names, if any: its seats are charged to that instead. */
  subject?: string
}

export interface HubInit<C extends Conn> {
  /** The rooms (the hub becomes its listener). */
  store: RoomStore<C>
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
/** Frames held for a socket whose join is being recorded, at most. */
const MAX_HELD = 256

/** Whether a peer of role `viewer` is told about a peer of role `other`: viewers see only agents. */
const sees = (viewer: Role, other: Role): boolean => viewer === 'agent' || other === 'agent'
/** The roles a peer of role `role` may signal. */
const signalable = (role: Role): readonly Role[] => role === 'agent' ? ['agent', 'viewer'] : ['agent']

export class RoomHub<C extends Conn = Conn> {
  private readonly init: HubInit<C>
  private readonly store: RoomStore<C>
  private readonly buckets = new Map<string, Bucket>()
  private readonly timers = new Map<string, unknown>()
  /** Joins under way (proof check, then the store), by socket id. */
  private readonly joining = new Map<string, Promise<void>>()
  /** Frames for sockets whose join is being recorded, sent after their welcome. */
  private readonly held = new Map<string, string[]>()
  /** Sockets already rejected: their remaining frames are dropped unread. */
  private readonly rejected = new Set<string>()

  constructor (init: HubInit<C>) {
    this.init = init
    this.store = init.store
    this.store.listen(this.listener())
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
      if (this.store.joinedAs(conn) === undefined && !this.joining.has(conn.id)) this.reject(conn, new CausewayError('JOIN_TIMEOUT', 'no join message in time'))
    }, this.init.limits.joinTimeoutMs))
    try { conn.send(JSON.stringify({ type: 'challenge', v: PROTOCOL_VERSION, nonce: admission.challenge })) } catch { /* closing */ }
  }

  /** A frame arrived. Never throws: every failure becomes an error message or a close. */
  async message (conn: C, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    if (this.rejected.has(conn.id)) return
    try {
      await this.handle(conn, data)
    } catch (err) {
      // (A socket the store lost meanwhile was rejected already.)
      if (!this.rejected.has(conn.id)) this.reject(conn, err)
    }
  }

  /** The socket closed (either side). Resolves once the store has forgotten it; never throws. */
  async closed (conn: C): Promise<void> {
    this.clearJoinTimer(conn)
    this.buckets.delete(conn.id)
    this.rejected.delete(conn.id)
    this.held.delete(conn.id)
    // A join under way finishes first (it sees the socket gone and sends nothing), then the leave.
    await this.joining.get(conn.id)?.catch(() => {})
    try {
      if (await this.store.leave(conn) !== undefined) this.init.events?.left?.()
    } catch { /* the store forgets it locally whatever happens */ }
  }

  private listener (): RoomListener<C> {
    return {
      joined: (room, member) => { this.announce(room, member, JSON.stringify({ type: 'peer-joined', peer: member.peer })) },
      left: (room, member) => { this.announce(room, member, JSON.stringify({ type: 'peer-left', peer: member.peer })) },
      deliver: (conn, text) => { this.push(conn, text) },
      replaced: (conn) => {
        this.buckets.delete(conn.id)
        this.clearJoinTimer(conn)
        this.rejected.add(conn.id)
        this.held.delete(conn.id)
        safeClose(conn, 'REPLACED', 'replaced by a newer connection of the same peer')
      },
      evicted: (conn) => {
        this.clearJoinTimer(conn)
        this.init.events?.evicted?.()
        this.reject(conn, new CausewayError('ROOM_FULL', EVICTED_MESSAGE))
      },
      lost: (conns) => {
        for (const conn of conns) this.reject(conn, new CausewayError('STORE_UNAVAILABLE', 'the signaling service lost its room store: reconnect'))
      },
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
    if (msg === null) {
      if (otherJoinVersion(data) !== undefined) throw new CausewayError('VERSION_MISMATCH', `this service speaks protocol version ${PROTOCOL_VERSION}`)
      throw new CausewayError('BAD_MESSAGE', 'not a valid protocol message')
    }
    await this.dispatch(conn, msg)
  }

  private async dispatch (conn: C, msg: ClientMessage): Promise<void> {
    switch (msg.type) {
      case 'join': {
        if (this.store.joinedAs(conn) !== undefined || this.joining.has(conn.id)) throw new CausewayError('BAD_MESSAGE', 'already joined')
        const joining = this.join(conn, msg)
        this.joining.set(conn.id, joining)
        try { await joining } finally { this.joining.delete(conn.id) }
        return
      }
      case 'signal': {
        const me = this.store.joinedAs(conn)
        if (me === undefined || this.held.has(conn.id)) throw new CausewayError('NOT_JOINED', 'join first')
        const delivered = await this.store.send(me.room, msg.to, signalable(me.role), JSON.stringify({ type: 'signal', from: me.peer, sealed: msg.sealed }))
        if (!delivered) {
          this.init.events?.rejected?.('UNKNOWN_PEER')
          this.push(conn, JSON.stringify({ type: 'error', code: 'UNKNOWN_PEER', message: `no peer ${msg.to} in this room` }))
          return
        }
        this.init.events?.relayed?.()
        return
      }
      case 'ping':
        this.push(conn, JSON.stringify({ type: 'pong', id: msg.id }))
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
    const proven = await verifyJoinProof({ room: admission.room, peer: msg.peer, role: msg.role, challenge: admission.challenge, key: msg.key, sig: msg.sig })
    if (!proven) throw new CausewayError('UNAUTHORIZED', 'join proof does not verify: the peer id must be the hash of `key` and `sig` its signature over this socket\'s challenge')
    if (admission.ticketRole === 'viewer' && msg.role !== 'viewer') throw new CausewayError('FORBIDDEN', `a ${admission.ticketRole} ticket cannot join as ${msg.role}`)
    if (!this.isOpen(conn)) return // closed while verifying
    const { limits } = this.init
    this.clearJoinTimer(conn)
    this.held.set(conn.id, [])
    let members: Member[]
    const seat = { address: admission.address, ...(admission.subject !== undefined ? { subject: admission.subject } : {}) }
    try {
      members = await this.store.join(admission.room, conn, { peer: msg.peer, role: msg.role }, seat, joinLimits(limits, admission))
    } catch (err) {
      this.held.delete(conn.id)
      if (err instanceof JoinRefused) this.init.events?.refused?.(err.reason)
      throw err
    }
    const held = this.held.get(conn.id)
    this.held.delete(conn.id)
    if (!this.isOpen(conn) || held === undefined) return // closed or replaced meanwhile: closed() leaves
    this.init.events?.joined?.(conn)
    const { maxMessageBytes, maxPeersPerRoom, ratePerSecond, rateBurst } = limits
    this.push(conn, JSON.stringify({
      type: 'welcome',
      v: PROTOCOL_VERSION,
      peer: msg.peer,
      role: msg.role,
      peers: members.filter(m => m.peer !== msg.peer && sees(msg.role, m.role)).map(m => m.peer),
      limits: { maxMessageBytes, maxPeersPerRoom, ratePerSecond, rateBurst },
    }))
    for (const text of held) this.push(conn, text)
  }

  private isOpen (conn: C): boolean {
    return this.buckets.has(conn.id) && !this.rejected.has(conn.id)
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

  /** Sends `text` to a socket of this process, or holds it while the socket's join is being recorded. */
  private push (conn: C, text: string): void {
    if (this.rejected.has(conn.id)) return
    const held = this.held.get(conn.id)
    if (held !== undefined) {
      if (held.length < MAX_HELD) held.push(text)
      return
    }
    try { conn.send(text) } catch { /* a dying socket; its close event cleans up */ }
  }

  /** Sends `text` (about `about`) to every local socket of the room that may see it, but `about`'s own. */
  private announce (room: string, about: Member, text: string): void {
    for (const { conn, member } of this.store.local(room)) {
      if (member.peer === about.peer || !sees(member.role, about.role)) continue
      this.push(conn, text)
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
    this.held.delete(conn.id)
    this.init.events?.rejected?.(code)
    try { conn.send(JSON.stringify({ type: 'error', code, message })) } catch { /* already closing */ }
    safeClose(conn, code, message)
  }
}

/** The caps of a join: rooms per address only in open mode (with tickets, only the deployment's networks can create rooms). */
function joinLimits (limits: SignalingLimits, admission: Admission): JoinLimits {
  return {
    maxPeers: limits.maxPeersPerRoom,
    maxSeatsPerAddress: limits.maxSeatsPerAddress,
    maxSeatsPerSubject: limits.maxSeatsPerSubject,
    maxViewers: limits.maxViewersPerRoom,
    maxViewersPerAddress: limits.maxViewersPerAddress,
    maxRoomsPerAddress: admission.ticketRole === undefined ? limits.maxRoomsPerAddress : Infinity,
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
