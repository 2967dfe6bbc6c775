/**
 * DurableObjectRoomStore: the RoomStore of one Durable Object (one room), on top of the
 * WebSocket Hibernation API. The durable truth is each accepted socket's attachment
 * (`serializeAttachment`): its socket id, room and, once joined, its peer id. The maps in
 * memory are an index over `ctx.getWebSockets()`; after the object wakes from hibernation
 * they are rebuilt from the attachments on first use.
 */
import type { Conn, Role, RoomStore } from '../store.ts'

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
  /** Client address (CF-Connecting-IP), for the pre-join caps. */
  addr?: string
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
  const { id, room, peer, role, opened, challenge, ticketRole, addr } = raw as Record<string, unknown>
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
  }
}

function writeAttachment (ws: WebSocket, att: SocketAttachment): void {
  try { ws.serializeAttachment(att) } catch { /* the socket is gone; nothing to remember */ }
}

export class DurableObjectRoomStore implements RoomStore<SocketConn> {
  private readonly ctx: DurableObjectState
  private readonly conns = new WeakMap<WebSocket, SocketConn>()
  private index: { byPeer: Map<string, SocketConn>, byConn: Map<string, string> } | undefined

  constructor (ctx: DurableObjectState) {
    this.ctx = ctx
  }

  /** Accepts a new socket for `room` with hibernation and gives it its attachment. */
  accept (ws: WebSocket, init: { id: string, room: string, now?: number, challenge?: string, ticketRole?: Role, addr?: string }): SocketConn {
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

  get (peer: string): SocketConn | undefined { return this.load().byPeer.get(peer) }

  peerOf (conn: SocketConn): string | undefined { return this.load().byConn.get(conn.id) }

  peers (): string[] { return [...this.load().byPeer.keys()] }

  size (): number { return this.load().byPeer.size }

  roleOf (peer: string): Role | undefined {
    const conn = this.load().byPeer.get(peer)
    return conn === undefined ? undefined : (readAttachment(conn.ws)?.role ?? 'agent')
  }

  join (peer: string, conn: SocketConn, role: Role = 'agent'): SocketConn | undefined {
    const { byPeer, byConn } = this.load()
    const old = byPeer.get(peer)
    const previous = byConn.get(conn.id)
    if (previous !== undefined && previous !== peer && byPeer.get(previous)?.id === conn.id) byPeer.delete(previous)
    const att = readAttachment(conn.ws)
    writeAttachment(conn.ws, { ...(att ?? { id: conn.id, room: '', opened: Date.now() }), peer, role })
    byPeer.set(peer, conn)
    byConn.set(conn.id, peer)
    if (old === undefined || old.id === conn.id) return undefined
    byConn.delete(old.id)
    this.forget(old.ws)
    return old
  }

  leave (conn: SocketConn): string | undefined {
    const { byPeer, byConn } = this.load()
    const peer = byConn.get(conn.id)
    if (peer === undefined) return undefined
    byConn.delete(conn.id)
    this.forget(conn.ws)
    if (byPeer.get(peer)?.id !== conn.id) return undefined
    byPeer.delete(peer)
    return peer
  }

  /** Drops the peer from a socket's attachment so that a wake-up does not resurrect it. */
  private forget (ws: WebSocket): void {
    const att = readAttachment(ws)
    if (att?.peer === undefined) return
    const { peer: _peer, role: _role, ...rest } = att
    writeAttachment(ws, rest)
  }

  private load (): { byPeer: Map<string, SocketConn>, byConn: Map<string, string> } {
    if (this.index !== undefined) return this.index
    const byPeer = new Map<string, SocketConn>()
    const byConn = new Map<string, string>()
    for (const ws of this.ctx.getWebSockets()) {
      if (ws.readyState !== WebSocket.OPEN) continue
      const att = readAttachment(ws)
      if (att?.peer === undefined) continue
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
    this.index = { byPeer, byConn }
    return this.index
  }
}
