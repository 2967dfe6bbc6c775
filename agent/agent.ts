/**
 * The agent: a member of the mesh that exports shares and reaches other peers' shares through
 * TCP tunnels. Assembles the portable mesh with the Node pieces (WebRTC engine, sockets).
 */
import type { Socket } from 'node:net'
import { CausewayError } from '../protocol/errors.ts'
import type { PathKind, ShareInfo, StatusMessage } from '../protocol/peer.ts'
import type { MemberToken } from '../protocol/token.ts'
import { Mesh, type RemotePeer } from './core/mesh.ts'
import { silentLog, type LogLike, type PathInfo } from './core/peer-session.ts'
import { IceSource } from './ice.ts'
import { listenConnect, type ConnectSpec, type Listener } from './tunnel/connects.ts'
import { ShareRegistry, type ShareSpec } from './tunnel/shares.ts'
import { Tunnels, type TunnelOptions } from './tunnel/tunnels.ts'
import { createPeerConnection } from './wrtc.ts'

export interface AgentInit {
  token: MemberToken
  /** This agent's name in the network (unique; a restart with the same name replaces the old one). */
  name: string
  shares?: ShareSpec[]
  connects?: ConnectSpec[]
  /** ICE servers from flags, added to those of the signaling service. */
  iceServers?: RTCIceServer[]
  /** Fetch /v1/ice from the signaling service. Default true. */
  useServiceIce?: boolean
  log?: LogLike
  tunnel?: TunnelOptions
  /** Peer connection timeout, ms. Default 20000. */
  connectTimeoutMs?: number
  /** How long a new TCP connection waits for its peer to be connected, ms. Default 10000. */
  peerWaitMs?: number
  /** SIGTERM drain period, ms. Default 5000. */
  drainMs?: number
}

export interface PeerView {
  peer: string
  name: string
  role: 'agent' | 'viewer'
  state: string
  path: PathKind
  pair?: string
  rttMs: number | null
  bytesIn: number
  bytesOut: number
  streams: number
  shares: ShareInfo[]
}

export interface AgentStatus {
  name: string
  id: string
  signaling: string
  peers: PeerView[]
  shares: Array<{ name: string, target: string, peers: string[] | 'all' }>
  connects: Array<{ share: string, peer: string, listen: string }>
  imports: Array<{ share: string, peer: string, service: string }>
}

type CatalogListener = (peerName: string, shares: ShareInfo[] | null) => void

export class Agent {
  readonly mesh: Mesh
  readonly shares = new ShareRegistry()
  readonly tunnels: Tunnels
  readonly catalogs = new Map<string, ShareInfo[]>()
  readonly paths = new Map<string, PathInfo>()
  readonly listeners: Listener[] = []
  imports: AgentStatus['imports'] = []
  private ice?: IceSource
  private readonly init: AgentInit
  private readonly log: LogLike
  private readonly catalogListeners: CatalogListener[] = []
  private pathTimer?: ReturnType<typeof setInterval>
  private stopping = false

  constructor (init: AgentInit) {
    this.init = init
    this.log = init.log ?? silentLog
    this.tunnels = new Tunnels(this.shares, init.tunnel ?? {}, this.log)
    this.mesh = new Mesh({
      token: init.token,
      name: init.name,
      createPeerConnection,
      iceServers: () => this.ice?.servers() ?? init.iceServers ?? [],
      log: this.log,
      caps: ['tcp/1'],
      ...(init.connectTimeoutMs !== undefined ? { connectTimeoutMs: init.connectTimeoutMs } : {}),
    })
    if (init.shares !== undefined) this.shares.set('flags', init.shares)
    this.shares.onChange(() => this.broadcastCatalogs())
    this.mesh.events = {
      session: (peer, session) => {
        this.tunnels.attach(peer, session)
        session.onControlOpen = () => this.sendCatalog(peer)
        session.onControl = (msg) => {
          if (msg.type === 'catalog' && peer.role === 'agent') {
            this.catalogs.set(peer.id, msg.shares)
            for (const l of this.catalogListeners) l(peer.name, msg.shares)
          }
        }
      },
      peerGone: (peer) => {
        this.paths.delete(peer.id)
        this.tunnels.forget(peer.id)
        if (this.catalogs.delete(peer.id)) for (const l of this.catalogListeners) l(peer.name, null)
      },
    }
  }

  async start (): Promise<void> {
    await this.mesh.start()
    const room = this.mesh.room
    if (room === undefined) throw new Error('mesh did not derive a room')
    this.ice = new IceSource({ token: this.init.token, room, extra: this.init.iceServers ?? [], useService: this.init.useServiceIce ?? true, log: this.log })
    await this.ice.refresh()
    for (const spec of this.init.connects ?? []) this.listeners.push(await listenConnect(spec, async (p, s, sock) => await this.openStream(p, s, sock), this.log))
    this.pathTimer = setInterval(() => { void this.refreshPaths() }, 2000)
    this.pathTimer.unref?.()
  }

  /** Relay multiaddrs handed out by the signaling service. */
  get relays (): string[] { return this.ice?.relays ?? [] }

