/**
 * Streams over peer connections: the acceptor side (a remote peer opened `tcp:<share>`: check
 * the share and the peer's right to it, dial only the share's declared target, answer `ok` or
 * `err`) and the initiator side (a local TCP connection becomes a new channel to a peer).
 * One data channel per TCP connection: SCTP streams give each its own ordering and flow, and
 * @roamhq/wrtc opens one in well under a millisecond on a live association. Between agents
 * that both stripe (hello cap `stripe/1`), the acceptor answers `ok {v: 2, id}` and a bulk
 * stream's bytes may spread over the pair's lanes (agent/tunnel/lanes.ts).
 */
import { connect, type Socket } from 'node:net'
import { CausewayError, type ErrorCode } from '../../protocol/errors.ts'
import { LANE_LABEL, parseJson, STREAM_LABEL_PREFIX, STRIPE_CAP, StreamControl } from '../../protocol/peer.ts'
import { UDP_LABEL_PREFIX } from '../../protocol/udp.ts'
import { onDrain, whenOpen } from '../../peer/channel.ts'
import type { RemotePeer } from '../../peer/mesh.ts'
import type { LogLike, PeerSession } from '../../peer/peer-session.ts'
import { StreamPipe, WindowBudget, type PipeOptions, type StripeLink } from './pipe.ts'
import type { AssocQueue } from './assoc-queue.ts'
import type { PeerLanes } from './lanes.ts'
import { askerOf, type Asker, type ShareRegistry, type ShareSpec } from './shares.ts'
import { socketPair, type PairEnd } from './socket-pair.ts'
import type { Associations } from './associations.ts'

/** A stream to a share served in this process: connected at once, nothing listens anywhere. */
function inProcess (serve: (end: PairEnd, from: Asker) => void, from: Asker): Socket {
  const [socket, end] = socketPair()
  process.nextTick(() => {
    serve(end, from)
    socket.emit('connect')
  })
  return socket
}

/** How long a refused stream's channel stays open after its answer left the buffer, ms. */
const REFUSED_CLOSE_GRACE_MS = 100

export interface TunnelOptions {
  /** Concurrent streams per peer, each direction counted. Default 500 (an SCTP association has 1024 stream ids, split by DTLS role). */
  maxStreamsPerPeer?: number
  /** Time to dial a share's target, ms. Default 10000. */
  dialTimeoutMs?: number
  /** Time for a stream's channel to open, ms. Default 15000. */
  openTimeoutMs?: number
  /**
   * Time for the remote to answer a stream open once asked, ms. Default 120000: the answer
   * queues behind the data other streams already handed to the same association (up to each
   * stream's window), which under load took more than 30 s with 200 busy streams.
   */
  answerTimeoutMs?: number
  /**
   * Receive memory one peer's streams may hold beyond each stream's 1 MiB initial window (the
   * sum of their window growth), bytes. Default 64 MiB. Per-peer bound on buffered receive
   * bytes: maxStreamsPerPeer x 1 MiB + this.
   */
  peerWindowBudget?: number
  /**
   * Stripe bulk streams over the pair's associations when the peer can (hello cap
   * `stripe/1`). Default true; off: every stream is a version-1 stream on one channel.
   */
  stripe?: boolean
  pipe?: PipeOptions
}

/** Where a stream channel runs: a WebRTC association of the session, or a relayed libp2p stream (never striped). */
export type StreamPath = 'webrtc' | 'relay'

/**
 * The seam between tunnels and the path they run on: opens one stream channel labelled
 * `tcp:<share>` to the remote peer (a WebRTC data channel, or a relayed libp2p stream behind a
 * data-channel-like adapter, `agent/relay-path/stream-channel.ts`). Throws CausewayError.
 */
export interface ChannelOpener {
  /** `init` (default ordered, reliable) sets the WebRTC channel's delivery; a relayed stream is always ordered and reliable. */
  open: (label: string, init?: RTCDataChannelInit) => Promise<RTCDataChannel>
  /** Default 'relay' (no striping). */
  path?: StreamPath
}

