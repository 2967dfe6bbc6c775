/**
 * Imports reconciler: turns the remote peers' catalogs into local Services.
 *
 * For each share of each connected peer it asks the agent for a local listener
 * (`AgentPort.openImport`) and keeps, in the share's namespace when the peer advertises one that
 * exists here (else in `namespace`):
 * - a selector-less Service `<share>-<peer>` (`serviceName` changes the rule) with one port
 *   named `tcp` (protocol TCP), or `udp` (protocol UDP) for a UDP share: the advertised port
 *   (else the listener's), targetPort the listener's port;
 * - per instance of this site, an EndpointSlice `<service>-<instance>` (slices.ts: addressType
 *   IPv4/IPv6 by the pod IP, `$POD_IP`) with that instance's pod as the one endpoint, ready while
 *   the peer is connected and the instance is not draining, port = that instance's listener;
 *   owned by the Service and labelled `kubernetes.io/service-name`, with
 *   `endpointslice.kubernetes.io/managed-by: causeway.dev/agent` so the cluster's EndpointSlice
 *   controller leaves it alone.
 * Every instance opens its listeners and writes its own slices; only the site's leader (`leader`,
 * the Lease of lease.ts) writes the Services, ServiceImports, status annotations and Events and
 * deletes withdrawn imports.
 * Both carry `app.kubernetes.io/managed-by=causeway`, `causeway.dev/peer` and
 * `causeway.dev/import`. Objects without the managed-by label are never changed or deleted: a
 * name clash is reported (Warning Event) and skipped. A withdrawn share is deleted at once; a
 * peer that is gone keeps its imports (endpoints not ready) for `graceMs`, then they are deleted.
 * Managed imports found at start-up whose peer has not (yet) shown up get the same grace.
 */
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { IMPORT_PEER_LABEL, IMPORT_SHARE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, STATUS_ANNOTATION } from '../../protocol/annotations.ts'
import { apiCode, dnsLabel, labelValue, mergePatchOptions } from './kubeutil.ts'
import { SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, SLICE_MANAGED_BY_VALUE, SliceCache } from './endpoints.ts'
import { MergedImports } from './merged.ts'
import { ServiceImportWriter } from './mcs.ts'
import type { AgentPort, ImportListener, RemoteShare } from './ports.ts'
import type { InstanceSlices } from './slices.ts'
import type { ShareStatus, StatusWriter } from './status.ts'

export { SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, SLICE_MANAGED_BY_VALUE }

export interface ImportsInit {
  kubeConfig: k8s.KubeConfig
  agent: AgentPort
  status?: StatusWriter
  /** The agent pod's IP: the endpoint of every import. */
  podIp: string
  /** Namespace for imports. Default `$POD_NAMESPACE`, else `default`. */
  namespace?: string
  /** Put an import in the exporter's namespace when the peer advertises one that exists here. Default true. */
  useShareNamespace?: boolean
  /** Name of the imported Service. Default `<share>-<peer>` made a DNS-1035 label. */
  serviceName?: (share: string, peer: string) => string
  /**
   * Merged imports (agent/kube/merged.ts): one Service + ServiceImport per share name, whatever
   * the number of exporting sites. Default true.
   */
  merged?: boolean
  /** The per-site `<share>-<peer>` imports beside the merged ones. Default true. */
  perSite?: boolean
  /** The EndpointSlice cache (local-first imports), shared with the exports. Default: one of its own. */
  slices?: SliceCache
  /** How long a gone peer's imports stay. Default 5 minutes. */
  graceMs?: number
  /** Full reconcile period (repairs drift, refreshes paths). Default 30 s. */
  resyncMs?: number
  log?: LogLike
  now?: () => number
  /** This instance's EndpointSlices (slices.ts). */
  instanceSlices: InstanceSlices
  /** Whether this instance leads its site (writes the shared objects). Default: always. */
  leader?: () => boolean
}

interface PeerState {
  shares: RemoteShare[]
  goneSince?: number
}

interface Desired {
  peer: string
  share: RemoteShare
  namespace: string
  name: string
  connected: boolean
}

export { labelValue }

/** Name and protocol of an import's one port. */
const portOf = (share: RemoteShare): { name: string; protocol: 'TCP' | 'UDP' } => (share.protocol === 'udp' ? { name: 'udp', protocol: 'UDP' } : { name: 'tcp', protocol: 'TCP' })

