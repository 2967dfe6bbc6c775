/**
 * The agent: a member of the mesh that exports shares and reaches other peers' shares through
 * TCP tunnels. Assembles the portable mesh with the Node pieces (WebRTC engine, sockets).
 */
import type { Socket } from 'node:net'
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { CausewayError } from '../protocol/errors.ts'
import { deriveMemberKeys, deriveRelayKey } from '../protocol/keys.ts'
import { STRIPE_CAP, type ShareInfo, type StatusMessage } from '../protocol/peer.ts'
import { PIPE_DEFAULTS } from './tunnel/pipe.ts'
import { importSigningKey, parseCredential } from '../protocol/identity.ts'
import type { MemberToken } from '../protocol/token.ts'
import { Emitter } from '../peer/emitter.ts'
import { Mesh, type RemotePeer } from '../peer/mesh.ts'
import { silentLog, type LogLike, type PathInfo, type PeerSession } from '../peer/peer-session.ts'
import { IceSource } from './ice.ts'
import { ANY_SITE, listenConnect, type ConnectSpec, type Listener } from './tunnel/connects.ts'
import { askerOf, ShareRegistry, type Asker } from './tunnel/shares.ts'
import { sessionOpener, Tunnels, type ChannelOpener } from './tunnel/tunnels.ts'
import { listenUdpConnect } from './tunnel/udp-connect.ts'
import { UdpStats } from './tunnel/udp-flows.ts'
import { UdpShares } from './tunnel/udp-share.ts'
import { UDP_CAP } from '../protocol/udp.ts'
import { Associations, DEFAULT_ASSOCIATIONS } from './tunnel/associations.ts'
import { DEFAULT_SITE_POLICY, rankInstances, rankSites, RoundRobin, SiteHealth, siteCatalog, type InstanceView, type SitePolicy, type SiteView } from './instances.ts'
import type { RelayPath } from './relay-path/index.ts'
import { createPeerConnection, EngineSelector, engineOf, UDP_PROBE_MS } from './engine/index.ts'
import { runNetcheck, summarize, viewerSummary, type NetcheckSummary } from './netcheck/index.ts'
import { fromRelayStatus } from './netcheck/relay.ts'
import type { AgentEvents, AgentInit, AgentStatus, PeerPath, PeerView } from './agent-types.ts'
import { StateDir } from './state.ts'
import { ShareAudit } from './audit.ts'

/** How long a stream reset on a still-connected session waits for that session to end before the reset counts (Agent.openStream). */
const STREAM_RETRY_WAIT_MS = 1500
/** Instances a new stream is offered to before its open fails (the first and two others: Agent.openStream). */
const STREAM_ATTEMPTS = 3
/** Refusals after which the same stream may go to another instance of the site (nothing of the socket was read). */
const RETRY_ELSEWHERE = new Set(['STREAM_RESET', 'PEER_UNAVAILABLE', 'SHUTTING_DOWN', 'TOO_MANY_STREAMS', 'TARGET_UNREACHABLE'])
/** Refusals that count towards ejecting a site from `share@*` balancing (SiteHealth). */
const SITE_FAILURES = new Set(['STREAM_RESET', 'PEER_UNAVAILABLE', 'TARGET_UNREACHABLE'])
/** While draining, local listeners keep accepting until none accepted anything this long (their clients moved to another instance), ms. */
const LISTENER_QUIET_MS = 1000
/** A drain lasts at least this long (or two round trips to the farthest peer): streams opened before the peers heard of it arrive, ms. */
const DRAIN_NOTICE_MS = 250

