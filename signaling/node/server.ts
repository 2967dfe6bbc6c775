/**
 * Node adapter of the signaling service: @hono/node-server + @hono/node-ws, Prometheus metrics
 * with prom-client. Rooms in this process's memory (MemoryRoomStore, the embedded default) or
 * in Redis (RedisRoomStore, `config.store`), where any number of replicas serve one network.
 *
 * Admission: the ticket is checked before the upgrade (app.ts); sockets that have not joined
 * yet are capped per client address and in total, per instance (prejoin.ts, HTTP 429 over a
 * cap); a room is created by the first verified join in it and removed with its last peer.
 */
import { serve, type ServerType } from '@hono/node-server'
import { createNodeWebSocket } from '@hono/node-ws'
import { existsSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Context } from 'hono'
import { pino, type Logger } from 'pino'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { CausewayError } from '../../protocol/errors.ts'
import { randomId } from '../../protocol/encoding.ts'
import { CHALLENGE_BYTES } from '../../protocol/join-proof.ts'
import { SUBPROTOCOL } from '../../protocol/messages.ts'
import { createApp } from '../app.ts'
import { redactUrl, type SignalingConfig } from '../config.ts'
import { refuseSocket, RoomHub, type Admission } from '../hub.ts'
import { PrejoinLimiter } from '../prejoin.ts'
import { seatAddress } from '../seats.ts'
import { MemoryRoomStore, type Conn, type RoomStore } from '../store.ts'
import { pageAssets, pageDirectory } from './assets.ts'
import type { RedisRoomStore } from './redis-store.ts'

/** Bytes a client's send buffer may hold before it is closed as SLOW_CONSUMER. Default 4 MiB. */
const MAX_BUFFERED = 4 * 1024 * 1024

export interface NodeSignalingInit {
  host?: string
  /** 0 picks a free port. */
  port?: number
  config: SignalingConfig
  log?: Logger
}

export interface NodeSignaling {
  url: string
  port: number
  /** Resolves once the room store can serve joins (at once in memory; Redis: connected), bounded. */
  ready: (timeoutMs?: number) => Promise<void>
  close: () => Promise<void>
}

/** A room socket of this adapter: its admission travels with it. */
interface NodeConn extends Conn { readonly admission: Admission }

/** The address a request came from: the trusted proxy's header (last entry) or the socket peer. */
function clientAddress (c: Context, header: string | undefined): string {
  if (header !== undefined) {
    const value = c.req.header(header)?.split(',').map(v => v.trim()).filter(Boolean).at(-1)
    if (value !== undefined) return value
  }
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  return incoming?.socket.remoteAddress ?? 'unknown'
}

/** What ws would refuse without ever completing (and @hono/node-ws would then never release). */
function malformedUpgrade (c: Context): boolean {
  return !/^[+/0-9A-Za-z]{22}==$/.test(c.req.header('sec-websocket-key') ?? '') || c.req.header('sec-websocket-version') !== '13'
}

