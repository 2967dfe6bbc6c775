/**
 * The Kubernetes Multi-Cluster Services API (KEP-1645, `multicluster.x-k8s.io/v1alpha1`).
 *
 * Exporting side: a `ServiceExport` named like a Service exports that Service exactly as the
 * `causeway.dev/share: "true"` annotation does (the other causeway annotations still apply).
 * Its `status.conditions` follow the KEP: `Valid` (True: the Service exists and can be
 * exported; False with reason `NoService`, `InvalidServiceType` for ExternalName, or
 * `NoTCPOrUDPPort`) and `Conflict` (True with reason `NameConflict` when another Service already
 * publishes the same share name — the older one wins, as the KEP's conflict resolution says;
 * else False, `NoConflicts`).
 *
 * Importing side: when the ServiceImport CRD is served, every import also gets a
 * `ServiceImport` of the same name (type `ClusterSetIP`, `ips` = the import Service's cluster
 * IP, its ports, `status.clusters` = the exporting peer), so MCS-aware DNS
 * (`<name>.<ns>.svc.clusterset.local`, e.g. CoreDNS's multicluster plugin) resolves it.
 *
 * Both CRDs are optional: the watcher checks discovery and starts when the group appears.
 */
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../../protocol/annotations.ts'
import { apiCode, mergePatchOptions, runInformer } from './kubeutil.ts'

export const MCS_GROUP = 'multicluster.x-k8s.io'
export const MCS_VERSION = 'v1alpha1'

export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason: string
  message: string
  lastTransitionTime?: string
  observedGeneration?: number
}

export interface McsObject extends k8s.KubernetesObject {
  spec?: Record<string, unknown>
  status?: { conditions?: Condition[] } & Record<string, unknown>
}

/** Is `plural` served in group/version? (discovery; needs no RBAC beyond system:discovery) */
export async function serves(kc: k8s.KubeConfig, group: string, version: string, plural: string): Promise<boolean> {
  try {
    const res = await kc.makeApiClient(k8s.CustomObjectsApi).getAPIResources({ group, version })
    return (res.resources ?? []).some((r) => r.name === plural)
  } catch (e) {
    if (apiCode(e) === 404) return false
    throw e
  }
}

/**
 * Conditions with `lastTransitionTime` kept from `prev` when the status did not change (the
 * meta/v1 Condition contract), stamped now otherwise.
 */
export function mergeConditions(prev: Condition[] | undefined, next: Condition[], generation: number | undefined): Condition[] {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  return next.map((c) => {
    const p = prev?.find((x) => x.type === c.type)
    return { ...c, lastTransitionTime: p !== undefined && p.status === c.status ? (p.lastTransitionTime ?? now) : now, ...(generation !== undefined ? { observedGeneration: generation } : {}) }
  })
}

const sameConditions = (a: Condition[] | undefined, b: Condition[]): boolean =>
  JSON.stringify((a ?? []).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration])) === JSON.stringify(b.map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration]))

/** The export error of a Service without a TCP or UDP port to share (the ServiceExport condition `NoTCPOrUDPPort`). */
export const NO_PORT = 'no TCP or UDP port to share'

/** The KEP conditions of one ServiceExport. `service` undefined: no Service of that name. */
export function exportConditions(service: k8s.V1Service | undefined, error: string | undefined, conflict: string | undefined, conflictReason = 'NameConflict'): Condition[] {
  const valid: Condition =
    service === undefined ? { type: 'Valid', status: 'False', reason: 'NoService', message: 'no Service of this name in this namespace' }
    : service.spec?.type === 'ExternalName' ? { type: 'Valid', status: 'False', reason: 'InvalidServiceType', message: error ?? 'ExternalName Services are not exported' }
    : error === NO_PORT ? { type: 'Valid', status: 'False', reason: 'NoTCPOrUDPPort', message: error }
    : error !== undefined && error.startsWith('the Service is an import') ? { type: 'Valid', status: 'False', reason: 'ImportedService', message: error }
    : { type: 'Valid', status: 'True', reason: 'Valid', message: error ?? 'the Service is exported' }
  const conf: Condition = conflict !== undefined ? { type: 'Conflict', status: 'True', reason: conflictReason, message: conflict } : { type: 'Conflict', status: 'False', reason: 'NoConflicts', message: 'no conflicts' }
  return [valid, conf]
}