/** Opens data channels on a connected WebRTC session (spread over its associations when given). */
export function sessionOpener (peer: RemotePeer, session: PeerSession, assocs?: Associations): ChannelOpener {
  return {
    path: 'webrtc',
    open: async (label, init = { ordered: true }) => {
      if (session.state !== 'connected') throw new CausewayError('PEER_UNAVAILABLE', `no connection to ${peer.name}`)
      try {
        return assocs !== undefined ? assocs.createDataChannel(peer, session, label, init) : session.pc.createDataChannel(label, init)
      } catch (err) {
        throw new CausewayError('TOO_MANY_STREAMS', `cannot open another channel to ${peer.name}: ${err instanceof Error ? err.message : String(err)}`)
      }
    },
  }
}

/**
 * One stream (or UDP channel) a remote peer opened to a share of ours, when it ends or is
 * refused: what the agent's audit log and per-share metrics record (agent/audit.ts).
 */
export interface StreamRecord {
  peer: RemotePeer
  /** The share it named (as asked: may be no share of ours when refused). */
  share: string
  protocol: 'tcp' | 'udp'
  result: 'accepted' | 'refused'
  /** The refusal's or reset's code. */
  code?: string
  /** Bytes from the peer to the share, and back (TCP streams; UDP bytes are in the udp metrics). */
  bytesIn: number
  bytesOut: number
  durationMs: number
  /** How it ended: done, reset, or the refusal. */
  reason: string
}

export interface PeerCounters {
  streams: number
  bytesIn: number
  bytesOut: number
  opened: number
  refused: number
  budget: WindowBudget
  /** Goodput (tunnelled bytes/s) over the last sampling interval, per direction. */
  goodputIn: number
  goodputOut: number
  sampled: { at: number, bytesIn: number, bytesOut: number }
}

export class Tunnels {
  private readonly shares: ShareRegistry
  private readonly opts: Required<Omit<TunnelOptions, 'pipe'>> & { pipe: PipeOptions }
  private readonly log: LogLike
  private readonly counters = new Map<string, PeerCounters>()
  private readonly live = new Set<StreamPipe>()
  /** Called (and cleared) when the last live stream ends. */
  private idleWaiters: Array<() => void> = []
  /** Serves accepted `udp:<share>` channels (after the share and grant checks); unset: refused. */
  udp?: (peer: RemotePeer, dc: RTCDataChannel, share: ShareSpec) => void
  /** Called for every message a stream receives from `peer` (a sign of life: keepalive). */
  activity?: (peer: RemotePeer) => void
  /** Told of every stream a peer opened to us, accepted (when it ends) or refused; unset: refusals are logged as warnings. */
  onStream?: (record: StreamRecord) => void
  /** The lanes of `peer`'s current session (striping); unset or undefined: streams are not striped. */
  lanesOf?: (peer: RemotePeer) => PeerLanes | undefined
  /** The association queue a WebRTC stream channel of `peer` counts in (the per-association send budget). */
  queueOf?: (peer: RemotePeer, dc: RTCDataChannel) => AssocQueue | undefined
  /** Totals across peers, for metrics: `striped` streams that sent over lanes, `reordered` chunks held out of order. */
  readonly totals = { bytesIn: 0, bytesOut: 0, opened: 0, refused: 0, flowViolations: 0, maxWindow: 0, striped: 0, reordered: 0 }

  constructor (shares: ShareRegistry, opts: TunnelOptions, log: LogLike) {
    this.shares = shares
    this.opts = { maxStreamsPerPeer: 500, dialTimeoutMs: 10_000, openTimeoutMs: 15_000, answerTimeoutMs: 120_000, peerWindowBudget: 64 << 20, stripe: true, ...opts, pipe: opts.pipe ?? {} }
    this.log = log
  }

