/**
 * The peer mesh (portable): joins the room through the signaling client, seals and opens
 * every signal end to end, learns who is who from sealed `hello`s, and keeps one PeerSession
 * per remote peer, replacing it when it fails or the remote starts over.
 *
 * Roles: members (agents) hold the network secret and talk to everyone; viewers (debug page)
 * hold only the viewer secret: they reach agents, never impersonate one, and carry share
 * grants that agents verify with the member-only grant key.
 *
 * Identity: with an agent token (or a viewer token made from one) the mesh holds the network's
 * issuer key and accepts an agent only when its hello carries a valid credential for that name
 * and a fresh proof by the credential's key; every offer/answer of an agent must carry a proof
 * of its DTLS fingerprints (protocol/identity-proof.ts). Without the issuer key (a shared
 * token) names are claims.
 *
 * Members also sign every hello with the network's member key (protocol/member-proof.ts):
 * viewers accept an agent only with that proof (when their token carries the member key), so a
 * viewer claiming the agent role is refused by other viewers as it is by agents.
 */
import { generatePeerKey } from '../protocol/join-proof.ts'
import { CausewayError } from '../protocol/errors.ts'
import { importSigningKey, importVerifyKey, verifyCredential, verifyRevocationList } from '../protocol/identity.ts'
import { signDtls, signHello, verifyDtls, verifyHello } from '../protocol/identity-proof.ts'
import { deriveGrantKey, deriveMemberKeys, deriveViewerSealKey } from '../protocol/keys.ts'
import { importMemberKey, signMemberHello, verifyMemberHello } from '../protocol/member-proof.ts'
import { instanceCaps, instanceOf, PeerSignal, type Hello } from '../protocol/peer.ts'
import { Opener, seal } from '../protocol/seal.ts'
import { verifyGrants, type NetworkToken } from '../protocol/token.ts'
import { Emitter } from './emitter.ts'
import { PeerSession, silentLog, type LogLike, type SessionState } from './peer-session.ts'
import { SignalingClient } from './signaling-client.ts'

export type Role = 'agent' | 'viewer'

export interface RemotePeer {
  id: string
  name: string
  role: Role
  /** Shares a viewer may reach (verified); undefined for agents. */
  grants?: string[]
  session?: PeerSession
  /** Whether the peer is in the signaling room right now. */
  present: boolean
  /** Its relay client (agents only): PeerId and relayed multiaddrs, from its sealed hello. */
  relay?: { peer: string, addrs: string[] }
  /** Session ids of this peer that are known dead: their late signals are dropped. */
  deadSids: Set<string>
  /** An agent whose name is proven (credential + proofs verified): its key and credential. */
  proven?: { key: CryptoKey, serial: string, expiresAt: number }
  /** Capabilities from its latest hello (e.g. `tcp/1`, `udp/1`). */
  caps?: string[]
  /** Agents: the instance of its site this peer is (from its hello); absent for agents before instances. */
  instance?: string
  /** Agents: the instance announced that it is draining (hello or `drain` on the control channel): no new streams. */
  draining?: boolean
}

/** Another instance of this agent's own site (same name, another process): known, but no session. */
export interface Sibling { id: string, instance?: string, draining: boolean }

export interface MeshInit {
  token: NetworkToken
  name: string
  createPeerConnection: (config: RTCConfiguration) => RTCPeerConnection
  /** ICE servers for new sessions (read at each session start). */
  iceServers: () => RTCIceServer[]
  log?: LogLike
  WebSocket?: typeof WebSocket
  signal?: AbortSignal
  /** Session connect timeout, ms. Default 20000. */
  connectTimeoutMs?: number
  /** Delay before replacing a failed session, ms. Default 1000. */
  retryDelayMs?: number
  caps?: string[]
  /** This process's instance name within its site (agents; announced in hellos). */
  instance?: string
  /** Unexpired envelope nonces remembered for replay detection (protocol/seal.ts Opener). Default SEAL_REPLAY_CACHE. */
  replayCache?: number
  /** Runs in start() once the keys exist, before joining the room: e.g. adopt revocation lists kept from before. */
  beforeJoin?: () => Promise<void>
}