export class ImportsReconciler {
  private readonly init: ImportsInit
  private readonly core: k8s.CoreV1Api
  private readonly discovery: k8s.DiscoveryV1Api
  private readonly peers = new Map<string, PeerState>()
  private readonly listeners = new Map<string, ImportListener>()
  private readonly listenerProtocol = new Map<string, 'udp' | undefined>()
  private readonly graceMs: number
  private readonly now: () => number
  private readonly startedAt: number
  private pending: Promise<void> = Promise.resolve()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly namespaceExists = new Map<string, boolean>()
  private readonly reported = new Set<string>()
  private stopped = false
  private readonly serviceImports: ServiceImportWriter
  private readonly log: LogLike
  private readonly slices: SliceCache
  private readonly merged: MergedImports | undefined

  constructor(init: ImportsInit) {
    this.init = init
    this.log = init.log ?? silentLog
    this.serviceImports = new ServiceImportWriter(init.kubeConfig, this.log)
    this.core = init.kubeConfig.makeApiClient(k8s.CoreV1Api)
    this.discovery = init.kubeConfig.makeApiClient(k8s.DiscoveryV1Api)
    this.graceMs = init.graceMs ?? 5 * 60_000
    this.now = init.now ?? Date.now
    this.startedAt = this.now()
    this.slices = init.slices ?? new SliceCache(init.kubeConfig, this.log)
    this.merged = init.merged === false ? undefined : new MergedImports({
      kubeConfig: init.kubeConfig,
      agent: init.agent,
      status: init.status,
      podIp: init.podIp,
      slices: this.slices,
      serviceImports: this.serviceImports,
      log: this.log,
      targetNamespace: (share) => this.targetNamespace(share),
      keepUnwanted: () => this.now() - this.startedAt < this.graceMs && this.peers.size === 0,
      onLocalChange: () => void this.schedule(),
      instanceSlices: init.instanceSlices,
      leader: () => this.leading,
      retry: () => this.retrySoon(),
    })
  }

  private get leading(): boolean {
    return this.init.leader?.() ?? true
  }

  private get namespace(): string {
    return this.init.namespace ?? process.env.POD_NAMESPACE ?? 'default'
  }

  private serviceName(share: string, peer: string): string {
    return dnsLabel(this.init.serviceName ? this.init.serviceName(share, peer) : `${share}-${peer}`)
  }

  /** Subscribes to catalogs and starts the resync timer; stops on abort. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.merged !== undefined) await this.slices.start(signal)
    const off = this.init.agent.onCatalog((peer, shares) => this.onCatalog(peer, shares))
    const resync = setInterval(() => void this.schedule(), this.init.resyncMs ?? 30_000)
    resync.unref()
    this.after(this.graceMs + 50) // imports left from a previous run whose peer never came back
    signal.addEventListener(
      'abort',
      () => {
        this.stopped = true
        off()
        clearInterval(resync)
        for (const t of this.timers) clearTimeout(t)
        this.timers.clear()
        void this.closeListeners()
        void this.merged?.close()
      },
      { once: true },
    )
    return this.schedule()
  }

  onCatalog(peer: string, shares: RemoteShare[] | null): void {
    if (shares === null) {
      const st = this.peers.get(peer)
      if (st && st.goneSince === undefined) st.goneSince = this.now()
      this.after(this.graceMs + 50)
    } else {
      this.peers.set(peer, { shares: shares.map((s) => ({ ...s })) })
    }
    void this.schedule()
  }

  private retryPending = false

  /** A follower found an import's Service not made yet: one more reconcile in a second. */
  private retrySoon(): void {
    if (this.retryPending) return
    this.retryPending = true
    this.after(1000)
  }

