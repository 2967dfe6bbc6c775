/**
 * Merged imports: a share name exported by any number of sites is imported once (the plan:
 * merged-plan.ts). For each group it keeps, beside the per-site `<share>-<peer>` imports:
 *
 * - a Service, named (first that applies):
 *   1. the exported Service's own name `S` in its namespace `N`, when the exporters announce
 *      them (the oldest export's), `N` exists here (and the controller uses share namespaces),
 *      and no Service `N/S` exists that is not this import;
 *   2. else `<share>-clusterset` (clustersetName) in that namespace (the import namespace when
 *      `N` does not exist here); a name held by an object causeway does not manage is reported
 *      (Warning) and the group is skipped.
 *   Labels: `app.kubernetes.io/managed-by=causeway`, `causeway.dev/merged=<share>`,
 *   `causeway.dev/import=<share>`; no `causeway.dev/peer` (the per-site garbage collection never
 *   sees it);
 * - its listener: an any-site connect (`<share>@*`, agent/agent.ts openAnySite), so each new
 *   connection goes to a site the policy picks (the exporters' causeway.dev/balance, weight and
 *   priority: agent/instances.ts rankSites), retried once on the next site, failing sites
 *   ejected (SiteHealth); withdrawn sites (ShareInfo available=false) get none;
 * - per instance of this site, its EndpointSlice `<service>-<instance>` (slices.ts): that
 *   instance's pod at its listener's port, ready while a site can take streams and the instance
 *   is not draining; with `causeway.dev/failover: local-first`, while the importing cluster's own
 *   Service `N/S` has ready endpoints, the instances' endpoints are not ready and the leader's
 *   slice `<service>-causeway` lists the local endpoints instead (kube-proxy then sends every
 *   connection to local pods; none leaves the cluster), and it switches back to the agents when
 *   they are gone (EndpointSlice watch: within one watch event);
 * - per-pod addressing (the oldest export has `causeway.dev/pods`): the Service is headless,
 *   each pod gets a ClusterIP Service `<pod>-<service>` (podServiceName) whose listener opens
 *   streams to that pod's sub-share on its site only, and the headless Service's slice lists one
 *   endpoint per pod, `hostname: <pod>`, address = that pod Service's cluster IP: cluster DNS
 *   answers `<pod>.<service>.<ns>.svc` with it, as it does for a StatefulSet's pods;
 * - one MCS ServiceImport (mcs.ts ensureFor) named `S` when `N` exists here (the KEP's rule: the
 *   exported Service's name and namespace), else like the Service; `status.clusters` = every
 *   exporting site, `status.conditions`: `Ready` (a cluster can take streams) and `Conflict`
 *   (the oldest export wins ports, protocol, type and pod names; the message says why).
 * The Service's status annotation lists per cluster whether it is live and the streams it got.
 * Every instance of the site opens the listeners and keeps its own slices; only the leader
 * (lease.ts) writes the Services, the ServiceImport, the shared `-causeway` slices, the status
 * and removes what nobody wants; a follower waits for the leader's Service.
 */
import * as k8s from '@kubernetes/client-node'
import type { LogLike } from '../../peer/log.ts'
import { IMPORT_POD_LABEL, IMPORT_SHARE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MERGED_IMPORT_LABEL, STATUS_ANNOTATION } from '../../protocol/annotations.ts'
import { ANY_SITE } from '../tunnel/connects.ts'
import { SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, SLICE_MANAGED_BY_VALUE, slicePort, type SliceCache } from './endpoints.ts'
import { apiCode, labelValue, mergePatchOptions } from './kubeutil.ts'
import { clustersetName, planMerged, podServiceName, type MergedGroup, type SiteShares } from './merged-plan.ts'
import type { Condition, ServiceImportWriter } from './mcs.ts'
import type { AgentPort, ImportListener, RemoteShare } from './ports.ts'
import type { InstanceSlices } from './slices.ts'
import type { ShareStatus, StatusWriter } from './status.ts'

