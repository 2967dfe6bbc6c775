/**
 * Signaling service configuration, shared by both adapters. Read from the environment (Node:
 * process.env plus CLI flags; Worker: vars and secrets). See the README's configuration table.
 */
import * as z from 'zod'
import { DEFAULT_LIMITS, type SignalingLimits } from '../protocol/limits.ts'

const int = (def: number) => z.coerce.number().int().positive().default(def)

export const EnvConfig = z.object({
  CAUSEWAY_ACCESS_SECRET: z.string().min(16, 'CAUSEWAY_ACCESS_SECRET must be at least 16 characters').optional(),
  CAUSEWAY_TURN_SECRET: z.string().min(8).optional(),
  CAUSEWAY_TURN_URLS: z.string().optional(),
  CAUSEWAY_STUN_URLS: z.string().optional(),
  CAUSEWAY_TURN_TTL: int(3600),
  CAUSEWAY_RELAYS: z.string().optional(),
  CAUSEWAY_MAX_MESSAGE_BYTES: int(DEFAULT_LIMITS.maxMessageBytes),
  CAUSEWAY_MAX_PEERS_PER_ROOM: int(DEFAULT_LIMITS.maxPeersPerRoom),
  CAUSEWAY_MAX_ROOMS: int(DEFAULT_LIMITS.maxRooms),
  CAUSEWAY_RATE_PER_SECOND: int(DEFAULT_LIMITS.ratePerSecond),
  CAUSEWAY_RATE_BURST: int(DEFAULT_LIMITS.rateBurst),
  CAUSEWAY_JOIN_TIMEOUT_MS: int(DEFAULT_LIMITS.joinTimeoutMs),
  CAUSEWAY_MAX_PREJOIN: int(DEFAULT_LIMITS.maxPrejoin),
  CAUSEWAY_MAX_PREJOIN_PER_ADDRESS: int(DEFAULT_LIMITS.maxPrejoinPerAddress),
  CAUSEWAY_MAX_SEATS_PER_ADDRESS: int(DEFAULT_LIMITS.maxSeatsPerAddress),
  CAUSEWAY_MAX_SEATS_PER_AGENT: int(DEFAULT_LIMITS.maxSeatsPerSubject),
  CAUSEWAY_MAX_VIEWERS_PER_ROOM: int(DEFAULT_LIMITS.maxViewersPerRoom),
  CAUSEWAY_MAX_VIEWERS_PER_ADDRESS: int(DEFAULT_LIMITS.maxViewersPerAddress),
  CAUSEWAY_MAX_ROOMS_PER_ADDRESS: int(DEFAULT_LIMITS.maxRoomsPerAddress),
  CAUSEWAY_CLIENT_IP_HEADER: z.string().regex(/^[A-Za-z0-9-]+$/, 'CAUSEWAY_CLIENT_IP_HEADER must be a header name').max(64).optional(),
  CAUSEWAY_STORE: z.string().max(2048).refine(isStoreUrl, 'CAUSEWAY_STORE (--store) must be `memory` or redis://HOST:PORT[/DB] (rediss:// for TLS)').optional(),
  CAUSEWAY_REDIS_PASSWORD: z.string().max(1024).optional(),
  CAUSEWAY_PRESENCE_TTL_MS: z.coerce.number().int().min(1000).max(600_000).default(5000),
})

/** Whether `s` names a room store: `memory`, or a redis:// / rediss:// URL with a host. */
export function isStoreUrl (s: string): boolean {
  if (s === 'memory') return true
  try {
    const u = new URL(s)
    return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '' && /^(\/\d{0,2})?$/.test(u.pathname)
  } catch { return false }
}

/**
 * Where a Node instance keeps its rooms: in its own memory (one process, the default), or in
 * Redis, shared by any number of replicas. (The Worker ignores it: its rooms are Durable Objects.)
 */
export type StoreConfig =
  | { kind: 'memory' }
  | {
    kind: 'redis'
    /** redis://HOST:PORT[/DB] or rediss:// (TLS). */
    url: string
    /** AUTH password (CAUSEWAY_REDIS_PASSWORD), kept out of the URL and so out of argv. */
    password?: string
    /** A replica silent this long is dead: its peers are announced gone. */
    presenceTtlMs: number
  }

