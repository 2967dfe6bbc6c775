/**
 * Exports reconciler: watches Services (list + watch informer) and turns every Service annotated
 * `causeway.dev/share: "true"` into shares of the agent's catalog (source `"kube"`).
 *
 * One share per selected Service port:
 * - ports: those named or numbered in `causeway.dev/ports` (comma-separated), default every TCP
 *   and UDP port of the Service; a UDP port becomes a UDP share; SCTP ports are never shared;
 * - publish name: `causeway.dev/name`, default `<service>` in the `default` namespace and
 *   `<namespace>-<service>` elsewhere;
 * - share name: the publish name when one TCP port is shared, else `<publish-name>-<port name>`
 *   (`<publish-name>-<port number>` for an unnamed port); UDP ports are named the same way
 *   among themselves, but a UDP port takes the bare publish name only when no TCP port is
 *   shared (TCP shares keep the names they had before UDP ports were shared; port names are
 *   unique within a Service, so the names never clash);
 * - target: `<service>.<namespace>.svc:<port>` — the cluster DNS name; the agent dials only it;
 * - peers: `causeway.dev/peers` (comma-separated), default every peer.
 * ExternalName Services are never exported: their cluster DNS name is a CNAME to any name the
 * Service's author chose (another cluster, the internet, or a name resolving to the agent's
 * own loopback), so exporting one would let whoever may create a Service make the agent dial
 * anything. Their status says so.
 * Two Services claiming the same share name: the older one (creationTimestamp, then namespace
 * and name) wins; the other gets a Warning Event and the error in its status annotation.
 * Reserved share names (`RESERVED_SHARE_NAMES`: `kube-apiserver`, the API-server share's, which
 * `causeway kubeconfig` connects to) are never published from a Service: only that share is
 * left out, the Service's status annotation and a Warning Event say why (its ServiceExport
 * shows a Conflict), and every other export keeps changing. (Before, whoever could create a
 * Service in any namespace could name it so and freeze every later export change: the agent
 * refused the whole catalog.)
 */
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { IMPORT_SHARE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NAME_ANNOTATION, PEERS_ANNOTATION, PODS_ANNOTATION, PORTS_ANNOTATION, SHARE_ANNOTATION, STATUS_ANNOTATION } from '../../protocol/annotations.ts'
import type { ShareAnnouncement } from '../tunnel/shares.ts'
import { dialablePodAddress, slicePort, SliceCache, type ServiceEndpoints } from './endpoints.ts'
import { exportPolicy } from './policy.ts'
import { APISERVER_SHARE } from './agent-port.ts'
import { runInformer } from './kubeutil.ts'
import { exportConditions, NO_PORT, ServiceExportWatcher } from './mcs.ts'
import type { AgentPort, LocalShare, RemoteShare } from './ports.ts'
import type { ShareStatus, StatusWriter } from './status.ts'

export const KUBE_SHARE_SOURCE = 'kube'

/** Share names a Service can never publish: the agent's own shares use them. */
export const RESERVED_SHARE_NAMES: ReadonlySet<string> = new Set([APISERVER_SHARE])

export const EXTERNAL_NAME_REFUSED = 'ExternalName Services are not exported: the agent would dial whatever name spec.externalName points to'

/** Per-pod sub-shares of one Service at the most (the rest: reported in its status). */
export const MAX_POD_SHARES = 64
/** Shares from Services in the catalog at the most, leaving room under the protocol's 256 (protocol/peer.ts) for the other sources; only per-pod sub-shares are dropped for it. */
export const MAX_KUBE_SHARES = 224
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** An import Service is never exported again (it would loop streams back through the tunnel). */
export const IMPORT_REFUSED = 'the Service is an import causeway manages (a Service of this name already came from another cluster): it is not exported again; delete the import or export under another name'

export interface ServiceShares {
  shares: LocalShare[]
  error?: string
}

const csv = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')

export function isShared(svc: k8s.V1Service): boolean {
  return svc.metadata?.annotations?.[SHARE_ANNOTATION] === 'true'
}

