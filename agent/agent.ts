/**
 * The agent: a member of the mesh that exports shares and reaches other peers' shares through
 * TCP tunnels. Assembles the portable mesh with the Node pieces (WebRTC engine, sockets).
 */
import type { Socket } from 'node:net'
import { hostname } from 'node:os'
import { randomId } from '../protocol/encoding.ts'
import { CausewayError } from '../protocol/errors.ts'
import { deriveMemberKeys, deriveRelayKey } from '../protocol/keys.ts'
import type { PathKind, ShareInfo, StatusMessage } from '../protocol/peer.ts'
import { importSigningKey, parseCredential } from '../protocol/identity.ts'
import type { MemberToken } from '../protocol/token.ts'
import { Emitter } from '../peer/emitter.ts'
import { Mesh, type RemotePeer } from '../peer/mesh.ts'
import { silentLog, type LogLike, type PathInfo, type PeerSession } from '../peer/peer-session.ts'
import { IceSource } from './ice.ts'
import type { IcePolicy } from './ice-policy.ts'
import { listenConnect, type ConnectSpec, type Listener } from './tunnel/connects.ts'
import { askerOf, ShareRegistry, type Asker, type ShareSpec } from './tunnel/shares.ts'
import { sessionOpener, Tunnels, type ChannelOpener, type TunnelOptions } from './tunnel/tunnels.ts'
import { listenUdpConnect } from './tunnel/udp-connect.ts'
import { UdpStats, type UdpOptions } from './tunnel/udp-flows.ts'
import { UdpShares } from './tunnel/udp-share.ts'
import { UDP_CAP } from '../protocol/udp.ts'
import { Associations, DEFAULT_ASSOCIATIONS } from './tunnel/associations.ts'
import type { RelayPath } from './relay-path/index.ts'
import type { RelayStatus } from './relay-transport/index.ts'
import { createPeerConnection, EngineSelector, engineOf, UDP_PROBE_MS, type EngineChoice, type EngineName } from './engine/index.ts'
import { runNetcheck, summarize, viewerSummary, type NetcheckSummary } from './netcheck/index.ts'
import { fromRelayStatus } from './netcheck/relay.ts'
import { StateDir } from './state.ts'
import { ShareAudit } from './audit.ts'

/** How long a stream reset on a still-connected session waits for that session to end before the reset counts (Agent.openStream). */
const STREAM_RETRY_WAIT_MS = 1500

