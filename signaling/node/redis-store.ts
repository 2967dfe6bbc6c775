/**
 * RedisRoomStore: the RoomStore of any number of Node replicas of the signaling service on one
 * Redis (ioredis; a command connection and a subscriber connection per replica). Membership
 * lives in Redis (redis-scripts.ts has the key layout); each replica keeps its own sockets in
 * memory (LocalSockets) and listens on its own channel, where the other replicas' joins, leaves,
 * replaces and signals for its sockets arrive.
 *
 * Presence: every replica beats every `heartbeatMs` (its score in a sorted set, on Redis's
 * clock) and, in the same beat, looks for replicas whose last beat is older than
 * `presenceTtlMs`; it removes those and every member they held (REAP), which the replicas left
 * in those rooms hear as `left`. So a replica that dies (kill -9, lost host) has its peers
 * announced gone within presenceTtlMs + heartbeatMs, except peers that joined again through
 * another replica meanwhile (their record points there). A replica that stops (SIGTERM) closes
 * its sockets and stops beating: its peers rejoin elsewhere at once, and the presence of those
 * that do not expires the same way.
 *
 * Losing Redis: when either connection closes, a command fails or times out
 * (`commandTimeoutMs`), or a beat finds this replica's own presence gone (expired during a
 * stall, or Redis restarted empty), the store is lost: it forgets every local socket and hands
 * them to the listener (the hub closes them with STORE_UNAVAILABLE; clients reconnect with
 * backoff and their tunnels are untouched), and joins and signals throw STORE_UNAVAILABLE. It
 * recovers by itself: once both connections are back (ioredis reconnects every <= 1 s), the
 * next beat first removes whatever this replica left in Redis (REAP of itself, so no ghost
 * survives a short outage), subscribes again, and registers; joins work from then on.
 */
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import * as z from 'zod'
import { CausewayError } from '../../protocol/errors.ts'
import { randomId } from '../../protocol/encoding.ts'
import { refusal, seatRefusal } from '../seats.ts'
import { LocalSockets, noListener, type Conn, type JoinLimits, type Joined, type Member, type Role, type RoomListener, type RoomStore, type Seat } from '../store.ts'
import { HEARTBEAT, JOIN, LEAVE, REAP, SIGNAL, type Script } from './redis-scripts.ts'

/** Operations the store counts (metrics). */
export type StoreOp = 'join' | 'leave' | 'signal' | 'members' | 'heartbeat' | 'reap' | 'subscribe' | 'connection'

/** What the store reports, for metrics (node/server.ts). */
export interface RedisStoreEvents {
  /** Messages this replica published (signals, room events, replace notices), counted by the scripts. */
  published?: (n: number) => void
  /** A message arrived on this replica's channel. */
  received?: () => void
  error?: (op: StoreOp) => void
  /** The store went down (reason) / came back. */
  lost?: (reason: string) => void
  recovered?: () => void
  /** Members of dead replicas this replica removed. */
  expired?: (members: number) => void
}

export interface RedisRoomStoreInit {
  /** `redis://[[user]:password@]host:port[/db]`, or `rediss://` for TLS (Node's CA store; extra CAs with NODE_EXTRA_CA_CERTS). */
  url: string
  /** Password (AUTH); one in the URL wins. */
  password?: string
  /** Key and channel prefix. Default `causeway:`. */
  prefix?: string
  /** A replica whose last heartbeat is older than this is dead, ms. Default 5000. */
  presenceTtlMs?: number
  /** Heartbeat period, ms. Default presenceTtlMs / 5. */
  heartbeatMs?: number
  /** A Redis command without a reply this long fails (and the store is lost), ms. Default 2000. */
  commandTimeoutMs?: number
  /** Rooms this replica may hold sockets in (TOO_MANY_ROOMS past it). Default unlimited. */
  maxRooms?: number
  log?: Logger
  events?: RedisStoreEvents
}

export const DEFAULT_PRESENCE_TTL_MS = 5000

const Id = z.string().regex(/^[A-Za-z0-9_-]+$/).max(128)
const RoleSchema = z.enum(['agent', 'viewer'])
/** A message on this replica's channel (redis-scripts.ts builds them). */
const ChannelMessage = z.discriminatedUnion('t', [
  z.object({ t: z.literal('s'), c: Id, x: z.string().max(1 << 20) }),
  z.object({ t: z.literal('j'), r: Id, p: Id, o: RoleSchema }),
  z.object({ t: z.literal('l'), r: Id, p: Id, o: RoleSchema }),
  z.object({ t: z.literal('r'), c: Id }),
  z.object({ t: z.literal('e'), c: Id }),
])
const SeatReasons = z.enum(['room_full', 'viewers_full', 'address', 'viewers_address', 'subject'])
/** A cap in a script's argument list: Infinity goes as 0 (no cap) where the script takes that, else as a number past any count. */
const cap = (n: number): string => String(Number.isFinite(n) ? n : 1_000_000_000)
const Strings = z.array(z.string())
const LeaveReply = z.union([z.null(), z.tuple([RoleSchema, z.string()])])