/** What the reconciler knows about an export beyond its Service (all optional: the function stays pure). */
export interface ExportContext {
  /** The ServiceExport's annotations: they win over the Service's for the policy annotations. */
  exportAnnotations?: Readonly<Record<string, string>>
  /** When the export began (ms since epoch): the ServiceExport's creation, else the Service's. */
  since?: number
  /** The Service's endpoints (EndpointSlices): withdrawal, per-pod sub-shares. Undefined: unknown. */
  endpoints?: ServiceEndpoints
}

/** The name of the sub-share of `share` that reaches only pod `pod`: `<share>.<pod>` (cut with a hash past 63 characters). */
export function podShareName(share: string, pod: string): string {
  const full = `${share}.${pod}`
  if (full.length <= 63) return full
  const h = Array.from(full).reduce((a, c) => (a * 31 + c.charCodeAt(0)) >>> 0, 7).toString(36).slice(0, 6)
  return `${full.slice(0, 56).replace(/[.-]+$/, '')}-${h}`
}

/**
 * The shares one Service publishes (empty when neither annotated nor named by a ServiceExport,
 * `exported`). Pure: unit-testable.
 * - policy annotations (agent/kube/policy.ts) become the shares' balance/weight/priority/failover;
 * - every share announces the Service's name and the export's age (`since`);
 * - `available: false` while the Service has EndpointSlices and none has a ready endpoint (a
 *   Service without any slice, e.g. selector-less with no manual slice, is not judged);
 * - `causeway.dev/pods: "true"`: one sub-share per ready pod (podShareName) dialing that pod's
 *   address and slice port, announced with `pod` and `parent`.
 */
export function sharesOfService(svc: k8s.V1Service, exported = false, ctx: ExportContext = {}): ServiceShares {
  if (!isShared(svc) && !exported) return { shares: [] }
  const ns = svc.metadata?.namespace ?? 'default'
  const name = svc.metadata?.name ?? ''
  const ann = svc.metadata?.annotations ?? {}
  const publish = ann[NAME_ANNOTATION]?.trim() || (ns === 'default' ? name : `${ns}-${name}`)
  const usable = (svc.spec?.ports ?? []).filter((p) => ['TCP', 'UDP'].includes(p.protocol ?? 'TCP'))
  const wanted = csv(ann[PORTS_ANNOTATION])
  const selected = wanted.length === 0 ? usable : usable.filter((p) => wanted.includes(String(p.port)) || (p.name !== undefined && wanted.includes(p.name)))
  const unknown = wanted.filter((w) => !usable.some((p) => String(p.port) === w || p.name === w))
  const peers = csv(ann[PEERS_ANNOTATION])
  if (svc.spec?.type === 'ExternalName') return { shares: [], error: EXTERNAL_NAME_REFUSED }
  if (svc.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE && svc.metadata.labels[IMPORT_SHARE_LABEL] !== undefined) return { shares: [], error: IMPORT_REFUSED }
  const { policy, errors } = exportPolicy({ ...ann, ...ctx.exportAnnotations })
  const eps = ctx.endpoints
  const withdrawn = eps !== undefined && eps.slices > 0 && eps.ready.length === 0
  const tcp = selected.filter((p) => (p.protocol ?? 'TCP') === 'TCP')
  const udp = selected.filter((p) => p.protocol === 'UDP')
  const announce: ShareAnnouncement = { service: name, ...(ctx.since !== undefined ? { since: ctx.since } : {}), ...(policy.failover !== undefined ? { failover: policy.failover } : {}) }
  const share = (p: k8s.V1ServicePort, bare: boolean, protocol?: 'udp'): LocalShare => ({
    name: bare ? publish : `${publish}-${p.name || String(p.port)}`,
    host: `${name}.${ns}.svc`,
    port: p.port,
    namespace: ns,
    ...(peers.length > 0 ? { peers } : {}),
    ...(protocol !== undefined ? { protocol } : {}),
    ...(policy.balance !== undefined ? { balance: policy.balance } : {}),
    ...(policy.weight !== undefined ? { weight: policy.weight } : {}),
    ...(policy.priority !== undefined ? { priority: policy.priority } : {}),
    announce: { ...announce, ...(withdrawn ? { available: false } : {}), ...(policy.pods ? { pods: true } : {}) },
  })
  const shares: LocalShare[] = []
  const pods: LocalShare[] = []
  const refused = new Set<string>()
  const add = (p: k8s.V1ServicePort, bare: boolean, protocol?: 'udp'): void => {
    const parent = share(p, bare, protocol)
    shares.push(parent)
    if (!policy.pods) return
    for (const ep of eps?.ready ?? []) {
      const port = slicePort(ep, p)
      if (ep.pod === undefined || port === undefined) continue
      if (!DNS_LABEL.test(ep.pod)) {
        refused.add(`pod ${ep.pod}: not a DNS label, it cannot be a hostname`)
        continue
      }
      if (pods.length >= MAX_POD_SHARES) {
        refused.add(`more than ${MAX_POD_SHARES} ready pods: the others get no per-pod share`)
        continue
      }
      if (!dialablePodAddress(ep.address)) {
        refused.add(`pod ${ep.pod}: address ${ep.address} is loopback, link-local, multicast or unspecified: not dialed`)
        continue
      }
      pods.push({ ...parent, name: podShareName(parent.name, ep.pod), host: ep.address, targetPort: port, announce: { ...announce, pod: ep.pod, parent: parent.name } })
    }
  }
  for (const p of tcp) add(p, tcp.length === 1)
  for (const p of udp) add(p, tcp.length === 0 && udp.length === 1, 'udp')
  shares.push(...pods)
  const problems = [...errors, ...refused]
  if (policy.pods && eps === undefined) problems.push(`${PODS_ANNOTATION}: the Service's EndpointSlices are not known yet`)
  if (selected.length === 0) return { shares, error: NO_PORT }
  if (unknown.length > 0) problems.unshift(`no TCP or UDP port named or numbered ${unknown.join(', ')}`)
  return problems.length > 0 ? { shares, error: problems.join('; ') } : { shares }
}

