/**
 * Room state behind one interface (partyserver style), shaped for several replicas of the
 * service. A store has two halves:
 *
 * - local: the sockets *this* process holds and the member each joined as (`joinedAs`,
 *   `local`); synchronous, because only this process can know them;
 * - shared: the rooms' membership and the delivery of signals and room events to whichever
 *   replica holds the recipient's socket (`join`, `leave`, `send`, `members`); asynchronous,
 *   because on Redis it is a round trip.
 *
 * What arrives for this process's sockets comes back through the RoomListener the hub
 * registers (`listen`): room events (a member joined or left, on any replica), signals for a
 * local socket, a local socket replaced by a newer socket of the same peer (on any replica),
 * a local socket evicted from a full room for an agent (on any replica), and the loss of the
 * store (every local socket is then forgotten). The hub alone turns those into protocol frames,
 * so the visibility rules (viewers see only agents) live in one place.
 *
 * A join is charged to a sender (`Seat`: the ticket's subject, else the client address) and
 * checked against the seat caps and rooms per address of `JoinLimits` atomically across
 * replicas; seats.ts holds the rules, which memory and Durable Object apply in TS and Redis in
 * its JOIN script.
 *
 * Implementations: MemoryRoomStore (here; one process), DurableObjectRoomStore
 * (worker/store.ts; one Durable Object per room, state in the sockets' attachments) and
 * RedisRoomStore (node/redis-store.ts; any number of Node replicas on one Redis). All three are
 * checked by the contract suites in store.contract.ts and seats.contract.ts.
 */
import { CausewayError } from '../protocol/errors.ts'
import { decideSeat, refusal, seatRefusal, type HeldSeat, type Role, type Seat, type SeatLimits } from './seats.ts'

export type { Role, Seat } from './seats.ts'

/** One WebSocket as the room sees it. */
export interface Conn {
  /** Stable id of this socket (not the peer id). */
  readonly id: string
  send (text: string): void
  close (code: number, reason: string): void
}

/** A joined peer: its id and the role it joined with. */
export interface Member { peer: string, role: Role }

/** A local socket's membership: the room it joined and as whom. */
export interface Joined extends Member { room: string }

/**
 * What a store tells the hub of this process. Callbacks run synchronously inside the store's
 * own calls (memory, Durable Object) or when a message from the shared backend arrives (Redis);
 * they must not throw.
 */
export interface RoomListener<C extends Conn> {
  /** `member` joined `room`, or joined it again on a newer socket, through any replica. Heard by every replica holding a socket of that room. */
  joined: (room: string, member: Member) => void
  /** `member` left `room`: its current socket closed, or the replica that held it stopped and its presence expired. Never heard for a replaced socket. */
  left: (room: string, member: Member) => void
  /** Text (a whole protocol frame) for a socket of this process, handed over by `send` on any replica. */
  deliver: (conn: C, text: string) => void
  /** A socket of this process was replaced by a newer socket of the same peer, here or on another replica; the store has forgotten it already. */
  replaced: (conn: C) => void
  /** A socket of this process lost its seat to an agent joining a full room (seats.ts), through any replica; the store has forgotten it already and the room heard `left`. */
  evicted: (conn: C) => void
  /** The store lost its shared backend and can no longer vouch for these sockets of this process; it has forgotten them all. */
  lost: (conns: C[]) => void
}

/** The caps a join is checked against, across every replica (seats.ts has the rules). */
export interface JoinLimits extends SeatLimits {
  /**
   * Live rooms that joins from one address may have created (the room is charged to the
   * address of the join that created it until its last peer leaves); TOO_MANY_ROOMS past it.
   * Infinity: not counted (the hub passes that for ticket joins). Not enforced by the Durable
   * Object store (one object per room: no view of the others).
   */
  maxRoomsPerAddress: number
}

