/**
 * The agent's Kubernetes controller: wires the exports (annotations and ServiceExports),
 * imports (Services, EndpointSlices, ServiceImports), RemoteManifests and status reconcilers to a
 * KubeConfig (in-cluster in production) and an AgentPort, until `signal` aborts.
 *
 * Several instances of one site (replicas of the chart) run it side by side:
 * - every instance publishes the site's exports into its own catalog, opens its own import
 *   listeners and keeps its own EndpointSlice per import (slices.ts), and a presence Lease
 *   (presence.ts);
 * - exactly one, the holder of the site's Lease `causeway-<site>` (lease.ts), writes the shared
 *   objects: imported Services and ServiceImports, status annotations, Events, ServiceExport
 *   conditions and RemoteManifests (a RemoteManifests controller runs per leadership term), and
 *   removes the slices of instances that are gone;
 * - `drain()` (the agent drains) hands the Lease back and marks this instance's endpoints
 *   terminating; `stop()` deletes its slices and its presence Lease.
 */
import { hostname } from 'node:os'
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../../protocol/annotations.ts'
import { ExportsReconciler } from './exports.ts'
import { ImportsReconciler, type ImportsInit } from './imports.ts'
import { DEFAULT_LEASE_DURATION_MS, kubeLeaseStore, LeaderElector } from './lease.ts'
import type { AgentPort, LocalShare } from './ports.ts'
import { labelValue } from './kubeutil.ts'
import { InstancePresence, objectName, SITE_LABEL } from './presence.ts'
import { RemoteManifestsController } from './remote-manifests.ts'
import { InstanceSlices } from './slices.ts'
import { StatusWriter } from './status.ts'

export interface KubeControllerInit {
  kubeConfig: k8s.KubeConfig
  agent: AgentPort
  signal: AbortSignal
  /** The agent pod's IP (endpoint of imports). Default `$POD_IP`; required one way or the other. */
  podIp?: string
  /** Watch exports only in this namespace. Default: all namespaces. */
  exportNamespace?: string
  /** Namespace for imports. Default `$POD_NAMESPACE`, else `default`. */
  importNamespace?: string
  useShareNamespace?: boolean
  serviceName?: ImportsInit['serviceName']
  /** Merged imports (one Service + ServiceImport per share name across sites). Default true. */
  mergedImports?: boolean
  /** Per-site `<share>-<peer>` imports beside the merged ones. Default true. */
  perSiteImports?: boolean
  /** Grace period for a gone peer's imports. Default 5 minutes. */
  graceMs?: number
  /** Resync period. Default 30 s. */
  resyncMs?: number
  /** Write the status annotation and Events. Default true. */
  status?: boolean
  /** The site (agent name): names the Lease. Default `causeway`. */
  site?: string
  /** This instance's name (the agent's instance). Default `$CAUSEWAY_INSTANCE`, else the host name. */
  instance?: string
  /**
   * Leader election among the site's instances. `false`: this instance always leads (a single
   * instance). Default on: lease duration 15 s, in `$POD_NAMESPACE` (else the import namespace).
   */
  lease?: false | { durationMs?: number; namespace?: string }
  log?: LogLike
}

export interface KubeController {
  /** The shares currently published from annotated Services. */
  exports(): LocalShare[]
  /** Runs a full reconcile of both sides now (tests, status refresh). */
  resync(): Promise<void>
  /** Whether this instance leads its site (writes the shared objects). */
  isLeader(): boolean
  /** The instance drains: hands the Lease back, marks its endpoints not ready (terminating). */
  drain(): Promise<void>
  /** Stops the controller and removes this instance's slices and presence Lease. */
  stop(): Promise<void>
}

export class KubeControllerError extends Error {
  override name = 'KubeControllerError'
}

/** How long stop() may spend removing this instance's objects. */
const CLEANUP_MS = 1500

