/**
 * One RTCPeerConnection to one remote peer, negotiated with the "perfect negotiation" pattern
 * (either side may offer; on glare the polite side rolls back), with ICE restart on failure.
 * Portable: the RTCPeerConnection comes from a factory (agent/wrtc.ts in Node, the browser's
 * own in the debug page).
 *
 * Channels: `control` is pre-negotiated (id 0) on both sides, so no side has to wait for the
 * other to create it; stream channels are announced in-band (DCEP) by whoever opens them.
 */
import { randomId } from '../protocol/encoding.ts'
import { silentLog, type LogLike } from './log.ts'
import { parseJson, ControlMessage, CONTROL_LABEL, type PathKind, type PeerSignal } from '../protocol/peer.ts'

export { silentLog, type LogLike } from './log.ts'

export type SessionState = 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed'

export interface PeerSessionInit {
  remote: string
  polite: boolean
  createPeerConnection: (config: RTCConfiguration) => RTCPeerConnection
  iceServers: RTCIceServer[]
  /** Sends a signal to the remote peer (sealing and transport are the caller's). */
  send: (signal: PeerSignal) => void
  log?: LogLike
  /** Give up when not connected this long after start or an ICE restart, ms. Default 20000. */
  connectTimeoutMs?: number
  /** Restart ICE after this long in `disconnected`, ms. Default 3000. */
  disconnectGraceMs?: number
  /** Control-channel ping interval (keepalive), ms. Default 1000. */
  pingIntervalMs?: number
  /**
   * A connected session from which nothing was heard this long (no control message, no
   * `touch()`) is *unresponsive* (`responsive` false, `onLiveness`): its peer may be dead
   * (killed, cut off) while ICE still says connected, ms. Default 3000.
   */
  unresponsiveMs?: number
  /** An unresponsive session fails after this long without a sign of life, ms. Default 15000. */
  deadMs?: number
  /**
   * Give up when ICE is connected but the control channel (DTLS, then SCTP) is not open this
   * long after, ms. Default 10000 (the handshakes take a few round trips; DTLS retransmits
   * after 1 s). An engine may fail a DTLS handshake without an event (@roamhq/wrtc).
   */
  handshakeTimeoutMs?: number
}

export interface PathInfo { kind: PathKind, pair?: string, rttMs?: number }

type Description = { type: 'offer' | 'answer' | 'pranswer' | 'rollback', sdp: string }
type Candidate = { candidate: string, sdpMid?: string | null, sdpMLineIndex?: number | null, usernameFragment?: string | null }

export class PeerSession {
  readonly remote: string
  /** This session's id, sent with every signal; a new one means "I started over". */
  readonly sid: string
  /** The remote session id this session talks to, once known. */
  remoteSid?: string
  readonly pc: RTCPeerConnection
  readonly control: RTCDataChannel
  state: SessionState = 'connecting'
  rttMs: number | null = null
  onState?: (state: SessionState) => void
  onDataChannel?: (dc: RTCDataChannel) => void
  onControl?: (msg: ControlMessage) => void
  onControlOpen?: () => void
  /** The session became unresponsive (false) or responsive again (true); see PeerSessionInit.unresponsiveMs. */
  onLiveness?: (responsive: boolean) => void
  /** Whether the peer was heard from recently (always false unless connected with its control channel open). */
  responsive = false
  /** When anything was last heard from the peer (performance.now()). */
  private heardAt = 0
  /** Whether this side rolls back on glare (the lower agent id); the two sides of a pair disagree on it. */
  get polite (): boolean { return this.init.polite }
  private readonly init: Required<Omit<PeerSessionInit, 'log'>> & { log: LogLike }
  private makingOffer = false
  private ignoreOffer = false
  private answerPending = false
  private queue: Promise<void> = Promise.resolve()
  private pendingCandidates: Candidate[] = []
  private connectTimer?: ReturnType<typeof setTimeout>
  private graceTimer?: ReturnType<typeof setTimeout>
  private handshakeTimer?: ReturnType<typeof setTimeout>
  private pinger?: ReturnType<typeof setInterval>
  private pingId = 0