/** Annotation on a merged import Service: the name of its ServiceImport (it may differ from the Service's). */
export const SERVICE_IMPORT_ANNOTATION = 'causeway.dev/service-import'

export interface MergedInit {
  kubeConfig: k8s.KubeConfig
  agent: AgentPort
  status?: StatusWriter | undefined
  podIp: string
  slices: SliceCache
  serviceImports: ServiceImportWriter
  log: LogLike
  /** Where an import of `share` goes (the exporter's namespace when it exists here, else the import namespace). */
  targetNamespace: (share: RemoteShare) => Promise<string>
  /** True while managed merged imports nobody wants must be kept (start-up grace: their sites may not have shown up yet). */
  keepUnwanted: () => boolean
  /** A local Service that a local-first import follows changed: reconcile soon. */
  onLocalChange: () => void
  /** This instance's EndpointSlices (slices.ts): its pod and listener behind every merged import. */
  instanceSlices: InstanceSlices
  /** Whether this instance leads its site: only the leader writes Services, ServiceImports, status and the shared slices. Default: always. */
  leader?: () => boolean
  /** A follower found a Service the leader has not made yet: reconcile again soon. */
  retry?: () => void
}

interface OpenListener {
  listener: ImportListener
  protocol: 'udp' | undefined
  target: string
}

type SliceEndpoint = k8s.V1Endpoint
const portName = (protocol: 'udp' | undefined): string => (protocol === 'udp' ? 'udp' : 'tcp')
const portProtocol = (protocol: 'udp' | undefined): 'TCP' | 'UDP' => (protocol === 'udp' ? 'UDP' : 'TCP')

export class MergedImports {
  private readonly init: MergedInit
  private readonly core: k8s.CoreV1Api
  private readonly discovery: k8s.DiscoveryV1Api
  private readonly listeners = new Map<string, OpenListener>()
  private readonly reported = new Set<string>()
  private localWatch = new Set<string>()
  private readonly offLocal: () => void

  constructor(init: MergedInit) {
    this.init = init
    this.core = init.kubeConfig.makeApiClient(k8s.CoreV1Api)
    this.discovery = init.kubeConfig.makeApiClient(k8s.DiscoveryV1Api)
    this.offLocal = init.slices.onChange((ns, svc) => {
      if (this.localWatch.has(`${ns}/${svc}`)) init.onLocalChange()
    })
  }

  private get leading(): boolean {
    return this.init.leader?.() ?? true
  }

  /** Reconciles every merged import; returns the `namespace/name` of each Service it keeps (per-site imports must not take them). */
  /** The leader creates or corrects the Service; a follower takes the leader's, or waits for it. */
  private async serviceFor(namespace: string, name: string, labels: Record<string, string>, spec: k8s.V1ServiceSpec, share: string, pod?: string, serviceImport?: string): Promise<k8s.V1Service | undefined> {
    if (this.leading) return this.ensureService(namespace, name, labels, spec, serviceImport)
    const cur = await this.readService(namespace, name)
    if (cur !== undefined && MergedImports.mine(cur, share, pod) && (cur.spec?.clusterIP === 'None') === (spec.clusterIP === 'None')) return cur
    this.init.retry?.()
    return undefined
  }

  /** Reconciles every merged import; returns the `namespace/name` of each Service it keeps (per-site imports must not take them). */
  async reconcile(sites: readonly SiteShares[]): Promise<Set<string>> {
    const owned = new Set<string>()
    const watch = new Set<string>()
    const usedListeners = new Set<string>()
    for (const g of planMerged(sites)) {
      try {
        await this.ensureGroup(g, owned, watch, usedListeners)
      } catch (e) {
        this.init.log.warn({ err: String(e), share: g.share }, 'imports: merged import failed')
      }
    }
    this.localWatch = watch
    if (this.leading) await this.collect(owned)
    for (const [key, l] of this.listeners) {
      if (usedListeners.has(key)) continue
      this.listeners.delete(key)
      await l.listener.close().catch(() => {})
    }
    return owned
  }