export interface RoomStore<C extends Conn = Conn> {
  /** Registers the listener (the hub); a later call replaces it. */
  listen (listener: RoomListener<C>): void
  /** The room and member a socket of this process joined as; undefined before its join, after its leave and once replaced. */
  joinedAs (conn: C): Joined | undefined
  /** The sockets of this process joined in `room`, with their members (a socket whose join is under way included). */
  local (room: string): Array<{ conn: C, member: Member }>
  /**
   * Records that `conn` joined `room` as `member`, its seat charged to `seat`; resolves with
   * the room's members after the join (itself included). Atomic against `limits` across
   * replicas (seats.ts: per subject, per address, viewers, the room's size; a peer joining
   * again is checked with its own seat set aside): a refusal throws JoinRefused (ROOM_FULL,
   * SEAT_LIMIT). A full room gives an agent with a subject the seat of a viewer or of the
   * address holding the most; the evicted socket's holder hears `evicted` and the room `left`.
   * A previous socket of the same peer, on any replica, is replaced (its holder's listener
   * hears `replaced`). Every replica holding a socket of the room hears `joined`. Throws
   * BAD_MESSAGE for a socket that already joined, JoinRefused TOO_MANY_ROOMS when this process
   * holds its limit of rooms or the address its `maxRoomsPerAddress`, STORE_UNAVAILABLE when
   * the shared backend is unreachable.
   */
  join (room: string, conn: C, member: Member, seat: Seat, limits: JoinLimits): Promise<Member[]>
  /**
   * Forgets `conn`. Resolves with its member if it was still that peer's current socket (every
   * replica holding a socket of the room then hears `left`), else undefined (never joined,
   * already left, replaced). Never throws: a store that cannot reach its backend forgets the
   * socket locally and lets the presence of this replica expire.
   */
  leave (conn: C): Promise<Member | undefined>
  /**
   * Hands `text` to the current socket of peer `to` in `room`, wherever it is held, if that
   * peer's role is one of `roles`; false when there is no such peer. Texts sent from one
   * process arrive in the order they were sent. Throws STORE_UNAVAILABLE.
   */
  send (room: string, to: string, roles: readonly Role[], text: string): Promise<boolean>
  /** The room's members on every replica. Throws STORE_UNAVAILABLE. */
  members (room: string): Promise<Member[]>
  /** Rooms this process holds sockets in, and its joined sockets. */
  counts (): { rooms: number, peers: number }
}

export interface LocalEntry<C extends Conn> { conn: C, room: string, member: Member }

/**
 * The local half shared by MemoryRoomStore and RedisRoomStore: this process's joined sockets,
 * by socket id and by room.
 */
export class LocalSockets<C extends Conn> {
  private readonly byConn = new Map<string, LocalEntry<C>>()
  private readonly byRoom = new Map<string, Map<string, LocalEntry<C>>>()

  get size (): number { return this.byConn.size }
  get rooms (): number { return this.byRoom.size }
  hasRoom (room: string): boolean { return this.byRoom.has(room) }

  get (connId: string): LocalEntry<C> | undefined { return this.byConn.get(connId) }

  joinedAs (conn: C): Joined | undefined {
    const e = this.byConn.get(conn.id)
    return e === undefined ? undefined : { room: e.room, ...e.member }
  }

  local (room: string): Array<{ conn: C, member: Member }> {
    return [...(this.byRoom.get(room)?.values() ?? [])].map(e => ({ conn: e.conn, member: e.member }))
  }

  add (room: string, conn: C, member: Member): LocalEntry<C> {
    if (this.byConn.has(conn.id)) throw new CausewayError('BAD_MESSAGE', 'already joined')
    const e = { conn, room, member: { peer: member.peer, role: member.role } }
    this.byConn.set(conn.id, e)
    let r = this.byRoom.get(room)
    if (r === undefined) { r = new Map(); this.byRoom.set(room, r) }
    r.set(conn.id, e)
    return e
  }

  remove (connId: string): LocalEntry<C> | undefined {
    const e = this.byConn.get(connId)
    if (e === undefined) return undefined
    this.byConn.delete(connId)
    const r = this.byRoom.get(e.room)
    r?.delete(connId)
    if (r?.size === 0) this.byRoom.delete(e.room)
    return e
  }

  /** Forgets every socket; returns them. */
  clear (): C[] {
    const all = [...this.byConn.values()].map(e => e.conn)
    this.byConn.clear()
    this.byRoom.clear()
    return all
  }
}

/** A listener that drops everything (until the hub registers its own). */
export function noListener<C extends Conn> (): RoomListener<C> {
  return { joined () {}, left () {}, deliver () {}, replaced () {}, evicted () {}, lost () {} }
}

export interface MemoryRoomStoreInit {
  /** Rooms this process may hold at once (TOO_MANY_ROOMS past it). Default unlimited. */
  maxRooms?: number
}

/** A peer's current socket and seat in a room of the memory store. */
interface MemorySeat<C extends Conn> { entry: LocalEntry<C>, seat: HeldSeat }

