/**
 * Several SCTP associations (peer connections) per peer pair, tunnel streams spread across them.
 *
 * One association is one congestion window: across distance with random loss it sits at the
 * Reno bound (~1.2 x MTU / (RTT x sqrt(p))) whatever carries it, and its receive window and
 * usrsctp's per-association send path cap it without loss too (bench/RESULTS.md). Streams
 * spread over N associations get N windows, like N TCP connections would.
 *
 * The session's own peer connection is association 0. The extras of a pair configured for N
 * are split between the two agents so that the pair has N in all: the session's polite side
 * (the lower agent id) offers ceil((N-1)/2), the other floor((N-1)/2); each side offers its
 * share by its own setting, so an agent configured for 4 facing one left at 1 gets 2 or 3.
 * Extras are offered as soon as the session's control channel opens (before bulk
 * data: with node-datachannel, control messages queue behind the association's bulk data, and
 * offers made on the first stream took seconds), and negotiated in-band over the session's
 * control channel (`assoc` messages, protocol/peer.ts): that channel is already authenticated
 * end to end, so the DTLS fingerprint in each SDP is the peer's. An extra association uses the
 * primary's engine and the agent's ICE servers; both sides use every ready association for the
 * streams they open and accept streams on all of them. A new stream goes to the association
 * where this peer's channels have the least queued (agent/tunnel/assoc-queue.ts; fewest
 * streams on a tie), so it does not wait behind the bytes of streams that were cancelled on
 * another. Each session's associations also carry its lanes (striped streams,
 * agent/tunnel/lanes.ts). They end with the session; one that fails alone is dropped (its
 * streams reset, as on any association, and striped streams that sent over it).
 */
import { MAX_ASSOCIATIONS, type ControlMessage } from '../../protocol/peer.ts'
import type { RemotePeer } from '../../peer/mesh.ts'
import type { LogLike, PeerSession } from '../../peer/peer-session.ts'
import { AssocQueue } from './assoc-queue.ts'
import { PeerLanes } from './lanes.ts'
import { PIPE_DEFAULTS } from './pipe.ts'

type AssocMessage = Extract<ControlMessage, { type: 'assoc' }>
/**
 * Default associations per peer pair: 4 (two agents at the default offer 2 and 1 extras). One
 * association holds at most 1 MiB in flight and loses half its window to usrsctp's timer or to
 * random loss, regrowing by one MTU per RTT (bench/RESULTS.md, session 8): eight connections
 * over four associations moved 5.0 MiB/s at 40 ms / 0.2 % loss against 0.6 over one (`ssh -L`
 * 2.2), and new connections go to an association that is not behind cancelled downloads. Each
 * extra is its own DTLS/ICE session (and TURN allocation on a relayed path), negotiated after
 * the session is up; `--associations 1` turns them off.
 */
export const DEFAULT_ASSOCIATIONS = 4
const READY_LABEL = 'assoc'
const SETUP_TIMEOUT_MS = 20_000

interface Association {
  i: number
  offered: boolean
  pc: RTCPeerConnection
  ready: boolean
  streams: number
  /** What this peer's channels have queued on it. */
  sendQueue: AssocQueue
  timer: ReturnType<typeof setTimeout>
  /** Signals are applied in order (a candidate must not overtake the description). */
  queue: Promise<void>
}

export interface AssociationsInit {
  /** Associations per peer pair, the session's own included (1 = no extras). */
  total: number
  /** A new peer connection like the session's (same engine, the agent's ICE servers). */
  create: (like: RTCPeerConnection) => RTCPeerConnection
  /** A stream channel the remote opened on an extra association. */
  onDataChannel: (peer: RemotePeer, dc: RTCDataChannel) => void
  log: LogLike
  /** Lane channel high water and per-association send budget, bytes (agent/tunnel/lanes.ts); default the pipe's. */
  lanes?: { highWater: number, budget: number, activity?: (peer: RemotePeer) => void }
}

/** The associations of one session (one peer). */
class SessionAssociations {
  private readonly mine = new Map<number, Association>()
  private readonly theirs = new Map<number, Association>()
  private readonly primary = { streams: 0, sendQueue: new AssocQueue() }
  private closed = false
  readonly lanes: PeerLanes

  readonly peer: RemotePeer
  readonly session: PeerSession
  private readonly init: AssociationsInit

  constructor (peer: RemotePeer, session: PeerSession, init: AssociationsInit) {
    this.peer = peer
    this.session = session
    this.init = init
    this.lanes = new PeerLanes({
      associations: () => this.ready(),
      highWater: init.lanes?.highWater ?? PIPE_DEFAULTS.highWater,
      budget: init.lanes?.budget ?? PIPE_DEFAULTS.assocBudget,
      activity: () => init.lanes?.activity?.(peer),
    })
  }

