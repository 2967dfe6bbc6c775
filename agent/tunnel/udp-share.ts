/**
 * The share side of UDP shares: a `udp:<share>` channel a peer opened (Tunnels.accept checked
 * the share, its protocol and the peer's right to it) carries datagrams tagged with flow ids
 * (protocol/udp.ts). Each new flow id gets its own UDP socket connected to the share's declared
 * target, so the target's replies come back on that socket and go back under the same id. The
 * peer's flows across all its channels share one table (cap and idle timeout: udp-flows.ts).
 */
import { createSocket, type Socket } from 'node:dgram'
import { isIP } from 'node:net'
import { decodeDatagram, encodeDatagram, UDP_MAX_PAYLOAD } from '../../protocol/udp.ts'
import { whenOpen } from '../../peer/channel.ts'
import type { LogLike } from '../../peer/peer-session.ts'
import { FlowTable, UDP_DEFAULTS, UdpStats, type UdpOptions } from './udp-flows.ts'
import type { ShareSpec } from './shares.ts'

interface ShareFlow {
  channel: number
  id: number
  socket: Socket
  /** Datagrams sent before the socket is connected (resolving the target's name), bounded. */
  pending: Uint8Array[] | null
}

/** Datagrams a new flow holds while its socket connects. */
const PENDING_MAX = 16

export class UdpShares {
  readonly stats: UdpStats
  private readonly opts: Required<UdpOptions>
  private readonly log: LogLike
  private readonly tables = new Map<string, FlowTable<ShareFlow>>()
  private channels = 0

  constructor (stats: UdpStats, opts: UdpOptions, log: LogLike) {
    this.stats = stats
    this.opts = { ...UDP_DEFAULTS, ...opts }
    this.log = log
  }

  private table (peerId: string): FlowTable<ShareFlow> {
    let t = this.tables.get(peerId)
    if (t === undefined) {
      t = new FlowTable<ShareFlow>(this.opts, (flow, why) => {
        this.stats.flows.share--
        if (why === 'evicted') this.stats.evicted++
        try { flow.socket.close() } catch { /* closed */ }
      })
      this.tables.set(peerId, t)
    }
    return t
  }

  /** Serves one accepted `udp:<share>` channel from `peerId`. */
  accept (peerId: string, peerName: string, dc: RTCDataChannel, share: ShareSpec): void {
    const channel = ++this.channels
    const table = this.table(peerId)
    dc.binaryType = 'arraybuffer'
    whenOpen(dc).then(() => { try { dc.send('{"t":"ok"}') } catch { /* closed */ } }, () => {})
    const key = (id: number): string => `${channel}/${id}`
    const reply = (flow: ShareFlow, msg: Buffer): void => {
      if (dc.readyState !== 'open') { this.stats.drop('no_path'); return }
      if (msg.byteLength > UDP_MAX_PAYLOAD) { this.stats.drop('oversize'); return }
      if ((dc.bufferedAmount ?? 0) > this.opts.sendBufferBytes) { this.stats.drop('congestion'); return }
      table.touch(key(flow.id))
      try { dc.send(encodeDatagram(flow.id, msg)) } catch { this.stats.drop('no_path'); return }
      this.stats.sent(msg.byteLength)
    }
    const open = (id: number): ShareFlow | undefined => {
      if (!table.admit()) return undefined
      const family = isIP(share.host) === 6 ? 'udp6' : 'udp4'
      const socket = createSocket(family)
      const flow: ShareFlow = { channel, id, socket, pending: [] }
      socket.on('message', (msg) => reply(flow, msg))
      socket.on('error', (err) => {
        this.stats.drop('target_error')
        this.log.debug({ share: share.name, peer: peerName, err: err.message }, 'UDP target error')
        if (flow.pending !== null) table.delete(key(id)) // could not connect (name did not resolve)
      })
      socket.connect(share.port, share.host, () => {
        const queued = flow.pending ?? []
        flow.pending = null
        for (const p of queued) this.forward(flow, p)
      })
      table.add(key(id), flow)
      this.stats.flows.share++
      return flow
    }
    dc.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === 'string') return // control text: nothing is expected from the opener
      const d = decodeDatagram(ev.data as ArrayBuffer)
      if ('error' in d) { this.stats.drop(d.error); return }
      this.stats.received(d.payload.byteLength)
      const flow = table.touch(key(d.flow)) ?? open(d.flow)
      if (flow === undefined) { this.stats.drop('flow_limit'); return }
      if (flow.pending !== null) {
        if (flow.pending.length < PENDING_MAX) flow.pending.push(d.payload.slice()); else this.stats.drop('congestion')
        return
      }
      this.forward(flow, d.payload)
    }
    dc.onclose = () => { table.deleteWhere(f => f.channel === channel) }
  }

  private forward (flow: ShareFlow, payload: Uint8Array): void {
    // A socket closed meanwhile (idle, evicted, peer gone) throws synchronously: count it, never crash.
    try {
      flow.socket.send(payload, (err) => { if (err !== null && err !== undefined) this.stats.drop('target_error') })
    } catch {
      this.stats.drop('no_path')
    }
  }

  /** Closes a gone peer's flows. */
  forget (peerId: string): void {
    this.tables.get(peerId)?.close()
    this.tables.delete(peerId)
  }

  close (): void {
    for (const t of this.tables.values()) t.close()
    this.tables.clear()
  }
}