export interface AgentInit {
  token: MemberToken
  /**
   * This agent's name in the network (unique; a restart with the same name replaces the old
   * one). With an agent token it must be the name its credential carries (default).
   */
  name?: string
  /**
   * This process's instance name within its site (several agent processes may run under one
   * agent credential, e.g. the replicas of the agent chart). Default `$CAUSEWAY_INSTANCE`, else
   * the host name and a random suffix. Shown in status; peers tell instances apart by their
   * signaling peer id, so two instances with the same name are still two instances.
   */
  instance?: string
  /** The network's signed revocation list (`causeway token --revoke`), if any. */
  revocations?: string
  /** Directory kept across restarts (agent/state.ts): the newest revocation list seen is kept there and loaded at start. */
  stateDir?: string
  /** Unexpired envelope nonces remembered for replay detection (peer/mesh.ts). Default SEAL_REPLAY_CACHE. */
  replayCache?: number
  shares?: ShareSpec[]
  connects?: ConnectSpec[]
  /** ICE servers from flags, added to those of the signaling service. */
  iceServers?: RTCIceServer[]
  /** Fetch /v1/ice from the signaling service. Default true. */
  useServiceIce?: boolean
  /** What of /v1/ice is used (agent/ice-policy.ts). Default: public addresses on the default ICE ports. */
  icePolicy?: IcePolicy
  log?: LogLike
  tunnel?: TunnelOptions
  /** UDP shares and connects: flow cap, idle timeout (agent/tunnel/udp-flows.ts). */
  udp?: UdpOptions
  /** Peer connection timeout, ms. Default 20000. */
  connectTimeoutMs?: number
  /** How long a new TCP connection waits for its peer to be connected, ms. Default 10000. */
  peerWaitMs?: number
  /** SIGTERM drain period, ms. Default 5000. */
  drainMs?: number
  /** libp2p relay multiaddrs from flags, added to those of the signaling service (`/v1/ice` relays). */
  relays?: string[]
  /** A pair whose WebRTC session is not connected this long uses the relay for new streams, ms. Default 5000. */
  directTimeoutMs?: number
  /** SCTP associations (peer connections) per peer pair that this agent's streams are spread across (agent/tunnel/associations.ts). Default DEFAULT_ASSOCIATIONS (1). */
  associations?: number
  /** WebRTC engine for new peer connections (agent/engine). Default auto: node-datachannel where UDP reaches the STUN/TURN servers, else wrtc. */
  engine?: EngineChoice
  /** node-datachannel: gather host candidates on this address only. */
  bindAddress?: string
  /** Run netcheck (agent/netcheck) in the background at start, bounded by this many ms; 0: never. Default 10000 (it never delays start; on a busy host 5 s lost probes). */
  netcheckMs?: number
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
  /** WebRTC engine of the peer connection (relay: the libp2p relay path carries the streams). */
  engine: EngineName | 'relay' | 'none'
  /** SCTP associations (peer connections) carrying this peer's streams. */
  associations: number
  /** Tunnelled bytes/s over the last 2 s, per direction. */
  goodput: { in: number, out: number }
  shares: ShareInfo[]
}

export interface AgentStatus {
  name: string
  /** This process's instance name within its site. */
  instance: string
  /** Draining (SIGTERM received): not ready; peers open no new streams to it. */
  draining: boolean
  id: string
  signaling: string
  peers: PeerView[]
  shares: Array<{ name: string, target: string, peers: string[] | 'all', protocol: 'tcp' | 'http' | 'udp' }>
  connects: Array<{ share: string, peer: string, listen: string, protocol: 'tcp' | 'udp' }>
  /** UDP shares and connects: datagrams and payload bytes (in: from peers; out: to peers), drops by reason, live flows by side. */
  udp: { datagramsIn: number, datagramsOut: number, bytesIn: number, bytesOut: number, drops: UdpStats['drops'], evicted: number, flows: UdpStats['flows'] }
  imports: Array<{ share: string, peer: string, service: string }>
  /** The relay client, when relays are configured: our PeerId, relayed addresses, per-relay state. */
  relay?: { peer: string, addrs: string[], relays: RelayStatus[] }
  /** Engine choice (--engine) and what new peer connections use now. */
  engine: ReturnType<EngineSelector['describe']>
  /** The netcheck run at start: null while it runs (or when it is off or failed). */
  netcheck: NetcheckSummary | null
}

/** How an agent reaches one peer now: the one computation behind status, metrics, the debug page and Kubernetes annotations. */
export interface PeerPath {
  /** How new streams go: the WebRTC session, the relay, or not at all (yet). */
  route: 'webrtc' | 'relay' | 'none'
  /** `connected` when streams can be opened (over either route), else the WebRTC session's state. */
  state: string
  /** direct / turn (WebRTC, from the selected candidate pair), relay, or none. */
  path: PathKind
  /** The candidate pair (WebRTC) or the circuit address (relay). */
  pair?: string
  rttMs: number | null
}

/** What an Agent tells its users (`agent.events.on(name, fn)`; any number of subscribers). */
export interface AgentEvents {
  /** A peer's share catalog arrived; null when the peer is gone. */
  catalog: (peerName: string, shares: ShareInfo[] | null) => void
  /**
   * How new streams to `peer` go may have changed: its session's state, its hello (relay
   * addresses), our relay reservation, or the direct timeout running out.
   */
  route: (peer: RemotePeer) => void
  /** This instance started draining (SIGTERM): it is no longer ready; peers are told to open no new streams to it. */
  draining: () => void
}