/** The error clients see (the reason, which may name internal addresses, stays in the log and in `cause`). */
const unavailable = (why: string): CausewayError => new CausewayError('STORE_UNAVAILABLE', 'the signaling service cannot reach its room store: try again shortly', { cause: why })

/** Pairs `[peer, role, peer, role, ...]` as members; throws on a malformed reply. */
function membersOf (flat: string[]): Member[] {
  const out: Member[] = []
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({ peer: Id.parse(flat[i]), role: RoleSchema.parse(flat[i + 1]) })
  return out
}

export class RedisRoomStore<C extends Conn = Conn> implements RoomStore<C> {
  /** This replica's id (one per process). */
  readonly node = randomId(9).replace(/[^A-Za-z0-9_-]/g, '_')
  private readonly cmd: Redis
  private readonly sub: Redis
  private readonly sockets = new LocalSockets<C>()
  private listener: RoomListener<C> = noListener()
  private readonly prefix: string
  private readonly channel: string
  private readonly ttlMs: number
  private readonly maxRooms: number
  private readonly log: Logger | undefined
  private readonly events: RedisStoreEvents
  private readonly timer: ReturnType<typeof setInterval>
  private up = false
  private closing = false
  private ticking: Promise<void> | undefined
  private lastError = 'not connected yet'
  private loggedErrorAt = 0
  private live = 0

  constructor (init: RedisRoomStoreInit) {
    this.prefix = init.prefix ?? 'causeway:'
    if (!/^[A-Za-z0-9:_-]{1,64}$/.test(this.prefix)) throw new CausewayError('BAD_CONFIG', 'the store key prefix must be 1-64 characters of A-Z a-z 0-9 : _ -')
    this.channel = `${this.prefix}node:${this.node}`
    this.ttlMs = init.presenceTtlMs ?? DEFAULT_PRESENCE_TTL_MS
    const heartbeatMs = init.heartbeatMs ?? Math.max(100, Math.floor(this.ttlMs / 5))
    if (heartbeatMs * 2 > this.ttlMs) throw new CausewayError('BAD_CONFIG', 'the presence TTL must be at least twice the heartbeat period')
    this.maxRooms = init.maxRooms ?? Infinity
    this.log = init.log
    this.events = init.events ?? {}
    const options: RedisOptions = {
      ...(init.password !== undefined ? { password: init.password } : {}),
      protocol: 2,
      connectionName: `causeway-signaling-${this.node}`,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: init.commandTimeoutMs ?? 2000,
      connectTimeout: 2000,
      // Reconnect quickly: every 100, 200, 400, 800 then 1000 ms while Redis is away.
      retryStrategy: (times: number) => Math.min(100 * 2 ** (times - 1), 1000),
    }
    this.cmd = new Redis(init.url, options)
    this.sub = new Redis(init.url, { ...options, connectionName: `causeway-signaling-${this.node}-sub` })
    for (const [client, role] of [[this.cmd, 'commands'], [this.sub, 'subscriber']] as const) {
      client.on('error', (err: Error) => {
        this.lastError = err.message
        // ioredis reports every failed reconnect (one a second): logged at most every 30 s.
        if (Date.now() - this.loggedErrorAt < 30_000) return
        this.loggedErrorAt = Date.now()
        this.log?.warn({ err: err.message, connection: role, replica: this.node }, 'room store: Redis connection error (retrying)')
      })
      client.on('close', () => { if (this.up) this.markLost(`the ${role} connection closed`) })
      client.on('ready', () => { void this.tick() })
    }
    this.sub.on('message', (channel: string, message: string) => { if (channel === this.channel) this.onMessage(message) })
    this.timer = setInterval(() => { void this.tick() }, heartbeatMs)
    this.timer.unref()
  }

  /** Whether joins and signals can go through Redis now. */
  get available (): boolean { return this.up }

  /** Replicas with a fresh heartbeat, as of this replica's last beat. */
  get replicas (): number { return this.live }

