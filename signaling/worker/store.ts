/**
 * DurableObjectRoomStore: the RoomStore of one Durable Object (one room), on top of the
 * WebSocket Hibernation API. The durable truth is each accepted socket's attachment
 * (`serializeAttachment`): its socket id, room and, once joined, its peer id. The maps in
 * memory are an index over `ctx.getWebSockets()`; after the object wakes from hibernation
 * they are rebuilt from the attachments on first use.
 *
 * Every socket of the room is in this one object, so the local and the shared halves of the
 * RoomStore coincide: `local(room)` is every joined socket, events reach the listener
 * synchronously inside the call that caused them, and the store is never lost. The object is
 * one room: the `room` argument of the calls is the room its sockets were accepted for.
 *
 * Seats (../seats.ts) are counted from the attachments too (address, subject and join order
 * of each joined socket), so the caps hold across hibernation. Rooms per address are not
 * counted here: one object is one room and sees no other (Cloudflare's rate-limiting rules are
 * the lever on the Worker).
 */
import { CausewayError } from '../../protocol/errors.ts'
import { decideSeat, seatRefusal, type HeldSeat } from '../seats.ts'
import { noListener, type Conn, type JoinLimits, type Joined, type Member, type Role, type RoomListener, type RoomStore, type Seat } from '../store.ts'

/** What each socket remembers across hibernation. */
export interface SocketAttachment {
  /** Socket id (Conn.id). */
  id: string
  /** Room the socket was opened for. */
  room: string
  /** Peer id once joined; removed when another socket of the same peer replaces it. */
  peer?: string
  /** The role it joined with (with `peer`). */
  role?: Role
  /** Accept time, Unix milliseconds. */
  opened: number
  /** The join challenge sent to this socket (protocol/join-proof.ts). */
  challenge?: string
  /** The most its access ticket allows; absent in open mode. */
  ticketRole?: Role
  /** Client address key (CF-Connecting-IP, seats.ts seatAddress), for the pre-join caps and, once joined, the seat. */
  addr?: string
  /** The subject of its access ticket, if it names one (the seat is charged to it). */
  subject?: string
  /** Join order among the room's seats (higher is newer), once joined. */
  seq?: number
}

const isRole = (v: unknown): v is Role => v === 'agent' || v === 'viewer'

/** A room connection backed by a hibernatable WebSocket. */
export interface SocketConn extends Conn {
  readonly ws: WebSocket
}

/** Reads a socket's attachment, or undefined when it has none of ours. */
export function readAttachment (ws: WebSocket): SocketAttachment | undefined {
  let raw: unknown
  try { raw = ws.deserializeAttachment() } catch { return undefined }
  if (typeof raw !== 'object' || raw === null) return undefined
  const { id, room, peer, role, opened, challenge, ticketRole, addr, subject, seq } = raw as Record<string, unknown>
  if (typeof id !== 'string' || typeof room !== 'string' || typeof opened !== 'number') return undefined
  return {
    id,
    room,
    opened,
    ...(typeof peer === 'string' ? { peer } : {}),
    ...(isRole(role) ? { role } : {}),
    ...(typeof challenge === 'string' ? { challenge } : {}),
    ...(isRole(ticketRole) ? { ticketRole } : {}),
    ...(typeof addr === 'string' ? { addr } : {}),
    ...(typeof subject === 'string' ? { subject } : {}),
    ...(typeof seq === 'number' ? { seq } : {}),
  }
}

function writeAttachment (ws: WebSocket, att: SocketAttachment): void {
  try { ws.serializeAttachment(att) } catch { /* the socket is gone; nothing to remember */ }
}

/** The index over the object's sockets: current socket per peer, peer per socket, the last join order given. */
interface Index { byPeer: Map<string, SocketConn>, byConn: Map<string, string>, seq: number }

export class DurableObjectRoomStore implements RoomStore<SocketConn> {
  private readonly ctx: DurableObjectState
  private readonly conns = new WeakMap<WebSocket, SocketConn>()
  private index: Index | undefined
  private listener: RoomListener<SocketConn> = noListener()

  constructor (ctx: DurableObjectState) {
    this.ctx = ctx
  }

  /** Accepts a new socket for `room` with hibernation and gives it its attachment. */
  accept (ws: WebSocket, init: { id: string, room: string, now?: number, challenge?: string, ticketRole?: Role, addr?: string, subject?: string }): SocketConn {
    this.ctx.acceptWebSocket(ws)
    const { now, ...rest } = init
    writeAttachment(ws, { ...rest, opened: now ?? Date.now() })
    return this.conn(ws)
  }

  /** The Conn of an accepted socket (the same object for the same socket while awake). */
  conn (ws: WebSocket): SocketConn {
    let c = this.conns.get(ws)
    if (c === undefined) {
      const id = readAttachment(ws)?.id ?? crypto.randomUUID()
      c = {
        id,
        ws,
        send (text) { ws.send(text) },
        close (code, reason) { ws.close(code, reason) },
      }
      this.conns.set(ws, c)
    }
    return c
  }

  listen (listener: RoomListener<SocketConn>): void { this.listener = listener }