  async close(): Promise<void> {
    this.offLocal()
    const all = [...this.listeners.values()]
    this.listeners.clear()
    await Promise.all(all.map((l) => l.listener.close().catch(() => {})))
  }

  private async readService(namespace: string, name: string): Promise<k8s.V1Service | undefined> {
    try {
      return await this.core.readNamespacedService({ namespace, name })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
      return undefined
    }
  }

  /** Is `svc` free for merged import `share` (absent, or already it)? */
  private static mine(svc: k8s.V1Service | undefined, share: string, pod?: string): boolean {
    if (svc === undefined) return true
    const l = svc.metadata?.labels ?? {}
    return l[MANAGED_BY_LABEL] === MANAGED_BY_VALUE && l[MERGED_IMPORT_LABEL] === labelValue(share) && l[IMPORT_POD_LABEL] === (pod === undefined ? undefined : labelValue(pod))
  }

  /** The merged Service's name (module comment), and the user's Service `N/S` when it exists here. */
  private async nameOf(g: MergedGroup, namespace: string): Promise<{ name: string; local?: k8s.V1Service } | undefined> {
    let local: k8s.V1Service | undefined
    if (g.service !== undefined && namespace === g.namespace) {
      const cur = await this.readService(namespace, g.service)
      if (MergedImports.mine(cur, g.share)) return { name: g.service }
      if (cur?.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) local = cur
    }
    const name = clustersetName(g.share)
    if (MergedImports.mine(await this.readService(namespace, name), g.share)) return { name, ...(local !== undefined ? { local } : {}) }
    this.clash(`${namespace}/${name}`, g.share)
    return undefined
  }

  private clash(key: string, share: string): void {
    if (this.reported.has(`clash:${key}`)) return
    this.reported.add(`clash:${key}`)
    this.init.log.warn({ service: key, share }, 'imports: the merged import\'s Service name is taken by an object causeway does not manage; not importing it merged')
  }

  /** The listener of Service `key` (`namespace/name`) to `share` on `site` (ANY_SITE: merged). */
  private async listenerFor(key: string, site: string, share: string, protocol: 'udp' | undefined, used: Set<string>): Promise<ImportListener | undefined> {
    used.add(key)
    const cur = this.listeners.get(key)
    if (cur !== undefined && cur.protocol === protocol && cur.target === `${share}@${site}`) return cur.listener
    if (cur !== undefined) {
      this.listeners.delete(key)
      await cur.listener.close().catch(() => {})
    }
    try {
      const listener = await this.init.agent.openImport(site, share, protocol, key.slice(key.indexOf('/') + 1))
      this.listeners.set(key, { listener, protocol, target: `${share}@${site}` })
      return listener
    } catch (e) {
      this.init.log.warn({ err: String(e), site, share }, 'imports: opening the merged import listener failed')
      return undefined
    }
  }