  /** Resolves once the store is available (bounded). */
  async ready (timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.up) {
      if (this.closing || Date.now() > deadline) throw unavailable(this.lastError)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  listen (listener: RoomListener<C>): void { this.listener = listener }

  joinedAs (conn: C): Joined | undefined { return this.sockets.joinedAs(conn) }

  local (room: string): Array<{ conn: C, member: Member }> { return this.sockets.local(room) }

  counts (): { rooms: number, peers: number } { return { rooms: this.sockets.rooms, peers: this.sockets.size } }

  async join (room: string, conn: C, member: Member, seat: Seat, limits: JoinLimits): Promise<Member[]> {
    if (!this.up) throw unavailable(this.lastError)
    if (this.sockets.get(conn.id) !== undefined) throw new CausewayError('BAD_MESSAGE', 'already joined')
    if (!this.sockets.hasRoom(room) && this.sockets.rooms >= this.maxRooms) throw refusal('rooms_instance', this.maxRooms)
    // Known locally before the script runs: an event published right after it reaches this socket.
    this.sockets.add(room, conn, member)
    let reply: string[]
    try {
      reply = Strings.parse(await this.run('join', JOIN, [
        room, member.peer, member.role, this.node, conn.id, seat.address, seat.subject ?? '-',
        cap(limits.maxPeers), cap(limits.maxSeatsPerAddress), cap(limits.maxSeatsPerSubject), cap(limits.maxViewers), cap(limits.maxViewersPerAddress),
        Number.isFinite(limits.maxRoomsPerAddress) ? String(limits.maxRoomsPerAddress) : '0',
      ]))
    } catch (err) {
      this.sockets.remove(conn.id)
      throw err
    }
    const [status, replacedNode, replacedConn, evictedNode, evictedConn, published, ...flat] = reply
    if (status !== 'OK') {
      this.sockets.remove(conn.id)
      if (status === 'FULL') throw this.refused(replacedNode, limits)
      this.markLost('this replica\'s presence was gone')
      throw unavailable('presence gone')
    }
    this.events.published?.(Number(published))
    if (evictedNode === this.node && evictedConn !== undefined && evictedConn !== '') {
      const victim = this.sockets.remove(evictedConn)
      if (victim !== undefined) this.listener.evicted(victim.conn)
    }
    if (replacedNode === this.node && replacedConn !== undefined && replacedConn !== '') {
      const old = this.sockets.remove(replacedConn)
      if (old !== undefined) this.listener.replaced(old.conn)
    }
    return membersOf(flat)
  }

  /** The error of a join the script refused with `reason`. */
  private refused (reason: string | undefined, limits: JoinLimits): CausewayError {
    if (reason === 'rooms_address') return refusal('rooms_address', limits.maxRoomsPerAddress)
    const seatReason = SeatReasons.safeParse(reason)
    return seatRefusal(seatReason.success ? seatReason.data : 'room_full', limits)
  }

  async leave (conn: C): Promise<Member | undefined> {
    const e = this.sockets.remove(conn.id)
    if (e === undefined || !this.up) return undefined
    try {
      const reply = LeaveReply.parse(await this.run('leave', LEAVE, [e.room, e.member.peer, this.node, conn.id]))
      if (reply === null) return undefined
      this.events.published?.(Number(reply[1]))
      return { peer: e.member.peer, role: reply[0] }
    } catch {
      // Lost (run() marked it): the recovery's REAP of this replica removes the record.
      return undefined
    }
  }

  async send (room: string, to: string, roles: readonly Role[], text: string): Promise<boolean> {
    if (!this.up) throw unavailable(this.lastError)
    const sent = z.number().parse(await this.run('signal', SIGNAL, [room, to, roles.join(','), JSON.stringify(text)])) === 1
    if (sent) this.events.published?.(1)
    return sent
  }

  async members (room: string): Promise<Member[]> {
    if (!this.up) throw unavailable(this.lastError)
    let records: Record<string, string>
    try {
      records = await this.cmd.hgetall(`${this.prefix}room:${room}:m`)
    } catch (err) {
      this.fail('members', err)
    }
    return membersOf(Object.entries(records).flatMap(([peer, record]) => [peer, record.split(' ')[0] ?? '']))
  }

  /**
   * Stops this replica: no more beats, every local socket forgotten (the caller closes them),
   * connections closed. Its presence in Redis expires like a crashed replica's, so that its
   * agents, rejoining elsewhere at once, are not announced as gone in between.
   */
  async close (): Promise<void> {
    this.closing = true
    this.up = false
    clearInterval(this.timer)
    this.sockets.clear()
    await this.ticking?.catch(() => {})
    await Promise.allSettled([this.cmd, this.sub].map(async c => {
      if (c.status === 'ready') await Promise.race([c.quit(), new Promise(resolve => setTimeout(resolve, 1000))])
      c.disconnect()
    }))
  }

  /** Runs a script (loading it again after a Redis restart emptied the script cache). */
  private async eval (script: Script, args: string[]): Promise<unknown> {
    const argv = [this.prefix, ...args]
    try {
      return await this.cmd.evalsha(script.sha, 0, ...argv)
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return await this.cmd.eval(script.lua, 0, ...argv)
    }
  }

  /** Runs a script; any failure (connection, timeout, Redis error) loses the store and throws STORE_UNAVAILABLE. */
  private async run (op: StoreOp, script: Script, args: string[]): Promise<unknown> {
    try {
      return await this.eval(script, args)
    } catch (err) {
      this.fail(op, err)
    }
  }

  private fail (op: StoreOp, err: unknown): never {
    const why = err instanceof Error ? err.message : String(err)
    this.lastError = why
    this.events.error?.(op)
    this.markLost(`${op} failed: ${why}`)
    throw unavailable(why)
  }

  private markLost (reason: string): void {
    if (!this.up) return
    this.up = false
    this.lastError = reason
    this.log?.warn({ reason, replica: this.node }, 'room store lost: closing this replica\'s sockets (STORE_UNAVAILABLE)')
    this.events.lost?.(reason)
    const conns = this.sockets.clear()
    this.listener.lost(conns)
  }

  private onMessage (raw: string): void {
    this.events.received?.()
    let parsed: unknown
    try { parsed = JSON.parse(raw) } catch { parsed = undefined }
    const m = ChannelMessage.safeParse(parsed)
    if (!m.success) { this.log?.warn('unparsable message on the store channel'); return }
    const msg = m.data
    switch (msg.t) {
      case 's': {
        const e = this.sockets.get(msg.c)
        if (e !== undefined) this.listener.deliver(e.conn, msg.x)
        return
      }
      case 'j':
        if (this.sockets.hasRoom(msg.r)) this.listener.joined(msg.r, { peer: msg.p, role: msg.o })
        return
      case 'l':
        if (this.sockets.hasRoom(msg.r)) this.listener.left(msg.r, { peer: msg.p, role: msg.o })
        return
      case 'r': {
        const e = this.sockets.remove(msg.c)
        if (e !== undefined) this.listener.replaced(e.conn)
        return
      }
      case 'e': {
        const e = this.sockets.remove(msg.c)
        if (e !== undefined) this.listener.evicted(e.conn)
      }
    }
  }

  /** One beat (never two at once): recover when down, else heartbeat and reap the dead. */
  private async tick (): Promise<void> {
    if (this.closing || this.ticking !== undefined) return
    this.ticking = (this.up ? this.beat() : this.recover()).catch(() => {}).finally(() => { this.ticking = undefined })
    await this.ticking
  }

  private async recover (): Promise<void> {
    if (this.cmd.status !== 'ready' || this.sub.status !== 'ready') return
    let beat: string[]
    try {
      // Whatever this replica left behind before the loss goes first (announced as left).
      const [, published = '0'] = Strings.parse(await this.eval(REAP, [this.node]))
      this.events.published?.(Number(published))
      await this.sub.subscribe(this.channel)
      beat = Strings.parse(await this.eval(HEARTBEAT, [this.node, String(this.ttlMs)]))
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err)
      this.events.error?.('connection')
      return
    }
    if (this.closing) return
    this.up = true
    this.log?.info({ replica: this.node }, 'room store connected')
    this.events.recovered?.()
    await this.afterBeat(beat)
  }

  private async beat (): Promise<void> {
    const reply = Strings.parse(await this.run('heartbeat', HEARTBEAT, [this.node, String(this.ttlMs)]))
    if (reply[0] === '1') {
      // This replica was not registered any more: its presence expired (a stall longer than the
      // TTL, and another replica removed its members) or Redis restarted empty.
      this.markLost('this replica\'s presence had expired')
      return
    }
    await this.afterBeat(reply)
  }

  /** Counts the live replicas and removes the dead ones a beat found. */
  private async afterBeat ([, live = '0', ...dead]: string[]): Promise<void> {
    this.live = Number(live)
    for (const node of dead) {
      const [members = '0', published = '0'] = Strings.parse(await this.run('reap', REAP, [Id.parse(node)]))
      this.events.published?.(Number(published))
      if (Number(members) > 0) {
        this.log?.info({ replica: node, members: Number(members) }, 'a replica stopped beating: its peers\' presence expired')
        this.events.expired?.(Number(members))
      }
    }
  }
}
