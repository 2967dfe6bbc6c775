/**
 * The agent's Kubernetes controller: wires the exports (annotations and ServiceExports),
 * imports (Services, EndpointSlices, ServiceImports), RemoteManifests and status reconcilers to a
 * KubeConfig (in-cluster in production) and an AgentPort, until `signal` aborts.
 */
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { ExportsReconciler } from './exports.ts'
import { ImportsReconciler, type ImportsInit } from './imports.ts'
import type { AgentPort, LocalShare } from './ports.ts'
import { RemoteManifestsController } from './remote-manifests.ts'
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
  log?: LogLike
}

export interface KubeController {
  /** The shares currently published from annotated Services. */
  exports(): LocalShare[]
  /** Runs a full reconcile of both sides now (tests, status refresh). */
  resync(): Promise<void>
}

export class KubeControllerError extends Error {
  override name = 'KubeControllerError'
}

export async function startKubeController(init: KubeControllerInit): Promise<KubeController> {
  const podIp = init.podIp ?? process.env.POD_IP
  if (podIp === undefined || podIp === '') throw new KubeControllerError('the pod IP is unknown: set POD_IP (downward API status.podIP)')
  const log = init.log ?? silentLog
  const core = init.kubeConfig.makeApiClient(k8s.CoreV1Api)
  const status = init.status === false ? undefined : new StatusWriter({ core, log })
  const exportsRec = new ExportsReconciler({ kubeConfig: init.kubeConfig, agent: init.agent, status, namespace: init.exportNamespace, log })
  const importsRec = new ImportsReconciler({
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
    log,
  })
  const remote = new RemoteManifestsController({ kubeConfig: init.kubeConfig, agent: init.agent, status, resyncMs: init.resyncMs, log })
  await exportsRec.start(init.signal)
  await importsRec.start(init.signal)
  await remote.start(init.signal).catch((e: unknown) => log.warn({ err: String(e) }, 'remotemanifests: start failed'))
  // Export status carries peer paths, which change without any Kubernetes event.
  // CRDs installed after start-up (ServiceExport, RemoteManifests) are picked up on this tick.
  const tick = setInterval(() => {
    void exportsRec.recheckCrds().then(() => exportsRec.schedule())
    void remote.start(init.signal).catch((e: unknown) => log.warn({ err: String(e) }, 'remotemanifests: start failed'))
  }, init.resyncMs ?? 30_000)
  tick.unref()
  init.signal.addEventListener('abort', () => clearInterval(tick), { once: true })
  return {
    exports: () => exportsRec.shares(),
    resync: async () => {
      await exportsRec.schedule()
      await importsRec.schedule()
    },
  }
}
