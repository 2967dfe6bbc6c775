/** The agent's public types: its options, the status it reports, the events it emits (agent/agent.ts). */
import type { PathKind, ShareInfo } from '../protocol/peer.ts'
import type { MemberToken } from '../protocol/token.ts'
import type { LogLike } from '../peer/peer-session.ts'
import type { RemotePeer } from '../peer/mesh.ts'
import type { ConnectSpec } from './tunnel/connects.ts'
import type { ShareSpec } from './tunnel/shares.ts'
import type { TunnelOptions } from './tunnel/tunnels.ts'
import type { UdpOptions, UdpStats } from './tunnel/udp-flows.ts'
import type { RelayStatus } from './relay-transport/index.ts'
import type { EngineChoice, EngineName, EngineSelector } from './engine/index.ts'
import type { NetcheckSummary } from './netcheck/index.ts'
import type { IcePolicy } from './ice-policy.ts'

export interface AgentInit {
  token: MemberToken
  /**
   * This agent's name in the network: its site. Several processes (instances) may run under
   * one name and credential. With an agent token it must be the name its credential carries
   * (default).
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
  /** SCTP associations (peer connections) per peer pair that this agent's streams are spread across (agent/tunnel/associations.ts). Default DEFAULT_ASSOCIATIONS (4). */
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
  /** The instance of its site (agents announcing instances). */
  instance?: string
  /** The instance is draining: no new streams go to it. */
  draining: boolean
  /** Heard from within the keepalive bound (always true over the relay path). */
  responsive: boolean
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
  /** The other instances of this agent's own site in the room (no session is kept to them). */
  siblings: Array<{ peer: string, instance?: string, draining: boolean }>
  shares: Array<{ name: string, target: string, peers: string[] | 'all', protocol: 'tcp' | 'http' | 'udp' }>
  /** `sites` for a `share@*` connect: each site exporting the share, whether it can take streams now, whether it is ejected, and the streams it got (since start, every connect of this share). */
  connects: Array<{ share: string, peer: string, listen: string, protocol: 'tcp' | 'udp', sites?: Array<{ site: string, live: boolean, ejected: boolean, streams: number }> }>
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