  counter (peer: string): PeerCounters {
    let c = this.counters.get(peer)
    if (c === undefined) {
      c = { streams: 0, bytesIn: 0, bytesOut: 0, opened: 0, refused: 0, budget: new WindowBudget(this.opts.peerWindowBudget), goodputIn: 0, goodputOut: 0, sampled: { at: performance.now(), bytesIn: 0, bytesOut: 0 } }
      this.counters.set(peer, c)
    }
    return c
  }

  forget (peer: string): void { this.counters.delete(peer); this.maybeIdle() }

  /** Measures each peer's goodput since the previous sample, at most once a second (the agent calls it every 2 s, and on events). */
  sampleGoodput (): void {
    const now = performance.now()
    for (const c of this.counters.values()) {
      const dt = (now - c.sampled.at) / 1000
      if (dt < 1) continue
      c.goodputIn = Math.round((c.bytesIn - c.sampled.bytesIn) / dt)
      c.goodputOut = Math.round((c.bytesOut - c.sampled.bytesOut) / dt)
      c.sampled = { at: now, bytesIn: c.bytesIn, bytesOut: c.bytesOut }
    }
  }

  /** Accepts streams the remote peer opens on this session. */
  attach (peer: RemotePeer, session: PeerSession): void {
    session.onDataChannel = (dc) => this.accept(peer, dc)
  }

  private refuse (dc: RTCDataChannel, peer: RemotePeer, code: ErrorCode, message: string, started = performance.now()): void {
    this.counter(peer.id).refused++
    this.totals.refused++
    const udp = dc.label.startsWith(UDP_LABEL_PREFIX)
    if (this.onStream !== undefined) this.onStream({ peer, share: dc.label.slice(udp ? UDP_LABEL_PREFIX.length : STREAM_LABEL_PREFIX.length).slice(0, 64), protocol: udp ? 'udp' : 'tcp', result: 'refused', code, bytesIn: 0, bytesOut: 0, durationMs: performance.now() - started, reason: message })
    else this.log.warn({ peer: peer.name, label: dc.label.slice(0, 80), code }, 'stream refused')
    const send = (): void => {
      try { dc.send(JSON.stringify({ t: 'err', code, message })) } catch { /* closed */ }
      // Our opener closes the channel once it read the answer. Otherwise we close it, once the
      // answer left the channel's buffer plus a grace period: node-datachannel keeps one queue
      // per association below bufferedAmount, and closing at once reset the stream before the
      // answer went out (semantics test: STREAM_RESET instead of SHARE_NOT_FOUND).
      let t: ReturnType<typeof setTimeout> | undefined
      const cancel = onDrain(dc, 0, () => { t = setTimeout(() => { try { dc.close() } catch { /* closed */ } }, REFUSED_CLOSE_GRACE_MS) })
      dc.addEventListener('close', () => { cancel(); clearTimeout(t) })
    }
    if (dc.readyState === 'open') send(); else whenOpen(dc).then(send, () => {})
  }

  /** Whether streams with `peer` on `path` are version 2 (both stripe). */
  private stripes (peer: RemotePeer, path: StreamPath): boolean {
    return this.opts.stripe && path === 'webrtc' && peer.role === 'agent' && peer.caps?.includes(STRIPE_CAP) === true
  }

