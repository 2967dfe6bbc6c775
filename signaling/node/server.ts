/**
 * Node adapter of the signaling service: @hono/node-server + @hono/node-ws, rooms in memory
 * (MemoryRoomStore), Prometheus metrics with prom-client. The embedded default.
 */
import { serve, type ServerType } from '@hono/node-server'
import { createNodeWebSocket } from '@hono/node-ws'
import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { CausewayError } from '../../protocol/errors.ts'
import { randomId } from '../../protocol/encoding.ts'
import { verifyTicket } from '../../protocol/ticket.ts'
import { createApp } from '../app.ts'
import type { SignalingConfig } from '../config.ts'
import { RoomHub, ticketVerifier } from '../hub.ts'
import { MemoryRoomStore, type Conn } from '../store.ts'
import { pageAssets, pageDirectory } from './assets.ts'

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
  close: () => Promise<void>
}

interface Room { hub: RoomHub<Conn>, store: MemoryRoomStore<Conn>, sockets: number }

export async function startNodeSignaling (init: NodeSignalingInit): Promise<NodeSignaling> {
  const log = init.log ?? pino({ level: 'silent' })
  const { config } = init
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'causeway_signaling_' })
  const relayed = new Counter({ name: 'causeway_signaling_relayed_total', help: 'Signals forwarded between peers', registers: [registry] })
  const rejected = new Counter({ name: 'causeway_signaling_rejected_total', help: 'Rejections by error code', labelNames: ['code'], registers: [registry] })
  const joins = new Counter({ name: 'causeway_signaling_joins_total', help: 'Successful joins', registers: [registry] })
  const rooms = new Map<string, Room>()
  new Gauge({ name: 'causeway_signaling_rooms', help: 'Rooms open', registers: [registry], collect () { this.set(rooms.size) } })
  new Gauge({ name: 'causeway_signaling_peers', help: 'Peers joined', registers: [registry], collect () { let n = 0; for (const r of rooms.values()) n += r.store.size(); this.set(n) } })

  const verifyJoin = ticketVerifier(config.accessSecret, verifyTicket)
  const events = {
    relayed: () => relayed.inc(),
    rejected: (code: string) => rejected.inc({ code }),
    joined: () => joins.inc(),
  }

  const pageDir = pageDirectory()
  const assets = await pageAssets(pageDir)
  // eslint-disable-next-line prefer-const
  let nodeWs: ReturnType<typeof createNodeWebSocket>
  const app = createApp({
    config,
    metrics: async () => await registry.metrics(),
    assets,
    rooms: async (c, roomId) => {
      let room = rooms.get(roomId)
      if (room === undefined) {
        if (rooms.size >= config.limits.maxRooms) throw new CausewayError('TOO_MANY_ROOMS', `this instance holds ${config.limits.maxRooms} rooms`)
        const store = new MemoryRoomStore<Conn>()
        room = { store, hub: new RoomHub({ room: roomId, store, limits: config.limits, verifyJoin, events }), sockets: 0 }
        rooms.set(roomId, room)
      }
      const r = room
      r.sockets++
      let conn: Conn | undefined
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        r.sockets--
        if (conn !== undefined) r.hub.closed(conn)
        if (r.sockets === 0 && rooms.get(roomId) === r) rooms.delete(roomId)
      }
      const handler = nodeWs.upgradeWebSocket(() => ({
        onOpen (_evt, ws) {
          const raw = ws.raw
          conn = {
            id: randomId(9),
            send (text) {
              if (raw !== undefined && raw.bufferedAmount > MAX_BUFFERED) {
                rejected.inc({ code: 'SLOW_CONSUMER' })
                raw.close(4008, 'SLOW_CONSUMER: send buffer full')
                return
              }
              ws.send(text)
            },
            close (code, reason) { ws.close(code, reason) },
          }
          r.hub.opened(conn)
        },
        onMessage (evt, _ws) {
          if (conn === undefined) return
          const data: unknown = evt.data
          void r.hub.message(conn, typeof data === 'string' ? data : data instanceof ArrayBuffer ? data : new ArrayBuffer(0))
        },
        onClose () { release() },
        onError (evt) { log.debug({ err: String((evt as ErrorEvent).error) }, 'websocket error'); release() },
      }), { onError: (err: unknown) => log.warn({ err: String(err) }, 'websocket handler failed') })
      const res = await handler(c, async () => {})
      if (res === undefined || res === null) { release(); throw new CausewayError('BAD_MESSAGE', 'expected a WebSocket upgrade') }
      return res
    },
  })
  nodeWs = createNodeWebSocket({ app })
  // ws enforces a hard cap (1009) well above the protocol limit so that the hub can answer MESSAGE_TOO_LARGE itself.
  Object.assign(nodeWs.wss.options, { maxPayload: Math.max(config.limits.maxMessageBytes * 4, 1 << 20), perMessageDeflate: false })

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
  log.info({ port, host, access: config.accessSecret !== undefined ? 'ticket' : 'open' }, 'signaling listening')
  if (!existsSync(join(pageDir, 'index.html'))) log.warn({ dir: pageDir }, 'debug page not built (npm run build): /debug/ answers NOT_FOUND')
  if (config.accessSecret === undefined) log.warn('no CAUSEWAY_ACCESS_SECRET: any client may join any room (development only)')

  return {
    url: `http://${shownHost}:${port}`,
    port,
    async close () {
      for (const client of nodeWs.wss.clients) client.close(1001, 'SHUTTING_DOWN: service stopping')
      await new Promise<void>(resolve => {
        const t = setTimeout(() => { for (const client of nodeWs.wss.clients) client.terminate(); resolve() }, 1000)
        server.close(() => { clearTimeout(t); resolve() })
        if ('closeAllConnections' in server) (server as { closeAllConnections: () => void }).closeAllConnections()
      })
    },
  }
}
