/**
 * ICE configuration for new peer connections: what the signaling service's `/v1/ice` hands
 * out (STUN, TURN with short-lived REST credentials, relay addresses), within this agent's ICE
 * policy (agent/ice-policy.ts: entries outside it are dropped with a warning), plus servers
 * from flags. Refreshed before the TURN credentials expire. Never a public default.
 */
import { IceConfig } from '../protocol/messages.ts'
import type { MemberToken, ViewerToken } from '../protocol/token.ts'
import type { LogLike } from '../peer/peer-session.ts'
import { applyIcePolicy, icePolicy, type IcePolicy, type Refused } from './ice-policy.ts'

export class IceSource {
  private fetched: RTCIceServer[] = []
  relays: string[] = []
  /** `/v1/ice` entries the policy refused at the last fetch. */
  refused: Refused[] = []
  private timer?: ReturnType<typeof setTimeout>
  private readonly extra: RTCIceServer[]
  private readonly token: MemberToken | ViewerToken
  private readonly room: string
  private readonly log: LogLike
  private readonly useService: boolean
  private readonly policy: IcePolicy

  constructor (init: { token: MemberToken | ViewerToken, room: string, extra: RTCIceServer[], useService: boolean, log: LogLike, policy?: IcePolicy }) {
    this.policy = init.policy ?? icePolicy()
    this.token = init.token
    this.room = init.room
    this.extra = init.extra
    this.useService = init.useService
    this.log = init.log
  }

  servers (): RTCIceServer[] {
    return [...this.extra, ...this.fetched]
  }

  async refresh (): Promise<void> {
    clearTimeout(this.timer)
    if (!this.useService) return
    let next = 60_000
    try {
      const cfg = await fetchIceConfig(this.token, this.room, AbortSignal.timeout(5000), this.policy)
      this.fetched = cfg.iceServers
      this.relays = cfg.relays
      if (JSON.stringify(cfg.refused) !== JSON.stringify(this.refused) && cfg.refused.length > 0) {
        this.log.warn({ refused: cfg.refused }, '/v1/ice entries outside this agent\'s ICE policy were dropped (--ice-ports, --ice-allow)')
      }
      this.refused = cfg.refused
      if (cfg.ttlSeconds !== undefined) next = Math.max(30_000, cfg.ttlSeconds * 500)
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not fetch ICE config from the signaling service; retrying')
      next = 10_000
    }
    this.timer = setTimeout(() => { void this.refresh() }, next)
    this.timer.unref?.()
  }

  close (): void { clearTimeout(this.timer) }
}

/** One `GET /v1/ice` of the token's signaling service: ICE servers (TURN with REST credentials), relays, TTL, within `policy`; and what the policy refused. */
export async function fetchIceConfig (token: MemberToken | ViewerToken, room: string, signal: AbortSignal, policy: IcePolicy = icePolicy()): Promise<{ iceServers: RTCIceServer[], relays: string[], ttlSeconds?: number, refused: Refused[] }> {
  const url = new URL(`${token.signaling.replace(/\/$/, '')}/v1/ice`)
  url.searchParams.set('room', room)
  const res = await fetch(url, { headers: token.ticket !== undefined ? { authorization: `Bearer ${token.ticket}` } : {}, signal })
  if (!res.ok) throw new Error(`HTTP ${res.status}`)
  const cfg = IceConfig.parse(JSON.parse(await boundedText(res, MAX_ICE_BODY)))
  const kept = await applyIcePolicy({
    iceServers: cfg.iceServers.map(s => ({ urls: s.urls, ...(s.username !== undefined ? { username: s.username } : {}), ...(s.credential !== undefined ? { credential: s.credential } : {}) })),
    relays: cfg.relays,
  }, policy)
  return { ...kept, ...(cfg.ttlSeconds !== undefined ? { ttlSeconds: cfg.ttlSeconds } : {}) }
}

/** Largest `/v1/ice` body read, bytes. */
const MAX_ICE_BODY = 256 * 1024

/** A response body as text, refusing one over `max` bytes (a hostile service cannot make the agent buffer without bound). */
async function boundedText (res: Response, max: number): Promise<string> {
  const reader = res.body?.getReader()
  if (reader === undefined) return ''
  const parts: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > max) { await reader.cancel(); throw new Error(`/v1/ice answer over ${max} bytes`) }
    parts.push(value)
  }
  return Buffer.concat(parts).toString('utf8')
}

/** Parses `--ice URL[,username=U,credential=C]`. */
export function parseIceFlag (text: string): RTCIceServer {
  const [url, ...opts] = text.split(',')
  if (url === undefined || !/^(stun|turn|turns):/.test(url)) throw new Error(`--ice expects stun:/turn: URL, got "${text}"`)
  const server: RTCIceServer = { urls: url }
  for (const o of opts) {
    const i = o.indexOf('=')
    const k = o.slice(0, i)
    const v = o.slice(i + 1)
    if (k === 'username') server.username = v
    else if (k === 'credential') server.credential = v
    else throw new Error(`unknown --ice option "${o}"`)
  }
  return server
}