export async function startKubeController(init: KubeControllerInit): Promise<KubeController> {
  const podIp = init.podIp ?? process.env.POD_IP
  if (podIp === undefined || podIp === '') throw new KubeControllerError('the pod IP is unknown: set POD_IP (downward API status.podIP)')
  const log = init.log ?? silentLog
  const life = new AbortController()
  const signal = life.signal
  const site = init.site ?? 'causeway'
  const instance = init.instance ?? (process.env.CAUSEWAY_INSTANCE || hostname())
  const leaseNs = (init.lease !== false ? init.lease?.namespace : undefined) ?? process.env.POD_NAMESPACE ?? init.importNamespace ?? 'default'
  const leaseMs = (init.lease !== false ? init.lease?.durationMs : undefined) ?? DEFAULT_LEASE_DURATION_MS
  const coordination = init.kubeConfig.makeApiClient(k8s.CoordinationV1Api)
  let draining = false
  let term: AbortController | undefined
  const onLeading = (leading: boolean): void => {
    term?.abort()
    term = undefined
    if (leading && !signal.aborted) {
      term = new AbortController()
      const t = term
      // RemoteManifests belong to the leader: a fresh controller per term (its informer stops with the term).
      const remote = new RemoteManifestsController({ kubeConfig: init.kubeConfig, agent: init.agent, status, resyncMs: init.resyncMs, log })
      startRemote = () => remote.start(t.signal).catch((e: unknown) => log.warn({ err: String(e) }, 'remotemanifests: start failed'))
      void startRemote()
    } else startRemote = async () => {}
    void exportsRec?.schedule()
    void importsRec?.schedule()
  }
  let startRemote: () => Promise<void> = async () => {}
  const elector = init.lease === false ? undefined : new LeaderElector({
    store: kubeLeaseStore(coordination, leaseNs, objectName('causeway', site), { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [SITE_LABEL]: labelValue(site) }),
    identity: instance,
    leaseDurationMs: leaseMs,
    onChange: onLeading,
    log,
  })
  const leader = (): boolean => elector?.isLeader() ?? !draining
  const presence = elector === undefined ? undefined : new InstancePresence({ api: coordination, namespace: leaseNs, site, instance, leaseDurationMs: elector.leaseDurationMs, log })
  const slices = new InstanceSlices({ discovery: init.kubeConfig.makeApiClient(k8s.DiscoveryV1Api), instance, instanceLabel: labelValue(instance), podIp, draining: () => draining, log })
  const core = init.kubeConfig.makeApiClient(k8s.CoreV1Api)
  const status = init.status === false ? undefined : new StatusWriter({ core, log, gate: leader })
  let exportsRec: ExportsReconciler | undefined
  let importsRec: ImportsReconciler | undefined
  // The presence Lease comes before the first slice (the leader's housekeeping relies on it).
  await presence?.renew().catch((e: unknown) => log.warn({ err: String(e) }, 'presence: lease write failed (RBAC for coordination.k8s.io leases?)'))
  // One round before the reconcilers start: a lone instance leads from its first reconcile on.
  await elector?.tick()
  exportsRec = new ExportsReconciler({ kubeConfig: init.kubeConfig, agent: init.agent, status, namespace: init.exportNamespace, leader, log })
  importsRec = new ImportsReconciler({
    kubeConfig: init.kubeConfig,
    agent: init.agent,
    status,
    podIp,
    namespace: init.importNamespace,
    useShareNamespace: init.useShareNamespace,
    serviceName: init.serviceName,
    slices: exportsRec.slices,
    ...(init.mergedImports !== undefined ? { merged: init.mergedImports } : {}),
    ...(init.perSiteImports !== undefined ? { perSite: init.perSiteImports } : {}),
    graceMs: init.graceMs,
    resyncMs: init.resyncMs,
    instanceSlices: slices,
    leader,
    log,
  })
  if (elector === undefined) onLeading(true)
  const ex = exportsRec
  const im = importsRec
  await ex.start(signal)
  await im.start(signal)
  elector?.run(signal)
  // Every renew period: this instance's presence (kept while it drains: it is alive); the leader
  // also removes what gone instances left.
  const housekeeping = elector === undefined || presence === undefined ? undefined : setInterval(() => {
    void (async () => {
      await presence.renew()
      if (!leader()) return presence.refresh()
      await slices.collect(presence)
      await presence.collect()
    })().catch((e: unknown) => log.warn({ err: String(e) }, 'presence: housekeeping failed'))
  }, elector.renewPeriodMs)
  housekeeping?.unref()
  // Export status carries peer paths, which change without any Kubernetes event.
  // CRDs installed after start-up (ServiceExport, RemoteManifests) are picked up on this tick.
  const tick = setInterval(() => {
    void ex.recheckCrds().then(() => ex.schedule())
    void startRemote()
  }, init.resyncMs ?? 30_000)
  tick.unref()
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      clearInterval(tick)
      clearInterval(housekeeping)
      term?.abort()
      life.abort()
      await Promise.race([
        (async () => {
          await im.schedule() // lets a reconcile in flight finish: it may still write a slice
          log.info({}, 'kube: controller stopped, removing this instance\'s slices')
          await Promise.all([slices.removeAll(), presence?.remove()])
        })(),
        new Promise((resolve) => setTimeout(resolve, CLEANUP_MS).unref()),
      ])
    })()
    return stopped
  }
  init.signal.addEventListener('abort', () => void stop(), { once: true })
  if (init.signal.aborted) void stop()
  return {
    exports: () => ex.shares(),
    resync: async () => {
      await ex.schedule()
      await im.schedule()
    },
    isLeader: leader,
    drain: async () => {
      if (draining) return
      draining = true
      await elector?.release()
      term?.abort()
      await im.schedule()
    },
    stop,
  }
}
