/**
 * The Kubernetes part of `causeway agent`: `--kube` runs the controller (annotated Services →
 * shares, remote catalogs → Services + EndpointSlices) and `--share-apiserver` exports this
 * cluster's API server as the share `kube-apiserver` (see agent/kube/apiserver-share.ts).
 */
import { existsSync, readFileSync } from 'node:fs'
import type * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../peer/log.ts'
import type { Agent } from '../agent/agent.ts'
import { agentPort, APISERVER_SHARE, type AgentPortInit } from '../agent/kube/agent-port.ts'
import type { ApiserverIdentity, ApiserverProxy } from '../agent/kube/apiserver-share.ts'
import type { KubeController } from '../agent/kube/controller.ts'
import { CausewayError } from '../protocol/errors.ts'
import { parseDuration } from './duration.ts'

export const KUBE_HELP = `
Kubernetes (in a cluster: see the causeway-agent Helm chart):
  --kube                         run the controller: share Services annotated causeway.dev/share,
                                 import the other peers' shares as Services (needs POD_IP)
  --kubeconfig FILE              use FILE instead of the in-cluster config
  --import-grace D               keep a gone peer's imports this long (default 5m; env
                                 CAUSEWAY_IMPORT_GRACE)
  --lease-duration D             several instances of a site: the holder of the site's Lease
                                 writes imports, status and MCS objects; a dead holder is
                                 replaced within D + D/3 (default 15s; env CAUSEWAY_LEASE_DURATION)
  --merged-only                  import a share only merged (one Service per share name across the
                                 clusters exporting it), without the per-site <share>-<peer> Services
                                 (env CAUSEWAY_MERGED_ONLY=true)
  --share-apiserver              share this cluster's API server as "kube-apiserver" (off by default)
  --apiserver-sa NAME            ... requests run as ServiceAccount NAME (token minted with TokenRequest)
  --apiserver-token-file F       ... requests run with the bearer token in F (re-read every 30 s)
  --impersonate-user U           ... requests run as U via impersonation with the agent's own credentials
  --impersonate-group G          ... and group G (repeatable)
  --impersonate-peers            ... requests run as the calling agent: user causeway:<its name>,
                                 group causeway:peers, via impersonation with the agent's own
                                 credentials (RBAC and the API server's audit tell clusters apart)
  --apiserver-peers a|b          peers allowed to use it (default all; env CAUSEWAY_APISERVER_PEERS)`

/** parseArgs options of the Kubernetes flags (merged into the agent command's). */
export const KUBE_OPTIONS = {
  kube: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  'import-grace': { type: 'string' },
  'lease-duration': { type: 'string' },
  'merged-only': { type: 'boolean' },
  'share-apiserver': { type: 'boolean' },
  'apiserver-sa': { type: 'string' },
  'apiserver-token-file': { type: 'string' },
  'impersonate-user': { type: 'string' },
  'impersonate-group': { type: 'string', multiple: true },
  'impersonate-peers': { type: 'boolean' },
  'apiserver-peers': { type: 'string' },
} as const

export interface KubeFlags {
  kube?: boolean
  kubeconfig?: string
  'import-grace'?: string
  'lease-duration'?: string
  'merged-only'?: boolean
  'share-apiserver'?: boolean
  'apiserver-sa'?: string
  'apiserver-token-file'?: string
  'impersonate-user'?: string
  'impersonate-group'?: string[]
  'impersonate-peers'?: boolean
  'apiserver-peers'?: string
}

export interface KubeModeInit {
  agent: Agent
  kubeConfig: k8s.KubeConfig
  signal: AbortSignal
  /** Run the controller. */
  controller?: { podIp?: string; graceMs?: number; resolve?: AgentPortInit['resolve']; importNamespace?: string; resyncMs?: number; leaseDurationMs?: number; leaseNamespace?: string; perSiteImports?: boolean }
  /** Export the API server share. */
  apiserver?: { identity: ApiserverIdentity; peers?: string[] }
  log?: LogLike
}

export interface KubeMode {
  apiserverProxy?: ApiserverProxy
  controller?: KubeController
  /** Stops; call after the agent stopped (its drain keeps the import listeners and the share serving). */
  close(): Promise<void>
}