  /** Schedules a reconcile in `ms` (grace expiries). */
  private after(ms: number): void {
    if (this.stopped) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      void this.schedule()
    }, ms)
    t.unref()
    this.timers.add(t)
  }

  /** Runs one reconcile after the ones queued (serialized). */
  schedule(): Promise<void> {
    this.pending = this.pending.then(() => (this.stopped ? undefined : this.reconcile())).catch((e: unknown) => this.log.warn({ err: String(e) }, 'imports: reconcile failed'))
    return this.pending
  }

  private async targetNamespace(share: RemoteShare): Promise<string> {
    const ns = share.namespace
    if (ns === undefined || this.init.useShareNamespace === false) return this.namespace
    let exists = this.namespaceExists.get(ns)
    if (exists === undefined) {
      try {
        await this.core.readNamespace({ name: ns })
        exists = true
      } catch (e) {
        if (apiCode(e) !== 404) throw e
        exists = false
      }
      this.namespaceExists.set(ns, exists)
    }
    return exists ? ns : this.namespace
  }

  private async desired(): Promise<Map<string, Desired>> {
    const out = new Map<string, Desired>()
    const now = this.now()
    for (const [peer, st] of this.peers) {
      if (st.goneSince !== undefined && now - st.goneSince >= this.graceMs) {
        this.peers.delete(peer)
        continue
      }
      if (this.init.perSite === false) continue
      for (const share of st.shares) {
        if (share.parent !== undefined) continue // per-pod sub-shares are imported only merged
        const namespace = await this.targetNamespace(share)
        const name = this.serviceName(share.name, peer)
        // a withdrawn share (no ready endpoint at the exporter) keeps its import, not ready
        out.set(`${namespace}/${name}`, { peer, share, namespace, name, connected: st.goneSince === undefined && share.available !== false })
      }
    }
    return out
  }

  private async reconcile(): Promise<void> {
    this.retryPending = false
    const want = await this.desired()
    const mergedKeys = new Set<string>()
    if (this.merged !== undefined) {
      const sites = [...this.peers].map(([site, st]) => ({ site, shares: st.shares, connected: st.goneSince === undefined }))
      // a name a merged import holds is not also a per-site import (the merged one wins)
      for (const key of await this.merged.reconcile(sites)) {
        want.delete(key)
        mergedKeys.add(key)
      }
    }
    for (const d of want.values()) {
      try {
        await this.ensure(d)
      } catch (e) {
        // One broken import (say, a quota) must not stop the others or the garbage collection.
        this.log.warn({ err: String(e), service: `${d.namespace}/${d.name}` }, 'imports: import failed')
      }
    }
    await this.init.instanceSlices.prune(new Set([...want.keys(), ...mergedKeys]))
    if (!this.leading) return this.closeUnwanted(want)
    // Garbage: managed imports nobody wants any more.
    const managed = await this.core.listServiceForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${IMPORT_PEER_LABEL}` })
    for (const svc of managed.items) {
      const ns = svc.metadata?.namespace ?? ''
      const name = svc.metadata?.name ?? ''
      if (want.has(`${ns}/${name}`)) continue
      const peer = svc.metadata?.labels?.[IMPORT_PEER_LABEL] ?? ''
      if (!this.peers.has(peer) && this.now() - this.startedAt < this.graceMs) continue // seen before its peer
      try {
        await this.remove(ns, name, peer)
      } catch (e) {
        this.log.warn({ err: String(e), service: `${ns}/${name}` }, 'imports: removal failed')
      }
    }
    await this.closeUnwanted(want)
  }

  private async closeUnwanted(want: Map<string, Desired>): Promise<void> {
    for (const [key, l] of this.listeners) {
      if (want.has(key)) continue
      this.listeners.delete(key)
      await l.close().catch(() => {})
    }
  }

  private async ensure(d: Desired): Promise<void> {
    const key = `${d.namespace}/${d.name}`
    const ref = { namespace: d.namespace, name: d.name }
    let listener = this.listeners.get(key)
    if (listener && this.listenerProtocol.get(key) !== d.share.protocol) {
      // The share changed between TCP and UDP: the listener must change with it.
      this.listeners.delete(key)
      await listener.close().catch(() => {})
      listener = undefined
    }
    if (!listener) {
      try {
        listener = await this.init.agent.openImport(d.peer, d.share.name, d.share.protocol)
        this.listeners.set(key, listener)
        this.listenerProtocol.set(key, d.share.protocol)
      } catch (e) {
        this.log.warn({ err: String(e), peer: d.peer, share: d.share.name }, 'imports: opening the import listener failed')
        return
      }
    }
    const labels = {
      [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
      [IMPORT_PEER_LABEL]: labelValue(d.peer),
      [IMPORT_SHARE_LABEL]: labelValue(d.share.name),
    }
    const ports: k8s.V1ServicePort[] = [{ ...portOf(d.share), port: d.share.port ?? listener.port, targetPort: listener.port }]
    if (!this.leading) {
      // A follower only keeps its own slice, once the leader has made the Service.
      const svc = await this.managedService(d)
      if (svc === undefined) return this.retrySoon()
      return this.init.instanceSlices.ensure({ namespace: d.namespace, service: d.name, uid: svc.metadata?.uid ?? '', labels, port: { ...portOf(d.share), port: listener.port }, connected: d.connected })
    }
    const svc = await this.ensureService(d, labels, ports)
    if (!svc) return
    await this.init.instanceSlices.ensure({ namespace: d.namespace, service: d.name, uid: svc.metadata?.uid ?? '', labels, port: { ...portOf(d.share), port: listener.port }, connected: d.connected })
    await this.serviceImports.ensure(svc, d.peer, labels)
    const status: ShareStatus = {
      role: 'import',
      peer: d.peer,
      share: d.share.name,
      path: d.share.available === false ? 'withdrawn (no ready endpoint at the exporter)' : d.connected ? (this.init.agent.peerPath(d.peer) ?? 'connecting') : 'disconnected',
      listener: `${this.init.podIp}:${listener.port}`,
    }
    if (!this.reported.has(key)) {
      this.reported.add(key)
      await this.init.status?.event({ ...ref, uid: svc.metadata?.uid }, 'Normal', 'Imported', `imported ${d.share.name} from peer ${d.peer}`)
    }
    await this.init.status?.setStatus(ref, status, svc.metadata?.annotations?.[STATUS_ANNOTATION])
  }

  private async ensureService(d: Desired, labels: Record<string, string>, ports: k8s.V1ServicePort[]): Promise<k8s.V1Service | undefined> {
    let cur: k8s.V1Service | undefined
    try {
      cur = await this.core.readNamespacedService({ namespace: d.namespace, name: d.name })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
    if (!cur) {
      return this.core.createNamespacedService({
        namespace: d.namespace,
        body: { metadata: { name: d.name, namespace: d.namespace, labels }, spec: { type: 'ClusterIP', ports } },
      })
    }
    if (cur.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
      const key = `clash:${d.namespace}/${d.name}`
      if (!this.reported.has(key)) {
        this.reported.add(key)
        this.log.warn({ service: `${d.namespace}/${d.name}`, peer: d.peer, share: d.share.name }, 'imports: the Service exists and is not managed by causeway; not importing')
      }
      return undefined
    }
    const curPorts = (cur.spec?.ports ?? []).map((p) => ({ name: p.name, protocol: p.protocol ?? 'TCP', port: p.port, targetPort: p.targetPort }))
    const labelsOk = Object.entries(labels).every(([k, v]) => cur.metadata?.labels?.[k] === v)
    if (labelsOk && JSON.stringify(curPorts) === JSON.stringify(ports)) return cur
    return this.core.patchNamespacedService({ namespace: d.namespace, name: d.name, body: { metadata: { labels }, spec: { ports } } }, mergePatchOptions())
  }

  /** The import's Service when it exists and causeway manages it. */
  private async managedService(d: Desired): Promise<k8s.V1Service | undefined> {
    try {
      const svc = await this.core.readNamespacedService({ namespace: d.namespace, name: d.name })
      return svc.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE ? svc : undefined
    } catch (e) {
      if (apiCode(e) !== 404) throw e
      return undefined
    }
  }

  private async remove(namespace: string, name: string, peer: string): Promise<void> {
    const slices = await this.discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${SERVICE_NAME_LABEL}=${name}` })
    for (const s of slices.items) {
      await this.discovery.deleteNamespacedEndpointSlice({ namespace, name: s.metadata?.name ?? '' }).catch((e: unknown) => {
        if (apiCode(e) !== 404) throw e
      })
    }
    await this.serviceImports.remove(namespace, name)
    await this.core.deleteNamespacedService({ namespace, name }).catch((e: unknown) => {
      if (apiCode(e) !== 404) throw e
    })
    this.reported.delete(`${namespace}/${name}`)
    this.init.status?.forget({ namespace, name })
    this.log.info({ service: `${namespace}/${name}`, peer }, 'imports: removed')
  }

  private async closeListeners(): Promise<void> {
    const all = [...this.listeners.values()]
    this.listeners.clear()
    await Promise.all(all.map((l) => l.close().catch(() => {})))
  }
}