export interface ExportsInit {
  kubeConfig: k8s.KubeConfig
  agent: AgentPort
  status?: StatusWriter
  /** Watch only this namespace. Default: all namespaces. */
  namespace?: string
  /** Whether this instance leads its site: only the leader writes ServiceExport conditions. Default: always. */
  leader?: () => boolean
  /** The EndpointSlice cache (shared with the imports). Default: one of its own. */
  slices?: SliceCache
  log?: LogLike
}

const timeOf = (t: Date | string | undefined): number => (t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : 0)

const keyOf = (svc: k8s.V1Service): string => `${svc.metadata?.namespace ?? ''}/${svc.metadata?.name ?? ''}`
const age = (svc: k8s.V1Service): number => timeOf(svc.metadata?.creationTimestamp)

export class ExportsReconciler {
  private readonly init: ExportsInit
  private readonly informer: k8s.Informer<k8s.V1Service> & k8s.ObjectCache<k8s.V1Service>
  private lastCatalog = ''
  private catalog: LocalShare[] = []
  private readonly exported = new Set<string>()
  private pending: Promise<void> = Promise.resolve()
  readonly serviceExports: ServiceExportWatcher
  readonly slices: SliceCache
  /** Other sites' catalogs: the same share name exported elsewhere with other ports is a KEP conflict. */
  private readonly remote = new Map<string, RemoteShare[]>()
  private readonly log: LogLike

  constructor(init: ExportsInit) {
    this.init = init
    this.log = init.log ?? silentLog
    this.slices = init.slices ?? new SliceCache(init.kubeConfig, this.log)
    this.slices.onChange((ns, name) => {
      const svc = this.informer.get(name, ns)
      if (svc !== undefined && (isShared(svc) || this.serviceExports.has(ns, name))) void this.schedule()
    })
    this.serviceExports = new ServiceExportWatcher({ kubeConfig: init.kubeConfig, namespace: init.namespace, log: init.log, onChange: () => void this.schedule() })
    const core = init.kubeConfig.makeApiClient(k8s.CoreV1Api)
    const ns = init.namespace
    this.informer = k8s.makeInformer(
      init.kubeConfig,
      ns === undefined ? '/api/v1/services' : `/api/v1/namespaces/${ns}/services`,
      () => (ns === undefined ? core.listServiceForAllNamespaces() : core.listNamespacedService({ namespace: ns })),
    )
    const changed = (): void => void this.schedule()
    this.informer.on('add', changed)
    this.informer.on('update', changed)
    this.informer.on('delete', changed)
  }