  /** The ready associations, the session's own first. */
  private ready (): Array<{ pc: RTCPeerConnection, queue: AssocQueue }> {
    if (this.closed || this.session.state !== 'connected') return []
    const out = [{ pc: this.session.pc, queue: this.primary.sendQueue }]
    for (const a of [...this.mine.values(), ...this.theirs.values()]) if (a.ready) out.push({ pc: a.pc, queue: a.sendQueue })
    return out
  }

  /** The queue a channel of this session counts in: the association that made it, else (the session's own delivered it) the primary. */
  queueOf (dc: RTCDataChannel): AssocQueue {
    for (const a of [...this.mine.values(), ...this.theirs.values()]) if (a.sendQueue.has(dc)) return a.sendQueue
    this.primary.sendQueue.add(dc)
    return this.primary.sendQueue
  }

  /** Ready associations, the session's own included. */
  count (): number {
    if (this.session.state !== 'connected') return 0
    let n = 1
    for (const a of [...this.mine.values(), ...this.theirs.values()]) if (a.ready) n++
    return n
  }

  /** Offers this side's share of the extras (re-offers one that was dropped). */
  ensure (): void {
    if (this.closed || this.session.control.readyState !== 'open') return
    const extras = this.init.total - 1
    const share = this.session.polite ? Math.ceil(extras / 2) : Math.floor(extras / 2)
    for (let i = 1; this.mine.size < share && i < MAX_ASSOCIATIONS; i++) {
      if (!this.mine.has(i)) this.offer(i)
    }
  }

  private offer (i: number): void {
    const a = this.make(i, true)
    a.queue = a.queue.then(async () => {
      try {
        await a.pc.setLocalDescription(await a.pc.createOffer())
        const sdp = a.pc.localDescription?.sdp
        if (sdp === undefined) throw new Error('no local offer')
        this.send({ type: 'assoc', i, of: 'mine', description: { type: 'offer', sdp } })
      } catch (err) { this.drop(a, err) }
    })
  }

  private make (i: number, offered: boolean): Association {
    const pc = this.init.create(this.session.pc)
    const a: Association = { i, offered, pc, ready: false, streams: 0, sendQueue: new AssocQueue(), timer: setTimeout(() => this.drop(a, new Error('not connected in time')), SETUP_TIMEOUT_MS), queue: Promise.resolve() }
    a.timer.unref?.()
    ;(offered ? this.mine : this.theirs).set(i, a)
    const ready = pc.createDataChannel(READY_LABEL, { negotiated: true, id: 0, ordered: true })
    ready.onopen = () => { clearTimeout(a.timer); a.ready = true; this.init.log.debug({ peer: this.peer.name, i, offered }, 'association ready') }
    ready.onclose = () => this.drop(a)
    pc.onicecandidate = (ev) => {
      const c = ev.candidate
      if (c === null || c.candidate === '') return
      const candidate = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex }
      // behind the step that sends our description: engines may report a candidate before the
      // description that carries its ICE credentials (node-datachannel delivers the two on
      // separate native callbacks), and the peer can use a candidate only after the description
      a.queue = a.queue.then(() => { if (this.current(a)) this.send({ type: 'assoc', i, of: offered ? 'mine' : 'yours', candidate }) })
    }
    pc.onconnectionstatechange = () => { if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this.drop(a) }
    pc.ondatachannel = (ev) => {
      if (ev.channel.label === READY_LABEL && ev.channel.id === 0) return
      ev.channel.binaryType = 'arraybuffer'
      a.sendQueue.add(ev.channel)
      this.init.onDataChannel(this.peer, ev.channel)
    }
    return a
  }

  /** An `assoc` control message from the peer. */
  handle (msg: AssocMessage): void {
    if (this.closed) return
    // `of` is the sender's view: its 'mine' are our 'theirs'
    const table = msg.of === 'mine' ? this.theirs : this.mine
    let a = table.get(msg.i)
    if (msg.close === true) { if (a !== undefined) this.drop(a); return }
    if (a === undefined) {
      if (msg.of !== 'mine' || msg.description?.type !== 'offer') {
        // a signal for an association we do not have: ended here already, or (a bug) sent ahead of its offer
        this.init.log.debug({ peer: this.peer.name, i: msg.i, of: msg.of }, 'signal for an unknown association ignored')
        return
      }
      // the peer offers one: bounded by the protocol's maximum (i < MAX_ASSOCIATIONS)
      a = this.make(msg.i, false)
    }
    const assoc = a
    assoc.queue = assoc.queue.then(async () => {
      try {
        if (msg.description !== undefined) {
          await assoc.pc.setRemoteDescription(msg.description)
          if (msg.description.type === 'offer') {
            await assoc.pc.setLocalDescription(await assoc.pc.createAnswer())
            const sdp = assoc.pc.localDescription?.sdp
            if (sdp === undefined) throw new Error('no local answer')
            this.send({ type: 'assoc', i: msg.i, of: 'yours', description: { type: 'answer', sdp } })
          }
        } else if (msg.candidate !== undefined) {
          await assoc.pc.addIceCandidate(msg.candidate)
        }
      } catch (err) { this.drop(assoc, err) }
    })
  }

  /** Opens a stream channel on the ready association with the least queued (then the fewest streams). */
  createDataChannel (label: string, init: RTCDataChannelInit): RTCDataChannel {
    let best: { streams: number, sendQueue: AssocQueue } = this.primary
    let bestQueued = this.primary.sendQueue.queued()
    let pc = this.session.pc
    for (const a of [...this.mine.values(), ...this.theirs.values()]) {
      if (!a.ready) continue
      const q = a.sendQueue.queued()
      if (q < bestQueued || (q === bestQueued && a.streams < best.streams)) { best = a; bestQueued = q; pc = a.pc }
    }
    const dc = pc.createDataChannel(label, init)
    const holder = best
    holder.streams++
    holder.sendQueue.add(dc)
    dc.addEventListener('close', () => { holder.streams-- }, { once: true })
    return dc
  }

  private send (msg: AssocMessage): void { this.session.sendControl(msg) }

  /** Whether `a` is still in its table (not dropped, not replaced). */
  private current (a: Association): boolean { return (a.offered ? this.mine : this.theirs).get(a.i) === a }

  private drop (a: Association, err?: unknown): void {
    if (!this.current(a)) return
    ;(a.offered ? this.mine : this.theirs).delete(a.i)
    clearTimeout(a.timer)
    if (err !== undefined) this.init.log.warn({ peer: this.peer.name, i: a.i, err: err instanceof Error ? err.message : String(err) }, 'extra association failed')
    if (!this.closed) this.send({ type: 'assoc', i: a.i, of: a.offered ? 'mine' : 'yours', close: true })
    try { a.pc.close() } catch { /* closed */ }
    a.sendQueue.close()
  }

  close (): void {
    this.closed = true
    this.lanes.close()
    this.primary.sendQueue.close()
    for (const a of [...this.mine.values(), ...this.theirs.values()]) this.drop(a)
  }
}