/** What a Mesh tells its users (`mesh.events.on(name, fn)`; any number of subscribers). */
export interface MeshEvents {
  /** A new session to `peer` exists: attach channel handlers. */
  session: (peer: RemotePeer, session: PeerSession) => void
  /** A session changed state. */
  sessionState: (peer: RemotePeer, state: SessionState) => void
  /** A peer's sealed hello was accepted: a new peer, or a known one again (its relay addresses may have changed). */
  hello: (peer: RemotePeer) => void
  /** A peer is gone for good (left and its connection is down, or replaced by a restart). */
  peerGone: (peer: RemotePeer) => void
  /**
   * Who is in the signaling room now that this peer may see (a viewer sees agents only), from
   * welcome / peer-joined / peer-left: before any hello, so an empty room is known at once.
   */
  members: (ids: readonly string[]) => void
  /** A signaling error (UNAUTHORIZED, ROOM_FULL, …). */
  signalingError: (code: string, message: string) => void
  /** A peer's hello or description was refused (IDENTITY_REJECTED, CREDENTIAL_EXPIRED, …). */
  refused: (from: string, code: string, message: string) => void
  /** The other instances of this agent's own site changed (`mesh.siblings`). */
  siblings: () => void
  /** A newer signed revocation list was adopted (to keep it across restarts). */
  revocations: (text: string, seq: number) => void
}

interface Keys {
  room: string
  /** Key to seal for a recipient of this role. */
  sealFor: (role: Role) => CryptoKey | undefined
  opener: Opener<Role>
  grantKey?: CryptoKey
  hello: Hello
  /** The network's issuer key: present when names are proven. */
  issuer?: CryptoKey
  /** This agent's identity key and credential (agent tokens). */
  identity?: { key: CryptoKey, credential: string }
  /** Members: the member signing key (every hello carries a member proof). */
  memberSign?: CryptoKey
  /** Viewers: the member key from the token, to check agents' member proofs. */
  memberKey?: CryptoKey
  /** Viewers: the token carries an access ticket, so the service confines roles (member-proof.ts). */
  ticketed?: boolean
}

interface Revocations { text: string, seq: number, serials: Set<string> }

export class Mesh {
  /** This peer's id in the room: derived from its signaling key, made in start() (empty before). */
  id = ''
  readonly role: Role
  readonly peers = new Map<string, RemotePeer>()
  /** The other instances of this agent's site in the room (proven like any agent; no session is set up to them). */
  readonly siblings = new Map<string, Sibling>()
  readonly events: Emitter<MeshEvents>
  signaling?: SignalingClient
  private keys?: Keys
  private readonly init: MeshInit
  private readonly log: LogLike
  private closed = false
  /** Who is in the signaling room now (from welcome/joined/left), hello received or not. */
  private readonly members = new Set<string>()
  /** The hello each peer was last sent: a peer whose hello arrives gets ours if it missed the current one. */
  private readonly helloSent = new Map<string, Hello>()
  /** Per recipient, the last send in flight: sealing is async, sends leave in call order. */
  private readonly outbox = new Map<string, Promise<boolean>>()
  /** Per proven peer: the timer that drops it when its credential expires. */
  private readonly expiries = new Map<string, ReturnType<typeof setTimeout>>()
  private crl?: Revocations

