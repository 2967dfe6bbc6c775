/**
 * The node-datachannel engine (libdatachannel: usrsctp, libjuice ICE), behind the standard
 * RTCPeerConnection surface the peer library uses. Written on the native API rather than the
 * package's polyfill, which cannot roll back an offer (perfect negotiation needs it), never
 * fires `negotiationneeded`, and packs TURN credentials into URLs (breaks REST usernames).
 *
 * What it does not do: TURN over TCP/TLS (libjuice), ICE restart (`canRestartIce` is false: the
 * session fails and the mesh replaces it). Candidates go out as the standard `candidate:…`
 * with sdpMLineIndex 0 (the native form is `a=candidate:…` with no index; @roamhq/wrtc refuses
 * that). Messages arrive as ArrayBuffer / string; `bufferedamountlow` fires.
 */
import ndc from 'node-datachannel'
import type { DataChannel as NativeChannel, IceServer as NativeIceServer, PeerConnection as NativePc, SctpSettings } from 'node-datachannel'
import { parseIceUrl } from '../../protocol/ice-url.ts'

/**
 * SCTP settings of every association in this process (usrsctp is global: they take effect
 * for associations created after the call). Defaults: see DEFAULT_SCTP and bench/RESULTS.md.
 */
const SCTP_KEYS = ['recvBufferSize', 'sendBufferSize', 'maxChunksOnQueue', 'initialCongestionWindow', 'congestionControlModule', 'delayedSackTime'] as const

const SCTP_BUFFER = Number(process.env.CAUSEWAY_SCTP_BUFFER_BYTES ?? '') > 0 ? Number(process.env.CAUSEWAY_SCTP_BUFFER_BYTES) : undefined
/**
 * usrsctp settings: a 4 MiB receive window, a 1 MiB send buffer. The send buffer is what an
 * association has committed to deliver: usrsctp sends every byte queued on a stream before it
 * resets it, so after a connection is cut its queued bytes still go out ahead of every other
 * stream's: in one WAN matrix, round trips right after 8 cut downloads went from 3.7 s to 1.6 s
 * (p50, 40 ms / 0.2 % loss) and from 4.3 s to 24 ms (20 ms / 1 % loss) against 4 MiB. It also
 * caps one association's bytes in flight (in flight + unsent <= SO_SNDBUF: ~10.5 MiB/s at 80 ms),
 * but larger buffers were no faster through the tunnel: slow start overruns the receiver's UDP socket
 * (libjuice's fixed 1 MiB) and each loss halves a window that regrows by one MTU per RTT
 * (bench/RESULTS.md, sessions 7-8). Env for measurements (bench/engine-wan.ts): CAUSEWAY_SCTP_BUFFER_BYTES (both
 * buffers), CAUSEWAY_SCTP_SETTINGS (JSON object of node-datachannel's SctpSettings, merged over
 * the defaults).
 */
export const DEFAULT_SCTP: SctpSettings = { sendBufferSize: SCTP_BUFFER ?? 1 << 20, recvBufferSize: SCTP_BUFFER ?? 4 << 20, ...sctpFromEnv() }