/** Every peer's associations (the agent holds one). */
export class Associations {
  private readonly byPeer = new Map<string, SessionAssociations>()

  private readonly init: AssociationsInit

  constructor (init: AssociationsInit) { this.init = init }

  /** A new session for `peer`: the previous one's extra associations end. */
  attach (peer: RemotePeer, session: PeerSession): void {
    this.byPeer.get(peer.id)?.close()
    this.byPeer.set(peer.id, new SessionAssociations(peer, session, this.init))
  }

  private of (peer: RemotePeer, session: PeerSession): SessionAssociations | undefined {
    const s = this.byPeer.get(peer.id)
    return s?.session === session ? s : undefined
  }

  handle (peer: RemotePeer, session: PeerSession, msg: AssocMessage): void { this.of(peer, session)?.handle(msg) }

  /** The session closed or failed: its extra associations end (a new session makes new ones). */
  sessionDown (peer: RemotePeer): void { this.byPeer.get(peer.id)?.close() }

  forget (peerId: string): void {
    this.byPeer.get(peerId)?.close()
    this.byPeer.delete(peerId)
  }

  /** The lanes of `peer`'s current session (undefined without one). */
  lanes (peer: RemotePeer): PeerLanes | undefined { return peer.session === undefined ? undefined : this.of(peer, peer.session)?.lanes }

  /** The association queue of a stream channel of `peer`'s current session. */
  queueOf (peer: RemotePeer, dc: RTCDataChannel): AssocQueue | undefined { return peer.session === undefined ? undefined : this.of(peer, peer.session)?.queueOf(dc) }

  /** Ready associations to `peer` (0 when its session is not connected). */
  count (peer: RemotePeer): number { return peer.session === undefined ? 0 : this.of(peer, peer.session)?.count() ?? 0 }

  /** Offers the configured extra associations to `peer` now (when its control channel opens). */
  ensure (peer: RemotePeer, session: PeerSession): void { if (this.init.total > 1) this.of(peer, session)?.ensure() }

  /** Opens a stream channel to `peer` on one of its session's associations, offering extras first if configured. */
  createDataChannel (peer: RemotePeer, session: PeerSession, label: string, init: RTCDataChannelInit = { ordered: true }): RTCDataChannel {
    const s = this.of(peer, session)
    if (s === undefined) return session.pc.createDataChannel(label, init)
    if (this.init.total > 1) s.ensure()
    return s.createDataChannel(label, init)
  }

  close (): void { for (const id of [...this.byPeer.keys()]) this.forget(id) }
}