  /** Accepts one stream channel the remote opened (WebRTC data channel or relayed stream). */
  accept (peer: RemotePeer, dc: RTCDataChannel, path: StreamPath = 'webrtc'): void {
    if (dc.label === LANE_LABEL) {
      const lanes = this.stripes(peer, path) ? this.lanesOf?.(peer) : undefined
      if (lanes === undefined) { this.refuse(dc, peer, 'BAD_MESSAGE', 'unknown channel'); return }
      lanes.incoming(dc)
      return
    }
    const udp = dc.label.startsWith(UDP_LABEL_PREFIX)
    if (!dc.label.startsWith(STREAM_LABEL_PREFIX) && !udp) { this.refuse(dc, peer, 'BAD_MESSAGE', 'unknown channel'); return }
    const name = dc.label.slice(udp ? UDP_LABEL_PREFIX.length : STREAM_LABEL_PREFIX.length)
    const share = this.shares.get(name)
    const asker = askerOf(peer)
    if (share === undefined) { this.refuse(dc, peer, 'SHARE_NOT_FOUND', `no share named "${name.slice(0, 64)}"`); return }
    if (!this.shares.allowed(share, asker)) { this.refuse(dc, peer, 'SHARE_FORBIDDEN', `share "${name}" is not granted to ${peer.name}`); return }
    if (udp !== (share.protocol === 'udp')) { this.refuse(dc, peer, 'PROTOCOL_MISMATCH', `share "${name}" is ${udp ? 'not a UDP share' : 'a UDP share: connect with protocol=udp'}`); return }
    if (udp) {
      if (this.udp === undefined) { this.refuse(dc, peer, 'SHARE_NOT_FOUND', 'UDP shares are not served here'); return }
      this.udp(peer, dc, share)
      const opened = performance.now()
      dc.addEventListener('close', () => { this.onStream?.({ peer, share: name, protocol: 'udp', result: 'accepted', bytesIn: 0, bytesOut: 0, durationMs: performance.now() - opened, reason: 'closed' }) })
      return
    }
    const c = this.counter(peer.id)
    if (this.closing) { this.refuse(dc, peer, 'SHUTTING_DOWN', 'this agent is shutting down'); return }
    if (c.streams >= this.opts.maxStreamsPerPeer) { this.refuse(dc, peer, 'TOO_MANY_STREAMS', `at most ${this.opts.maxStreamsPerPeer} streams per peer`); return }
    c.streams++
    this.log.debug({ peer: peer.name, share: name, id: dc.id, state: dc.readyState }, 'stream announced by the peer')
    let released = false
    const release = (): void => { if (!released) { released = true; c.streams--; this.maybeIdle() } }
    // Bytes must not arrive before `ok`; anything else is a protocol error.
    dc.onmessage = () => { release(); try { dc.close() } catch { /* closed */ } }
    dc.onclose = () => { release(); socket.resetAndDestroy() }
    const started = performance.now()
    const socket = share.serve !== undefined ? inProcess(share.serve, asker) : connect({ host: share.host, port: share.port, allowHalfOpen: true })
    socket.setNoDelay(true)
    socket.pause()
    const timer = setTimeout(() => socket.destroy(new Error('dial timeout')), this.opts.dialTimeoutMs)
    let connected = false
    socket.once('connect', () => {
      connected = true
      clearTimeout(timer)
      // The announcing side may see the channel open before we do: wait for it here.
      whenOpen(dc, undefined, this.opts.openTimeoutMs).then(() => {
        c.opened++
        this.totals.opened++
        const lanes = this.stripes(peer, path) ? this.lanesOf?.(peer) : undefined
        const stripe: StripeLink | undefined = lanes !== undefined ? { id: lanes.allocate(), role: 'acceptor', lanes } : undefined
        dc.send(stripe !== undefined ? `{"t":"ok","v":2,"id":${stripe.id}}` : '{"t":"ok"}')
        this.run(peer, socket, dc, release, [], { share: name, started }, stripe, path)
      }).catch((err: unknown) => {
        // tell the opener instead of leaving it waiting for an answer
        release()
        socket.resetAndDestroy()
        try { dc.close() } catch { /* closed */ }
        this.log.warn({ peer: peer.name, share: name, state: dc.readyState, err: err instanceof Error ? err.message : String(err) }, 'stream channel did not open')
        this.onStream?.({ peer, share: name, protocol: 'tcp', result: 'accepted', code: 'STREAM_RESET', bytesIn: 0, bytesOut: 0, durationMs: performance.now() - started, reason: 'channel did not open' })
      })
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      if (!connected) {
        release()
        this.refuse(dc, peer, 'TARGET_UNREACHABLE', `could not reach the target of "${name}"`, started)
        this.log.warn({ share: name, err: err.message }, 'share target unreachable')
      }
    })
  }

