/**
 * The page as a viewer peer of the mesh: derives the room and keys from a viewer token in the
 * browser (WebCrypto), fetches ICE servers from the signaling service (never a public STUN
 * server), joins with the browser's own RTCPeerConnection through the portable Mesh, and keeps
 * a model of what it sees: per agent its catalog, its last `status` message, and this page's
 * own connection to it (path, candidate pair, RTT, bytes).
 */
import { Mesh, type RemotePeer } from '../../../peer/mesh.ts'
import type { PeerSession, SessionState } from '../../../peer/peer-session.ts'
import { randomId } from '../../../protocol/encoding.ts'
import { IceConfig } from '../../../protocol/messages.ts'
import type { PathKind, ShareInfo, StatusMessage } from '../../../protocol/peer.ts'
import type { ViewerToken } from '../../../protocol/token.ts'

/**
 * How long agents that are in the room may take to connect before the page says none answers,
 * ms. An empty room needs no timer: signaling's roster tells at once (EMPTY_ROOM).
 */
export const NO_AGENT_MS = 10_000
/** The notice shown while the room holds no agent (from the roster, at once). */
export const EMPTY_ROOM = 'No agent in the room'
/** A status older than this is shown as stale, ms (agents send one every 2 s). */
export const STALE_MS = 7000

export interface OwnLink {
  state: SessionState | 'new'
  path: PathKind
  pair?: string
  rttMs: number | null
  bytesIn: number
  bytesOut: number
}

export interface AgentView {
  id: string
  name: string
  /** The instance of its site (agents with instances: several may share a name). */
  instance?: string
  draining?: boolean
  link: OwnLink
  catalog: ShareInfo[]
  status?: StatusMessage
  statusAt?: number
}

export type Notice = { level: 'error' | 'warn' | 'info', title: string, detail?: string, code?: string }

export interface ViewerModel {
  signaling: string
  since: number
  agents: Map<string, AgentView>
  notices: Notice[]
  /** A fatal error: nothing works until the user changes the token. */
  fatal?: Notice
}

interface StatsLike { type?: unknown, id?: unknown, bytesSent?: unknown, bytesReceived?: unknown }

async function transportBytes (pc: RTCPeerConnection): Promise<{ bytesIn: number, bytesOut: number }> {
  let bytesIn = 0
  let bytesOut = 0
  try {
    const report = await pc.getStats()
    report.forEach((s: StatsLike) => {
      if (s.type === 'transport') {
        if (typeof s.bytesReceived === 'number') bytesIn += s.bytesReceived
        if (typeof s.bytesSent === 'number') bytesOut += s.bytesSent
      }
    })
  } catch { /* closed */ }
  return { bytesIn, bytesOut }
}

/** Reads `{error:{code,message}}` from a failed HTTP response of the signaling service. */
async function serviceError (res: Response): Promise<{ code: string, message: string }> {
  try {
    const j: unknown = await res.json()
    if (typeof j === 'object' && j !== null && 'error' in j) {
      const e = j.error
      if (typeof e === 'object' && e !== null && 'code' in e && 'message' in e && typeof e.code === 'string' && typeof e.message === 'string') return { code: e.code.slice(0, 64), message: e.message.slice(0, 300) }
    }
  } catch { /* not JSON */ }
  return { code: `HTTP_${res.status}`, message: res.statusText }
}

/**
 * Mesh log: warnings go to the browser console (where a person debugging looks); the rest is
 * dropped unless `localStorage.causewayDebug` is set.
 */
const pageLog = {
  debug: (o: object, m?: string): void => { if (verbose()) console.debug('[causeway]', m, o) },
  info: (o: object, m?: string): void => { if (verbose()) console.info('[causeway]', m, o) },
  warn: (o: object, m?: string): void => { console.warn('[causeway]', m, o) },
}

function verbose (): boolean {
  try { return globalThis.localStorage?.getItem('causewayDebug') !== null } catch { return false }
}

/** Fatal signaling codes: reconnecting cannot help. */
const FATAL = new Set(['UNAUTHORIZED', 'TICKET_EXPIRED', 'FORBIDDEN', 'VERSION_MISMATCH'])

export class Viewer {
  readonly model: ViewerModel
  mesh?: Mesh
  onChange?: () => void
  private readonly token: ViewerToken
  private timers: Array<ReturnType<typeof setInterval>> = []
  private closed = false
  private iceServers: RTCIceServer[] = []