  /** Starts the informer; resolves after the first list. */
  async start(signal: AbortSignal): Promise<void> {
    this.signal = signal
    await this.slices.start(signal)
    await runInformer(this.informer, signal, this.log, 'exports: Services')
    const off = this.init.agent.onCatalog((site, shares) => {
      if (shares === null) this.remote.delete(site)
      else this.remote.set(site, shares)
      void this.schedule()
    })
    signal.addEventListener('abort', off, { once: true })
    await this.serviceExports.ensureStarted(signal).catch((e: unknown) => this.log.warn({ err: String(e) }, 'exports: ServiceExport discovery failed'))
    await this.schedule()
  }

  private signal: AbortSignal | undefined

  /** Picks up a ServiceExport CRD installed after start (called on the resync tick). */
  async recheckCrds(): Promise<void> {
    if (this.signal !== undefined) await this.serviceExports.ensureStarted(this.signal).catch((e: unknown) => this.log.warn({ err: String(e) }, 'exports: ServiceExport discovery failed'))
  }

  /** The shares currently published from Services. */
  shares(): LocalShare[] {
    return this.catalog.map((s) => ({ ...s }))
  }

  /** Recomputes the catalog (serialized), e.g. on a resync tick to refresh peer paths. */
  schedule(): Promise<void> {
    this.pending = this.pending.then(() => this.reconcile()).catch((e: unknown) => this.log.warn({ err: String(e) }, 'exports: reconcile failed'))
    return this.pending
  }

