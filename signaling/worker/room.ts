/**
 * SignalingRoom: the Durable Object of one room. It accepts the room's WebSockets with the
 * Hibernation API and runs the same RoomHub as the Node adapter over a DurableObjectRoomStore.
 * Ticket checks are stateless (HMAC with CAUSEWAY_ACCESS_SECRET), so nothing is persisted but
 * the sockets' attachments.
 *
 * Across hibernation the hub (rate buckets) is rebuilt empty: token buckets start full again.
 * Join timeouts use the object's alarm instead of in-memory timers: the alarm sweeps the sockets
 * whose attachment has no peer past their deadline, so they survive hibernation too (and a close
 * sent from an alarm event is flushed at once, unlike one sent from a bare setTimeout callback).
 */
import { DurableObject } from 'cloudflare:workers'
import { CausewayError, ERRORS, publicError } from '../../protocol/errors.ts'
import { randomId } from '../../protocol/encoding.ts'
import { RoomId } from '../../protocol/messages.ts'
import { verifyTicket } from '../../protocol/ticket.ts'
import { configFromEnv, type SignalingConfig } from '../config.ts'
import { RoomHub, ticketVerifier } from '../hub.ts'
import type { WorkerEnv } from './env.ts'
import { DurableObjectRoomStore, readAttachment, type SocketConn } from './store.ts'

/** Header with which the Worker hands the (already validated) room id to its object. */
export const ROOM_HEADER = 'x-causeway-room'

function errorJson (err: unknown): Response {
  const { code, message } = publicError(err)
  return Response.json({ error: { code, message } }, { status: ERRORS[code].http })
}

export class SignalingRoom extends DurableObject<WorkerEnv> {
  private readonly store: DurableObjectRoomStore
  private config: SignalingConfig | undefined
  private hub: RoomHub<SocketConn> | undefined

  constructor (ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    this.store = new DurableObjectRoomStore(ctx)
  }

  override async alarm (): Promise<void> {
    const { joinTimeoutMs } = this.settings().limits
    const now = Date.now()
    let next = Infinity
    for (const ws of this.ctx.getWebSockets()) {
      const att = readAttachment(ws)
      if (att === undefined || att.peer !== undefined) continue
      const deadline = att.opened + joinTimeoutMs
      if (deadline > now) { next = Math.min(next, deadline); continue }
      const message = 'no join message in time'
      try {
        ws.send(JSON.stringify({ type: 'error', code: 'JOIN_TIMEOUT', message }))
        ws.close(ERRORS.JOIN_TIMEOUT.close, `JOIN_TIMEOUT: ${message}`)
      } catch { /* already closing */ }
    }
    if (next !== Infinity) await this.ctx.storage.setAlarm(next)
  }

  /** Makes sure the alarm fires by `at` (join deadlines). */
  private armAlarm (at: number): void {
    this.ctx.blockConcurrencyWhile(async () => {
      const current = await this.ctx.storage.getAlarm()
      if (current === null || current > at) await this.ctx.storage.setAlarm(at)
    }).catch(() => {})
  }

  override async fetch (request: Request): Promise<Response> {
    try {
      const room = RoomId.safeParse(request.headers.get(ROOM_HEADER))
      if (!room.success) throw new CausewayError('NOT_FOUND', 'not a room id')
      if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
        return Response.json({ error: { code: 'BAD_MESSAGE', message: 'expected a WebSocket upgrade' } }, { status: 426 })
      }
      const hub = this.hubFor(room.data)
      const pair = new WebSocketPair()
      const conn = this.store.accept(pair[1], { id: randomId(9), room: room.data })
      hub.opened(conn)
      return new Response(null, { status: 101, webSocket: pair[0] })
    } catch (err) {
      return errorJson(err)
    }
  }

  override async webSocketMessage (ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const hub = this.hubOf(ws)
    if (hub === undefined) { ws.close(ERRORS.INTERNAL.close, 'INTERNAL: unknown socket'); return }
    await hub.message(this.store.conn(ws), message)
  }

  override async webSocketClose (ws: WebSocket, code: number, _reason: string, _wasClean: boolean): Promise<void> {
    this.release(ws)
    // Complete the closing handshake (a no-op where the runtime already replied).
    try { ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closed') } catch { /* already closed */ }
  }

  override async webSocketError (ws: WebSocket, _error: unknown): Promise<void> {
    this.release(ws)
  }

  private release (ws: WebSocket): void {
    this.hubOf(ws)?.closed(this.store.conn(ws))
  }

  private settings (): SignalingConfig {
    this.config ??= configFromEnv(this.env)
    return this.config
  }

  private hubFor (room: string): RoomHub<SocketConn> {
    if (this.hub === undefined) {
      const config = this.settings()
      this.hub = new RoomHub({
        room,
        store: this.store,
        limits: config.limits,
        verifyJoin: ticketVerifier(config.accessSecret, verifyTicket),
        // Join timeouts: the alarm (see alarm()) rather than a timer that dies with hibernation.
        setTimer: (_fn, ms) => { this.armAlarm(Date.now() + ms); return undefined },
        clearTimer: () => {},
      })
    }
    return this.hub
  }

  /** The hub of a socket's room, rebuilt from its attachment after hibernation. */
  private hubOf (ws: WebSocket): RoomHub<SocketConn> | undefined {
    if (this.hub !== undefined) return this.hub
    const att = readAttachment(ws)
    return att === undefined ? undefined : this.hubFor(att.room)
  }
}