  constructor (init: PeerSessionInit) {
    this.init = { connectTimeoutMs: 20_000, disconnectGraceMs: 3000, pingIntervalMs: 1000, unresponsiveMs: 3000, deadMs: 15_000, handshakeTimeoutMs: 10_000, log: silentLog, ...init }
    this.remote = init.remote
    this.sid = randomId(9)
    const pc = this.pc = init.createPeerConnection({ iceServers: init.iceServers })
    pc.onnegotiationneeded = () => { this.enqueue(async () => await this.offer()) }
    pc.onicecandidate = (ev) => {
      const c = ev.candidate
      this.init.send({ type: 'candidate', sid: this.sid, candidate: c === null ? null : { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } })
    }
    pc.oniceconnectionstatechange = () => this.onIceState()
    pc.onconnectionstatechange = () => this.onIceState()
    pc.ondatachannel = (ev) => {
      // The pre-negotiated control channel (id 0) is ours already; any other channel, one
      // labelled `control` included, goes to onDataChannel, which refuses what it does not know.
      if (ev.channel.label === CONTROL_LABEL && ev.channel.id === 0) return
      ev.channel.binaryType = 'arraybuffer'
      this.onDataChannel?.(ev.channel)
    }
    this.control = pc.createDataChannel(CONTROL_LABEL, { negotiated: true, id: 0, ordered: true })
    this.control.binaryType = 'arraybuffer'
    this.control.onmessage = (ev: MessageEvent) => {
      this.touch()
      if (typeof ev.data !== 'string' || ev.data.length > 1_000_000) return
      const msg = parseJson(ControlMessage, ev.data)
      if (msg === null) { this.init.log.debug({ peer: this.remote }, 'ignoring malformed control message'); return }
      if (msg.type === 'ping') { this.sendControl({ type: 'pong', id: msg.id, t: msg.t }); return }
      if (msg.type === 'pong') { this.rttMs = Math.max(0, performance.now() - msg.t); return }
      this.onControl?.(msg)
    }
    this.control.onopen = () => this.controlOpened()
    this.armConnectTimer()
  }

  private controlOpened (): void {
    clearTimeout(this.handshakeTimer)
    if (this.pinger !== undefined) return
    this.touch()
    this.pinger = setInterval(() => {
      this.sendControl({ type: 'ping', id: ++this.pingId, t: performance.now() })
      this.checkLiveness()
    }, this.init.pingIntervalMs)
    this.sendControl({ type: 'ping', id: ++this.pingId, t: performance.now() })
    this.onControlOpen?.()
  }

  /** A sign of life from the peer (the agent calls it for stream messages; control messages count by themselves). */
  touch (): void {
    this.heardAt = performance.now()
    if (!this.responsive && this.state === 'connected' && this.control.readyState === 'open') this.setLiveness(true)
  }

  /** Ms since the peer was last heard from (Infinity before the control channel opened). */
  get silentMs (): number { return this.heardAt === 0 ? Infinity : performance.now() - this.heardAt }

  private checkLiveness (): void {
    if (this.state === 'closed' || this.state === 'failed') return
    const silent = this.silentMs
    if (this.responsive && silent > this.init.unresponsiveMs) {
      this.init.log.info({ peer: this.remote, silentMs: Math.round(silent) }, 'peer unresponsive: new streams go elsewhere')
      this.setLiveness(false)
    }
    if (silent > this.init.deadMs) this.fail('peer silent: session failed', { silentMs: Math.round(silent) })
  }

  private setLiveness (responsive: boolean): void {
    if (this.responsive === responsive) return
    this.responsive = responsive
    this.onLiveness?.(responsive)
  }

  sendControl (msg: ControlMessage): boolean {
    if (this.control.readyState !== 'open') return false
    try { this.control.send(JSON.stringify(msg)); return true } catch { return false }
  }

  /** Feeds a description or candidate from the remote peer. */
  handleSignal (sig: PeerSignal): void {
    if (sig.type === 'description') this.enqueue(async () => await this.onDescription(sig.description))
    else if (sig.type === 'candidate') this.enqueue(async () => await this.onCandidate(sig.candidate))
  }

  restartIce (): void {
    if (this.state === 'closed') return
    // An engine without ICE restart (node-datachannel) fails the session: the mesh replaces it.
    if ((this.pc as { canRestartIce?: boolean }).canRestartIce === false) { this.init.log.info({ peer: this.remote }, 'ICE failed; engine cannot restart ICE'); this.setState('failed'); return }
    this.init.log.info({ peer: this.remote }, 'ICE restart')
    this.armConnectTimer()
    if (typeof this.pc.restartIce === 'function') this.pc.restartIce()
    else this.enqueue(async () => await this.offer(true))
  }

