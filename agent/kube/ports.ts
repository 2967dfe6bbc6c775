import type { Duplex } from 'node:stream'
import type { Balance } from '../instances.ts'
import type { ShareAnnouncement } from '../tunnel/shares.ts'

/**
 * The seam between the Kubernetes controller (`agent/kube/`) and the agent (peer mesh + TCP
 * tunnels). The controller never touches peers or sockets itself; the agent implements this.
 */

/** Something this agent offers to its peers. The agent dials only `host:port` for it. */
export interface LocalShare {
  /** The name peers import it by (unique per agent). */
  name: string
  /** Where the agent connects for each tunnelled connection, e.g. `web.default.svc`. */
  host: string
  /** The advertised port (the Service's); also the one dialed unless `targetPort` is set. */
  port: number
  /** The port dialed when it differs from `port` (a pod's port for a per-pod sub-share). */
  targetPort?: number
  /** Peer names allowed to import it; absent = every peer of the network. */
  peers?: string[]
  /** The exporting Service's namespace, advertised so importers can mirror it. */
  namespace?: string
  /** `udp` for a UDP Service port (datagrams); absent: TCP. */
  protocol?: 'udp'
  /** Announced to importers choosing between the sites exporting this name (causeway.dev/balance, weight, priority). */
  balance?: Balance
  weight?: number
  priority?: number
  /** The rest of what the export announces: Service name, age, availability, failover, per-pod parent. */
  announce?: ShareAnnouncement
}

/** One entry of a remote peer's catalog, as the controller needs it. */
export interface RemoteShare {
  name: string
  /** The port the share is advertised with (the exporting Service's port), when known. */
  port?: number
  /** The namespace of the exporting Service, when the peer advertises it. */
  namespace?: string
  /** `udp`: imported as a UDP Service port; absent: TCP. */
  protocol?: 'udp'
  /** What the exporter announces (protocol/peer.ts ShareInfo): its Service's name, age, availability, failover, per-pod parent and pod. */
  service?: string
  since?: number
  available?: boolean
  failover?: 'local-first'
  pod?: string
  parent?: string
  pods?: boolean
  balance?: Balance
  weight?: number
  priority?: number
}

/** A local listener the agent opened for an import; connections to it tunnel to the share. */
export interface ImportListener {
  host: string
  port: number
  close(): Promise<void>
}

export interface AgentPort {
  /**
   * Replaces the set of shares that come from `source` (the controller uses `"kube"`; the CLI's
   * `--share` flags are another source). The agent merges all sources into its catalog.
   */
  setShares(source: string, shares: LocalShare[]): void
  /**
   * Subscribes to remote catalogs: called with the peer's current shares whenever they change,
   * and with `null` when the peer is gone (disconnected). Returns the unsubscribe function.
   * Implementations call back at once for the catalogs already known.
   */
  onCatalog(cb: (peer: string, shares: RemoteShare[] | null) => void): () => void
  /**
   * Opens (or returns the already open) local listener for `peer`'s share `share` (a UDP socket
   * for `protocol: 'udp'`); `peer` `*`: any site exporting it (merged imports). `service`: the
   * import Service's name, for the agent's status.
   */
  openImport(peer: string, share: string, protocol?: 'udp', service?: string): Promise<ImportListener>
  /**
   * Per site exporting `share`: can it take a stream now (live), is it ejected (kept failing),
   * how many streams the any-site listeners sent it (merged imports' status). Optional.
   */
  siteSplit?(share: string): Array<{ site: string; live: boolean; ejected: boolean; streams: number }>
  /** How the agent currently reaches `peer` (`direct`, `relay`, `turn`, ...), if connected. */
  peerPath(peer: string): string | undefined
  /** Does connected `peer` offer `share` to this agent (its catalog for us lists it)? */
  peerOffers(peer: string, share: string): boolean
  /**
   * Opens one tunnelled stream to `peer`'s `share`, handed over in memory (no local listener):
   * resolves once the peer accepted it; rejects with the peer's refusal.
   */
  openStream(peer: string, share: string): Promise<Duplex>
}