  private async ensureGroup(g: MergedGroup, owned: Set<string>, watch: Set<string>, used: Set<string>): Promise<void> {
    const namespace = await this.init.targetNamespace(g.oldest.share)
    const named = await this.nameOf(g, namespace)
    if (named === undefined) return
    const { name, local } = named
    const key = `${namespace}/${name}`
    owned.add(key)
    const labels = { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [MERGED_IMPORT_LABEL]: labelValue(g.share), [IMPORT_SHARE_LABEL]: labelValue(g.share) }
    const siName = g.service !== undefined && namespace === g.namespace ? g.service : name
    const port = { name: portName(g.protocol), protocol: portProtocol(g.protocol) }
    const live = g.sites.filter((s) => s.live).map((s) => s.site)
    let svc: k8s.V1Service | undefined
    let listener: ImportListener | undefined
    let routedLocally = false
    if (g.headless) {
      svc = await this.serviceFor(namespace, name, labels, { clusterIP: 'None', ports: [{ ...port, port: g.port ?? 1 }] }, g.share, undefined, siName)
      if (svc === undefined) return
      const endpoints: SliceEndpoint[] = []
      for (const p of g.pods) {
        const podName = podServiceName(p.pod, name)
        const podKey = `${namespace}/${podName}`
        if (!MergedImports.mine(await this.readService(namespace, podName), g.share, p.pod)) {
          this.clash(podKey, g.share)
          continue
        }
        const l = await this.listenerFor(podKey, p.site, p.share.name, g.protocol, used)
        if (l === undefined) continue
        owned.add(podKey)
        const podLabels = { ...labels, [IMPORT_POD_LABEL]: labelValue(p.pod) }
        const podSvc = await this.serviceFor(namespace, podName, podLabels, { type: 'ClusterIP', ports: [{ ...port, port: g.port ?? l.port, targetPort: l.port }] }, g.share, p.pod)
        if (podSvc === undefined) continue
        await this.init.instanceSlices.ensure({ namespace, service: podName, uid: podSvc.metadata?.uid ?? '', labels: podLabels, port: { ...port, port: l.port }, connected: p.live })
        const ip = podSvc.spec?.clusterIP
        if (ip !== undefined && ip !== '' && ip !== 'None') endpoints.push({ addresses: [ip], hostname: p.pod, conditions: { ready: p.live } })
      }
      if (this.leading) await this.ensureSlice(svc, labels, endpoints, [{ ...port, port: g.port ?? 1 }])
    } else {
      listener = await this.listenerFor(key, ANY_SITE, g.share, g.protocol, used)
      if (listener === undefined) return
      svc = await this.serviceFor(namespace, name, labels, { type: 'ClusterIP', ports: [{ ...port, port: g.port ?? listener.port, targetPort: listener.port }] }, g.share, undefined, siName)
      if (svc === undefined) return
      // the leader's shared slice lists local endpoints while local-first routes there, else none
      let endpoints: SliceEndpoint[] = []
      let slicePorts: k8s.DiscoveryV1EndpointPort[] = [{ ...port, port: listener.port }]
      if (g.localFirst && local !== undefined) {
        watch.add(`${namespace}/${local.metadata?.name ?? ''}`)
        const here = this.localEndpoints(local, g)
        if (here !== undefined) {
          endpoints = here.endpoints
          slicePorts = [{ ...port, port: here.port }]
          routedLocally = true
        }
      }
      await this.init.instanceSlices.ensure({ namespace, service: name, uid: svc.metadata?.uid ?? '', labels, port: { ...port, port: listener.port }, connected: live.length > 0 && !routedLocally })
      if (this.leading) await this.ensureSlice(svc, labels, endpoints, slicePorts)
    }
    if (!this.leading) return
    await this.init.serviceImports.ensureFor(svc, { name: siName, clusters: g.sites.map((s) => s.site), labels, conditions: conditionsOf(g, live) })
    const split = this.init.agent.siteSplit?.(g.share) ?? []
    const clusters: NonNullable<ShareStatus['clusters']> = {}
    for (const s of g.sites) {
      const x = split.find((v) => v.site === s.site)
      clusters[s.site] = { live: s.live, ...(x?.ejected === true ? { ejected: true } : {}), streams: x?.streams ?? 0 }
    }
    const status: ShareStatus = {
      role: 'import',
      share: g.share,
      path: routedLocally ? 'local endpoints (local-first)' : g.headless ? `per pod: ${g.pods.map((p) => `${p.pod}@${p.site}`).join(', ') || 'none'}` : live.length > 0 ? 'clusterset' : 'no live cluster',
      clusters,
      ...(listener !== undefined ? { listener: `${this.init.podIp}:${listener.port}` } : {}),
      ...(g.conflicts.length > 0 ? { lastError: g.conflicts.map((c) => c.message).join('; ') } : {}),
    }
    const ref = { namespace, name, uid: svc.metadata?.uid }
    if (!this.reported.has(key)) {
      this.reported.add(key)
      await this.init.status?.event(ref, 'Normal', 'Imported', `imported ${g.share} merged from ${g.sites.map((s) => s.site).join(', ')}`)
    }
    await this.init.status?.setStatus(ref, status, svc.metadata?.annotations?.[STATUS_ANNOTATION])
  }