  private sendCatalog (peer: RemotePeer): void {
    const s = peer.session
    if (s === undefined) return
    const asker = { name: peer.name, role: peer.role, ...(peer.grants !== undefined ? { grants: peer.grants } : {}) }
    s.sendControl({ type: 'catalog', shares: this.shares.catalogFor(asker) })
  }

  private broadcastCatalogs (): void {
    for (const p of this.mesh.peers.values()) this.sendCatalog(p)
  }

  onCatalog (fn: CatalogListener): () => void {
    this.catalogListeners.push(fn)
    for (const [id, shares] of this.catalogs) { const p = this.mesh.peers.get(id); if (p !== undefined) fn(p.name, shares) }
    return () => { const i = this.catalogListeners.indexOf(fn); if (i >= 0) this.catalogListeners.splice(i, 1) }
  }

  /** The connected agent peer with this name, waiting up to peerWaitMs for it. */
  async peerByName (name: string, waitMs = this.init.peerWaitMs ?? 10_000): Promise<RemotePeer> {
    const deadline = Date.now() + waitMs
    for (let i = 0; i < 10_000; i++) {
      for (const p of this.mesh.peers.values()) {
        if (p.name === name && p.role === 'agent' && p.session?.state === 'connected') return p
      }
      if (Date.now() >= deadline || this.stopping) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new CausewayError('PEER_UNAVAILABLE', `no connection to peer "${name}"`)
  }

  /** Pipes a local socket to `share` on `peerName`. */
  async openStream (peerName: string, share: string, socket: Socket): Promise<void> {
    if (this.stopping) throw new CausewayError('SHUTTING_DOWN', 'agent is stopping')
    const peer = await this.peerByName(peerName)
    const session = peer.session
    if (session === undefined) throw new CausewayError('PEER_UNAVAILABLE', `no connection to peer "${peerName}"`)
    await this.tunnels.open(peer, session, share, socket)
  }

  /** Adds a connect listener at runtime (e.g. for a Kubernetes import). */
  async addConnect (spec: ConnectSpec): Promise<Listener> {
    const l = await listenConnect(spec, async (p, s, sock) => await this.openStream(p, s, sock), this.log)
    this.listeners.push(l)
    const close = l.close
    l.close = async () => { const i = this.listeners.indexOf(l); if (i >= 0) this.listeners.splice(i, 1); await close() }
    return l
  }

  private async refreshPaths (): Promise<void> {
    for (const p of this.mesh.peers.values()) {
      const s = p.session
      if (s === undefined) continue
      const info = s.state === 'connected' ? await s.path() : { kind: 'none' as const }
      this.paths.set(p.id, info)
      if (p.role === 'viewer' && s.state === 'connected') s.sendControl(this.viewerStatus())
    }
  }

  status (): AgentStatus {
    return {
      name: this.init.name,
      id: this.mesh.id,
      signaling: this.mesh.signaling?.state ?? 'disconnected',
      peers: [...this.mesh.peers.values()].map(p => this.peerView(p)),
      shares: this.shares.list().map(s => ({ name: s.name, target: `${s.host}:${s.port}`, peers: s.peers ?? 'all' })),
      connects: this.listeners.map(l => ({ share: l.spec.share, peer: l.spec.peer, listen: `${l.host}:${l.port}` })),
      imports: this.imports,
    }
  }

  private peerView (p: RemotePeer): PeerView {
    const c = this.tunnels.counter(p.id)
    const path = this.paths.get(p.id)
    const rtt = p.session?.rttMs ?? path?.rttMs ?? null
    return {
      peer: p.id,
      name: p.name,
      role: p.role,
      state: p.session?.state ?? 'new',
      path: p.session?.state === 'connected' ? path?.kind ?? 'none' : 'none',
      ...(path?.pair !== undefined ? { pair: path.pair } : {}),
      rttMs: rtt === null ? null : Math.round(rtt * 100) / 100,
      bytesIn: c.bytesIn,
      bytesOut: c.bytesOut,
      streams: c.streams,
      shares: this.catalogs.get(p.id) ?? [],
    }
  }

  /** What a viewer (debug page) gets: this agent's view, limited to what the viewer may see. */
  private viewerStatus (): StatusMessage {
    const s = this.status()
    return {
      type: 'status',
      name: s.name,
      peers: s.peers.filter(p => p.role === 'agent').map(p => ({ ...p, shares: p.shares })),
      shares: this.shares.list().map(x => ({ name: x.name, protocol: x.protocol ?? 'tcp' })),
      connects: s.connects,
      imports: s.imports,
    }
  }

  /** Stops accepting, lets live streams finish for up to drainMs, then closes everything. */
  async stop (): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    clearInterval(this.pathTimer)
    this.ice?.close()
    await Promise.allSettled(this.listeners.map(async l => await l.close()))
    const deadline = Date.now() + (this.init.drainMs ?? 5000)
    for (let i = 0; i < 1000 && this.tunnels.liveStreams > 0 && Date.now() < deadline; i++) await new Promise(resolve => setTimeout(resolve, 20))
    this.tunnels.resetAll()
    await this.mesh.close()
  }
}