export class Agent {
  readonly mesh: Mesh
  readonly shares: ShareRegistry
  readonly name: string
  /** This process's instance name within its site (AgentInit.instance). */
  readonly instance: string
  readonly tunnels: Tunnels
  /** The audit log of streams to our shares and its per-share counters (agent/audit.ts). */
  readonly audit: ShareAudit
  readonly udp: UdpShares
  readonly catalogs = new Map<string, ShareInfo[]>()
  readonly paths = new Map<string, PathInfo>()
  readonly listeners: Listener[] = []
  readonly events: Emitter<AgentEvents>
  private importList: AgentStatus['imports'] = []
  netcheck: NetcheckSummary | null = null
  private ice?: IceSource
  private readonly init: AgentInit
  private readonly log: LogLike
  private pathTimer?: ReturnType<typeof setInterval>
  private relayPath?: RelayPath
  /** Per peer: since when its WebRTC session is not connected (absent while connected), and the timer that ends the direct timeout. */
  private readonly notConnectedSince = new Map<string, { since: number, timer: ReturnType<typeof setTimeout> }>()
  private readonly stopped = new AbortController()
  readonly engines: EngineSelector
  private readonly assocs: Associations
  private readonly state?: StateDir

  constructor (init: AgentInit) {
    this.init = init
    this.log = init.log ?? silentLog
    this.name = agentName(init.token, init.name)
    this.instance = init.instance ?? defaultInstance()
    if (init.stateDir !== undefined) this.state = new StateDir(init.stateDir)
    this.shares = new ShareRegistry({ provenNames: init.token.identity !== undefined })
    if (init.token.identity === undefined) this.log.warn({}, 'shared token: agent names are not proven (any member can claim any name); issue per-agent tokens with `causeway token --name NAME`')
    this.events = new Emitter<AgentEvents>(err => { this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'agent event listener failed') })
    this.tunnels = new Tunnels(this.shares, init.tunnel ?? {}, this.log)
    this.udp = new UdpShares(new UdpStats(), init.udp ?? {}, this.log)
    this.tunnels.udp = (peer, dc, share) => { this.udp.accept(peer.id, peer.name, dc, share) }
    this.audit = new ShareAudit(this.log, name => this.shares.get(name) !== undefined)
    this.tunnels.onStream = r => { this.audit.record(r) }
    this.engines = new EngineSelector(init.engine ?? 'auto')
    const engineOpts = init.bindAddress !== undefined ? { bindAddress: init.bindAddress } : {}
    this.assocs = new Associations({
      total: init.associations ?? DEFAULT_ASSOCIATIONS,
      create: like => createPeerConnection(engineOf(like), { iceServers: this.ice?.servers() ?? init.iceServers ?? [] }, engineOpts),
      onDataChannel: (peer, dc) => this.tunnels.accept(peer, dc),
      log: this.log,
    })
    this.mesh = new Mesh({
      token: init.token,
      name: this.name,
      createPeerConnection: (config) => {
        void this.engines.update(this.ice?.servers() ?? init.iceServers ?? [])
        return createPeerConnection(this.engines.engine, config, engineOpts)
      },
      iceServers: () => this.ice?.servers() ?? init.iceServers ?? [],
      log: this.log,
      caps: ['tcp/1', UDP_CAP],
      ...(init.connectTimeoutMs !== undefined ? { connectTimeoutMs: init.connectTimeoutMs } : {}),
      ...(init.replayCache !== undefined ? { replayCache: init.replayCache } : {}),
      beforeJoin: async () => await this.adoptRevocationsAtStart(),
    })
    if (init.shares !== undefined) this.shares.set('flags', init.shares)
    this.shares.onChange(() => this.broadcastCatalogs())
    const events = this.mesh.events
    events.on('revocations', (text) => {
      try { this.state?.keepRevocations(text) } catch (err) { this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not keep the revocation list in the state directory') }
      void this.relayPath?.client.pushRevocations() // relays drop the agents it revokes
    })
    events.on('session', (peer, session) => {
      this.notConnected(peer)
      this.tunnels.attach(peer, session)
      this.assocs.attach(peer, session)
      session.onControlOpen = () => {
        this.sendCatalog(peer)
        // extras are offered before any bulk data: their signaling shares the session's send queue
        if (peer.role === 'agent') this.assocs.ensure(peer, session)
      }
      session.onControl = (msg) => {
        if (msg.type === 'assoc' && peer.role === 'agent') { this.assocs.handle(peer, session, msg); return }
        if (msg.type === 'catalog' && peer.role === 'agent') {
          this.catalogs.set(peer.id, msg.shares)
          this.events.emit('catalog', peer.name, msg.shares)
        }
      }
    })
    events.on('sessionState', (peer, state) => {
      if (state === 'connected') {
        this.connected(peer)
        // The path (direct/turn, candidate pair) is known once the pair is selected: read it now.
        void this.refreshPath(peer).then(() => this.events.emit('route', peer))
      } else {
        this.notConnected(peer)
        if (state === 'closed' || state === 'failed') this.assocs.sessionDown(peer)
      }
      this.events.emit('route', peer)
    })
    events.on('hello', (peer) => { this.events.emit('route', peer) })
    events.on('peerGone', (peer) => {
      this.connected(peer)
      this.paths.delete(peer.id)
      this.tunnels.forget(peer.id)
      this.udp.forget(peer.id)
      this.assocs.forget(peer.id)
      if (this.catalogs.delete(peer.id)) this.events.emit('catalog', peer.name, null)
    })
  }

