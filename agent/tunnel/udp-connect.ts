/**
 * The connect side of UDP shares (`--connect SHARE@PEER=HOST:PORT,protocol=udp`): one local UDP
 * socket; each client address that sends to it is a flow with its own id; datagrams go to the
 * peer on one `udp:<share>` channel (protocol/udp.ts), opened on the first datagram and again
 * after it closes (not sooner than RETRY_MS after a refusal or failure). Replies are sent to the
 * client address of their flow id.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIP } from 'node:net'
import { CausewayError, isErrorCode } from '../../protocol/errors.ts'
import { parseJson, StreamControl } from '../../protocol/peer.ts'
import { decodeDatagram, encodeDatagram, UDP_LABEL_PREFIX, UDP_MAX_PAYLOAD } from '../../protocol/udp.ts'
import { whenOpen } from '../../peer/channel.ts'
import type { LogLike } from '../../peer/peer-session.ts'
import type { ConnectSpec, Listener } from './connects.ts'
import { FlowTable, UDP_DEFAULTS, UDP_SOCKET_BUFFER, type UdpOptions, type UdpStats } from './udp-flows.ts'

/** Opens an unordered, unreliable channel with this label to the named peer (waits for the peer; throws CausewayError). */
export type DatagramChannelOpener = (peerName: string, label: string) => Promise<RTCDataChannel>

/** After a refused or failed channel, datagrams are dropped (`no_path`) this long before the next attempt, ms. */
const RETRY_MS = 1000
/** Datagrams held while the channel opens. */
const QUEUE_MAX = 256

interface ClientFlow { id: number, address: string, port: number }

export async function listenUdpConnect (spec: ConnectSpec, open: DatagramChannelOpener, stats: UdpStats, options: UdpOptions, log: LogLike): Promise<Listener> {
  const opts = { ...UDP_DEFAULTS, ...options }
  // A deep receive buffer rides out bursts while the event loop is busy (the kernel caps it at net.core.rmem_max).
  const socket: Socket = createSocket({ type: isIP(spec.host) === 6 ? 'udp6' : 'udp4', recvBufferSize: UDP_SOCKET_BUFFER })
  const byId = new Map<number, ClientFlow>()
  const flows = new FlowTable<ClientFlow>(opts, (flow, why) => {
    byId.delete(flow.id)
    stats.flows.connect--
    if (why === 'evicted') stats.evicted++
  })
  let nextId = 1
  let dc: RTCDataChannel | undefined
  let opening = false
  let retryAt = 0
  let closed = false
  const queue: Array<Uint8Array<ArrayBuffer>> = []
  const listener: Listener = {
    spec,
    host: spec.host,
    port: spec.port,
    close: async () => {
      if (closed) return
      closed = true
      flows.close()
      try { dc?.close() } catch { /* closed */ }
      await new Promise<void>(resolve => socket.close(() => resolve()))
    },
  }

  const send = (frame: Uint8Array<ArrayBuffer>, bytes: number): void => {
    if (dc === undefined || dc.readyState !== 'open') { stats.drop('no_path'); return }
    if ((dc.bufferedAmount ?? 0) > opts.sendBufferBytes) { stats.drop('congestion'); return }
    try { dc.send(frame) } catch { stats.drop('no_path'); return }
    stats.sent(bytes)
  }

  const failed = (err: unknown): void => {
    retryAt = performance.now() + RETRY_MS
    for (let i = 0; i < queue.length; i++) stats.drop('no_path')
    queue.length = 0
    const code = err instanceof CausewayError ? err.code : 'PEER_UNAVAILABLE'
    log.warn({ share: spec.share, peer: spec.peer, code, err: err instanceof Error ? err.message : String(err) }, 'UDP connect failed')
  }

  const wire = (ch: RTCDataChannel): void => {
    ch.binaryType = 'arraybuffer'
    ch.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === 'string') {
        const ctl = parseJson(StreamControl, ev.data)
        if (ctl?.t === 'err') failed(new CausewayError(isErrorCode(ctl.code) ? ctl.code : 'STREAM_RESET', ctl.message))
        return
      }
      const d = decodeDatagram(ev.data as ArrayBuffer)
      if ('error' in d) { stats.drop(d.error); return }
      stats.received(d.payload.byteLength)
      const flow = byId.get(d.flow)
      if (flow === undefined || flows.touch(`${flow.address}|${flow.port}`) === undefined) { stats.drop('unknown_flow'); return }
      try { socket.send(d.payload, flow.port, flow.address, () => {}) } catch { stats.drop('no_path') } // listener closed meanwhile
    }
    ch.onclose = () => {
      if (dc === ch) dc = undefined
    }
  }

  const ensureChannel = (): void => {
    if (closed || opening || (dc !== undefined && dc.readyState !== 'closed' && dc.readyState !== 'closing') || performance.now() < retryAt) return
    opening = true
    open(spec.peer, `${UDP_LABEL_PREFIX}${spec.share}`).then(async (ch) => {
      wire(ch)
      dc = ch
      await whenOpen(ch)
      opening = false
      if (closed) { ch.close(); return }
      const held = queue.splice(0)
      for (const frame of held) send(frame, frame.byteLength - 4)
    }).catch((err: unknown) => {
      opening = false
      dc = undefined
      failed(err)
    })
  }

  socket.on('message', (msg: Buffer, from: RemoteInfo) => {
    listener.lastAcceptAt = Date.now()
    if (msg.byteLength > UDP_MAX_PAYLOAD) { stats.drop('oversize'); return }
    const key = `${from.address}|${from.port}`
    let flow = flows.touch(key)
    if (flow === undefined) {
      if (!flows.admit()) { stats.drop('flow_limit'); return }
      while (byId.has(nextId) || nextId === 0) nextId = (nextId + 1) >>> 0
      flow = { id: nextId, address: from.address, port: from.port }
      nextId = (nextId + 1) >>> 0
      flows.add(key, flow)
      byId.set(flow.id, flow)
      stats.flows.connect++
    }
    const frame = encodeDatagram(flow.id, msg)
    if (dc !== undefined && dc.readyState === 'open') { send(frame, msg.byteLength); return }
    ensureChannel()
    if (!opening) { stats.drop('no_path'); return }
    if (queue.length < QUEUE_MAX) queue.push(frame); else stats.drop('congestion')
  })
  socket.on('error', (err) => { log.warn({ share: spec.share, err: err.message }, 'UDP listener error') })

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(spec.port, spec.host, () => { socket.off('error', reject); resolve() })
  })
  const addr = socket.address()
  listener.host = addr.address
  listener.port = addr.port
  return listener
}