  joinedAs (conn: SocketConn): Joined | undefined {
    if (this.load().byConn.get(conn.id) === undefined) return undefined
    const att = readAttachment(conn.ws)
    return att?.peer === undefined ? undefined : { room: att.room, peer: att.peer, role: att.role ?? 'agent' }
  }

  local (room: string): Array<{ conn: SocketConn, member: Member }> {
    const out: Array<{ conn: SocketConn, member: Member }> = []
    for (const [peer, conn] of this.load().byPeer) {
      const att = readAttachment(conn.ws)
      if (att?.room === room) out.push({ conn, member: { peer, role: att.role ?? 'agent' } })
    }
    return out
  }

  async join (room: string, conn: SocketConn, member: Member, seat: Seat, limits: JoinLimits): Promise<Member[]> {
    const index = this.load()
    const { byPeer, byConn } = index
    if (byConn.has(conn.id)) throw new CausewayError('BAD_MESSAGE', 'already joined')
    const old = byPeer.get(member.peer)
    const decision = decideSeat(this.seats(member.peer), { ...seat, role: member.role }, limits)
    if (!decision.ok) throw seatRefusal(decision.reason, limits)
    const att = readAttachment(conn.ws)
    const { subject: _subject, ...base } = att ?? { id: conn.id, room, opened: Date.now() }
    writeAttachment(conn.ws, { ...base, peer: member.peer, role: member.role, addr: seat.address, ...(seat.subject !== undefined ? { subject: seat.subject } : {}), seq: ++index.seq })
    const evict = decision.evict
    const victim = evict === undefined ? undefined : byPeer.get(evict.peer)
    if (evict !== undefined && victim !== undefined) {
      byPeer.delete(evict.peer)
      byConn.delete(victim.id)
      this.forget(victim.ws)
      this.listener.left(room, { peer: evict.peer, role: evict.role })
      this.listener.evicted(victim)
    }
    byPeer.set(member.peer, conn)
    byConn.set(conn.id, member.peer)
    if (old !== undefined) {
      byConn.delete(old.id)
      this.forget(old.ws)
      this.listener.replaced(old)
    }
    this.listener.joined(room, { peer: member.peer, role: member.role })
    return this.local(room).map(e => e.member)
  }

  async leave (conn: SocketConn): Promise<Member | undefined> {
    const { byPeer, byConn } = this.load()
    const peer = byConn.get(conn.id)
    if (peer === undefined) return undefined
    const att = readAttachment(conn.ws)
    const member: Member = { peer, role: att?.role ?? 'agent' }
    byConn.delete(conn.id)
    this.forget(conn.ws)
    if (byPeer.get(peer)?.id !== conn.id) return undefined
    byPeer.delete(peer)
    this.listener.left(att?.room ?? '', member)
    return member
  }

  async send (room: string, to: string, roles: readonly Role[], text: string): Promise<boolean> {
    const target = this.load().byPeer.get(to)
    const att = target === undefined ? undefined : readAttachment(target.ws)
    if (target === undefined || att?.room !== room || !roles.includes(att.role ?? 'agent')) return false
    this.listener.deliver(target, text)
    return true
  }

  async members (room: string): Promise<Member[]> {
    return this.local(room).map(e => e.member)
  }

  counts (): { rooms: number, peers: number } {
    const peers = this.load().byPeer.size
    return { rooms: peers > 0 ? 1 : 0, peers }
  }

  /** The room's seats from the attachments, but `except`'s. */
  private seats (except: string): HeldSeat[] {
    const out: HeldSeat[] = []
    for (const [peer, conn] of this.load().byPeer) {
      if (peer === except) continue
      const att = readAttachment(conn.ws)
      out.push({ peer, role: att?.role ?? 'agent', address: att?.addr ?? 'unknown', ...(att?.subject !== undefined ? { subject: att.subject } : {}), seq: att?.seq ?? 0 })
    }
    return out
  }

  /** Drops the peer from a socket's attachment so that a wake-up does not resurrect it. */
  private forget (ws: WebSocket): void {
    const att = readAttachment(ws)
    if (att?.peer === undefined) return
    const { peer: _peer, role: _role, seq: _seq, ...rest } = att
    writeAttachment(ws, rest)
  }

  private load (): Index {
    if (this.index !== undefined) return this.index
    const byPeer = new Map<string, SocketConn>()
    const byConn = new Map<string, string>()
    let seq = 0
    for (const ws of this.ctx.getWebSockets()) {
      if (ws.readyState !== WebSocket.OPEN) continue
      const att = readAttachment(ws)
      if (att?.peer === undefined) continue
      seq = Math.max(seq, att.seq ?? 0)
      const conn = this.conn(ws)
      const prior = byPeer.get(att.peer)
      // Two sockets claiming one peer can only come from an interrupted replace: the newer wins.
      if (prior !== undefined) {
        const priorAtt = readAttachment(prior.ws)
        if ((priorAtt?.opened ?? 0) > att.opened) continue
        byConn.delete(prior.id)
      }
      byPeer.set(att.peer, conn)
      byConn.set(conn.id, att.peer)
    }
    this.index = { byPeer, byConn, seq }
    return this.index
  }
}
