/**
 * The relay path of an agent: a libp2p circuit-relay client (agent/relay-transport) that
 * carries tunnel streams when a pair's WebRTC session does not come up.
 *
 * - Identity binding: the agent announces `relay {peer, addrs}` in its sealed hello
 *   (protocol/peer.ts). An inbound relayed stream is accepted only when the remote libp2p
 *   PeerId (proven by the noise handshake of the relayed connection) equals the PeerId that a
 *   known agent peer announced in a hello that opened with the network key; it is then handed
 *   to Tunnels.accept as that peer, so the share checks are exactly those of the direct path.
 * - Dialing: `opener(peer)` dials the peer's announced circuit addresses with
 *   `/causeway/tunnel/1.0.0`; the relayed connection's noise session is bound to that PeerId.
 * - Framing of the stream: `stream-channel.ts`.
 */
import { CausewayError } from '../../protocol/errors.ts'
import type { RemotePeer } from '../../peer/mesh.ts'
import type { LogLike } from '../../peer/peer-session.ts'
import type { AdmissionIdentity } from '../../protocol/relay-admission.ts'
import { startRelayClient, type RelayClient, type RelayStatus } from '../relay-transport/index.ts'
import type { ChannelOpener } from '../tunnel/tunnels.ts'
import { StreamChannel } from './stream-channel.ts'

export { StreamChannel } from './stream-channel.ts'

export const TUNNEL_PROTOCOL = '/causeway/tunnel/1.0.0'

export interface RelayPathInit {
  /** `deriveRelayKey(secret)`. */
  relayKey: Uint8Array<ArrayBuffer>
  /** Relay multiaddrs (each ending in `/p2p/<relay PeerId>`). */
  relays: string[]
  /** The agent's credential for admission (agent tokens; agent/relay-transport). */
  identity?: AdmissionIdentity
  log: LogLike
  /** The agent peer that announced this relay PeerId in its sealed hello, if any. */
  identify: (relayPeerId: string) => RemotePeer | undefined
  /** Subscribes to accepted hellos (Mesh events 'hello'); returns the unsubscribe function. */
  onHello: (fn: () => void) => () => void
  /** Takes an accepted, identified stream channel (Tunnels.accept). */
  accept: (peer: RemotePeer, dc: RTCDataChannel) => void
  /** Our relay identity or addresses changed (announce them in the hello). */
  onChange: (info: RelayInfo) => void
  /** Time for a dial through the relay, and for the first frame of an inbound stream, ms. Default 10000. */
  timeoutMs?: number
  /** How long an inbound stream from an unknown PeerId waits for the hello that announces it, ms. Default 3000. */
  helloWaitMs?: number
}

export interface RelayInfo { peer: string, addrs: string[] }

export class RelayPath {
  readonly client: RelayClient
  private readonly init: RelayPathInit
  private readonly timeoutMs: number

  private constructor (client: RelayClient, init: RelayPathInit) {
    this.client = client
    this.init = init
    this.timeoutMs = init.timeoutMs ?? 10_000
  }

  static async start (init: RelayPathInit): Promise<RelayPath> {
    const client = await startRelayClient({ relayKey: init.relayKey, relays: init.relays, log: init.log, ...(init.identity !== undefined ? { identity: init.identity } : {}) })
    const path = new RelayPath(client, init)
    await client.handle(TUNNEL_PROTOCOL, (stream, { remotePeer }) => { path.inbound(StreamChannel.accept(stream), remotePeer.toString()) })
    client.addEventListener('change', () => { init.onChange(path.info()) })
    init.onChange(path.info())
    return path
  }

  info (): RelayInfo { return { peer: this.client.peerId.toString(), addrs: this.client.multiaddrs() } }

  status (): { peer: string, addrs: string[], relays: RelayStatus[] } {
    return { ...this.info(), relays: this.client.status() }
  }

  /** Whether new streams to `peer` can go through the relay now (both sides hold a reservation). */
  usable (peer: RemotePeer): boolean {
    return peer.role === 'agent' && (peer.relay?.addrs.length ?? 0) > 0 && this.client.multiaddrs().length > 0
  }

  /** The circuit address new streams to `peer` use. */
  describe (peer: RemotePeer): string | undefined { return peer.relay?.addrs[0] }

  opener (peer: RemotePeer): ChannelOpener {
    return {
      open: async (label) => {
        const addrs = peer.relay?.addrs ?? []
        const errors: string[] = []
        for (const addr of addrs) {
          try {
            const stream = await this.client.dial(addr, TUNNEL_PROTOCOL, { signal: AbortSignal.timeout(this.timeoutMs) })
            return StreamChannel.dial(stream, label).asDataChannel()
          } catch (err) {
            errors.push(err instanceof Error ? err.message : String(err))
          }
        }
        throw new CausewayError('PEER_UNAVAILABLE', `no relayed path to ${peer.name}${errors.length > 0 ? `: ${errors.join('; ').slice(0, 300)}` : ''}`)
      },
    }
  }

  private inbound (ch: StreamChannel, remote: string): void {
    ch.waitLabel(this.timeoutMs).then(async () => {
      const peer = await this.identified(remote, ch)
      if (peer === undefined) {
        this.init.log.warn({ relayPeer: remote, label: ch.label.slice(0, 80) }, 'relayed stream from a peer no sealed hello announced: refused')
        ch.stream.abort(new Error('unknown peer'))
        return
      }
      this.init.accept(peer, ch.asDataChannel())
    }, (err: unknown) => {
      this.init.log.debug({ relayPeer: remote, err: err instanceof Error ? err.message : String(err) }, 'relayed stream without an open frame')
    })
  }

  /** The peer that announced `remote`, waiting for its hello (sealed, through signaling: it may still be on its way). */
  private async identified (remote: string, ch: StreamChannel): Promise<RemotePeer | undefined> {
    const known = this.init.identify(remote)
    if (known !== undefined || ch.readyState !== 'open') return known
    return await new Promise(resolve => {
      const done = (peer: RemotePeer | undefined): void => {
        off()
        clearTimeout(timer)
        ch.removeEventListener('close', gone)
        resolve(peer)
      }
      const off = this.init.onHello(() => { const p = this.init.identify(remote); if (p !== undefined) done(p) })
      const gone = (): void => { done(undefined) }
      const timer = setTimeout(gone, this.init.helloWaitMs ?? 3000)
      ch.addEventListener('close', gone)
    })
  }

  async close (): Promise<void> { await this.client.close() }
}
