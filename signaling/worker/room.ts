/**
 * SignalingRoom: the Durable Object of one room. It accepts the room's WebSockets with the
 * Hibernation API and runs the same RoomHub as the Node adapter over a DurableObjectRoomStore.
 * The Worker checked the ticket before routing here (index.ts) and passes its role and
 * subject; the object keeps each socket's admission (room, challenge, ticket role and subject,
 * address) in its attachment, so nothing is persisted but the sockets' attachments. Sockets that have not
 * joined yet are capped per client address (CF-Connecting-IP) and in total per room, counted
 * from the attachments (so the counts survive hibernation); over a cap the upgrade is refused
 * with HTTP 429 TOO_MANY_CONNECTIONS.
 *
 * Across hibernation the hub (rate buckets) is rebuilt empty: token buckets start full again.
 * Join timeouts use the object's alarm instead of in-memory timers: the alarm sweeps the sockets
 * whose attachment has no peer past their deadline, so they survive hibernation too (and a close
 * sent from an alarm event is flushed at once, unlike one sent from a bare setTimeout callback).
 */
import { DurableObject } from 'cloudflare:workers'
import { CausewayError, ERRORS, isErrorCode, publicError } from '../../protocol/errors.ts'
import { randomId } from '../../protocol/encoding.ts'
import { CHALLENGE_BYTES } from '../../protocol/join-proof.ts'
import { RoomId } from '../../protocol/messages.ts'
import { configFromEnv, type SignalingConfig } from '../config.ts'
import { refuseSocket, RoomHub } from '../hub.ts'
import { prejoinRefusal } from '../prejoin.ts'
import { seatAddress } from '../seats.ts'
import { TicketSubject } from '../../protocol/ticket.ts'
import type { WorkerEnv } from './env.ts'
import { DurableObjectRoomStore, readAttachment, type SocketConn } from './store.ts'

/** Header with which the Worker hands the (already validated) room id to its object. */
export const ROOM_HEADER = 'x-causeway-room'
/** Header with which the Worker hands the verified ticket's role (absent in open mode). */
export const TICKET_ROLE_HEADER = 'x-causeway-ticket-role'
/** Header with which the Worker hands the verified ticket's subject (absent when it names none). */
export const TICKET_SUBJECT_HEADER = 'x-causeway-ticket-subject'
/** Header with which the Worker asks a refusal object to carry an error ({code, message} JSON) to a refused socket. */
export const REFUSE_HEADER = 'x-causeway-refuse'
/** Objects (by name) that carry refusals; outside the room id alphabet, so never a room. */
export const REFUSAL_OBJECTS = ['refusals:0', 'refusals:1', 'refusals:2', 'refusals:3']
/** Header with which the Worker hands the client address. */
export const ADDRESS_HEADER = 'x-causeway-address'

