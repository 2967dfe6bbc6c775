/**
 * The signaling service's HTTP surface, one Hono app for both runtimes. Runtime specifics
 * (WebSocket upgrade, metrics, static assets) come in through `AppDeps`.
 *
 * Routes:
 * - `GET /healthz` — whether this instance can serve joins: `{ok, protocol}` (Node adds `store`:
 *   `memory` or `redis`); HTTP 503 with `ok: false` and `error: {code: STORE_UNAVAILABLE}` while
 *   a Node instance on Redis cannot reach it (a readiness probe or load balancer takes it out).
 * - `GET /livez` — the process answers (`{ok: true}`), whatever its store: for liveness probes,
 *   so that a Redis outage does not get every replica restarted.
 * - `GET /v1/ice?room=R` — ICE servers (STUN, TURN with short-lived REST credentials) and relay
 *   multiaddrs; needs `Authorization: Bearer <ticket>` when an access secret is set.
 * - `GET /v1/rooms/{room}` — the WebSocket of a room (protocol/messages.ts).
 * - `GET /metrics` — Prometheus text (Node adapter).
 * - `GET /debug` — the debug page (see signaling/page).
 */
import { Hono, type Context } from 'hono'
import { CausewayError, publicError, ERRORS } from '../protocol/errors.ts'
import { randomId } from '../protocol/encoding.ts'
import { RoomId, PROTOCOL_VERSION, SUBPROTOCOL, TICKET_SUBPROTOCOL_PREFIX, type IceConfig, type IceServer } from '../protocol/messages.ts'
import { subjectOf, verifyTicket } from '../protocol/ticket.ts'
import { mintTurnCredential } from '../protocol/turn.ts'
import type { SignalingConfig } from './config.ts'

/**
 * The service's decision about a room socket, made before the upgrade: admitted (with the most
 * its ticket allows) or refused with an error that the adapter sends on the socket and then
 * closes it with the error's close code (a browser sees no HTTP error body on a WebSocket).
 */
export type RoomAdmission = ({ ok: true, ticketRole?: 'agent' | 'viewer', ticketSubject?: string } | { ok: false, error: CausewayError }) & { subprotocol?: string }

export interface AppDeps {
  config: SignalingConfig
  /** Upgrades `GET /v1/rooms/{room}` to a WebSocket (the room id is already validated, the ticket checked). */
  rooms: (c: Context, room: string, admission: RoomAdmission) => Response | Promise<Response>
  /** Prometheus exposition text, where the runtime keeps metrics. */
  metrics?: () => Promise<string>
  /** This instance's health for /healthz (fields added to the body; ok false answers 503). Default: always ok. */
  health?: () => { ok: boolean, store?: string, error?: CausewayError }
  /** Static assets (debug page): returns undefined when there is no such asset. */
  assets?: (path: string) => Promise<Response | undefined> | Response | undefined
}

function errorResponse (c: Context, err: unknown): Response {
  const { code, message } = publicError(err)
  return c.json({ error: { code, message } }, ERRORS[code].http as 400)
}

/** The subprotocols a client offered (`Sec-WebSocket-Protocol`, comma-separated). */
export function offeredSubprotocols (header: string | undefined | null): string[] {
  return (header ?? '').split(',').map(p => p.trim()).filter(Boolean).slice(0, 16)
}