  constructor (token: ViewerToken) {
    this.token = token
    this.model = { signaling: token.signaling, since: Date.now(), agents: new Map(), notices: [] }
  }

  private changed (): void { if (!this.closed) this.onChange?.() }

  private notice (n: Notice): void {
    const same = this.model.notices.findIndex(x => x.title === n.title)
    if (same >= 0) this.model.notices.splice(same, 1)
    this.model.notices.push(n)
    if (this.model.notices.length > 6) this.model.notices.shift()
    this.changed()
  }

  private clearNotice (title: string): void {
    const i = this.model.notices.findIndex(x => x.title === title)
    if (i >= 0) { this.model.notices.splice(i, 1); this.changed() }
  }

  private setFatal (n: Notice): void {
    this.model.fatal = n
    this.changed()
  }

  /** ICE servers from the service: `GET /v1/ice?room=` with the ticket as Bearer. False if refused. */
  private async fetchIce (): Promise<boolean> {
    const url = new URL(`${this.token.signaling.replace(/\/$/, '')}/v1/ice`)
    url.searchParams.set('room', this.token.room)
    let res: Response
    try {
      res = await fetch(url, {
        headers: this.token.ticket !== undefined ? { authorization: `Bearer ${this.token.ticket}` } : {},
        signal: AbortSignal.timeout(5000),
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      })
    } catch (err) {
      const other = new URL(this.token.signaling).origin !== location.origin
      this.notice({ level: 'warn', title: 'Could not fetch ICE servers', detail: `${err instanceof Error ? err.message : String(err)}${other ? ` (the token names ${new URL(this.token.signaling).origin}, this page is served by ${location.origin})` : ''}; going on with host candidates only.` })
      return true
    }
    if (!res.ok) {
      const e = await serviceError(res)
      if (FATAL.has(e.code)) { this.setFatal({ level: 'error', title: 'The signaling service refused this token', code: e.code, detail: e.message }); return false }
      this.notice({ level: 'warn', title: 'Could not fetch ICE servers', code: e.code, detail: `${e.message}; going on with host candidates only.` })
      return true
    }
    const cfg = IceConfig.safeParse(await res.json().catch(() => null))
    if (!cfg.success) { this.notice({ level: 'warn', title: 'ICE configuration unreadable', detail: 'going on with host candidates only.' }); return true }
    this.iceServers = cfg.data.iceServers.map(s => ({ urls: s.urls, ...(s.username !== undefined ? { username: s.username } : {}), ...(s.credential !== undefined ? { credential: s.credential } : {}) }))
    return true
  }

  async start (): Promise<void> {
    if (!await this.fetchIce()) return
    if (this.closed) return
    const mesh = this.mesh = new Mesh({
      token: this.token,
      name: `browser-${randomId(4).replace(/[^A-Za-z0-9]/g, 'x')}`,
      createPeerConnection: (config) => new RTCPeerConnection(config),
      iceServers: () => this.iceServers,
      // Short: a session whose first negotiation is lost is replaced sooner (Mesh retries after 1 s).
      connectTimeoutMs: 8000,
      log: pageLog,
    })
    mesh.events.on('session', (peer, session) => this.onSession(peer, session))
    mesh.events.on('sessionState', (peer, state) => {
      const a = this.agent(peer)
      a.link.state = state
      if (state !== 'connected') a.link.path = 'none'
      this.changed()
    })
    mesh.events.on('peerGone', (peer) => { this.model.agents.delete(peer.id); this.changed() })
    mesh.events.on('members', (ids) => this.onMembers(ids))
    mesh.events.on('signalingError', (code, message) => {
      if (FATAL.has(code)) this.setFatal({ level: 'error', title: 'The signaling service refused to let this page join', code, detail: message })
      else this.notice({ level: code === 'UNKNOWN_PEER' ? 'info' : 'warn', title: `Signaling: ${code}`, code, detail: message })
    })
    await mesh.start()
    const sc = mesh.signaling
    sc?.on('state', (s) => {
      if (s === 'closed' && sc.fatal !== undefined && this.model.fatal === undefined) {
        this.setFatal({ level: 'error', title: 'The signaling service closed the connection', code: sc.fatal.code, detail: sc.fatal.message })
      } else if (s === 'disconnected') {
        this.notice({ level: 'warn', title: 'Signaling connection lost', detail: 'reconnecting with backoff; established peer connections keep working.' })
      } else if (s === 'joined') {
        this.clearNotice('Signaling connection lost')
      }
      this.changed()
    })
    this.timers.push(setInterval(() => { void this.refreshLinks() }, 2000))
    this.timers.push(setInterval(() => this.changed(), 1000))
    this.timers.push(setTimeout(() => this.checkAnyAgent(), NO_AGENT_MS))
  }