export async function startNodeSignaling (init: NodeSignalingInit): Promise<NodeSignaling> {
  const log = init.log ?? pino({ level: 'silent' })
  const { config } = init
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'causeway_signaling_' })
  const relayed = new Counter({ name: 'causeway_signaling_relayed_total', help: 'Signals forwarded between peers', registers: [registry] })
  const rejected = new Counter({ name: 'causeway_signaling_rejected_total', help: 'Rejections by error code', labelNames: ['code'], registers: [registry] })
  const joins = new Counter({ name: 'causeway_signaling_joins_total', help: 'Successful joins', registers: [registry] })
  const refusals = new Counter({ name: 'causeway_signaling_join_refusals_total', help: 'Verified joins refused by a seat or room cap, by reason (room_full, viewers_full, address, viewers_address, subject, rooms_address, rooms_instance)', labelNames: ['reason'], registers: [registry] })
  const evictions = new Counter({ name: 'causeway_signaling_evictions_total', help: 'Sockets of this instance that lost their seat in a full room to an agent whose ticket names it (closed with ROOM_FULL)', registers: [registry] })
  const prejoin = new PrejoinLimiter(config.limits)
  const releases = new Map<string, () => void>()
  const storeKind = config.store.kind
  new Gauge({ name: 'causeway_signaling_store_up', help: 'Whether the room store serves joins (memory: always 1; redis: connected and registered)', labelNames: ['store'], registers: [registry], collect () { this.set({ store: storeKind }, storeAvailable() ? 1 : 0) } })
  const storeMessages = new Counter({ name: 'causeway_signaling_store_messages_total', help: 'Redis pub/sub messages this replica published (signals, room events, replace notices) or received', labelNames: ['direction'], registers: [registry] })
  const storeErrors = new Counter({ name: 'causeway_signaling_store_errors_total', help: 'Failed Redis operations, by operation', labelNames: ['op'], registers: [registry] })
  const storeLosses = new Counter({ name: 'causeway_signaling_store_losses_total', help: 'Times the replica lost its room store and closed its sockets with STORE_UNAVAILABLE', registers: [registry] })
  const storeExpired = new Counter({ name: 'causeway_signaling_store_expired_peers_total', help: 'Peers of dead replicas whose presence this replica expired', registers: [registry] })
  // Rooms exist only once a join in them was verified (the hub records it), and go with their last peer.
  let redis: RedisRoomStore<NodeConn> | undefined
  let store: RoomStore<NodeConn>
  if (config.store.kind === 'redis') {
    // Loaded only for a Redis store: the embedded default never loads the client.
    const { RedisRoomStore } = await import('./redis-store.ts')
    redis = new RedisRoomStore<NodeConn>({
      url: config.store.url,
      ...(config.store.password !== undefined ? { password: config.store.password } : {}),
      presenceTtlMs: config.store.presenceTtlMs,
      maxRooms: config.limits.maxRooms,
      log,
      events: {
        published: n => storeMessages.inc({ direction: 'published' }, n),
        received: () => storeMessages.inc({ direction: 'received' }),
        error: op => storeErrors.inc({ op }),
        lost: () => storeLosses.inc(),
        expired: n => storeExpired.inc(n),
      },
    })
    store = redis
    const r = redis
    new Gauge({ name: 'causeway_signaling_store_replicas', help: 'Replicas with a fresh heartbeat in Redis, as of this replica\'s last beat', registers: [registry], collect () { this.set(r.replicas) } })
  } else {
    store = new MemoryRoomStore<NodeConn>({ maxRooms: config.limits.maxRooms })
  }
  const storeAvailable = (): boolean => redis?.available ?? true
  new Gauge({ name: 'causeway_signaling_rooms', help: 'Rooms this instance holds sockets in', registers: [registry], collect () { this.set(store.counts().rooms) } })
  new Gauge({ name: 'causeway_signaling_peers', help: 'Peers joined through this instance', registers: [registry], collect () { this.set(store.counts().peers) } })
  new Gauge({ name: 'causeway_signaling_prejoin_sockets', help: 'Sockets that have not joined yet', registers: [registry], collect () { this.set(prejoin.size) } })

  const hub = new RoomHub<NodeConn>({
    limits: config.limits,
    admissionOf: conn => conn.admission,
    store,
    events: {
      relayed: () => relayed.inc(),
      rejected: (code: string) => rejected.inc({ code }),
      joined: conn => { joins.inc(); releases.get(conn.id)?.() },
      refused: reason => refusals.inc({ reason }),
      evicted: () => evictions.inc(),
    },
  })

  const pageDir = pageDirectory()
  const assets = await pageAssets(pageDir)
  // eslint-disable-next-line prefer-const
  let nodeWs: ReturnType<typeof createNodeWebSocket>
  const app = createApp({
    config,
    metrics: async () => await registry.metrics(),
    health: () => storeAvailable()
      ? { ok: true, store: storeKind }
      : { ok: false, store: storeKind, error: new CausewayError('STORE_UNAVAILABLE', 'no connection to the room store (the reason is in the service log)') },
    assets,
    rooms: async (c, roomId, admission) => {
      if (malformedUpgrade(c)) throw new CausewayError('BAD_MESSAGE', 'malformed WebSocket upgrade')
      // Over a cap: refused before the upgrade (HTTP 429), so no socket state exists at all.
      const address = clientAddress(c, config.clientIpHeader)
      const release = prejoin.acquire(address)
      const id = randomId(9)
      releases.set(id, release)
      const done = (): void => { release(); releases.delete(id) }
      // The TCP socket's end frees the slot whatever happens to the upgrade (ws may refuse it without an event).
      ;(c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket.once('close', done)
      let conn: NodeConn | undefined
      let closed = false
      const onGone = (): void => {
        if (closed) return
        closed = true
        done()
        if (conn !== undefined) void hub.closed(conn)
      }
      const handler = nodeWs.upgradeWebSocket(() => ({
        onOpen (_evt, ws) {
          const raw = ws.raw
          const sock = {
            send (text: string) {
              if (raw !== undefined && raw.bufferedAmount > MAX_BUFFERED) {
                rejected.inc({ code: 'SLOW_CONSUMER' })
                raw.close(4008, 'SLOW_CONSUMER: send buffer full')
                return
              }
              ws.send(text)
            },
            close (code: number, reason: string) { ws.close(code, reason) },
          }
          if (!admission.ok) {
            rejected.inc({ code: admission.error.code })
            refuseSocket(sock, admission.error)
            return
          }
          conn = {
            id,
            ...sock,
            admission: {
              room: roomId,
              challenge: randomId(CHALLENGE_BYTES),
              address: seatAddress(address),
              ...(admission.ticketRole !== undefined ? { ticketRole: admission.ticketRole } : {}),
              ...(admission.ticketSubject !== undefined ? { subject: admission.ticketSubject } : {}),
            },
          }
          hub.opened(conn)
        },
        onMessage (evt, _ws) {
          if (conn === undefined) return
          const data: unknown = evt.data
          void hub.message(conn, typeof data === 'string' ? data : data instanceof ArrayBuffer ? data : new ArrayBuffer(0))
        },
        onClose () { onGone() },
        onError (evt) { log.debug({ err: String((evt as ErrorEvent).error) }, 'websocket error'); onGone() },
      }), { onError: (err: unknown) => log.warn({ err: String(err) }, 'websocket handler failed') })
      const res = await handler(c, async () => {})
      if (res === undefined || res === null) { done(); throw new CausewayError('BAD_MESSAGE', 'expected a WebSocket upgrade') }
      return res
    },
  })
  nodeWs = createNodeWebSocket({ app })
  // ws enforces a hard cap (1009) well above the protocol limit so that the hub can answer MESSAGE_TOO_LARGE itself.
  Object.assign(nodeWs.wss.options, {
    maxPayload: Math.max(config.limits.maxMessageBytes * 4, 1 << 20),
    perMessageDeflate: false,
    // Select causeway.2 when offered; never echo the ticket subprotocol.
    handleProtocols: (offered: Set<string>) => offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false,
  })

  const host = init.host ?? '127.0.0.1'
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: init.port ?? 0 }, () => resolve(s))
    s.once('error', reject)
  })
  nodeWs.injectWebSocket(server)
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    else socket.destroy()
  })
  const address = server.address() as AddressInfo
  const port = address.port
  const shownHost = host.includes(':') ? `[${host}]` : host
  log.info({ port, host, access: config.accessSecret !== undefined ? 'ticket' : 'open', store: config.store.kind === 'redis' ? redactUrl(config.store.url) : 'memory', ...(redis !== undefined ? { replica: redis.node } : {}) }, 'signaling listening')
  if (!existsSync(join(pageDir, 'index.html'))) log.warn({ dir: pageDir }, 'debug page not built (npm run build): /debug/ answers NOT_FOUND')
  if (config.accessSecret === undefined) log.warn('no CAUSEWAY_ACCESS_SECRET: any client may join any room (development only)')

  return {
    url: `http://${shownHost}:${port}`,
    port,
    ready: async (timeoutMs) => { await redis?.ready(timeoutMs) },
    async close () {
      // The store first: its sockets' closes below then leave nothing to announce (on Redis the
      // replica's presence expires; its agents rejoin through another replica at once).
      await redis?.close()
      for (const client of nodeWs.wss.clients) client.close(1001, 'SHUTTING_DOWN: service stopping')
      await new Promise<void>(resolve => {
        const t = setTimeout(() => { for (const client of nodeWs.wss.clients) client.terminate(); resolve() }, 1000)
        server.close(() => { clearTimeout(t); resolve() })
        if ('closeAllConnections' in server) (server as { closeAllConnections: () => void }).closeAllConnections()
      })
    },
  }
}