/** Starts what `--kube` / `--share-apiserver` ask for on a started agent (library entry point). */
export async function startKubeMode(init: KubeModeInit): Promise<KubeMode> {
  const log = init.log ?? silentLog
  // Loaded only in Kubernetes mode: the client library is large, and host-mode agents never need it.
  const { startApiserverProxy } = await import('../agent/kube/apiserver-share.ts')
  const { startKubeController } = await import('../agent/kube/controller.ts')
  let proxy: ApiserverProxy | undefined
  if (init.apiserver !== undefined) {
    proxy = await startApiserverProxy({ kubeConfig: init.kubeConfig, identity: init.apiserver.identity, log })
    const peers = init.apiserver.peers ?? []
    const served = proxy
    init.agent.shares.set('apiserver', [{
      name: APISERVER_SHARE,
      // Served in memory: nothing listens, `host:port` only labels the share in the status API.
      host: 'in-process',
      port: proxy.upstreamPort,
      serve: (end, from) => served.serve(end, from),
      protocol: 'http',
      description: 'Kubernetes API server (plain HTTP inside the tunnel; use causeway kubeconfig)',
      ...(peers.length > 0 ? { peers } : {}),
    }])
    log.info({ share: APISERVER_SHARE, identity: init.apiserver.identity.mode }, 'sharing the API server in-process (no local listener)')
  }
  let controller: KubeController | undefined
  let offDraining = (): void => {}
  if (init.controller !== undefined) {
    const c = init.controller
    const ctl = await startKubeController({
      kubeConfig: init.kubeConfig,
      agent: agentPort(init.agent, c.resolve !== undefined ? { resolve: c.resolve } : {}),
      signal: init.signal,
      site: init.agent.name,
      instance: init.agent.instance,
      lease: { ...(c.leaseDurationMs !== undefined ? { durationMs: c.leaseDurationMs } : {}), ...(c.leaseNamespace !== undefined ? { namespace: c.leaseNamespace } : {}) },
      ...(c.podIp !== undefined ? { podIp: c.podIp } : {}),
      ...(c.graceMs !== undefined ? { graceMs: c.graceMs } : {}),
      ...(c.importNamespace !== undefined ? { importNamespace: c.importNamespace } : {}),
      ...(c.resyncMs !== undefined ? { resyncMs: c.resyncMs } : {}),
      ...(c.perSiteImports !== undefined ? { perSiteImports: c.perSiteImports } : {}),
      log,
    })
    controller = ctl
    // SIGTERM: the agent drains; the Lease goes to another instance, this one's endpoints stop being ready.
    offDraining = init.agent.events.on('draining', () => void ctl.drain())
    if (init.agent.draining) void ctl.drain()
  }
  return {
    ...(proxy !== undefined ? { apiserverProxy: proxy } : {}),
    ...(controller !== undefined ? { controller } : {}),
    close: async () => {
      offDraining()
      await controller?.stop()
      if (proxy !== undefined) init.agent.shares.set('apiserver', [])
      await proxy?.close()
    },
  }
}

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace'

function ownNamespace(): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE
  if (existsSync(SA_NAMESPACE_FILE)) return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim()
  return 'default'
}

/**
 * Checks the Kubernetes flags before the agent starts (no client library needed). Throws
 * CausewayError BAD_CONFIG; an empty `--impersonate-user=` or `--impersonate-group=` is refused,
 * because the API server treats an empty Impersonate-User as none: the agent's own identity.
 */