  /** The local Service's ready endpoints on the port the share is exported on, or undefined when it has none. */
  private localEndpoints(local: k8s.V1Service, g: MergedGroup): { endpoints: SliceEndpoint[]; port: number } | undefined {
    const ports = local.spec?.ports ?? []
    const sp = ports.find((p) => p.port === g.port && (p.protocol ?? 'TCP') === portProtocol(g.protocol)) ?? (ports.length === 1 ? ports[0] : undefined)
    if (sp === undefined) return undefined
    const eps = this.init.slices.endpoints(local.metadata?.namespace ?? '', local.metadata?.name ?? '').ready
    let port: number | undefined
    const endpoints: SliceEndpoint[] = []
    for (const ep of eps) {
      const p = slicePort(ep, sp)
      if (p === undefined || (port !== undefined && p !== port)) continue // one slice, one port list
      port = p
      endpoints.push({ addresses: [ep.address], conditions: { ready: true } })
    }
    return port === undefined ? undefined : { endpoints, port }
  }

  private async ensureService(namespace: string, name: string, labels: Record<string, string>, spec: k8s.V1ServiceSpec, serviceImport?: string): Promise<k8s.V1Service> {
    const annotations = serviceImport !== undefined ? { [SERVICE_IMPORT_ANNOTATION]: serviceImport } : undefined
    const cur = await this.readService(namespace, name)
    const headless = spec.clusterIP === 'None'
    if (cur !== undefined && (cur.spec?.clusterIP === 'None') !== headless) {
      // clusterIP is immutable: a change between headless and not needs a new Service
      await this.core.deleteNamespacedService({ namespace, name })
    } else if (cur !== undefined) {
      // an absent targetPort means the port itself (the API server defaults it so)
      const view = (ports: k8s.V1ServicePort[] | undefined): string => JSON.stringify((ports ?? []).map((p) => [p.name, p.protocol ?? 'TCP', p.port, p.targetPort ?? p.port]))
      const same = view(cur.spec?.ports) === view(spec.ports) && Object.entries({ ...labels, ...annotations }).every(([k, v]) => cur.metadata?.labels?.[k] === v || cur.metadata?.annotations?.[k] === v)
      if (same) return cur
      return this.core.patchNamespacedService({ namespace, name, body: { metadata: { labels, ...(annotations !== undefined ? { annotations } : {}) }, spec: { ports: spec.ports } } }, mergePatchOptions())
    }
    return this.core.createNamespacedService({ namespace, body: { metadata: { name, namespace, labels, ...(annotations !== undefined ? { annotations } : {}) }, spec } })
  }