/** Watches ServiceExports once their CRD is served; writes their status conditions. */
export class ServiceExportWatcher {
  private readonly kc: k8s.KubeConfig
  private readonly api: k8s.CustomObjectsApi
  private readonly namespace: string | undefined
  private readonly log: LogLike
  private informer: (k8s.Informer<McsObject> & k8s.ObjectCache<McsObject>) | undefined
  private readonly changed: () => void

  constructor(init: { kubeConfig: k8s.KubeConfig; namespace?: string; log?: LogLike | undefined; onChange: () => void }) {
    this.kc = init.kubeConfig
    this.api = init.kubeConfig.makeApiClient(k8s.CustomObjectsApi)
    this.namespace = init.namespace
    this.log = init.log ?? silentLog
    this.changed = init.onChange
  }

  /** Starts the informer if the CRD is served (call again later to pick up a new CRD). */
  async ensureStarted(signal: AbortSignal): Promise<void> {
    if (this.informer !== undefined || signal.aborted) return
    if (!(await serves(this.kc, MCS_GROUP, MCS_VERSION, 'serviceexports'))) return
    const ns = this.namespace
    const path = ns === undefined ? `/apis/${MCS_GROUP}/${MCS_VERSION}/serviceexports` : `/apis/${MCS_GROUP}/${MCS_VERSION}/namespaces/${ns}/serviceexports`
    const list = async (): Promise<k8s.KubernetesListObject<McsObject>> =>
      (ns === undefined
        ? await this.api.listCustomObjectForAllNamespaces({ group: MCS_GROUP, version: MCS_VERSION, resourcePlural: 'serviceexports' })
        : await this.api.listNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: ns, plural: 'serviceexports' })) as k8s.KubernetesListObject<McsObject>
    const informer = k8s.makeInformer<McsObject>(this.kc, path, list)
    for (const ev of ['add', 'update', 'delete'] as const) informer.on(ev, () => this.changed())
    this.informer = informer
    await runInformer(informer, signal, this.log, 'exports: ServiceExports')
    this.log.info({}, 'exports: watching ServiceExports (multicluster.x-k8s.io/v1alpha1)')
    this.changed()
  }

  list(): McsObject[] {
    return [...(this.informer?.list() ?? [])]
  }

  has(namespace: string, name: string): boolean {
    return this.informer?.get(name, namespace) !== undefined
  }

  get(namespace: string, name: string): McsObject | undefined {
    return this.informer?.get(name, namespace)
  }

  /** Writes the conditions when they differ from the object's (status subresource). */
  async setConditions(se: McsObject, next: Condition[]): Promise<void> {
    const gen = se.metadata?.generation
    const conds = mergeConditions(se.status?.conditions, next, gen)
    if (sameConditions(se.status?.conditions, conds)) return
    try {
      await this.api.patchNamespacedCustomObjectStatus(
        { group: MCS_GROUP, version: MCS_VERSION, namespace: se.metadata?.namespace ?? '', plural: 'serviceexports', name: se.metadata?.name ?? '', body: { status: { conditions: conds } } },
        mergePatchOptions(),
      )
    } catch (e) {
      if (apiCode(e) !== 404) this.log.warn({ err: String(e), serviceExport: `${se.metadata?.namespace ?? ''}/${se.metadata?.name ?? ''}` }, 'exports: ServiceExport status write failed')
    }
  }
}

/** Keeps the ServiceImport of each import when the ServiceImport CRD is served (re-checked every minute). */
export class ServiceImportWriter {
  private readonly kc: k8s.KubeConfig
  private readonly api: k8s.CustomObjectsApi
  private readonly log: LogLike
  private served: { value: boolean; at: number } | undefined

  constructor(kc: k8s.KubeConfig, log: LogLike) {
    this.kc = kc
    this.api = kc.makeApiClient(k8s.CustomObjectsApi)
    this.log = log
  }

  private async enabled(): Promise<boolean> {
    if (this.served === undefined || Date.now() - this.served.at > 60_000) {
      this.served = { value: await serves(this.kc, MCS_GROUP, MCS_VERSION, 'serviceimports'), at: Date.now() }
    }
    return this.served.value
  }