  /** Pipes a stream; `accepted` (streams the peer opened to our shares) makes it a StreamRecord when it ends. */
  private run (peer: RemotePeer, socket: Socket, dc: RTCDataChannel, release: () => void, early: readonly unknown[], accepted: { share: string, started: number } | undefined, stripe: StripeLink | undefined, path: StreamPath): void {
    const c = this.counter(peer.id)
    const own = { in: 0, out: 0 }
    const queue = path === 'webrtc' ? this.queueOf?.(peer, dc) : undefined
    const pipe = new StreamPipe(socket, dc, this.opts.pipe, {
      onBytes: (dir, n) => {
        own[dir] += n
        if (dir === 'in') { c.bytesIn += n; this.totals.bytesIn += n } else { c.bytesOut += n; this.totals.bytesOut += n }
      },
      onClose: (reason, code) => {
        if (accepted !== undefined) this.onStream?.({ peer, share: accepted.share, protocol: 'tcp', result: 'accepted', ...(code !== undefined ? { code } : {}), bytesIn: own.in, bytesOut: own.out, durationMs: performance.now() - accepted.started, reason })
        release()
        this.live.delete(pipe)
        if (pipe.striped) this.totals.striped++
        this.totals.maxWindow = Math.max(this.totals.maxWindow, pipe.receiveWindow)
        if (code === 'FLOW_CONTROL_VIOLATION') {
          this.totals.flowViolations++
          this.log.warn({ peer: peer.name, label: dc.label.slice(0, 80), code }, 'stream reset: the peer sent past its credit')
        } else if (reason !== 'done') this.log.debug({ peer: peer.name, label: dc.label, reason, code, ...pipe.counters }, 'stream reset')
      },
      rttMs: () => peer.session?.rttMs,
      budget: c.budget,
      onReorder: () => { this.totals.reordered++ },
      ...(stripe !== undefined ? { stripe } : {}),
      ...(queue !== undefined ? { queue } : {}),
    })
    this.live.add(pipe)
    const activity = this.activity
    if (activity !== undefined) dc.addEventListener('message', () => activity(peer))
    pipe.start(early)
  }