function isRefused (ws: WebSocket): boolean {
  try { return (ws.deserializeAttachment() as { refused?: unknown } | null)?.refused === true } catch { return false }
}

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
      const refusal = request.headers.get(REFUSE_HEADER)
      if (refusal !== null) return this.refuse(refusal, request.headers.get('sec-websocket-protocol'))
      const room = RoomId.safeParse(request.headers.get(ROOM_HEADER))
      if (!room.success) throw new CausewayError('NOT_FOUND', 'not a room id')
      if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
        return Response.json({ error: { code: 'BAD_MESSAGE', message: 'expected a WebSocket upgrade' } }, { status: 426 })
      }
      const hub = this.hubFor()
      const addr = seatAddress(request.headers.get(ADDRESS_HEADER) ?? 'unknown')
      this.checkPrejoin(addr)
      const ticketRole = request.headers.get(TICKET_ROLE_HEADER)
      const subject = TicketSubject.safeParse(request.headers.get(TICKET_SUBJECT_HEADER))
      const pair = new WebSocketPair()
      const conn = this.store.accept(pair[1], {
        id: randomId(9),
        room: room.data,
        challenge: randomId(CHALLENGE_BYTES),
        addr,
        ...(ticketRole === 'agent' || ticketRole === 'viewer' ? { ticketRole } : {}),
        ...(subject.success ? { subject: subject.data } : {}),
      })
      hub.opened(conn)
      const subprotocol = request.headers.get('sec-websocket-protocol')
      return new Response(null, { status: 101, webSocket: pair[0], ...(subprotocol !== null ? { headers: { 'sec-websocket-protocol': subprotocol } } : {}) })
    } catch (err) {
      return errorJson(err)
    }
  }

  /**
   * Carries a refusal (bad ticket) to a socket the Worker would not route to its room: accepted
   * here with the Hibernation API only so that the client gets the error code and close code,
   * and so that whatever it sends meanwhile (even frames that break the WebSocket protocol)
   * lands in webSocketError instead of an uncaught error of a Worker-owned socket.
   */
  private refuse (refusal: string, subprotocol: string | null): Response {
    let error = new CausewayError('UNAUTHORIZED', 'refused')
    try {
      const { code, message } = JSON.parse(refusal) as { code: unknown, message: unknown }
      if (isErrorCode(code) && typeof message === 'string') error = new CausewayError(code, message)
    } catch { /* keep the generic refusal */ }
    const pair = new WebSocketPair()
    this.ctx.acceptWebSocket(pair[1])
    pair[1].serializeAttachment({ refused: true })
    refuseSocket({ send: t => pair[1].send(t), close: (code, reason) => pair[1].close(code, reason) }, error)
    return new Response(null, { status: 101, webSocket: pair[0], ...(subprotocol !== null ? { headers: { 'sec-websocket-protocol': subprotocol } } : {}) })
  }

  /** Throws TOO_MANY_CONNECTIONS when this room already has too many pre-join sockets (from `addr`). */
  private checkPrejoin (addr: string): void {
    const caps = this.settings().limits
    let total = 0
    let fromAddr = 0
    for (const ws of this.ctx.getWebSockets()) {
      const att = readAttachment(ws)
      if (att === undefined || att.peer !== undefined) continue
      total++
      if (att.addr === addr) fromAddr++
    }
    if (fromAddr >= caps.maxPrejoinPerAddress) throw prejoinRefusal(true, caps)
    if (total >= caps.maxPrejoin) throw prejoinRefusal(false, caps)
  }

  override async webSocketMessage (ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const hub = this.hubOf(ws)
    if (hub === undefined) {
      if (isRefused(ws)) return // closing with its error
      ws.close(ERRORS.INTERNAL.close, 'INTERNAL: unknown socket')
      return
    }
    await hub.message(this.store.conn(ws), message)
  }

  override async webSocketClose (ws: WebSocket, code: number, _reason: string, _wasClean: boolean): Promise<void> {
    await this.release(ws)
    // Complete the closing handshake (a no-op where the runtime already replied).
    try { ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closed') } catch { /* already closed */ }
  }

  override async webSocketError (ws: WebSocket, _error: unknown): Promise<void> {
    await this.release(ws)
  }

  private async release (ws: WebSocket): Promise<void> {
    await this.hubOf(ws)?.closed(this.store.conn(ws))
  }

  private settings (): SignalingConfig {
    this.config ??= configFromEnv(this.env)
    return this.config
  }

  private hubFor (): RoomHub<SocketConn> {
    if (this.hub === undefined) {
      const config = this.settings()
      this.hub = new RoomHub({
        // One room per object: every socket of the room is here (the hub becomes the store's listener).
        store: this.store,
        admissionOf: conn => {
          const att = readAttachment(conn.ws)
          return att?.challenge === undefined
            ? undefined
            : {
                room: att.room,
                challenge: att.challenge,
                address: att.addr ?? 'unknown',
                ...(att.ticketRole !== undefined ? { ticketRole: att.ticketRole } : {}),
                ...(att.subject !== undefined ? { subject: att.subject } : {}),
              }
        },
        limits: config.limits,
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
    return readAttachment(ws) === undefined ? undefined : this.hubFor()
  }
}