  /** Creates or updates the ServiceImport for an import Service (owned by it: deleted with it). */
  async ensure(svc: k8s.V1Service, peer: string, labels: Record<string, string>): Promise<void> {
    await this.ensureFor(svc, { name: svc.metadata?.name ?? '', clusters: [peer], labels })
  }

  /**
   * The ServiceImport `name` (default the Service's) backed by import Service `svc`: type
   * `Headless` for a headless Service (no ips), else `ClusterSetIP` with its cluster IP; its
   * ports; `status.clusters` (sorted) and, for merged imports, `status.conditions`.
   */
  async ensureFor(svc: k8s.V1Service, opts: { name: string; clusters: readonly string[]; labels: Record<string, string>; conditions?: Condition[] }): Promise<void> {
    if (!(await this.enabled())) return
    const namespace = svc.metadata?.namespace ?? ''
    const name = opts.name
    const ip = svc.spec?.clusterIP
    const headless = ip === 'None'
    const spec = {
      type: headless ? 'Headless' : 'ClusterSetIP',
      ...(ip !== undefined && ip !== '' && !headless ? { ips: [ip] } : {}),
      ports: (svc.spec?.ports ?? []).map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), protocol: p.protocol ?? 'TCP', port: p.port })),
    }
    const ref = { group: MCS_GROUP, version: MCS_VERSION, namespace, plural: 'serviceimports', name }
    let cur: McsObject | undefined
    try {
      cur = (await this.api.getNamespacedCustomObject(ref)) as McsObject
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
    if (cur !== undefined && cur.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
      this.log.warn({ serviceImport: `${namespace}/${name}` }, 'imports: the ServiceImport exists and is not managed by causeway; left alone')
      return
    }
    const owner = [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata?.name ?? '', uid: svc.metadata?.uid ?? '', controller: true, blockOwnerDeletion: true }]
    if (cur === undefined) {
      cur = (await this.api.createNamespacedCustomObject({
        group: MCS_GROUP, version: MCS_VERSION, namespace, plural: 'serviceimports',
        body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: 'ServiceImport', metadata: { name, namespace, labels: opts.labels, ownerReferences: owner }, spec },
      })) as McsObject
    } else if (JSON.stringify(cur.spec) !== JSON.stringify(spec) || cur.metadata?.ownerReferences?.[0]?.uid !== svc.metadata?.uid) {
      cur = (await this.api.patchNamespacedCustomObject({ ...ref, body: { metadata: { labels: opts.labels, ownerReferences: owner }, spec } }, mergePatchOptions())) as McsObject
    }
    const clusters = [...opts.clusters].sort().map((cluster) => ({ cluster }))
    const conditions = opts.conditions === undefined ? undefined : mergeConditions(cur.status?.conditions, opts.conditions, undefined)
    const clustersSame = JSON.stringify(cur.status?.clusters) === JSON.stringify(clusters)
    const conditionsSame = conditions === undefined || sameConditions(cur.status?.conditions, conditions)
    if (!clustersSame || !conditionsSame) {
      await this.api.patchNamespacedCustomObjectStatus({ ...ref, body: { status: { clusters, ...(conditions !== undefined ? { conditions } : {}) } } }, mergePatchOptions())
    }
  }

  /** Deletes ServiceImport `name` if causeway manages it and, with `ownerUid`, only while that Service owns it. */
  async removeOwned(namespace: string, name: string, ownerUid: string): Promise<void> {
    if (!(await this.enabled())) return
    const ref = { group: MCS_GROUP, version: MCS_VERSION, namespace, plural: 'serviceimports', name }
    try {
      const cur = (await this.api.getNamespacedCustomObject(ref)) as McsObject
      if (cur.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE || cur.metadata.ownerReferences?.[0]?.uid !== ownerUid) return
      await this.api.deleteNamespacedCustomObject(ref)
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
  }

  /** Deletes the ServiceImport of a withdrawn import (only one causeway manages). */
  async remove(namespace: string, name: string): Promise<void> {
    if (!(await this.enabled())) return
    const ref = { group: MCS_GROUP, version: MCS_VERSION, namespace, plural: 'serviceimports', name }
    try {
      const cur = (await this.api.getNamespacedCustomObject(ref)) as McsObject
      if (cur.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return
      await this.api.deleteNamespacedCustomObject(ref)
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
  }
}