  private enqueue (fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((err: unknown) => {
      this.init.log.debug({ peer: this.remote, err: err instanceof Error ? err.message : String(err) }, 'negotiation step failed')
      // the step may have failed because the engine closed the connection underneath
      this.onIceState()
    })
  }

  private async offer (iceRestart = false): Promise<void> {
    if (this.state === 'closed' || this.pc.signalingState !== 'stable') return
    try {
      this.makingOffer = true
      const offer = await this.pc.createOffer(iceRestart ? { iceRestart: true } : undefined)
      if (this.pc.signalingState !== 'stable') return
      await this.pc.setLocalDescription(offer)
      const local = this.pc.localDescription
      if (local !== null) this.init.send({ type: 'description', sid: this.sid, description: { type: local.type, sdp: local.sdp } })
    } finally {
      this.makingOffer = false
    }
  }

  private async onDescription (description: Description): Promise<void> {
    if (this.state === 'closed') return
    const pc = this.pc
    const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.answerPending)
    const collision = description.type === 'offer' && !readyForOffer
    this.ignoreOffer = !this.init.polite && collision
    if (this.ignoreOffer) { this.init.log.debug({ peer: this.remote }, 'glare: ignoring offer (impolite)'); return }
    if (collision) await pc.setLocalDescription({ type: 'rollback' })
    this.answerPending = description.type === 'answer'
    await pc.setRemoteDescription(description)
    this.answerPending = false
    const queued = this.pendingCandidates
    this.pendingCandidates = []
    for (const c of queued) await this.addCandidate(c)
    if (description.type === 'offer') {
      try {
        const answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
      } catch (err) {
        // The offer is applied and cannot be answered (seen on node-datachannel: the connection
        // fell back to stable underneath): nothing can complete it, so fail now and let the mesh
        // start a new session, instead of waiting for the connect timeout.
        if ((this.state as SessionState) === 'closed') return // closed meanwhile (narrowed before the awaits)
        this.fail('cannot answer the peer\'s offer: session failed', { signaling: pc.signalingState, err: err instanceof Error ? err.message : String(err) })
        return
      }
      const local = pc.localDescription
      if (local !== null) this.init.send({ type: 'description', sid: this.sid, description: { type: local.type, sdp: local.sdp } })
    }
  }

  private async onCandidate (c: Candidate | null): Promise<void> {
    if (c === null || c.candidate === '') return
    if (this.pc.remoteDescription === null) { if (this.pendingCandidates.length < 256) this.pendingCandidates.push(c); return }
    await this.addCandidate(c)
  }

  private async addCandidate (c: Candidate): Promise<void> {
    // Engines disagree on candidate shape (node-datachannel sends "a=candidate:" with a null index).
    const candidate = c.candidate.replace(/^a=/, '')
    const init: RTCIceCandidateInit = { candidate, sdpMid: c.sdpMid ?? '0', sdpMLineIndex: c.sdpMLineIndex ?? 0 }
    try {
      await this.pc.addIceCandidate(init)
    } catch (err) {
      if (!this.ignoreOffer) this.init.log.debug({ peer: this.remote, err: err instanceof Error ? err.message : String(err) }, 'candidate refused')
    }
  }

  private armConnectTimer (): void {
    clearTimeout(this.connectTimer)
    this.connectTimer = setTimeout(() => {
      if (this.state !== 'connected' && this.state !== 'closed') this.fail('no connection in time', { ice: this.pc.iceConnectionState })
    }, this.init.connectTimeoutMs)
  }

  private onIceState (): void {
    if (this.state === 'closed' || this.state === 'failed') return
    const ice = this.pc.iceConnectionState
    const conn = this.pc.connectionState
    // A connection we did not close is gone, or its DTLS handshake failed over a working ICE
    // path: neither comes back by waiting or by an ICE restart. libdatachannel closes the
    // connection itself when DTLS or ICE fails (by the time the event is read the state is
    // `closed`, never `failed`) — e.g. when its DTLS handshake completes before its own
    // setRemoteDescription has stored the peer's fingerprint (a race inside libdatachannel
    // 0.24.5 that a loaded machine hits). Fail now: the mesh starts a new session in a second.
    if (ice === 'closed' || conn === 'closed' || (conn === 'failed' && (ice === 'connected' || ice === 'completed'))) {
      this.fail('connection ended by the engine (DTLS or ICE failed): session failed', { ice, connection: conn })
      return
    }
    if (ice === 'connected' || ice === 'completed' || conn === 'connected') {
      clearTimeout(this.connectTimer)
      clearTimeout(this.graceTimer)
      this.graceTimer = undefined
      this.setState('connected')
      if (this.control.readyState === 'open') this.controlOpened()
      else this.armHandshakeTimer()
    } else if (ice === 'disconnected') {
      if (this.state === 'connected') this.setState('disconnected')
      if (this.graceTimer === undefined) {
        // without ICE restart a "restart" replaces the session (and resets its streams): give the path longer to come back
        const grace = (this.pc as { canRestartIce?: boolean }).canRestartIce === false ? Math.max(this.init.disconnectGraceMs, 15_000) : this.init.disconnectGraceMs
        this.graceTimer = setTimeout(() => { this.graceTimer = undefined; if (this.pc.iceConnectionState === 'disconnected') this.restartIce() }, grace)
      }
    } else if (ice === 'failed' || conn === 'failed') {
      if (this.state === 'connected') this.setState('disconnected')
      this.restartIce()
    }
  }

  private armHandshakeTimer (): void {
    if (this.handshakeTimer !== undefined) return
    this.handshakeTimer = setTimeout(() => {
      if (this.state === 'closed' || this.state === 'failed' || this.control.readyState === 'open') return
      this.fail('ICE connected but the DTLS/SCTP handshake did not complete in time: session failed', { ice: this.pc.iceConnectionState, connection: this.pc.connectionState })
    }, this.init.handshakeTimeoutMs)
  }

  /** Gives up on this session (the mesh replaces a failed one): timers off, one warning, state `failed`. */
  private fail (message: string, fields: Record<string, unknown>): void {
    clearTimeout(this.connectTimer)
    clearTimeout(this.graceTimer)
    clearTimeout(this.handshakeTimer)
    this.init.log.warn({ peer: this.remote, ...fields }, message)
    this.setState('failed')
  }

  private setState (s: SessionState): void {
    if (this.state === s) return
    this.state = s
    if (s !== 'connected') this.setLiveness(false)
    else if (this.control.readyState === 'open' && this.silentMs <= this.init.unresponsiveMs) this.setLiveness(true)
    this.onState?.(s)
  }

  /** Selected candidate pair, its kind and RTT, from getStats. */
  async path (): Promise<PathInfo> {
    if (this.state === 'closed') return { kind: 'none' }
    let report: RTCStatsReport
    try { report = await this.pc.getStats() } catch { return { kind: 'none' } }
    const byId = new Map<string, Record<string, unknown>>()
    report.forEach((s: Record<string, unknown>) => { if (typeof s.id === 'string') byId.set(s.id, s) })
    let pair: Record<string, unknown> | undefined
    for (const s of byId.values()) {
      if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') pair = byId.get(s.selectedCandidatePairId)
    }
    if (pair === undefined) {
      for (const s of byId.values()) {
        if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated === true || s.selected === true)) { pair = s; break }
      }
    }
    if (pair === undefined) return { kind: 'none' }
    const local = byId.get(String(pair.localCandidateId))
    const remote = byId.get(String(pair.remoteCandidateId))
    const describe = (c: Record<string, unknown> | undefined): string => c === undefined ? '?' : `${String(c.candidateType)} ${String(c.address ?? c.ip)}:${String(c.port)}${c.protocol !== undefined ? `/${String(c.protocol)}` : ''}`
    const relayed = local?.candidateType === 'relay' || remote?.candidateType === 'relay'
    const rtt = typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : undefined
    return { kind: relayed ? 'turn' : 'direct', pair: `${describe(local)} <-> ${describe(remote)}`, ...(rtt !== undefined ? { rttMs: rtt } : {}) }
  }

  close (): void {
    if (this.state === 'closed') return
    clearTimeout(this.connectTimer)
    clearTimeout(this.graceTimer)
    clearTimeout(this.handshakeTimer)
    clearInterval(this.pinger)
    this.setState('closed')
    try { this.control.close() } catch { /* closing */ }
    try { this.pc.close() } catch { /* closing */ }
  }
}