  get signalingState (): string { return this.mesh?.signaling?.state ?? 'connecting' }

  /** The room's roster from signaling (agents only, for a viewer): empty means no agent, now. */
  private onMembers (ids: readonly string[]): void {
    if (this.closed || this.model.fatal !== undefined) return
    if (ids.length > 0) { this.clearNotice(EMPTY_ROOM); return }
    this.notice({
      level: 'error',
      title: EMPTY_ROOM,
      detail: 'The page joined the room, and no agent is in it. Are agents running with this network\'s token, and was this viewer token made from it? This notice goes away when an agent joins.',
    })
  }

  private checkAnyAgent (): void {
    const connected = [...this.model.agents.values()].some(a => a.link.state === 'connected')
    if (connected || this.closed || this.model.fatal !== undefined) return
    const seen = this.model.agents.size
    const joined = this.signalingState === 'joined'
    // An empty room is the roster's to say (onMembers), not this timer's.
    if (joined && this.model.notices.some(n => n.title === EMPTY_ROOM)) {
      this.timers.push(setTimeout(() => this.checkAnyAgent(), NO_AGENT_MS))
      return
    }
    this.notice({
      level: 'error',
      title: `No agent answered within ${NO_AGENT_MS / 1000} s`,
      detail: !joined
        ? `The page could not join the signaling service at ${this.token.signaling}.`
        : seen > 0
          ? `${seen} agent(s) said hello but no peer connection came up: a firewall may block UDP between this browser and the agents, and no TURN server is configured.`
          : 'Agents are in the room, but none said hello to this page: was this viewer token made from this network\'s token? (Agents ignore viewers whose grant signature does not verify.)',
    })
    // Keep watching: the notice goes away once an agent connects.
    this.timers.push(setTimeout(() => this.checkAnyAgent(), NO_AGENT_MS))
  }

  private agent (peer: RemotePeer): AgentView {
    let a = this.model.agents.get(peer.id)
    if (a === undefined) {
      a = { id: peer.id, name: peer.name, link: { state: 'new', path: 'none', rttMs: null, bytesIn: 0, bytesOut: 0 }, catalog: [] }
      this.model.agents.set(peer.id, a)
    }
    if (peer.instance !== undefined) a.instance = peer.instance
    a.draining = peer.draining === true
    return a
  }

  private onSession (peer: RemotePeer, session: PeerSession): void {
    const a = this.agent(peer)
    a.link.state = session.state
    session.onControl = (msg) => {
      if (msg.type === 'catalog') a.catalog = msg.shares
      else if (msg.type === 'status') { a.status = msg; a.statusAt = Date.now() } else if (msg.type === 'drain') a.draining = true
      this.changed()
    }
    // The page opens no channel toward itself: refuse any the agent might open.
    session.onDataChannel = (dc) => { try { dc.close() } catch { /* closed */ } }
    this.changed()
  }

  private async refreshLinks (): Promise<void> {
    const mesh = this.mesh
    if (mesh === undefined) return
    for (const peer of mesh.peers.values()) {
      const s = peer.session
      if (s === undefined) continue
      const a = this.agent(peer)
      a.link.state = s.state
      if (s.state === 'connected') {
        const p = await s.path()
        const b = await transportBytes(s.pc)
        a.link = { state: s.state, path: p.kind, ...(p.pair !== undefined ? { pair: p.pair } : {}), rttMs: s.rttMs ?? p.rttMs ?? null, bytesIn: b.bytesIn, bytesOut: b.bytesOut }
      }
    }
    if ([...this.model.agents.values()].some(a => a.link.state === 'connected')) this.clearNotice(`No agent answered within ${NO_AGENT_MS / 1000} s`)
    this.changed()
  }

  /** The live session to an agent, for opening streams. */
  session (agentId: string): PeerSession | undefined {
    const s = this.mesh?.peers.get(agentId)?.session
    return s?.state === 'connected' ? s : undefined
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const t of this.timers) clearInterval(t)
    await this.mesh?.close()
  }
}