/** Checks a room socket's ticket (carried in the subprotocol `causeway.ticket.<t>`) before the upgrade. */
export async function admitRoomSocket (config: SignalingConfig, room: string, header: string | undefined | null): Promise<RoomAdmission> {
  const offered = offeredSubprotocols(header)
  const subprotocol = offered.includes(SUBPROTOCOL) ? { subprotocol: SUBPROTOCOL } : {}
  if (config.accessSecret === undefined) return { ok: true, ...subprotocol }
  const ticket = offered.find(p => p.startsWith(TICKET_SUBPROTOCOL_PREFIX))?.slice(TICKET_SUBPROTOCOL_PREFIX.length)
  if (ticket === undefined) {
    return { ok: false, ...subprotocol, error: new CausewayError('UNAUTHORIZED', `this deployment requires an access ticket (WebSocket subprotocol ${TICKET_SUBPROTOCOL_PREFIX}<ticket>, protocol version ${PROTOCOL_VERSION})`) }
  }
  try {
    const payload = await verifyTicket(config.accessSecret, ticket, room)
    const subject = subjectOf(payload)
    return { ok: true, ticketRole: payload.role, ...(subject !== undefined ? { ticketSubject: subject } : {}), ...subprotocol }
  } catch (err) {
    return { ok: false, ...subprotocol, error: err instanceof CausewayError ? err : new CausewayError('UNAUTHORIZED', 'ticket does not verify') }
  }
}

export function createApp (deps: AppDeps): Hono {
  const app = new Hono()
  const { config } = deps

  app.onError((err, c) => errorResponse(c, err))
  app.notFound(c => errorResponse(c, new CausewayError('NOT_FOUND', 'no such route')))

  app.get('/healthz', c => {
    const h = deps.health?.() ?? { ok: true }
    const body = {
      ok: h.ok,
      protocol: PROTOCOL_VERSION,
      ...(h.store !== undefined ? { store: h.store } : {}),
      ...(h.error !== undefined ? { error: publicError(h.error) } : {}),
    }
    c.header('cache-control', 'no-store')
    return c.json(body, h.ok ? 200 : 503)
  })
  app.get('/livez', c => c.json({ ok: true }))

  app.get('/v1/ice', async c => {
    if (config.accessSecret !== undefined) {
      const room = RoomId.safeParse(c.req.query('room'))
      if (!room.success) throw new CausewayError('BAD_MESSAGE', 'query parameter room is required')
      const auth = c.req.header('authorization') ?? ''
      const m = /^Bearer\s+(\S+)$/i.exec(auth)
      if (m?.[1] === undefined) throw new CausewayError('UNAUTHORIZED', 'this deployment requires an access ticket (Authorization: Bearer)')
      await verifyTicket(config.accessSecret, m[1], room.data)
    }
    const iceServers: IceServer[] = []
    if (config.stunUrls.length > 0) iceServers.push({ urls: config.stunUrls })
    if (config.turnUrls.length > 0 && config.turnSecret !== undefined) {
      const cred = await mintTurnCredential(config.turnSecret, { ttlSeconds: config.turnTtlSeconds, id: randomId(9) })
      iceServers.push({ urls: config.turnUrls, username: cred.username, credential: cred.credential })
    }
    const body: IceConfig = { iceServers, relays: config.relays, ttlSeconds: config.turnTtlSeconds }
    c.header('cache-control', 'no-store')
    return c.json(body)
  })

  app.get('/v1/rooms/:room', async c => {
    const room = RoomId.safeParse(c.req.param('room'))
    if (!room.success) throw new CausewayError('NOT_FOUND', 'not a room id')
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      return c.json({ error: { code: 'BAD_MESSAGE', message: 'expected a WebSocket upgrade' } }, 426)
    }
    return await deps.rooms(c, room.data, await admitRoomSocket(config, room.data, c.req.header('sec-websocket-protocol')))
  })

  if (deps.metrics !== undefined) {
    const metrics = deps.metrics
    app.get('/metrics', async c => c.text(await metrics(), 200, { 'content-type': 'text/plain; version=0.0.4' }))
  }

  if (deps.assets !== undefined) {
    const assets = deps.assets
    app.get('/debug', c => c.redirect('/debug/', 302))
    app.get('/debug/*', async c => {
      const res = await assets(c.req.path.slice('/debug'.length) || '/')
      if (res === undefined) throw new CausewayError('NOT_FOUND', 'no such asset')
      return res
    })
  }

  return app
}