function sctpFromEnv (): SctpSettings {
  const raw = process.env.CAUSEWAY_SCTP_SETTINGS
  if (raw === undefined || raw === '') return {}
  const parsed: unknown = JSON.parse(raw)
  if (typeof parsed !== 'object' || parsed === null) throw new Error('CAUSEWAY_SCTP_SETTINGS must be a JSON object')
  const out: SctpSettings = {}
  for (const [k, v] of Object.entries(parsed)) {
    if (!(SCTP_KEYS as readonly string[]).includes(k) || typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(`CAUSEWAY_SCTP_SETTINGS: ${k} must be one of ${SCTP_KEYS.join(', ')} with a non-negative integer`)
    out[k as typeof SCTP_KEYS[number]] = v
  }
  return out
}

let sctpApplied: SctpSettings | undefined

export function configureSctp (settings: SctpSettings): void {
  ndc.setSctpSettings(settings)
  sctpApplied = settings
}

export function sctpSettings (): SctpSettings { return sctpApplied ?? DEFAULT_SCTP }

export interface DcConfig extends RTCConfiguration {
  /** Local address to gather host candidates on (libjuice gathers no loopback candidates without it). */
  bindAddress?: string
  /** Largest message, bytes. Default 256 KiB. */
  maxMessageSize?: number
}

/** RTCIceServer (urls + username/credential) -> native servers; TURN over TCP/TLS is dropped (libjuice has none). */
export function nativeIceServers (servers: RTCIceServer[]): NativeIceServer[] {
  const out: NativeIceServer[] = []
  for (const s of servers) {
    for (const url of Array.isArray(s.urls) ? s.urls : [s.urls]) {
      const u = parseIceUrl(url)
      // libjuice has no TURN over TCP or TLS
      if (u === null || u.transport !== 'udp') continue
      if (u.scheme === 'stun') out.push({ hostname: u.host, port: u.port })
      else {
        out.push({
          hostname: u.host,
          port: u.port,
          relayType: 'TurnUdp',
          ...(s.username !== undefined ? { username: s.username } : {}),
          ...(typeof s.credential === 'string' ? { password: s.credential } : {}),
        })
      }
    }
  }
  return out
}

type Handler<E extends Event> = ((ev: E) => void) | null

/** Dispatches to listeners and to the `on<type>` property, as the standard event targets do. */
function emit (target: EventTarget, ev: Event): void {
  const prop = (target as unknown as Record<string, unknown>)[`on${ev.type}`]
  target.dispatchEvent(ev)
  if (typeof prop === 'function') (prop as (e: Event) => void).call(target, ev)
}

class DcDataChannel extends EventTarget {
  readonly label: string
  readonly ordered: boolean
  readonly negotiated: boolean
  readonly protocol = ''
  readonly maxPacketLifeTime: number | null
  readonly maxRetransmits: number | null
  binaryType: BinaryType = 'arraybuffer'
  /**
   * libdatachannel keeps one FIFO send queue per association for whatever usrsctp's send buffer
   * does not take, shared by all channels: a stream's writer should keep at most this much
   * there (agent/tunnel/pipe.ts), or it delays every other channel's messages.
   */
  readonly queueHighWater = 64 << 10
  readyState: RTCDataChannelState
  onopen: Handler<Event> = null
  onclose: Handler<Event> = null
  onclosing: Handler<Event> = null
  onerror: Handler<Event> = null
  onmessage: Handler<MessageEvent> = null
  onbufferedamountlow: Handler<Event> = null
  private threshold = 0
  private readonly native: NativeChannel

  constructor (native: NativeChannel, init: { ordered?: boolean, negotiated?: boolean, maxRetransmits?: number, maxPacketLifeTime?: number } = {}) {
    super()
    this.native = native
    this.label = native.getLabel()
    this.ordered = init.ordered ?? true
    this.negotiated = init.negotiated ?? false
    this.maxRetransmits = init.maxRetransmits ?? null
    this.maxPacketLifeTime = init.maxPacketLifeTime ?? null
    this.readyState = native.isOpen() ? 'open' : 'connecting'
    native.onOpen(() => {
      if (this.readyState !== 'connecting') return
      this.readyState = 'open'
      this.emit(new Event('open'))
    })
    native.onClosed(() => this.closed())
    native.onError((msg) => this.emit(Object.assign(new Event('error'), { message: msg })))
    native.onBufferedAmountLow(() => this.emit(new Event('bufferedamountlow')))
    native.onMessage((msg) => {
      if (this.readyState === 'closed') return
      let data: string | ArrayBuffer
      if (typeof msg === 'string') data = msg
      else if (msg instanceof ArrayBuffer) data = msg
      else data = msg.byteOffset === 0 && msg.byteLength === msg.buffer.byteLength ? msg.buffer as ArrayBuffer : msg.buffer.slice(msg.byteOffset, msg.byteOffset + msg.byteLength) as ArrayBuffer
      this.emit(new MessageEvent('message', { data }))
    })
  }

  private emit (ev: Event): void { emit(this, ev) }

  /** The SCTP stream id; null until assigned (libdatachannel assigns it once DTLS decided the roles, and says 65535 before). */
  get id (): number | null {
    try { const id = this.native.getId(); return id === 65535 ? null : id } catch { return null }
  }

  private closed (): void {
    if (this.readyState === 'closed') return
    this.readyState = 'closed'
    this.emit(new Event('close'))
  }

  /**
   * Its connection is gone. libdatachannel closes only the channels it assigned a stream: one
   * created before SCTP was up (id 65535) never hears of it, and a stream waiting for its
   * answer on it would wait forever (seen: the quickstart's first request hung 10 s).
   */
  connectionGone (): void {
    try { this.native.close() } catch { /* closed */ }
    this.closed()
  }

  get bufferedAmount (): number {
    if (this.readyState === 'closed') return 0
    try { return this.native.bufferedAmount() } catch { return 0 }
  }

  get bufferedAmountLowThreshold (): number { return this.threshold }
  set bufferedAmountLowThreshold (n: number) {
    this.threshold = n
    try { this.native.setBufferedAmountLowThreshold(n) } catch { /* closed */ }
  }

  send (data: string | ArrayBuffer | ArrayBufferView | Blob): void {
    if (this.readyState !== 'open') throw new DOMException('data channel is not open', 'InvalidStateError')
    if (typeof data === 'string') this.native.sendMessage(data)
    else if (data instanceof ArrayBuffer) this.native.sendMessageBinary(new Uint8Array(data))
    else if (ArrayBuffer.isView(data)) this.native.sendMessageBinary(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    else throw new TypeError('Blob is not supported')
  }

  close (): void {
    if (this.readyState === 'closed' || this.readyState === 'closing') return
    this.readyState = 'closing'
    try { this.native.close() } catch { this.closed() }
  }
}

/** The subset of RTCPeerConnection that peer/peer-session.ts, tunnels and benches use. */
export class DcPeerConnection extends EventTarget {
  /** libdatachannel cannot restart ICE: PeerSession fails the session instead (the mesh replaces it). */
  readonly canRestartIce = false
  onnegotiationneeded: Handler<Event> = null
  onicecandidate: Handler<RTCPeerConnectionIceEvent> = null
  oniceconnectionstatechange: Handler<Event> = null
  onconnectionstatechange: Handler<Event> = null
  onsignalingstatechange: Handler<Event> = null
  ondatachannel: Handler<RTCDataChannelEvent> = null
  private readonly native: NativePc
  private readonly waiting: Array<{ type: string, resolve: (d: RTCSessionDescriptionInit) => void }> = []
  private negotiationAnnounced = false
  private isClosed = false
  /** An offer was created (libdatachannel applies it at once) but not yet "set": report stable meanwhile, as the standard does. */
  private offerUnset = false
  /** Channels not closed yet: closed here when the connection goes (see DcDataChannel.connectionGone). */
  private readonly channels = new Set<DcDataChannel>()

  constructor (config: DcConfig = {}) {
    super()
    if (sctpApplied === undefined) configureSctp(DEFAULT_SCTP)
    this.native = new ndc.PeerConnection(`pc-${Math.random().toString(36).slice(2, 9)}`, {
      iceServers: nativeIceServers(config.iceServers ?? []),
      disableAutoNegotiation: true,
      maxMessageSize: config.maxMessageSize ?? 256 << 10,
      ...(config.bindAddress !== undefined ? { bindAddress: config.bindAddress } : {}),
      ...(config.iceTransportPolicy === 'relay' ? { iceTransportPolicy: 'relay' as const } : {}),
    })
    const n = this.native
    n.onLocalDescription((sdp, type) => {
      const i = this.waiting.findIndex(w => w.type === type)
      if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve({ type: type as RTCSdpType, sdp })
    })
    n.onLocalCandidate((candidate, mid) => {
      const c = { candidate: candidate.replace(/^a=/, ''), sdpMid: mid, sdpMLineIndex: 0, usernameFragment: null }
      this.emit(Object.assign(new Event('icecandidate'), { candidate: c }) as RTCPeerConnectionIceEvent)
    })
    n.onGatheringStateChange((state) => {
      if (state === 'complete') this.emit(Object.assign(new Event('icecandidate'), { candidate: null }) as RTCPeerConnectionIceEvent)
    })
    n.onStateChange((state) => {
      if (state === 'closed' || state === 'failed') this.dropChannels()
      this.emit(new Event('connectionstatechange'))
    })
    n.onIceStateChange(() => this.emit(new Event('iceconnectionstatechange')))
    n.onSignalingStateChange(() => this.emit(new Event('signalingstatechange')))
    n.onDataChannel((ch) => {
      const dc = this.track(new DcDataChannel(ch))
      this.emit(Object.assign(new Event('datachannel'), { channel: dc }) as unknown as RTCDataChannelEvent)
    })
  }

  private emit (ev: Event): void { emit(this, ev) }

  private track (dc: DcDataChannel): DcDataChannel {
    this.channels.add(dc)
    dc.addEventListener('close', () => this.channels.delete(dc), { once: true })
    return dc
  }

  private dropChannels (): void {
    for (const dc of [...this.channels]) dc.connectionGone()
  }

  get signalingState (): RTCSignalingState {
    if (this.isClosed) return 'closed'
    const st = this.native.signalingState()
    return this.offerUnset && st === 'have-local-offer' ? 'stable' : st
  }
  get iceConnectionState (): RTCIceConnectionState { return this.isClosed ? 'closed' : this.native.iceState() }
  get connectionState (): RTCPeerConnectionState { return this.isClosed ? 'closed' : this.native.state() }
  get localDescription (): RTCSessionDescriptionInit | null { return this.isClosed ? null : this.describe(this.native.localDescription()) }
  get remoteDescription (): RTCSessionDescriptionInit | null { return this.isClosed ? null : this.describe(this.native.remoteDescription()) }

  private describe (d: { type: string, sdp: string } | null): RTCSessionDescriptionInit | null {
    return d === null || d.sdp === '' ? null : { type: d.type as RTCSdpType, sdp: d.sdp }
  }

  createDataChannel (label: string, init: RTCDataChannelInit = {}): RTCDataChannel {
    const ch = this.native.createDataChannel(label, {
      unordered: init.ordered === false,
      ...(init.maxRetransmits !== undefined ? { maxRetransmits: init.maxRetransmits } : {}),
      ...(init.maxPacketLifeTime !== undefined ? { maxPacketLifeTime: init.maxPacketLifeTime } : {}),
      ...(init.negotiated === true ? { negotiated: true, id: init.id ?? 0 } : {}),
    })
    if (!this.negotiationAnnounced) {
      this.negotiationAnnounced = true
      queueMicrotask(() => { if (!this.isClosed) this.emit(new Event('negotiationneeded')) })
    }
    return this.track(new DcDataChannel(ch, init)) as unknown as RTCDataChannel
  }

  private async localDescriptionOf (type: 'offer' | 'answer'): Promise<RTCSessionDescriptionInit> {
    if (this.isClosed) throw new DOMException('the peer connection is closed', 'InvalidStateError')
    // libdatachannel throws a C++ exception for a description type the signaling state does not
    // allow, and node-datachannel 0.33 does not catch it in setLocalDescription: the process
    // would abort ("terminate called after throwing an instance of 'std::logic_error'").
    const st = this.native.signalingState()
    if (type === 'offer' && st === 'have-local-offer') {
      const current = this.describe(this.native.localDescription())
      if (current?.type === 'offer') return current
    }
    if (type === 'offer' ? st !== 'stable' : st !== 'have-remote-offer' && st !== 'have-local-pranswer') {
      throw new DOMException(`cannot make a local ${type} in signaling state ${st}`, 'InvalidStateError')
    }
    const got = new Promise<RTCSessionDescriptionInit>((resolve, reject) => {
      const w = { type, resolve: (d: RTCSessionDescriptionInit) => { clearTimeout(t); resolve(d) } }
      // on timeout the waiter goes too: a late description must not resolve it instead of a newer one
      const t = setTimeout(() => { const i = this.waiting.indexOf(w); if (i >= 0) this.waiting.splice(i, 1); reject(new Error(`no local ${type}`)) }, 10_000)
      this.waiting.push(w)
    })
    this.native.setLocalDescription(type)
    return await got
  }

  /** Creates and applies the offer (libdatachannel has no separate create step). */
  async createOffer (): Promise<RTCSessionDescriptionInit> {
    const d = await this.localDescriptionOf('offer')
    this.offerUnset = true
    return d
  }

  async createAnswer (): Promise<RTCSessionDescriptionInit> {
    return await this.localDescriptionOf('answer')
  }

  async setLocalDescription (d?: RTCLocalSessionDescriptionInit): Promise<void> {
    const unset = this.offerUnset
    this.offerUnset = false
    if (d?.type === 'rollback') { this.native.setLocalDescription('rollback'); return }
    if (d?.type === 'offer' && unset) return
    // offers and answers were applied when created
    const current = this.native.localDescription()
    if (d?.type !== undefined && current?.type !== d.type) await this.localDescriptionOf(d.type as 'offer' | 'answer')
  }

  async setRemoteDescription (d: RTCSessionDescriptionInit): Promise<void> {
    if (d.sdp === undefined || d.type === undefined) throw new DOMException('remote description needs type and sdp', 'InvalidStateError')
    this.native.setRemoteDescription(d.sdp, d.type)
  }

  async addIceCandidate (c?: RTCIceCandidateInit | null): Promise<void> {
    if (c === undefined || c === null || c.candidate === undefined || c.candidate === '') return
    if (this.native.remoteDescription() === null) throw new DOMException('no remote description', 'InvalidStateError')
    this.native.addRemoteCandidate(c.candidate.replace(/^a=/, ''), c.sdpMid ?? '0')
  }

  /** A standard-shaped report: transport -> selected candidate pair -> local/remote candidates. */
  async getStats (): Promise<RTCStatsReport> {
    const report = new Map<string, Record<string, unknown>>()
    if (this.isClosed) return report as unknown as RTCStatsReport
    const pair = this.native.getSelectedCandidatePair()
    if (pair === null) return report as unknown as RTCStatsReport
    const cand = (id: string, c: { address: string, port: number, type: string, transportType: string }): void => {
      report.set(id, { id, type: id === 'L' ? 'local-candidate' : 'remote-candidate', candidateType: c.type, address: c.address, port: c.port, protocol: c.transportType.toLowerCase() })
    }
    cand('L', pair.local)
    cand('R', pair.remote)
    const rtt = this.native.rtt()
    report.set('P', { id: 'P', type: 'candidate-pair', state: 'succeeded', nominated: true, localCandidateId: 'L', remoteCandidateId: 'R', ...(rtt >= 0 ? { currentRoundTripTime: rtt / 1000 } : {}), bytesSent: this.native.bytesSent(), bytesReceived: this.native.bytesReceived() })
    report.set('T', { id: 'T', type: 'transport', selectedCandidatePairId: 'P' })
    return report as unknown as RTCStatsReport
  }

  close (): void {
    if (this.isClosed) return
    this.isClosed = true
    try { this.native.close() } catch { /* closed */ }
    this.dropChannels()
  }
}