/** Every room in this process's memory: the embedded default (one replica). */
export class MemoryRoomStore<C extends Conn = Conn> implements RoomStore<C> {
  private readonly sockets = new LocalSockets<C>()
  /** room -> peer -> its current socket and seat */
  private readonly current = new Map<string, Map<string, MemorySeat<C>>>()
  /** room -> the address it is charged to; address -> how many live rooms it is charged */
  private readonly chargedTo = new Map<string, string>()
  private readonly charges = new Map<string, number>()
  private listener: RoomListener<C> = noListener()
  private readonly maxRooms: number
  private seq = 0

  constructor (init: MemoryRoomStoreInit = {}) {
    this.maxRooms = init.maxRooms ?? Infinity
  }

  listen (listener: RoomListener<C>): void { this.listener = listener }

  joinedAs (conn: C): Joined | undefined { return this.sockets.joinedAs(conn) }

  local (room: string): Array<{ conn: C, member: Member }> { return this.sockets.local(room) }

  async join (room: string, conn: C, member: Member, seat: Seat, limits: JoinLimits): Promise<Member[]> {
    if (this.sockets.get(conn.id) !== undefined) throw new CausewayError('BAD_MESSAGE', 'already joined')
    const peers = this.current.get(room)
    const old = peers?.get(member.peer)
    const others = [...(peers?.values() ?? [])].filter(s => s !== old).map(s => s.seat)
    const decision = decideSeat(others, { ...seat, role: member.role }, limits)
    if (!decision.ok) throw seatRefusal(decision.reason, limits)
    if (peers === undefined) {
      if (this.current.size >= this.maxRooms) throw refusal('rooms_instance', this.maxRooms)
      if ((this.charges.get(seat.address) ?? 0) >= limits.maxRoomsPerAddress) throw refusal('rooms_address', limits.maxRoomsPerAddress)
    }
    const entry = this.sockets.add(room, conn, member)
    const inRoom = peers ?? new Map<string, MemorySeat<C>>()
    if (peers === undefined) {
      this.current.set(room, inRoom)
      if (limits.maxRoomsPerAddress !== Infinity) {
        this.chargedTo.set(room, seat.address)
        this.charges.set(seat.address, (this.charges.get(seat.address) ?? 0) + 1)
      }
    }
    if (decision.evict !== undefined) {
      const victim = inRoom.get(decision.evict.peer)
      if (victim !== undefined) {
        inRoom.delete(decision.evict.peer)
        this.sockets.remove(victim.entry.conn.id)
        this.listener.left(room, victim.entry.member)
        this.listener.evicted(victim.entry.conn)
      }
    }
    inRoom.set(member.peer, { entry, seat: { peer: member.peer, role: member.role, address: seat.address, ...(seat.subject !== undefined ? { subject: seat.subject } : {}), seq: ++this.seq } })
    if (old !== undefined) {
      this.sockets.remove(old.entry.conn.id)
      this.listener.replaced(old.entry.conn)
    }
    this.listener.joined(room, entry.member)
    return [...inRoom.values()].map(s => s.entry.member)
  }

  async leave (conn: C): Promise<Member | undefined> {
    const e = this.sockets.remove(conn.id)
    if (e === undefined) return undefined
    const peers = this.current.get(e.room)
    if (peers?.get(e.member.peer)?.entry !== e) return undefined
    peers.delete(e.member.peer)
    if (peers.size === 0) this.dropRoom(e.room)
    this.listener.left(e.room, e.member)
    return e.member
  }

  async send (room: string, to: string, roles: readonly Role[], text: string): Promise<boolean> {
    const target = this.current.get(room)?.get(to)?.entry
    if (target === undefined || !roles.includes(target.member.role)) return false
    this.listener.deliver(target.conn, text)
    return true
  }

  async members (room: string): Promise<Member[]> {
    return [...(this.current.get(room)?.values() ?? [])].map(s => s.entry.member)
  }

  counts (): { rooms: number, peers: number } { return { rooms: this.sockets.rooms, peers: this.sockets.size } }

  /** Rooms charged to `address` now (tests and metrics). */
  roomsOf (address: string): number { return this.charges.get(address) ?? 0 }

  private dropRoom (room: string): void {
    this.current.delete(room)
    const address = this.chargedTo.get(room)
    if (address === undefined) return
    this.chargedTo.delete(room)
    const left = (this.charges.get(address) ?? 1) - 1
    if (left <= 0) this.charges.delete(address); else this.charges.set(address, left)
  }
}