  private async ensureSlice(svc: k8s.V1Service, labels: Record<string, string>, endpoints: SliceEndpoint[], ports: k8s.DiscoveryV1EndpointPort[]): Promise<void> {
    if (!this.leading) return
    const namespace = svc.metadata?.namespace ?? ''
    const service = svc.metadata?.name ?? ''
    const name = `${service}-causeway`
    const first = endpoints[0]?.addresses[0] ?? this.init.podIp
    const body: k8s.V1EndpointSlice = {
      metadata: {
        name,
        namespace,
        labels: { ...labels, [SERVICE_NAME_LABEL]: service, [SLICE_MANAGED_BY_LABEL]: SLICE_MANAGED_BY_VALUE },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: service, uid: svc.metadata?.uid ?? '', controller: true, blockOwnerDeletion: true }],
      },
      addressType: first.includes(':') ? 'IPv6' : 'IPv4',
      endpoints,
      ports,
    }
    let cur: k8s.V1EndpointSlice | undefined
    try {
      cur = await this.discovery.readNamespacedEndpointSlice({ namespace, name })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
    if (cur === undefined) {
      await this.discovery.createNamespacedEndpointSlice({ namespace, body })
      return
    }
    if (cur.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return
    const view = (s: k8s.V1EndpointSlice): string =>
      JSON.stringify([s.addressType, (s.endpoints ?? []).map((e) => [e.addresses, e.hostname, e.conditions?.ready]), (s.ports ?? []).map((p) => [p.name, p.protocol ?? 'TCP', p.port]), s.metadata?.ownerReferences?.[0]?.uid])
    if (view(cur) === view(body) && Object.entries(body.metadata?.labels ?? {}).every(([k, v]) => cur.metadata?.labels?.[k] === v)) return
    if (cur.addressType !== body.addressType) {
      // addressType is immutable
      await this.discovery.deleteNamespacedEndpointSlice({ namespace, name })
      await this.discovery.createNamespacedEndpointSlice({ namespace, body })
      return
    }
    await this.discovery.patchNamespacedEndpointSlice({ namespace, name, body: { metadata: body.metadata, endpoints, ports } }, mergePatchOptions())
  }

  /** Deletes the merged imports (and per-pod Services) nobody wants, unless in the start-up grace. */
  private async collect(owned: Set<string>): Promise<void> {
    if (this.init.keepUnwanted() || !this.leading) return
    const managed = await this.core.listServiceForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${MERGED_IMPORT_LABEL}` })
    for (const svc of managed.items) {
      const namespace = svc.metadata?.namespace ?? ''
      const name = svc.metadata?.name ?? ''
      if (owned.has(`${namespace}/${name}`)) continue
      try {
        const si = svc.metadata?.annotations?.[SERVICE_IMPORT_ANNOTATION]
        if (si !== undefined) await this.init.serviceImports.removeOwned(namespace, si, svc.metadata?.uid ?? '')
        // its EndpointSlice is owned by it (garbage-collected with it); deleted here too for clusters without the collector
        await this.discovery.deleteNamespacedEndpointSlice({ namespace, name: `${name}-causeway` }).catch((e: unknown) => {
          if (apiCode(e) !== 404) throw e
        })
        await this.core.deleteNamespacedService({ namespace, name }).catch((e: unknown) => {
          if (apiCode(e) !== 404) throw e
        })
        this.reported.delete(`${namespace}/${name}`)
        this.init.status?.forget({ namespace, name })
        this.init.log.info({ service: `${namespace}/${name}` }, 'imports: merged import removed')
      } catch (e) {
        this.init.log.warn({ err: String(e), service: `${namespace}/${name}` }, 'imports: merged import removal failed')
      }
    }
  }
}

/** The ServiceImport conditions of a merged import: Ready (a cluster can take streams) and Conflict (the oldest export wins). */
export function conditionsOf(g: MergedGroup, live: readonly string[]): Condition[] {
  const ready: Condition =
    live.length > 0
      ? { type: 'Ready', status: 'True', reason: 'ClustersLive', message: `live: ${live.join(', ')}` }
      : { type: 'Ready', status: 'False', reason: 'NoLiveCluster', message: 'no exporting cluster can take connections now (disconnected, or no ready endpoint)' }
  const first = g.conflicts[0]
  const conflict: Condition =
    first === undefined
      ? { type: 'Conflict', status: 'False', reason: 'NoConflicts', message: 'no conflicts' }
      : { type: 'Conflict', status: 'True', reason: first.reason, message: g.conflicts.map((c) => c.message).join('; ') }
  return [ready, conflict]
}