  private async reconcile(): Promise<void> {
    const viaExport = (svc: k8s.V1Service): boolean => this.serviceExports.has(svc.metadata?.namespace ?? '', svc.metadata?.name ?? '')
    const services = this.informer.list().filter((s) => isShared(s) || viaExport(s)).sort((a, b) => age(a) - age(b) || keyOf(a).localeCompare(keyOf(b)))
    const taken = new Map<string, string>()
    const mcs = new Map<string, { error?: string; conflict?: string; reason?: string }>()
    const catalog: LocalShare[] = []
    const statuses: Array<{ svc: k8s.V1Service; status: ShareStatus; errorChanged: boolean }> = []
    for (const svc of services) {
      const se = this.serviceExports.get(svc.metadata?.namespace ?? '', svc.metadata?.name ?? '')
      const { shares, error } = sharesOfService(svc, se !== undefined, {
        ...(se?.metadata?.annotations !== undefined ? { exportAnnotations: se.metadata.annotations } : {}),
        since: timeOf(se?.metadata?.creationTimestamp ?? svc.metadata?.creationTimestamp) || undefined,
        endpoints: this.slices.endpoints(svc.metadata?.namespace ?? '', svc.metadata?.name ?? ''),
      })
      const mine: LocalShare[] = []
      const clashes: string[] = []
      let dropped = 0
      for (const s of shares) {
        const owner = taken.get(s.name)
        if (s.announce?.parent !== undefined && catalog.length + mine.length >= MAX_KUBE_SHARES) dropped++
        else if (RESERVED_SHARE_NAMES.has(s.name)) clashes.push(`share name ${s.name} is reserved for the agent's own share (set causeway.dev/name to publish under another name)`)
        else if (owner !== undefined) clashes.push(`share name ${s.name} is already published by ${owner}`)
        else {
          taken.set(s.name, keyOf(svc))
          mine.push(s)
        }
      }
      if (dropped > 0) clashes.push(`${dropped} per-pod shares left out: the catalog holds at most ${MAX_KUBE_SHARES} shares from Services`)
      catalog.push(...mine)
      const elsewhere = crossClusterConflict(mine, this.remote)
      mcs.set(keyOf(svc), { ...(error !== undefined ? { error } : {}), ...(clashes.length > 0 ? { conflict: clashes.join('; ') } : elsewhere !== undefined ? { conflict: elsewhere.message, reason: elsewhere.reason } : {}) })
      const lastError = [error, ...clashes].filter((x) => x !== undefined).join('; ') || undefined
      const paths: Record<string, string> = {}
      for (const p of mine[0]?.peers ?? []) paths[p] = this.init.agent.peerPath(p) ?? 'disconnected'
      const withdrawn = mine.some((s) => s.announce?.available === false)
      const status: ShareStatus = { role: 'export', shares: mine.map((s) => s.name), ...(withdrawn ? { withdrawn: 'no ready endpoint: announced unavailable' } : {}), ...(Object.keys(paths).length ? { paths } : {}), ...(lastError ? { lastError } : {}) }
      const prev = svc.metadata?.annotations?.[STATUS_ANNOTATION]
      statuses.push({ svc, status, errorChanged: lastError !== undefined && !(prev ?? '').includes(JSON.stringify(lastError).slice(1, -1)) })
    }
    const text = JSON.stringify(catalog)
    if (text !== this.lastCatalog) {
      this.lastCatalog = text
      this.catalog = catalog
      this.init.agent.setShares(KUBE_SHARE_SOURCE, catalog.map((s) => ({ ...s })))
    }
    for (const se of this.init.leader?.() === false ? [] : this.serviceExports.list()) {
      const ns = se.metadata?.namespace ?? ''
      const name = se.metadata?.name ?? ''
      const svc = this.informer.get(name, ns)
      const r = mcs.get(`${ns}/${name}`)
      await this.serviceExports.setConditions(se, exportConditions(svc, r?.error, r?.conflict, r?.reason))
    }
    const status = this.init.status
    if (!status) return
    const now = new Set<string>()
    for (const { svc, status: st, errorChanged } of statuses) {
      const ref = { namespace: svc.metadata?.namespace ?? 'default', name: svc.metadata?.name ?? '', uid: svc.metadata?.uid }
      now.add(keyOf(svc))
      if (!this.exported.has(keyOf(svc)) && st.shares && st.shares.length > 0) {
        await status.event(ref, 'Normal', 'Exported', `shared as ${st.shares.join(', ')}`)
      }
      if (errorChanged && st.lastError) await status.event(ref, 'Warning', 'ExportFailed', st.lastError)
      await status.setStatus(ref, st, svc.metadata?.annotations?.[STATUS_ANNOTATION])
    }
    for (const key of this.exported) {
      if (now.has(key)) continue
      const [namespace = '', name = ''] = key.split('/')
      const svc = this.informer.get(name, namespace)
      if (svc?.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined) {
        // The share annotation went away: clear the status we wrote (the Service is the user's).
        await status.clearStatus({ namespace, name })
        await status.event({ namespace, name, uid: svc.metadata.uid }, 'Normal', 'Unexported', 'no longer shared')
      }
      status.forget({ namespace, name })
    }
    this.exported.clear()
    for (const k of now) this.exported.add(k)
  }
}

/**
 * KEP-1645 conflict resolution across clusters: when another site exports one of `mine` (same
 * share name) with another port or protocol and its export is older (`since`, then site name),
 * the oldest wins: this export gets `Conflict=True` (PortConflict) naming it. Pure.
 */
export function crossClusterConflict(mine: readonly LocalShare[], remote: ReadonlyMap<string, readonly RemoteShare[]>): { reason: string; message: string } | undefined {
  const out: string[] = []
  for (const s of mine) {
    if (s.announce?.parent !== undefined) continue
    const since = s.announce?.since ?? Number.MAX_SAFE_INTEGER
    for (const [site, shares] of [...remote].sort(([a], [b]) => a.localeCompare(b))) {
      const o = shares.find((x) => x.name === s.name && x.parent === undefined)
      if (o === undefined || (o.since ?? Number.MAX_SAFE_INTEGER) >= since) continue
      const theirs = `${o.port ?? '?'}/${o.protocol === 'udp' ? 'UDP' : 'TCP'}`
      const ours = `${s.port}/${s.protocol === 'udp' ? 'UDP' : 'TCP'}`
      if (theirs !== ours) out.push(`share ${s.name}: cluster ${site} exported it first with port ${theirs} (this cluster: ${ours}); importers use the oldest export's port`)
    }
  }
  return out.length > 0 ? { reason: 'PortConflict', message: out.join('; ') } : undefined
}