export interface SignalingConfig {
  /** Access secret; when set only tickets signed with it may join. Unset: open (development only). */
  accessSecret?: string
  /** TURN REST secret (coturn use-auth-secret); with turnUrls, /v1/ice mints credentials. */
  turnSecret?: string
  turnUrls: string[]
  stunUrls: string[]
  turnTtlSeconds: number
  /** libp2p relay multiaddrs handed to agents in /v1/ice. */
  relays: string[]
  /**
   * Node: the request header a trusted reverse proxy puts the client address in (e.g.
   * `x-forwarded-for`, whose last entry is used); unset: the socket's peer address.
   */
  clientIpHeader?: string
  /** Node: the room store (CAUSEWAY_STORE, `--store`). Default memory. */
  store: StoreConfig
  limits: SignalingLimits
}

/** A store URL with any credentials removed (for logs and the startup line). */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    u.username = ''
    u.password = ''
    return u.toString()
  } catch { return '(unparsable URL)' }
}

/** The store a CAUSEWAY_STORE value names (`memory` or a Redis URL). */
export function storeConfig (value: string | undefined, opts: { password?: string, presenceTtlMs: number }): StoreConfig {
  if (value === undefined || value === '' || value === 'memory') return { kind: 'memory' }
  if (!isStoreUrl(value)) throw new Error('invalid signaling configuration: the store must be `memory` or redis://HOST:PORT[/DB] (rediss:// for TLS)')
  return { kind: 'redis', url: value, presenceTtlMs: opts.presenceTtlMs, ...(opts.password !== undefined ? { password: opts.password } : {}) }
}

const list = (s: string | undefined): string[] => (s ?? '').split(/[\s,]+/).filter(Boolean)

/** Builds the config from an environment-like record; throws a readable error on bad values. */
export function configFromEnv (env: Record<string, unknown>): SignalingConfig {
  const picked: Record<string, unknown> = {}
  for (const key of Object.keys(EnvConfig.shape)) {
    const v = env[key]
    if (typeof v === 'string' && v !== '') picked[key] = v
  }
  const r = EnvConfig.safeParse(picked)
  if (!r.success) throw new Error(`invalid signaling configuration: ${r.error.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  const e = r.data
  return {
    ...(e.CAUSEWAY_ACCESS_SECRET !== undefined ? { accessSecret: e.CAUSEWAY_ACCESS_SECRET } : {}),
    ...(e.CAUSEWAY_TURN_SECRET !== undefined ? { turnSecret: e.CAUSEWAY_TURN_SECRET } : {}),
    turnUrls: list(e.CAUSEWAY_TURN_URLS),
    stunUrls: list(e.CAUSEWAY_STUN_URLS),
    turnTtlSeconds: e.CAUSEWAY_TURN_TTL,
    relays: list(e.CAUSEWAY_RELAYS),
    ...(e.CAUSEWAY_CLIENT_IP_HEADER !== undefined ? { clientIpHeader: e.CAUSEWAY_CLIENT_IP_HEADER.toLowerCase() } : {}),
    store: storeConfig(e.CAUSEWAY_STORE, { presenceTtlMs: e.CAUSEWAY_PRESENCE_TTL_MS, ...(e.CAUSEWAY_REDIS_PASSWORD !== undefined ? { password: e.CAUSEWAY_REDIS_PASSWORD } : {}) }),
    limits: {
      maxMessageBytes: e.CAUSEWAY_MAX_MESSAGE_BYTES,
      maxPeersPerRoom: e.CAUSEWAY_MAX_PEERS_PER_ROOM,
      maxRooms: e.CAUSEWAY_MAX_ROOMS,
      ratePerSecond: e.CAUSEWAY_RATE_PER_SECOND,
      rateBurst: e.CAUSEWAY_RATE_BURST,
      joinTimeoutMs: e.CAUSEWAY_JOIN_TIMEOUT_MS,
      maxPrejoin: e.CAUSEWAY_MAX_PREJOIN,
      maxPrejoinPerAddress: e.CAUSEWAY_MAX_PREJOIN_PER_ADDRESS,
      maxSeatsPerAddress: e.CAUSEWAY_MAX_SEATS_PER_ADDRESS,
      maxSeatsPerSubject: e.CAUSEWAY_MAX_SEATS_PER_AGENT,
      maxViewersPerRoom: e.CAUSEWAY_MAX_VIEWERS_PER_ROOM,
      maxViewersPerAddress: e.CAUSEWAY_MAX_VIEWERS_PER_ADDRESS,
      maxRoomsPerAddress: e.CAUSEWAY_MAX_ROOMS_PER_ADDRESS,
    },
  }
}