  constructor (init: MeshInit) {
    this.init = init
    this.role = init.token.kind === 'member' ? 'agent' : 'viewer'
    this.log = init.log ?? silentLog
    this.events = new Emitter<MeshEvents>(err => { this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'mesh event listener failed') })
    init.signal?.addEventListener('abort', () => this.close(), { once: true })
  }

  get room (): string | undefined { return this.keys?.room }

  async start (): Promise<void> {
    const t = this.init.token
    // One key per mesh (process): reconnects keep the peer id, a restart gets a new one.
    const peerKey = await generatePeerKey()
    this.id = peerKey.id
    const hello: Hello = {
      type: 'hello',
      name: this.init.name,
      role: this.role,
      caps: [...(this.init.caps ?? []), ...(this.role === 'agent' && this.init.instance !== undefined ? instanceCaps(this.init.instance) : [])],
    }
    const replay = this.init.replayCache !== undefined ? { replayCache: this.init.replayCache } : {}
    if (t.kind === 'member') {
      const k = await deriveMemberKeys(t.secret)
      this.keys = {
        room: k.room,
        sealFor: role => role === 'agent' ? k.seal : k.viewerSeal,
        opener: new Opener<Role>({ room: k.room, self: this.id, keys: [{ key: k.seal, role: 'agent' }, { key: k.viewerSeal, role: 'viewer' }], ...replay }),
        grantKey: k.grant,
        hello,
        memberSign: k.member.privateKey,
        ...(t.identity !== undefined
          ? {
              issuer: await importVerifyKey(t.identity.issuer),
              identity: { key: await importSigningKey(t.identity.key), credential: t.identity.credential },
            }
          : {}),
      }
    } else {
      const vk = await deriveViewerSealKey(t.viewerSecret)
      this.keys = {
        room: t.room,
        sealFor: role => role === 'agent' ? vk : undefined,
        opener: new Opener<Role>({ room: t.room, self: this.id, keys: [{ key: vk, role: 'viewer' }], ...replay }),
        hello: { ...hello, grants: t.grants, grantSig: t.grantSig },
        ...(t.issuer !== undefined ? { issuer: await importVerifyKey(t.issuer) } : {}),
        ...(t.memberKey !== undefined ? { memberKey: await importMemberKey(t.memberKey) } : {}),
        ticketed: t.ticket !== undefined,
      }
      if (t.memberKey === undefined && t.issuer === undefined && t.ticket === undefined) {
        this.log.warn({}, 'this viewer token carries no member key and the deployment has no access tickets: agents cannot be told from viewers, so every agent hello is refused; make a new viewer token (causeway token --viewer)')
      }
    }
    await this.init.beforeJoin?.()
    const sc = this.signaling = new SignalingClient({
      signaling: t.signaling,
      room: this.keys.room,
      key: peerKey,
      role: this.role,
      ...(t.ticket !== undefined ? { ticket: t.ticket } : {}),
      ...(this.init.WebSocket !== undefined ? { WebSocket: this.init.WebSocket } : {}),
    })
    sc.on('welcome', peers => {
      this.members.clear()
      this.helloSent.clear()
      for (const p of peers) { this.members.add(p); void this.sendHello(p) }
      this.events.emit('members', [...this.members])
    })
    sc.on('joined', p => { this.members.add(p); void this.sendHello(p); this.events.emit('members', [...this.members]) })
    sc.on('left', p => {
      this.members.delete(p)
      this.helloSent.delete(p)
      if (this.siblings.delete(p)) this.events.emit('siblings')
      this.onLeft(p)
      this.events.emit('members', [...this.members])
    })
    // Signals from one sender are handled strictly in order (opening is async: a hello must be
    // processed before the offer behind it). Bounded per sender; the oldest are dropped first.
    sc.on('signal', (from, sealed) => { this.enqueueSignal(from, sealed) })
    sc.on('error', (code, message) => {
      this.log.warn({ code, message }, 'signaling error')
      this.events.emit('signalingError', code, message)
    })
    sc.on('state', s => this.log.info({ state: s }, 'signaling'))
    sc.start()
  }

  /** Whether agents' names are verified (the mesh holds the network's issuer key). */
  get provesNames (): boolean { return this.keys?.issuer !== undefined }

  /**
   * Seals and sends one signal to a peer; false when signaling is down or the peer unknown.
   * Signals to one recipient leave in call order (a newer hello never overtakes an older one).
   */
  async send (to: string, body: PeerSignal, toRole: Role = this.peers.get(to)?.role ?? 'agent'): Promise<boolean> {
    const keys = this.keys
    const sc = this.signaling
    if (keys === undefined || sc === undefined) return false
    const key = keys.sealFor(toRole)
    if (key === undefined) return false
    const before = this.outbox.get(to) ?? Promise.resolve(true)
    const sent = before.then(async () => {
      let proven: PeerSignal
      // e.g. a description of a session closed meanwhile has no fingerprint to sign: not sent
      // (a rejection here would escape through `void send(…)` callers as an unhandled one)
      try { proven = await this.withProof(to, body, toRole) } catch (err) { this.log.debug({ to, err: err instanceof Error ? err.message : String(err) }, 'signal not sent'); return false }
      return sc.send(to, await seal(key, { room: keys.room, from: this.id, to, body: proven }))
    }, () => false)
    this.outbox.set(to, sent)
    try { return await sent } finally { if (this.outbox.get(to) === sent) this.outbox.delete(to) }
  }

  /**
   * A member adds a member proof to each hello it seals for a viewer (agents do not need it, and
   * agents of older versions would refuse the field); an agent with an identity adds its
   * credential and a fresh proof to every hello, and signs the DTLS fingerprints of each
   * offer/answer (in the send order, inside the outbox chain).
   */
  private async withProof (to: string, body: PeerSignal, toRole: Role): Promise<PeerSignal> {
    const keys = this.keys
    if (keys === undefined) return body
    const ts = Date.now()
    if (body.type === 'hello' && toRole === 'viewer' && keys.memberSign !== undefined) {
      body = { ...body, mproof: { ts, sig: await signMemberHello(keys.memberSign, { room: keys.room, from: this.id, to, ts, name: body.name, role: body.role }) } }
    }
    const id = keys.identity
    if (id === undefined) return body
    if (body.type === 'hello') {
      const sig = await signHello(id.key, { room: keys.room, from: this.id, to, ts, name: body.name, role: body.role, ...(body.relay !== undefined ? { relayPeer: body.relay.peer } : {}) })
      return { ...body, cred: id.credential, proof: { ts, sig }, ...(this.crl !== undefined ? { crl: this.crl.text } : {}) }
    }
    if (body.type !== 'description' || body.description.type === 'rollback') return body
    const sig = await signDtls(id.key, { room: keys.room, from: this.id, to, sid: body.sid, ts, type: body.description.type, sdp: body.description.sdp })
    return { ...body, proof: { ts, sig } }
  }

  /**
   * Adopts a signed revocation list (from `--revocations-file` or a peer's hello) when it is
   * newer than the one held: peers it names are dropped and every peer gets a hello carrying
   * it. Returns whether it was adopted; throws CausewayError IDENTITY_REJECTED when it does
   * not verify.
   */
  async adoptRevocations (text: string): Promise<boolean> {
    const keys = this.keys
    if (keys?.issuer === undefined) throw new CausewayError('SHARED_TOKEN', 'revocation lists need an agent token (the network\'s issuer key)')
    const list = await verifyRevocationList(keys.issuer, text, keys.room)
    if (this.crl !== undefined && list.seq <= this.crl.seq) return false
    this.crl = { text: text.trim(), seq: list.seq, serials: new Set(list.serials) }
    this.log.info({ seq: list.seq, revoked: list.serials.length }, 'revocation list adopted')
    this.events.emit('revocations', this.crl.text, list.seq)
    for (const p of [...this.peers.values()]) {
      if (p.proven !== undefined && this.crl.serials.has(p.proven.serial)) {
        this.events.emit('refused', p.id, 'CREDENTIAL_REVOKED', `credential of "${p.name}" revoked`)
        this.dismiss(p, 'revoked')
      }
    }
    if (keys.identity !== undefined) for (const p of this.peers.values()) void this.sendHello(p.id)
    return true
  }

  /** The sequence number of the revocation list in force (undefined: none). */
  get revocationSeq (): number | undefined { return this.crl?.seq }

  /** Envelope nonces this peer remembers for replay detection: in total, and from one sender (peer id). */
  remembered (from?: string): number {
    const o = this.keys?.opener
    return o === undefined ? 0 : from === undefined ? o.remembered : o.rememberedFrom(from)
  }

  /** The signed revocation list in force (undefined: none), e.g. to hand to a relay. */
  get revocationList (): string | undefined { return this.crl?.text }

  /**
   * Announces that this instance is draining: every peer in the room gets a hello whose caps
   * say `draining` (the agent also tells connected peers on each session's control channel,
   * which does not depend on the signaling service).
   */
  setDraining (): void {
    const keys = this.keys
    if (keys === undefined || this.role !== 'agent' || this.init.instance === undefined || instanceOf(keys.hello.caps)?.draining === true) return
    keys.hello = { ...keys.hello, caps: [...(this.init.caps ?? []), ...instanceCaps(this.init.instance, true)] }
    for (const id of new Set([...this.members, ...this.peers.keys()])) void this.sendHello(id)
  }

  /**
   * Announces (or withdraws) this agent's relay identity and addresses: hello again to everyone
   * in the room, including peers whose own hello has not arrived yet (they would otherwise keep
   * the older one).
   */
  setRelay (relay: { peer: string, addrs: string[] } | undefined): void {
    const keys = this.keys
    if (keys === undefined || this.role !== 'agent') return
    const { relay: _old, ...rest } = keys.hello
    keys.hello = relay === undefined ? rest : { ...rest, relay }
    for (const id of new Set([...this.members, ...this.peers.keys()])) void this.sendHello(id)
  }

  private async sendHello (to: string): Promise<void> {
    if (this.keys === undefined) return
    const hello = this.keys.hello
    this.helloSent.set(to, hello)
    // A viewer only talks to agents; an agent does not yet know the role, so it seals its hello
    // for an agent and, for viewers, a second one with the viewer key.
    const both = [this.send(to, hello, 'agent'), ...(this.role === 'agent' ? [this.send(to, hello, 'viewer')] : [])]
    await Promise.all(both)
  }

  private refuse (from: string, err: unknown, what: string): void {
    const code = err instanceof CausewayError ? err.code : 'IDENTITY_REJECTED'
    const message = err instanceof Error ? err.message : String(err)
    this.log.warn({ from, code, message }, what)
    this.events.emit('refused', from, code, message)
  }

  /** Verifies an agent's hello against the issuer key; returns its proven identity. */
  private async proveAgent (from: string, hello: Hello): Promise<NonNullable<RemotePeer['proven']>> {
    const keys = this.keys
    if (keys?.issuer === undefined) throw new CausewayError('IDENTITY_REJECTED', 'no issuer key')
    if (hello.cred === undefined || hello.proof === undefined) throw new CausewayError('IDENTITY_REJECTED', `hello of "${hello.name}" carries no credential`)
    if (hello.crl !== undefined) {
      try { await this.adoptRevocations(hello.crl) } catch (err) { this.refuse(from, err, 'revocation list in hello refused') }
    }
    const cred = await verifyCredential(keys.issuer, hello.cred, { network: keys.room, ...(this.crl !== undefined ? { revoked: this.crl.serials } : {}) })
    if (cred.name !== hello.name) throw new CausewayError('IDENTITY_REJECTED', `credential is for "${cred.name}", hello claims "${hello.name}"`)
    const key = await importVerifyKey(cred.publicKey)
    await verifyHello(key, { room: keys.room, from, to: this.id, ts: hello.proof.ts, name: hello.name, role: hello.role, ...(hello.relay !== undefined ? { relayPeer: hello.relay.peer } : {}) }, hello.proof.sig)
    return { key, serial: cred.serial, expiresAt: cred.expiresAt }
  }

  /**
   * A viewer checks that an agent hello comes from a member (protocol/member-proof.ts): the
   * member proof when its token has the member key; without one, the credential (issuer key)
   * or a ticketed deployment must prove it. Throws CausewayError IDENTITY_REJECTED.
   */
  private async proveMember (from: string, hello: Hello): Promise<void> {
    const keys = this.keys
    if (keys === undefined) throw new CausewayError('IDENTITY_REJECTED', 'not started')
    if (keys.memberKey !== undefined) {
      if (hello.mproof === undefined) throw new CausewayError('IDENTITY_REJECTED', `hello of "${hello.name}" carries no member proof: only network members can sign one`)
      await verifyMemberHello(keys.memberKey, { room: keys.room, from, to: this.id, ts: hello.mproof.ts, name: hello.name, role: hello.role }, hello.mproof.sig)
      return
    }
    if (keys.issuer === undefined && keys.ticketed !== true) throw new CausewayError('IDENTITY_REJECTED', 'this viewer token cannot tell agents from viewers (no member key, no issuer key, no access ticket): make a new viewer token')
  }

  /** Verifies the DTLS proof of an agent's offer/answer; throws CausewayError. */
  private async proveDescription (peer: RemotePeer, sig: Extract<PeerSignal, { type: 'description' }>): Promise<void> {
    const keys = this.keys
    if (keys === undefined || peer.proven === undefined) throw new CausewayError('IDENTITY_REJECTED', 'peer not proven')
    if (Date.now() >= peer.proven.expiresAt * 1000) throw new CausewayError('CREDENTIAL_EXPIRED', `credential of "${peer.name}" expired`)
    if (this.crl?.serials.has(peer.proven.serial) === true) throw new CausewayError('CREDENTIAL_REVOKED', `credential of "${peer.name}" revoked`)
    if (sig.proof === undefined) throw new CausewayError('IDENTITY_REJECTED', `description from "${peer.name}" carries no DTLS proof`)
    await verifyDtls(peer.proven.key, { room: keys.room, from: peer.id, to: this.id, sid: sig.sid, ts: sig.proof.ts, type: sig.description.type, sdp: sig.description.sdp }, sig.proof.sig)
  }

  private readonly inbox = new Map<string, { busy: boolean, queue: string[] }>()

  private enqueueSignal (from: string, sealed: string): void {
    let box = this.inbox.get(from)
    if (box === undefined) {
      if (this.inbox.size >= 1024) return
      box = { busy: false, queue: [] }
      this.inbox.set(from, box)
    }
    if (box.queue.length >= 512) box.queue.shift()
    box.queue.push(sealed)
    if (!box.busy) void this.drainInbox(from, box)
  }

  private async drainInbox (from: string, box: { busy: boolean, queue: string[] }): Promise<void> {
    box.busy = true
    try {
      for (let next = box.queue.shift(); next !== undefined; next = box.queue.shift()) {
        try { await this.onSignal(from, next) } catch (err) { this.log.debug({ from, err: String(err) }, 'signal handling failed') }
      }
    } finally {
      box.busy = false
      if (box.queue.length === 0) this.inbox.delete(from)
    }
  }

  private async onSignal (from: string, sealed: string): Promise<void> {
    const keys = this.keys
    if (keys === undefined || this.closed) return
    let opened: { body: unknown, role: Role }
    try {
      opened = await keys.opener.open(from, sealed)
    } catch (err) {
      this.log.debug({ from, err: err instanceof CausewayError ? err.message : String(err) }, 'sealed signal rejected')
      return
    }
    const parsed = PeerSignal.safeParse(opened.body)
    if (!parsed.success) { this.log.debug({ from }, 'malformed peer signal'); return }
    const sig = parsed.data
    if (sig.type === 'hello') { await this.onHello(from, sig, opened.role); return }
    const peer = this.peers.get(from)
    if (peer === undefined) return // signals before hello: the hello is sealed first, so this is stale
    if (peer.role !== opened.role && !(this.role === 'viewer' && peer.role === 'agent')) return
    if (sig.type === 'bye') { this.dropPeer(peer, 'bye'); return }
    if (peer.deadSids.has(sig.sid)) return
    if (sig.type === 'description' && sig.description.type !== 'rollback' && peer.role === 'agent' && keys.issuer !== undefined) {
      try { await this.proveDescription(peer, sig) } catch (err) { this.refuse(from, err, 'description refused'); return }
    }
    let session = peer.session
    if (session !== undefined && session.remoteSid !== undefined && session.remoteSid !== sig.sid) {
      if (sig.type !== 'description' || sig.description.type !== 'offer') return
      this.log.info({ peer: peer.name }, 'peer started over: replacing session')
      peer.deadSids.add(session.remoteSid)
      session.close()
      session = undefined
    }
    if (session === undefined || session.state === 'closed') session = this.newSession(peer)
    session.remoteSid ??= sig.sid
    session.handleSignal(sig)
  }

  private async onHello (from: string, hello: Hello, keyRole: Role): Promise<void> {
    if (hello.role !== keyRole && !(this.role === 'viewer' && keyRole === 'viewer' && hello.role === 'agent')) {
      // An agent's hello copy sealed for viewers (agents send both), or a viewer claiming the
      // agent role with the viewer key it holds: either way not an agent hello to an agent.
      this.log.debug({ from }, 'hello role does not match its key: ignored')
      return
    }
    if (this.role === 'viewer' && hello.role === 'viewer') return
    if (this.role === 'viewer') {
      try { await this.proveMember(from, hello) } catch (err) { this.refuse(from, err, 'agent hello refused'); return }
    }
    let grants: string[] | undefined
    if (hello.role === 'viewer') {
      if (this.keys?.grantKey === undefined || hello.grants === undefined || hello.grantSig === undefined) return
      if (!await verifyGrants(this.keys.grantKey, this.keys.room, hello.grants, hello.grantSig)) {
        this.log.warn({ from, name: hello.name }, 'viewer grants do not verify: ignored')
        return
      }
      grants = hello.grants
    }
    let proven: RemotePeer['proven']
    if (hello.role === 'agent' && this.keys?.issuer !== undefined) {
      // Refused hellos change nothing: the agent known under that name stays.
      try { proven = await this.proveAgent(from, hello) } catch (err) { this.refuse(from, err, 'agent hello refused'); return }
    }
    // Another instance of our own site: known (status), no session (they serve the same shares).
    if (hello.role === 'agent' && this.role === 'agent' && hello.name === this.init.name) {
      const had = this.siblings.get(from)
      const inst = instanceOf(hello.caps)
      const sib: Sibling = { id: from, draining: inst?.draining === true, ...(inst !== undefined ? { instance: inst.label } : {}) }
      this.siblings.set(from, sib)
      if (had?.instance !== sib.instance || had?.draining !== sib.draining) this.events.emit('siblings')
      if (this.keys !== undefined && this.helloSent.get(from) !== this.keys.hello) void this.sendHello(from)
      return
    }
    // A new incarnation of a known agent (restart) replaces it: the same instance under a new
    // peer id, or any agent of that name when either side predates instances. Other instances
    // of the same site live side by side.
    const instance = hello.role === 'agent' ? instanceOf(hello.caps) : undefined
    if (hello.role === 'agent') {
      for (const p of this.peers.values()) {
        if (p.id === from || p.role !== 'agent' || p.name !== hello.name) continue
        if (instance === undefined || p.instance === undefined || p.instance === instance.label) this.dropPeer(p, 'restarted')
      }
    }
    let peer = this.peers.get(from)
    if (peer !== undefined && (peer.name !== hello.name || peer.role !== hello.role)) {
      this.dropPeer(peer, 'changed identity')
      peer = undefined
    }
    if (peer === undefined) {
      peer = { id: from, name: hello.name, role: hello.role, present: true, deadSids: new Set(), ...(grants !== undefined ? { grants } : {}) }
      this.peers.set(from, peer)
      this.log.info({ peer: peer.name, role: peer.role, proven: proven !== undefined }, 'peer discovered')
    } else {
      peer.present = true
    }
    if (proven !== undefined) { peer.proven = proven; this.armExpiry(peer) }
    peer.caps = hello.caps
    if (hello.role === 'agent') {
      if (hello.relay !== undefined) peer.relay = hello.relay; else delete peer.relay
      if (instance !== undefined) peer.instance = instance.label; else delete peer.instance
      // draining is one-way: a hello sealed before the drain never undoes it
      if (instance?.draining === true) peer.draining = true
    }
    if (peer.session === undefined || peer.session.state === 'closed') this.newSession(peer)
    this.events.emit('hello', peer)
    // It may have missed our current hello (it changed before we knew the peer): send it now.
    if (this.keys !== undefined && this.helloSent.get(from) !== this.keys.hello) void this.sendHello(from)
  }

  private newSession (peer: RemotePeer): PeerSession {
    const session = new PeerSession({
      remote: peer.id,
      polite: this.id < peer.id,
      createPeerConnection: this.init.createPeerConnection,
      iceServers: this.init.iceServers(),
      send: (sig) => { void this.send(peer.id, sig) },
      log: this.log,
      ...(this.init.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.init.connectTimeoutMs } : {}),
    })
    peer.session = session
    session.onState = (state) => {
      this.log.info({ peer: peer.name, state }, 'peer connection')
      this.events.emit('sessionState', peer, state)
      if (state === 'failed' && peer.session === session) {
        if (session.remoteSid !== undefined) peer.deadSids.add(session.remoteSid)
        session.close()
        if (!peer.present) { this.dropPeer(peer, 'gone'); return }
        setTimeout(() => {
          if (this.closed || peer.session !== session || this.peers.get(peer.id) !== peer) return
          this.newSession(peer)
        }, this.init.retryDelayMs ?? 1000)
      }
    }
    this.events.emit('session', peer, session)
    return session
  }

  private onLeft (id: string): void {
    const peer = this.peers.get(id)
    if (peer === undefined) return
    peer.present = false
    // Its tunnels may outlive its signaling connection: only drop it if its connection is down.
    const s = peer.session
    if (s === undefined || s.state === 'closed' || s.state === 'failed' || s.state === 'connecting') this.dropPeer(peer, 'left')
  }

  /**
   * A proven agent is accepted only while its credential is valid: when it expires mid-session,
   * the peer is dropped (its sessions and tunnels end) until it hellos with a renewed one.
   */
  private armExpiry (peer: RemotePeer): void {
    clearTimeout(this.expiries.get(peer.id))
    const at = peer.proven?.expiresAt
    if (at === undefined) return
    // setTimeout holds at most ~24.8 days: re-armed until the day comes
    const t = setTimeout(() => {
      this.expiries.delete(peer.id)
      if (this.closed || this.peers.get(peer.id) !== peer || peer.proven?.expiresAt !== at) return
      if (Date.now() < at * 1000) { this.armExpiry(peer); return }
      this.refuse(peer.id, new CausewayError('CREDENTIAL_EXPIRED', `credential of "${peer.name}" expired`), 'peer dropped')
      this.dismiss(peer, 'credential expired')
    }, Math.min(Math.max(0, at * 1000 - Date.now()), 2 ** 31 - 1))
    t.unref?.()
    this.expiries.set(peer.id, t)
  }

  /**
   * Drops a peer we no longer accept and tells it (`bye`), so that its side of the sessions ends
   * now rather than when the connection times out.
   */
  private dismiss (peer: RemotePeer, why: string): void {
    void this.send(peer.id, { type: 'bye' })
    this.dropPeer(peer, why)
  }

  private dropPeer (peer: RemotePeer, why: string): void {
    if (this.peers.get(peer.id) !== peer) return
    clearTimeout(this.expiries.get(peer.id))
    this.expiries.delete(peer.id)
    this.peers.delete(peer.id)
    if (!this.members.has(peer.id)) this.helloSent.delete(peer.id)
    this.log.info({ peer: peer.name, why }, 'peer removed')
    peer.session?.close()
    this.events.emit('peerGone', peer)
  }

  /** Tells peers we are leaving, closes every session and the signaling connection. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.allSettled([...this.peers.values()].map(async p => await this.send(p.id, { type: 'bye' })))
    for (const p of this.peers.values()) p.session?.close()
    for (const t of this.expiries.values()) clearTimeout(t)
    this.expiries.clear()
    this.peers.clear()
    this.siblings.clear()
    this.signaling?.close()
  }
}