  /** The peer's WebRTC session is down: the direct timeout starts (once), and its end is a route change. */
  private notConnected (peer: RemotePeer): void {
    if (this.notConnectedSince.has(peer.id)) return
    const timer = setTimeout(() => { this.events.emit('route', peer) }, this.init.directTimeoutMs ?? 5000)
    timer.unref?.()
    this.notConnectedSince.set(peer.id, { since: Date.now(), timer })
  }

  private connected (peer: RemotePeer): void {
    clearTimeout(this.notConnectedSince.get(peer.id)?.timer)
    this.notConnectedSince.delete(peer.id)
  }

  async start (): Promise<void> {
    // ICE servers and the engine probe first: with `auto`, no peer connection is made on a guess.
    const { room } = await deriveMemberKeys(this.init.token.secret)
    this.ice = new IceSource({ token: this.init.token, room, extra: this.init.iceServers ?? [], useService: this.init.useServiceIce ?? true, log: this.log, ...(this.init.icePolicy !== undefined ? { policy: this.init.icePolicy } : {}) })
    await this.ice.refresh()
    // libp2p (the relay path) loads before netcheck's clock starts: loading it blocks the event loop.
    if (this.relayAddrs().length > 0 && this.init.token.kind === 'member') await import('./relay-path/index.ts')
    // One STUN probe at start: netcheck's first UDP round also decides the engine (as soon as an
    // answer comes, bounded as the engine's own probe is); the engine probes by itself only
    // when netcheck is off, and later when the ICE servers change.
    const udp = this.startNetcheck()
    await this.engines.update(this.ice.servers(), udp === undefined ? undefined : async () => await firstOf(udp, UDP_PROBE_MS, false))
    await this.mesh.start()
    if (this.mesh.room !== room) throw new Error('mesh derived another room')
    await this.startRelayPath()
    for (const spec of this.init.connects ?? []) this.listeners.push(await this.listen(spec))
    this.pathTimer = setInterval(() => { void this.refreshPaths() }, 2000)
    this.pathTimer.unref?.()
  }