export function checkKubeFlags(flags: KubeFlags): void {
  const share = flags['share-apiserver'] === true
  const bad = (msg: string): never => { throw new CausewayError('BAD_CONFIG', msg) }
  const user = flags['impersonate-user']
  if (user !== undefined && user.trim() === '') bad('--impersonate-user is empty: the API server would treat that as no impersonation, i.e. the agent\'s own identity; name the user the share runs as')
  for (const g of flags['impersonate-group'] ?? []) if (g.trim() === '' || g.includes(',')) bad(`--impersonate-group ${JSON.stringify(g)} is empty or holds a comma: give one group per flag`)
  if (flags['apiserver-sa'] !== undefined && flags['apiserver-sa'].trim() === '') bad('--apiserver-sa is empty')
  if (flags['apiserver-token-file'] !== undefined && flags['apiserver-token-file'].trim() === '') bad('--apiserver-token-file is empty')
  const perPeer = flags['impersonate-peers'] === true ? true : undefined
  if (!share && (flags['apiserver-sa'] ?? flags['apiserver-token-file'] ?? flags['impersonate-user'] ?? perPeer) !== undefined) bad('--apiserver-sa, --apiserver-token-file, --impersonate-user and --impersonate-peers need --share-apiserver')
  const lease = flags['lease-duration'] ?? process.env.CAUSEWAY_LEASE_DURATION
  if (lease !== undefined && lease !== '') {
    let seconds = 0
    try { seconds = parseDuration(lease) } catch { /* refused below */ }
    if (seconds < 2 || seconds > 3600) bad(`--lease-duration ${JSON.stringify(lease)} must be a duration from 2s to 1h (e.g. 15s)`)
    if (flags.kube !== true) bad('--lease-duration needs --kube')
  }
  if (flags['impersonate-group'] !== undefined && (!share || user === undefined)) bad('--impersonate-group needs --share-apiserver and --impersonate-user')
  if (share && [flags['apiserver-sa'], flags['apiserver-token-file'], user, perPeer].filter((x) => x !== undefined).length !== 1) bad('--share-apiserver needs exactly one of --apiserver-sa NAME, --apiserver-token-file FILE, --impersonate-user USER, --impersonate-peers')
}

/**
 * From the agent command's flags: starts Kubernetes mode, or returns undefined when not asked.
 * `signal` (the process's shutdown) is not handed to the controller: on SIGTERM the agent drains
 * first (its import listeners keep serving while kube-proxy moves to the other instances), and
 * the caller's `close()` after `agent.stop()` ends it.
 */
export async function kubeModeFromFlags(agent: Agent, flags: KubeFlags, log: LogLike, _signal: AbortSignal): Promise<KubeMode | undefined> {
  checkKubeFlags(flags)
  const share = flags['share-apiserver'] === true
  if (flags.kube !== true && !share) return undefined
  const k8s = await import('@kubernetes/client-node')
  const { checkIdentity, tokenFromFile, tokenFromServiceAccount } = await import('../agent/kube/apiserver-share.ts')
  const kubeConfig = new k8s.KubeConfig()
  if (flags.kubeconfig !== undefined) kubeConfig.loadFromFile(flags.kubeconfig)
  else kubeConfig.loadFromCluster()
  let apiserver: KubeModeInit['apiserver']
  if (share) {
    let identity: ApiserverIdentity
    if (flags['apiserver-sa'] !== undefined) identity = { mode: 'token', token: tokenFromServiceAccount(kubeConfig.makeApiClient(k8s.CoreV1Api), ownNamespace(), flags['apiserver-sa']) }
    else if (flags['apiserver-token-file'] !== undefined) identity = { mode: 'token', token: tokenFromFile(flags['apiserver-token-file']) }
    else if (flags['impersonate-peers'] === true) identity = { mode: 'impersonate-peer' }
    else identity = { mode: 'impersonate', user: flags['impersonate-user'] ?? '', groups: flags['impersonate-group'] ?? [] }
    checkIdentity(identity) // before anything starts: `--impersonate-user=` must not mean "the agent itself"
    const peers = (flags['apiserver-peers'] ?? process.env.CAUSEWAY_APISERVER_PEERS ?? '').split(/[|,]/).map((s) => s.trim()).filter((s) => s !== '')
    apiserver = { identity, peers }
  }
  const grace = flags['import-grace'] ?? process.env.CAUSEWAY_IMPORT_GRACE
  const lease = flags['lease-duration'] ?? process.env.CAUSEWAY_LEASE_DURATION
  const mergedOnly = flags['merged-only'] === true || process.env.CAUSEWAY_MERGED_ONLY === 'true'
  const mode = await startKubeMode({
    agent,
    kubeConfig,
    signal: new AbortController().signal, // ended by close(), see above
    ...(flags.kube === true ? { controller: { ...(grace ? { graceMs: parseDuration(grace) * 1000 } : {}), ...(lease ? { leaseDurationMs: parseDuration(lease) * 1000 } : {}), ...(mergedOnly ? { perSiteImports: false } : {}) } } : {}),
    ...(apiserver !== undefined ? { apiserver } : {}),
    log,
  })
  if (flags.kube === true) log.info({}, 'Kubernetes controller running')
  return mode
}