  /**
   * Opens a stream to `share` on `peer` and pipes `socket` through it. Resolves once the remote
   * accepted; rejects with CausewayError (the remote's code) when it refused. `abandon` aborting
   * before the answer (the peer stopped answering) rejects with STREAM_RESET: nothing of the
   * socket was read yet, so the caller may open it elsewhere.
   */
  async open (peer: RemotePeer, opener: ChannelOpener, share: string, socket: Socket, abandon?: AbortSignal): Promise<void> {
    const c = this.counter(peer.id)
    if (c.streams >= this.opts.maxStreamsPerPeer) throw new CausewayError('TOO_MANY_STREAMS', `at most ${this.opts.maxStreamsPerPeer} streams per peer`)
    c.streams++
    let released = false
    const release = (): void => { if (!released) { released = true; c.streams--; this.maybeIdle() } }
    let dc: RTCDataChannel
    try {
      dc = await opener.open(`${STREAM_LABEL_PREFIX}${share}`)
    } catch (err) {
      release()
      throw err instanceof CausewayError ? err : new CausewayError('PEER_UNAVAILABLE', `cannot open a stream to ${peer.name}: ${err instanceof Error ? err.message : String(err)}`)
    }
    dc.binaryType = 'arraybuffer'
    this.log.debug({ peer: peer.name, share, id: dc.id, state: dc.readyState }, 'stream opening')
    const early: unknown[] = []
    let stripe: StripeLink | undefined
    try {
      // The answer handler goes on before waiting for `open`: an engine may deliver the
      // acceptor's first message before the channel's own open event.
      let abandoned: (() => void) | undefined
      const answered = new Promise<StreamControl>((resolve, reject) => {
        const t = setTimeout(() => reject(new CausewayError('PEER_UNAVAILABLE', 'no answer to stream open')), this.opts.answerTimeoutMs)
        let first = true
        dc.onmessage = (ev: MessageEvent) => {
          // The acceptor starts sending right after `ok`, and an engine may deliver those
          // messages before this promise's continuation runs (wrtc dispatches on nextTick):
          // keep them for the pipe, in order, bounded by the credit the pipe enforces.
          if (!first) { early.push(ev.data); return }
          first = false
          clearTimeout(t)
          const ctl = typeof ev.data === 'string' ? parseJson(StreamControl, ev.data) : null
          if (ctl === null) reject(new CausewayError('BAD_MESSAGE', 'unexpected first message on stream')); else resolve(ctl)
        }
        dc.onclose = () => { clearTimeout(t); reject(new CausewayError('STREAM_RESET', 'stream closed before it was accepted')) }
        socket.once('close', () => { clearTimeout(t); reject(new CausewayError('STREAM_RESET', 'local connection closed first')) })
        abandoned = (): void => { clearTimeout(t); reject(new CausewayError('STREAM_RESET', `${peer.name} stopped answering before it accepted the stream`)) }
        if (abandon?.aborted === true) abandoned(); else abandon?.addEventListener('abort', abandoned, { once: true })
      })
      const opened = whenOpen(dc, undefined, this.opts.openTimeoutMs)
      // both are awaited below; these keep a rejection after the race is decided from going unhandled
      answered.catch(() => {})
      opened.catch(() => {})
      const answer = await Promise.race([opened, answered]).then(async () => await answered).finally(() => { if (abandoned !== undefined) abandon?.removeEventListener('abort', abandoned) })
      if (answer.t === 'err') throw new CausewayError(isCode(answer.code) ? answer.code : 'STREAM_RESET', answer.message)
      if (answer.t !== 'ok') throw new CausewayError('BAD_MESSAGE', 'unexpected stream answer')
      if (answer.v === 2) {
        // a version-2 answer we did not ask for (no cap sent, or not on a session) is a protocol error
        if (answer.id === undefined || !this.stripes(peer, opener.path ?? 'relay')) throw new CausewayError('BAD_MESSAGE', 'unexpected stream version')
        const lanes = this.lanesOf?.(peer)
        stripe = { id: answer.id, role: 'opener', ...(lanes !== undefined ? { lanes } : {}) }
      }
    } catch (err) {
      release()
      try { dc.close() } catch { /* closed */ }
      c.refused++
      throw err
    }
    c.opened++
    this.totals.opened++
    this.log.debug({ peer: peer.name, share, id: dc.id }, 'stream accepted by the peer')
    this.run(peer, socket, dc, release, early, undefined, stripe, opener.path ?? 'relay')
  }

  /** Set at the end of a drain: streams the peers open from then on are refused with SHUTTING_DOWN (an opener tries another instance). */
  closing = false

  /** Resets every live stream and refuses new ones (shutdown after the drain period). */
  resetAll (): void {
    this.closing = true
    for (const p of this.live) p.reset('SHUTTING_DOWN')
  }

  get liveStreams (): number { return this.live.size }

  /** Streams live or on their way (being opened, or accepted but not answered yet), over every peer. */
  private get busy (): number {
    let n = 0
    for (const c of this.counters.values()) n += c.streams
    return n
  }

  private maybeIdle (): void {
    if (this.idleWaiters.length > 0 && this.busy === 0) for (const w of this.idleWaiters.splice(0)) w()
  }

  /** Resolves when no stream is live or on its way (opening, being accepted), or after `ms` (drain on shutdown). */
  async whenIdle (ms: number): Promise<void> {
    if (this.busy === 0) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms)
      function done (): void { clearTimeout(t); resolve() }
      this.idleWaiters.push(done)
    })
  }
}

function isCode (code: string): code is ErrorCode {
  return ['SHARE_NOT_FOUND', 'SHARE_FORBIDDEN', 'TOO_MANY_STREAMS', 'TARGET_UNREACHABLE', 'STREAM_RESET', 'PEER_UNAVAILABLE', 'BAD_MESSAGE', 'SHUTTING_DOWN', 'FLOW_CONTROL_VIOLATION', 'PROTOCOL_MISMATCH'].includes(code)
}