  /**
   * Before joining the room: the revocation list kept in the state directory, then the one given
   * (only a newer list is adopted, so the kept one is never replaced by an older one). A kept
   * list that does not verify is ignored; a given one that does not verify is an error.
   */
  private async adoptRevocationsAtStart (): Promise<void> {
    const kept = this.state?.revocations()
    if (kept !== undefined) {
      await this.mesh.adoptRevocations(kept).catch((err: unknown) => { this.log.warn({ dir: this.state?.dir, err: err instanceof Error ? err.message : String(err) }, 'kept revocation list refused') })
    }
    if (this.init.revocations !== undefined) await this.mesh.adoptRevocations(this.init.revocations)
  }

  /**
   * Starts the relay client when relays are configured (flags + the service's list at start;
   * later changes of the service's list are not followed). Failure leaves the agent direct-only.
   */
  private async startRelayPath (): Promise<void> {
    const relays = this.relayAddrs()
    if (relays.length === 0 || this.init.token.kind !== 'member') return
    try {
      // Loaded only when relays are configured: an agent without them never loads libp2p.
      const { RelayPath } = await import('./relay-path/index.ts')
      const id = this.init.token.identity
      this.relayPath = await RelayPath.start({
        relayKey: await deriveRelayKey(this.init.token.secret),
        relays,
        ...(id !== undefined ? { identity: { key: await importSigningKey(id.key), credential: id.credential, crl: () => this.mesh.revocationList } } : {}),
        log: this.log,
        identify: (relayPeer) => [...this.mesh.peers.values()].find(p => p.role === 'agent' && p.relay?.peer === relayPeer),
        onHello: (fn) => this.mesh.events.on('hello', fn),
        accept: (peer, dc) => { this.tunnels.accept(peer, dc) },
        onChange: (info) => {
          this.log.info({ addrs: info.addrs }, 'relay addresses announced to peers')
          this.mesh.setRelay(info)
          for (const p of this.mesh.peers.values()) this.events.emit('route', p)
        },
      })
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'relay fallback unavailable')
    }
  }

  /** Relays from the flags and the service's list at start. */
  private relayAddrs (): string[] { return [...new Set([...(this.init.relays ?? []), ...this.relays])] }

  /**
   * netcheck in the background (never delays start): the same probe as `causeway netcheck`, with
   * this agent's ICE servers and relay client. Resolves with whether UDP reaches a STUN server as
   * soon as its first answer says so; undefined when netcheck is off.
   */
  private startNetcheck (): Promise<boolean> | undefined {
    const timeoutMs = this.init.netcheckMs ?? 10_000
    if (timeoutMs <= 0 || this.ice === undefined) return undefined
    const ice = { iceServers: this.ice.servers(), relays: this.relayAddrs(), refused: this.ice.refused }
    let onUdp: (reachable: boolean) => void = () => {}
    const udp = new Promise<boolean>(resolve => { onUdp = resolve })
    runNetcheck({ token: this.init.token, timeoutMs, ice, ...(this.init.icePolicy !== undefined ? { policy: this.init.icePolicy } : {}), relayProber: fromRelayStatus(() => this.relayPath?.status().relays), signal: this.stopped.signal, onUdp }).then(report => {
      if (this.stopped.signal.aborted) return
      this.netcheck = summarize(report)
      this.log.info({ netcheck: this.netcheck }, `netcheck: ${report.verdict}`)
    }, (err: unknown) => { this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'netcheck failed') })
    return udp
  }

  /**
   * How new streams to `p` go: its WebRTC session when connected; the relay when that session
   * has not been connected for directTimeoutMs and both sides hold a relay reservation.
   */
  route (p: RemotePeer): 'webrtc' | 'relay' | 'none' {
    if (p.session?.state === 'connected') return 'webrtc'
    const since = this.notConnectedSince.get(p.id)?.since
    if (this.relayPath?.usable(p) === true && since !== undefined && Date.now() - since >= (this.init.directTimeoutMs ?? 5000)) return 'relay'
    return 'none'
  }

  /** Relay multiaddrs handed out by the signaling service. */
  get relays (): string[] { return this.ice?.relays ?? [] }

  private sendCatalog (peer: RemotePeer): void {
    const s = peer.session
    if (s === undefined) return
    s.sendControl({ type: 'catalog', shares: this.shares.catalogFor(askerOf(peer)) })
  }

  private broadcastCatalogs (): void {
    for (const p of this.mesh.peers.values()) this.sendCatalog(p)
  }

  /** Subscribes to catalogs: first the ones known now, then every change (`events` 'catalog'). */
  onCatalog (fn: AgentEvents['catalog']): () => void {
    const off = this.events.on('catalog', fn)
    for (const [id, shares] of this.catalogs) { const p = this.mesh.peers.get(id); if (p !== undefined) fn(p.name, shares) }
    return off
  }

  /** The agent peer with this name, if it is known. */
  peerNamed (name: string): RemotePeer | undefined {
    for (const p of this.mesh.peers.values()) if (p.name === name && p.role === 'agent') return p
    return undefined
  }

  /** The agent peer with this name once new streams can reach it, waiting up to peerWaitMs (route events, no polling). */
  async peerByName (name: string, waitMs = this.init.peerWaitMs ?? 10_000): Promise<RemotePeer> {
    const reachable = (): RemotePeer | undefined => { const p = this.peerNamed(name); return p !== undefined && this.route(p) !== 'none' ? p : undefined }
    const now = reachable()
    if (now !== undefined) return now
    if (!this.stopped.signal.aborted) {
      try {
        await this.events.until('route', () => reachable() !== undefined, AbortSignal.any([this.stopped.signal, AbortSignal.timeout(waitMs)]))
      } catch { /* timed out or stopping */ }
    }
    const p = reachable()
    if (p === undefined) throw new CausewayError('PEER_UNAVAILABLE', `no connection to peer "${name}"`)
    return p
  }

  /** The peer named `peerName` once reachable, and how to open channels to it now (WebRTC or relay). */
  private async openerFor (peerName: string): Promise<{ peer: RemotePeer, opener: ChannelOpener, session?: PeerSession }> {
    if (this.stopped.signal.aborted) throw new CausewayError('SHUTTING_DOWN', 'agent is stopping')
    const peer = await this.peerByName(peerName)
    const route = this.route(peer)
    if (route === 'webrtc' && peer.session !== undefined) return { peer, opener: sessionOpener(peer, peer.session, this.assocs), session: peer.session }
    if (route === 'relay' && this.relayPath !== undefined) return { peer, opener: this.relayPath.opener(peer) }
    throw new CausewayError('PEER_UNAVAILABLE', `no connection to peer "${peerName}"`)
  }

  /**
   * Pipes a local socket to `share` on `peerName`. A stream whose WebRTC connection ended before
   * the peer answered (a session that failed in its DTLS handshake, see PeerSession) is opened
   * once more on the peer's next connection: nothing reached the share, and the client's bytes
   * are still unread in the socket.
   */
  async openStream (peerName: string, share: string, socket: Socket): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const { peer, opener, session } = await this.openerFor(peerName)
      try {
        await this.tunnels.open(peer, opener, share, socket)
        return
      } catch (err) {
        if (attempt >= 2 || socket.destroyed || session === undefined || !(err instanceof CausewayError) || err.code !== 'STREAM_RESET') throw err
        // the channel may hear of the end a moment before the session does (the peer closed it)
        const gone = (): boolean => peer.session !== session || session.state !== 'connected'
        if (!gone()) await this.mesh.events.until('sessionState', gone, AbortSignal.any([this.stopped.signal, AbortSignal.timeout(STREAM_RETRY_WAIT_MS)])).catch(() => {})
        if (!gone() || socket.destroyed) throw err
        this.log.info({ peer: peer.name, share, err: err.message }, 'the connection ended before the peer answered: opening the stream on the next one')
      }
    }
  }

  /** A TCP or UDP connect listener for `spec`. */
  private async listen (spec: ConnectSpec): Promise<Listener> {
    if (spec.protocol === 'udp') {
      // Unordered and unreliable: one datagram per message, a lost one is not retransmitted (protocol/udp.ts).
      const open = async (peerName: string, label: string): Promise<RTCDataChannel> => await (await this.openerFor(peerName)).opener.open(label, { ordered: false, maxRetransmits: 0 })
      return await listenUdpConnect(spec, open, this.udp.stats, this.init.udp ?? {}, this.log)
    }
    return await listenConnect(spec, async (p, s, sock) => await this.openStream(p, s, sock), this.log)
  }

  /** Adds a connect listener at runtime (e.g. for a Kubernetes import). */
  /** Imports the Kubernetes adapter made (shown in status); returns the function that removes it. */
  addImport (entry: AgentStatus['imports'][number]): () => void {
    this.importList = [...this.importList, entry]
    return () => { this.importList = this.importList.filter(x => x !== entry) }
  }

  get imports (): AgentStatus['imports'] { return this.importList }

  async addConnect (spec: ConnectSpec): Promise<Listener> {
    const l = await this.listen(spec)
    this.listeners.push(l)
    const close = l.close
    l.close = async () => { const i = this.listeners.indexOf(l); if (i >= 0) this.listeners.splice(i, 1); await close() }
    return l
  }

  /** Reads every peer's WebRTC path (selected candidate pair, RTT) now; viewers get a status update. */
  async refreshPaths (): Promise<void> {
    this.tunnels.sampleGoodput()
    for (const p of this.mesh.peers.values()) {
      await this.refreshPath(p)
      if (p.role === 'viewer' && p.session?.state === 'connected') p.session.sendControl(this.viewerStatus(askerOf(p)))
    }
  }

  private async refreshPath (p: RemotePeer): Promise<void> {
    const s = p.session
    if (s === undefined) return
    const info = s.state === 'connected' ? await s.path() : { kind: 'none' as const }
    if (p.session === s && this.mesh.peers.get(p.id) === p) this.paths.set(p.id, info)
  }

  /** How this agent reaches `p` now (see PeerPath). */
  pathOf (p: RemotePeer): PeerPath {
    const path = this.paths.get(p.id)
    const route = this.route(p)
    if (route === 'relay') {
      const pair = this.relayPath?.describe(p)
      return { route, state: 'connected', path: 'relay', ...(pair !== undefined ? { pair } : {}), rttMs: null }
    }
    const state = p.session?.state ?? 'new'
    if (route === 'none') return { route, state, path: 'none', rttMs: null }
    const rtt = p.session?.rttMs ?? path?.rttMs ?? null
    return { route, state, path: path?.kind ?? 'none', ...(path?.pair !== undefined ? { pair: path.pair } : {}), rttMs: rtt }
  }

  status (): AgentStatus {
    return {
      name: this.name,
      instance: this.instance,
      draining: this.draining,
      id: this.mesh.id,
      signaling: this.mesh.signaling?.state ?? 'disconnected',
      peers: [...this.mesh.peers.values()].map(p => this.peerView(p)),
      shares: this.shares.list().map(s => ({ name: s.name, target: `${s.host}:${s.port}`, peers: s.peers ?? 'all', protocol: s.protocol ?? 'tcp' })),
      connects: this.listeners.map(l => ({ share: l.spec.share, peer: l.spec.peer, listen: `${l.host}:${l.port}`, protocol: l.spec.protocol ?? 'tcp' })),
      udp: this.udpStatus(),
      imports: this.importList,
      ...(this.relayPath !== undefined ? { relay: this.relayPath.status() } : {}),
      engine: this.engines.describe(),
      netcheck: this.netcheck,
    }
  }

  private udpStatus (): AgentStatus['udp'] {
    const u = this.udp.stats
    return { datagramsIn: u.datagramsIn, datagramsOut: u.datagramsOut, bytesIn: u.bytesIn, bytesOut: u.bytesOut, drops: { ...u.drops }, evicted: u.evicted, flows: { ...u.flows } }
  }

  private peerView (p: RemotePeer): PeerView {
    const c = this.tunnels.counter(p.id)
    const { route, state, path, pair, rttMs } = this.pathOf(p)
    return {
      peer: p.id,
      name: p.name,
      role: p.role,
      state,
      path,
      ...(pair !== undefined ? { pair: pair.slice(0, 256) } : {}),
      rttMs: rttMs === null ? null : Math.round(rttMs * 100) / 100,
      bytesIn: c.bytesIn,
      bytesOut: c.bytesOut,
      streams: c.streams,
      engine: route === 'relay' ? 'relay' : p.session !== undefined ? engineOf(p.session.pc) : 'none',
      associations: route === 'webrtc' ? this.assocs.count(p) : 0,
      goodput: { in: c.goodputIn, out: c.goodputOut },
      shares: this.catalogs.get(p.id) ?? [],
    }
  }

  /**
   * What a viewer (debug page) gets: this agent's view, limited to what the viewer's grant
   * covers. Every viewer sees the agents this one is connected to and each link's path kind,
   * RTT and byte counts; it sees only the shares its grant reaches (here and in other agents'
   * catalogs). Candidate pairs (IP addresses), connect listeners and imports are shown only to
   * a viewer granted `*`.
   */
  viewerStatus (viewer: Asker): StatusMessage {
    const s = this.status()
    const all = (viewer.grants ?? []).includes('*')
    const granted = (name: string): boolean => all || (viewer.grants ?? []).includes(name)
    return {
      type: 'status',
      name: s.name,
      peers: s.peers.filter(p => p.role === 'agent').map(({ pair, ...p }) => ({ ...p, ...(all && pair !== undefined ? { pair } : {}), shares: p.shares.filter(x => granted(x.name)) })),
      shares: this.shares.catalogFor(viewer).map(x => ({ name: x.name, protocol: x.protocol })),
      connects: all ? s.connects.map(({ protocol: _, ...c }) => c) : [],
      imports: all ? s.imports : [],
      ...(this.netcheck !== null ? { netcheck: viewerSummary(this.netcheck, all) } : {}),
    }
  }

  /** Whether this instance is draining (stop() began): not ready, announced to peers as draining. */
  get draining (): boolean { return this.drainingSince !== undefined }
  private drainingSince?: number

  /** Stops accepting, lets live streams finish for up to drainMs, then closes everything. */
  async stop (): Promise<void> {
    if (this.stopped.signal.aborted) return
    this.drainingSince = Date.now()
    this.events.emit('draining')
    this.stopped.abort()
    clearInterval(this.pathTimer)
    for (const { timer } of this.notConnectedSince.values()) clearTimeout(timer)
    this.ice?.close()
    await Promise.allSettled(this.listeners.map(async l => await l.close()))
    await this.tunnels.whenIdle(this.init.drainMs ?? 5000)
    this.tunnels.resetAll()
    this.udp.close()
    this.assocs.close()
    await this.mesh.close()
    await this.relayPath?.close().catch(() => {})
  }
}

/** The default instance name: `$CAUSEWAY_INSTANCE`, else host name + a random suffix (two processes on one host differ). */
function defaultInstance (): string {
  const env = process.env.CAUSEWAY_INSTANCE
  if (env !== undefined && env !== '') return env
  return `${hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40) || 'agent'}-${randomId(3)}`
}

/** `p`'s value, or `fallback` when it has not settled within `ms`. */
async function firstOf<T> (p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([p, new Promise<T>(resolve => { timer = setTimeout(() => resolve(fallback), ms) })])
  } finally { clearTimeout(timer) }
}

/** The agent's name: the credential's with an agent token (a different --name is refused). */
function agentName (token: MemberToken, name: string | undefined): string {
  if (token.identity === undefined) {
    if (name === undefined) throw new CausewayError('BAD_TOKEN', 'a shared token needs a name (--name)')
    return name
  }
  const cred = parseCredential(token.identity.credential).name
  if (name !== undefined && name !== cred) throw new CausewayError('IDENTITY_REJECTED', `this token is "${cred}"'s; it cannot run as "${name}"`)
  return cred
}
