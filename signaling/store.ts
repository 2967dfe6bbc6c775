/**
 * Room state behind one interface (partyserver style). Two implementations: MemoryRoomStore
 * (Node adapter, here) and DurableObjectRoomStore (worker/store.ts). Both are checked by the
 * contract suite in store.contract.ts.
 */

/** A peer's role in a room (protocol/messages.ts). */
export type Role = 'agent' | 'viewer'

/** One WebSocket as the room sees it. */
export interface Conn {
  /** Stable id of this socket (not the peer id). */
  readonly id: string
  send (text: string): void
  close (code: number, reason: string): void
}

export interface RoomStore<C extends Conn = Conn> {
  /** The current connection of a joined peer. */
  get (peer: string): C | undefined
  /** The peer a connection joined as, if it has. */
  peerOf (conn: C): string | undefined
  /** Joined peer ids. */
  peers (): string[]
  size (): number
  /** The role a joined peer joined with. */
  roleOf (peer: string): Role | undefined
  /** Records that `conn` joined as `peer` (with `role`, default agent); returns the connection it replaced, if any. */
  join (peer: string, conn: C, role?: Role): C | undefined
  /** Forgets `conn`; returns the peer it was joined as if it was still that peer's current connection. */
  leave (conn: C): string | undefined
}

export class MemoryRoomStore<C extends Conn = Conn> implements RoomStore<C> {
  private readonly byPeer = new Map<string, C>()
  private readonly byConn = new Map<string, string>()
  private readonly roles = new Map<string, Role>()

  get (peer: string): C | undefined { return this.byPeer.get(peer) }

  peerOf (conn: C): string | undefined { return this.byConn.get(conn.id) }

  peers (): string[] { return [...this.byPeer.keys()] }

  size (): number { return this.byPeer.size }

  roleOf (peer: string): Role | undefined { return this.roles.get(peer) }

  join (peer: string, conn: C, role: Role = 'agent'): C | undefined {
    const old = this.byPeer.get(peer)
    const previous = this.byConn.get(conn.id)
    if (previous !== undefined && previous !== peer && this.byPeer.get(previous)?.id === conn.id) { this.byPeer.delete(previous); this.roles.delete(previous) }
    if (old !== undefined && old.id !== conn.id) this.byConn.delete(old.id)
    this.byPeer.set(peer, conn)
    this.byConn.set(conn.id, peer)
    this.roles.set(peer, role)
    return old !== undefined && old.id !== conn.id ? old : undefined
  }

  leave (conn: C): string | undefined {
    const peer = this.byConn.get(conn.id)
    if (peer === undefined) return undefined
    this.byConn.delete(conn.id)
    if (this.byPeer.get(peer)?.id === conn.id) {
      this.byPeer.delete(peer)
      this.roles.delete(peer)
      return peer
    }
    return undefined
  }
}