export type { AgentEvents, AgentInit, AgentStatus, PeerPath, PeerView } from './agent-types.ts'

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
  /** Per session: aborted when the session stops answering or ends (pending stream opens on it are abandoned). */
  private readonly liveness = new WeakMap<PeerSession, AbortController>()
  /** Round-robin position, for `round-robin` balancing. */
  private turn = 0
  /** Between sites (`share@*`): outlier ejection, round-robin state per share, and the streams each site got per share. */
  private readonly siteHealth = new SiteHealth()
  private readonly roundRobin = new Map<string, RoundRobin>()
  readonly splits = new Map<string, Map<string, number>>()
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
    this.tunnels.activity = (peer) => { peer.session?.touch() }
    this.audit = new ShareAudit(this.log, name => this.shares.get(name) !== undefined)
    this.tunnels.onStream = r => { this.audit.record(r) }
    this.engines = new EngineSelector(init.engine ?? 'auto')
    const engineOpts = init.bindAddress !== undefined ? { bindAddress: init.bindAddress } : {}
    this.assocs = new Associations({
      total: init.associations ?? DEFAULT_ASSOCIATIONS,
      create: like => createPeerConnection(engineOf(like), { iceServers: this.ice?.servers() ?? init.iceServers ?? [] }, engineOpts),
      onDataChannel: (peer, dc) => this.tunnels.accept(peer, dc),
      log: this.log,
      lanes: {
        highWater: init.tunnel?.pipe?.highWater ?? PIPE_DEFAULTS.highWater,
        budget: init.tunnel?.pipe?.assocBudget ?? PIPE_DEFAULTS.assocBudget,
        activity: (peer) => { peer.session?.touch() },
      },
    })
    this.tunnels.lanesOf = peer => this.assocs.lanes(peer)
    this.tunnels.queueOf = (peer, dc) => this.assocs.queueOf(peer, dc)
    this.mesh = new Mesh({
      token: init.token,
      name: this.name,
      createPeerConnection: (config) => {
        void this.engines.update(this.ice?.servers() ?? init.iceServers ?? [])
        return createPeerConnection(this.engines.engine, config, engineOpts)
      },
      iceServers: () => this.ice?.servers() ?? init.iceServers ?? [],
      log: this.log,
      caps: ['tcp/1', UDP_CAP, ...(init.tunnel?.stripe === false ? [] : [STRIPE_CAP])],
      instance: this.instance,
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
      session.onLiveness = (responsive) => {
        if (!responsive) this.abandonOpens(session)
        this.events.emit('route', peer)
      }
      session.onControlOpen = () => {
        this.sendCatalog(peer)
        if (this.draining) session.sendControl({ type: 'drain' })
        // extras are offered before any bulk data: their signaling shares the session's send queue
        if (peer.role === 'agent') this.assocs.ensure(peer, session)
      }
      session.onControl = (msg) => {
        if (msg.type === 'assoc' && peer.role === 'agent') { this.assocs.handle(peer, session, msg); return }
        if (msg.type === 'catalog' && peer.role === 'agent') {
          this.catalogs.set(peer.id, msg.shares)
          this.events.emit('catalog', peer.name, this.siteCatalog(peer.name))
          this.events.emit('route', peer) // it may offer a share a `share@*` connect waits for
        }
        if (msg.type === 'drain' && peer.role === 'agent' && peer.draining !== true) {
          peer.draining = true
          this.log.info({ peer: peer.name, instance: peer.instance }, 'peer instance draining: new streams go to its other instances')
          this.events.emit('route', peer)
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
        if (state === 'closed' || state === 'failed') {
          this.assocs.sessionDown(peer)
          // opens waiting on it: an unresponsive session aborted them already, unless it was picked while silent
          if (peer.session !== undefined) this.abandonOpens(peer.session)
        }
      }
      this.events.emit('route', peer)
    })
    events.on('hello', (peer) => {
      // a site with a new instance gets another chance at once (instead of at the end of its ejection)
      if (peer.role === 'agent' && !this.catalogs.has(peer.id)) this.siteHealth.ok(peer.name)
      this.events.emit('route', peer)
    })
    events.on('peerGone', (peer) => {
      this.connected(peer)
      this.paths.delete(peer.id)
      this.tunnels.forget(peer.id)
      this.udp.forget(peer.id)
      this.assocs.forget(peer.id)
      if (this.catalogs.delete(peer.id)) this.events.emit('catalog', peer.name, this.siteCatalog(peer.name))
    })
  }

  /** Aborts the stream opens waiting on `session` (it stopped answering or ended): they are opened on another instance. */
  private abandonOpens (session: PeerSession): void {
    this.liveness.get(session)?.abort()
    this.liveness.delete(session)
  }

  /** The signal that abandons stream opens on `session` (a fresh one once it answers again). */
  private livenessSignal (session: PeerSession): AbortSignal {
    let c = this.liveness.get(session)
    if (c === undefined) { c = new AbortController(); this.liveness.set(session, c) }
    return c.signal
  }

  /** The instances of site `name` (agent peers of that name). */
  instancesOf (name: string): RemotePeer[] {
    return [...this.mesh.peers.values()].filter(p => p.role === 'agent' && p.name === name)
  }

  /** What site `name` offers: the union of its instances' catalogs (null when none has sent one). */
  private siteCatalog (name: string): ShareInfo[] | null {
    const cats = this.instancesOf(name).flatMap(p => { const c = this.catalogs.get(p.id); return c === undefined ? [] : [{ shares: c, draining: p.draining === true }] })
    return siteCatalog(cats)
  }

  /** How an instance looks to the ranking (agent/instances.ts) for a stream to `share` (undefined: any). */
  private viewOf (p: RemotePeer, share?: string): InstanceView<RemotePeer> {
    const route = this.route(p)
    const cat = this.catalogs.get(p.id)
    return {
      peer: p,
      routable: route !== 'none',
      responsive: route === 'relay' || p.session?.responsive === true,
      draining: p.draining === true,
      // a share announced unavailable (withdrawn: its Service has no ready endpoint) is not offered
      offers: share === undefined || cat === undefined ? undefined : cat.some(s => s.name === share && s.available !== false),
      streams: this.tunnels.counter(p.id).streams,
      rttMs: p.session?.rttMs ?? null,
    }
  }

  /** The instances of site `name` that may take a new stream to `share`, best first (agent/instances.ts). */
  ranked (name: string, share?: string): RemotePeer[] {
    const instances = this.instancesOf(name)
    const turn = this.turn++
    const offering = rankInstances(instances.map(p => this.viewOf(p, share)), 'least-loaded', turn)
    // a share no instance lists still goes to one: its answer (SHARE_NOT_FOUND, …) is the caller's error
    return offering.length > 0 || share === undefined ? offering : rankInstances(instances.map(p => this.viewOf(p)), 'least-loaded', turn)
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
        accept: (peer, dc) => { this.tunnels.accept(peer, dc, 'relay') },
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

  /** Subscribes to site catalogs (the union of each site's instances'): first the ones known now, then every change (`events` 'catalog'; null: the site's last instance is gone). */
  onCatalog (fn: AgentEvents['catalog']): () => void {
    const off = this.events.on('catalog', fn)
    const sites = new Set<string>()
    for (const id of this.catalogs.keys()) { const p = this.mesh.peers.get(id); if (p !== undefined) sites.add(p.name) }
    for (const site of sites) { const c = this.siteCatalog(site); if (c !== null) fn(site, c) }
    return off
  }

  /** The best instance of site `name` for a new stream (agent/instances.ts), else any known instance. */
  peerNamed (name: string): RemotePeer | undefined {
    return this.ranked(name)[0] ?? this.instancesOf(name)[0]
  }

  /**
   * The best instance of site `name` once new streams can reach one, waiting up to peerWaitMs
   * (route events, no polling); `share`: only instances whose catalog does not rule it out;
   * `skip`: instances already tried.
   */
  async peerByName (name: string, waitMs = this.init.peerWaitMs ?? 10_000, share?: string, skip?: ReadonlySet<string>): Promise<RemotePeer> {
    const reachable = (): RemotePeer | undefined => this.ranked(name, share).find(p => skip?.has(p.id) !== true)
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

  /** An instance of site `peerName` once reachable, and how to open channels to it now (WebRTC or relay). */
  private async openerFor (peerName: string, share?: string, skip?: ReadonlySet<string>): Promise<{ peer: RemotePeer, opener: ChannelOpener, session?: PeerSession }> {
    if (this.stopped.signal.aborted) throw new CausewayError('SHUTTING_DOWN', 'agent is stopping')
    const peer = await this.peerByName(peerName, undefined, share, skip)
    const route = this.route(peer)
    if (route === 'webrtc' && peer.session !== undefined) return { peer, opener: sessionOpener(peer, peer.session, this.assocs), session: peer.session }
    if (route === 'relay' && this.relayPath !== undefined) return { peer, opener: this.relayPath.opener(peer) }
    throw new CausewayError('PEER_UNAVAILABLE', `no connection to peer "${peerName}"`)
  }

  /**
   * Pipes a local socket to `share` on site `peerName`: to its best instance (agent/instances.ts).
   * Until the stream is accepted nothing of the socket is read, so a stream refused or lost
   * before its answer (the instance is stopping, died, stopped answering, or its WebRTC
   * connection ended in its DTLS handshake) is opened again: on another instance of the site,
   * or, when there is none, once more on the same instance's next connection.
   */
  async openStream (peerName: string, share: string, socket: Socket, policy?: Partial<SitePolicy>): Promise<void> {
    if (peerName === ANY_SITE) { await this.openAnySite(share, socket, policy); return }
    const tried = new Set<string>()
    for (let attempt = 1; ; attempt++) {
      const { peer, opener, session } = await this.openerFor(peerName, share, tried.size > 0 && this.ranked(peerName, share).some(p => !tried.has(p.id)) ? tried : undefined)
      tried.add(peer.id)
      try {
        await this.tunnels.open(peer, opener, share, socket, session !== undefined ? this.livenessSignal(session) : undefined)
        return
      } catch (err) {
        if (attempt >= STREAM_ATTEMPTS || socket.destroyed || !(err instanceof CausewayError) || !RETRY_ELSEWHERE.has(err.code)) throw err
        if (this.ranked(peerName, share).some(p => !tried.has(p.id))) {
          this.log.info({ peer: peer.name, instance: peer.instance, share, code: err.code, err: err.message }, 'stream not accepted: opening it on another instance')
          continue
        }
        // a silent session will not come back soon: the caller may try elsewhere (another site)
        if (session === undefined || err.code !== 'STREAM_RESET' || attempt >= 2 || (session.state === 'connected' && !session.responsive)) throw err
        // the channel may hear of the end a moment before the session does (the peer closed it)
        const gone = (): boolean => peer.session !== session || session.state !== 'connected'
        if (!gone()) await this.mesh.events.until('sessionState', gone, AbortSignal.any([this.stopped.signal, AbortSignal.timeout(STREAM_RETRY_WAIT_MS)])).catch(() => {})
        if (!gone() || socket.destroyed) throw err
        tried.delete(peer.id)
        this.log.info({ peer: peer.name, share, err: err.message }, 'the connection ended before the peer answered: opening the stream on the next one')
      }
    }
  }

  /** The sites whose instances list `share` in their catalogs. */
  sitesOffering (share: string): string[] {
    const out = new Set<string>()
    for (const [id, cat] of this.catalogs) {
      const p = this.mesh.peers.get(id)
      if (p !== undefined && cat.some(s => s.name === share && s.available !== false)) out.add(p.name)
    }
    return [...out].sort()
  }

  /** The policy between the sites exporting `share`: the importer's own options, else what the exporters announce in their catalogs. */
  sitePolicy (share: string, own: Partial<SitePolicy> = {}): SitePolicy {
    const weights: Record<string, number> = {}
    const priorities: Record<string, number> = {}
    let balance: SitePolicy['balance'] | undefined
    for (const site of this.sitesOffering(share)) {
      const info = this.siteCatalog(site)?.find(s => s.name === share)
      if (info?.weight !== undefined) weights[site] = info.weight
      if (info?.priority !== undefined) priorities[site] = info.priority
      balance ??= info?.balance
    }
    return { balance: own.balance ?? balance ?? DEFAULT_SITE_POLICY.balance, weights: own.weights ?? weights, priorities: own.priorities ?? priorities }
  }

  /** The sites to try for a new stream to `share`, best first (agent/instances.ts rankSites); `skip`: sites already tried. */
  rankedSites (share: string, own?: Partial<SitePolicy>, skip?: ReadonlySet<string>): string[] {
    const views = this.siteViews(share).filter(v => skip?.has(v.site) !== true)
    let rr = this.roundRobin.get(share)
    if (rr === undefined) { rr = new RoundRobin(); this.roundRobin.set(share, rr) }
    return rankSites(views, this.sitePolicy(share, own), rr)
  }

  /** How each site exporting `share` looks to rankSites (agent/instances.ts). */
  private siteViews (share: string): SiteView[] {
    return this.sitesOffering(share).map(site => {
      const instances = this.instancesOf(site).map(p => this.viewOf(p, share))
      const rtts = instances.flatMap(v => v.rttMs === null ? [] : [v.rttMs])
      const usable = rankInstances(instances.filter(v => v.offers !== false))
      return { site, usable: usable.length > 0, responsive: instances.some(v => v.routable && v.responsive && v.offers !== false && !v.draining), ejected: this.siteHealth.ejected(site), streams: instances.reduce((n, v) => n + v.streams, 0), rttMs: rtts.length > 0 ? Math.min(...rtts) : null }
    })
  }

  /** Per site exporting `share` (or that got streams of it): live (an instance can take a stream), ejected, streams it got (status, metrics). */
  siteSplit (share: string): Array<{ site: string, live: boolean, ejected: boolean, streams: number }> {
    const split = this.splits.get(share)
    const views = new Map(this.siteViews(share).map(v => [v.site, v]))
    const sites = new Set([...views.keys(), ...(split?.keys() ?? [])])
    return [...sites].sort().map(site => ({ site, live: views.get(site)?.usable === true, ejected: this.siteHealth.ejected(site), streams: split?.get(site) ?? 0 }))
  }

  /** The best site for a new stream to `share` once one can take it, waiting up to peerWaitMs. */
  private async pickSite (share: string, own?: Partial<SitePolicy>, skip?: ReadonlySet<string>): Promise<string> {
    const first = (): string | undefined => this.rankedSites(share, own, skip)[0]
    let site = first()
    if (site === undefined && !this.stopped.signal.aborted) {
      try {
        await this.events.until('route', () => first() !== undefined, AbortSignal.any([this.stopped.signal, AbortSignal.timeout(this.init.peerWaitMs ?? 10_000)]))
      } catch { /* timed out or stopping */ }
      site = first()
    }
    if (site === undefined) throw new CausewayError('PEER_UNAVAILABLE', `no connected site exports "${share}"`)
    return site
  }

  /**
   * A stream to `share` on any site that exports it: to the site the policy picks, and, when
   * that site refuses or loses it before any byte (after its own instances were tried), once
   * more on the next site. Failures count towards ejecting a site (SiteHealth).
   */
  private async openAnySite (share: string, socket: Socket, own?: Partial<SitePolicy>): Promise<void> {
    const tried = new Set<string>()
    for (let attempt = 1; ; attempt++) {
      const site = await this.pickSite(share, own, tried.size > 0 && this.rankedSites(share, own, tried).length > 0 ? tried : undefined)
      tried.add(site)
      try {
        await this.openStream(site, share, socket)
        this.siteHealth.ok(site)
        let split = this.splits.get(share)
        if (split === undefined) { split = new Map(); this.splits.set(share, split) }
        if (split.size < 256 || split.has(site)) split.set(site, (split.get(site) ?? 0) + 1)
        return
      } catch (err) {
        // a site shutting down is not failing; one that cannot reach its target or does not answer is
        if (err instanceof CausewayError && SITE_FAILURES.has(err.code) && this.siteHealth.failed(site)) this.log.warn({ site, share }, 'site ejected for a while: its streams kept failing')
        if (attempt >= 2 || socket.destroyed || !(err instanceof CausewayError) || !RETRY_ELSEWHERE.has(err.code)) throw err
        this.log.info({ site, share, code: err.code, err: err.message }, 'stream not accepted: opening it on the next site')
      }
    }
  }

  /** A TCP or UDP connect listener for `spec`. */
  private async listen (spec: ConnectSpec): Promise<Listener> {
    if (spec.protocol === 'udp') {
      // Unordered and unreliable: one datagram per message, a lost one is not retransmitted (protocol/udp.ts).
      const best = (): RemotePeer | undefined => this.ranked(spec.peer === ANY_SITE ? this.rankedSites(spec.share, spec.policy)[0] ?? '' : spec.peer, spec.share)[0]
      const open = async (peerName: string, label: string): Promise<RTCDataChannel> => {
        const site = peerName === ANY_SITE ? await this.pickSite(spec.share, spec.policy) : peerName
        const { peer, opener } = await this.openerFor(site, spec.share)
        const dc = await opener.open(label, { ordered: false, maxRetransmits: 0 })
        this.moveWhenUnusable(peer, dc, best)
        return dc
      }
      return await listenUdpConnect(spec, open, this.udp.stats, this.init.udp ?? {}, this.log)
    }
    return await listenConnect(spec, async (p, s, sock) => await this.openStream(p, s, sock, spec.policy), this.log)
  }

  /**
   * A UDP connect's channel follows its site's instances: when the instance it went to drains,
   * stops answering or is gone while another instance can take it, the channel is closed, and
   * the listener opens a new one (to the best instance) on the next datagram. The flows' state
   * on the share side (their sockets to the target) starts over there, as after a NAT rebinding.
   */
  private moveWhenUnusable (peer: RemotePeer, dc: RTCDataChannel, bestNow: () => RemotePeer | undefined): void {
    const check = (): void => {
      const best = bestNow()
      if (best === undefined || best === peer) return
      const v = this.viewOf(peer)
      if (!v.routable || v.draining || !v.responsive || this.mesh.peers.get(peer.id) !== peer) {
        this.log.info({ peer: peer.name, instance: peer.instance, to: `${best.name}/${best.instance ?? '-'}` }, 'UDP connect moves to another instance')
        off()
        try { dc.close() } catch { /* closed */ }
      }
    }
    const off = this.events.on('route', check)
    const offGone = this.mesh.events.on('peerGone', check)
    dc.addEventListener('close', () => { off(); offGone() }, { once: true })
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
    l.close = async (opts) => { const i = this.listeners.indexOf(l); if (i >= 0) this.listeners.splice(i, 1); await close(opts) }
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
      siblings: [...this.mesh.siblings.values()].map(x => ({ peer: x.id, ...(x.instance !== undefined ? { instance: x.instance } : {}), draining: x.draining })),
      shares: this.shares.list().map(s => ({ name: s.name, target: `${s.host}:${s.port}`, peers: s.peers ?? 'all', protocol: s.protocol ?? 'tcp' })),
      connects: this.listeners.map(l => ({ share: l.spec.share, peer: l.spec.peer, listen: `${l.host}:${l.port}`, protocol: l.spec.protocol ?? 'tcp', ...(l.spec.peer === ANY_SITE ? { sites: this.siteSplit(l.spec.share) } : {}) })),
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
      ...(p.instance !== undefined ? { instance: p.instance } : {}),
      draining: p.draining === true,
      responsive: route === 'relay' || p.session?.responsive === true,
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

  /** Resolves once no local listener accepted anything for LISTENER_QUIET_MS, not before `notBefore` and at the latest at `deadline` (ms since epoch). */
  private async listenersQuiet (deadline: number, notBefore: number): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      const last = Math.max(0, ...this.listeners.map(l => l.lastAcceptAt ?? 0))
      const wait = Math.min(Math.max(last + LISTENER_QUIET_MS, notBefore), deadline) - Date.now()
      if (wait <= 0) return
      await new Promise(resolve => setTimeout(resolve, wait))
    }
  }

  /** Whether this instance is draining (stop() began): not ready, announced to peers as draining. */
  get draining (): boolean { return this.drainingSince !== undefined }
  private drainingSince?: number

  /**
   * Drains, then closes everything: announces the drain (peers open no new streams to this
   * instance; it still accepts the ones already on their way), keeps its local listeners
   * accepting until they have been quiet for LISTENER_QUIET_MS (clients that balance across
   * instances, e.g. kube-proxy once /readyz says 503, moved on) or half of drainMs, closes them,
   * lets live streams finish until drainMs after the start, then resets what is left.
   */
  async stop (): Promise<void> {
    if (this.drainingSince !== undefined) return
    const started = this.drainingSince = Date.now()
    const drainMs = this.init.drainMs ?? 5000
    this.events.emit('draining')
    this.mesh.setDraining()
    for (const p of this.mesh.peers.values()) p.session?.sendControl({ type: 'drain' })
    // streams the peers opened before they heard of the drain are still on their way: wait for
    // them (two round trips, at least DRAIN_NOTICE_MS) before the drain can end for want of streams
    const rtt = Math.max(0, ...[...this.mesh.peers.values()].map(p => p.session?.rttMs ?? 0))
    await this.listenersQuiet(started + drainMs / 2, started + Math.min(drainMs / 2, Math.max(DRAIN_NOTICE_MS, 2 * rtt)))
    // a copy: closing an added listener takes it out of this.listeners
    await Promise.allSettled([...this.listeners].map(async l => await l.close({ drain: true })))
    this.stopped.abort()
    clearInterval(this.pathTimer)
    for (const { timer } of this.notConnectedSince.values()) clearTimeout(timer)
    this.ice?.close()
    await this.tunnels.whenIdle(Math.max(0, started + drainMs - Date.now()))
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
  // a peer name (protocol/peer.ts PeerName): letters, digits, . _ -, starting and ending with a letter or digit
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
  return `${host !== '' ? host : 'agent'}-${randomBytes(3).toString('hex')}`
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
