/**
 * What the cluster's EndpointSlices say about a Service: whether it has ready endpoints
 * (exports withdraw while it has none; `local-first` imports use them), and which pods they are
 * (per-pod addressing). One cluster-wide EndpointSlice informer (`SliceCache`) serves both
 * sides. causeway's own import slices (`endpointslice.kubernetes.io/managed-by:
 * causeway.dev/agent`) never count.
 */
import { BlockList, isIPv6 } from 'node:net'
import * as k8s from '@kubernetes/client-node'
import type { LogLike } from '../../peer/log.ts'
import { runInformer } from './kubeutil.ts'

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'
export const SLICE_MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by'
export const SLICE_MANAGED_BY_VALUE = 'causeway.dev/agent'

/** One ready endpoint of a Service. */
export interface ReadyEndpoint {
  address: string
  /** The pod behind it (`targetRef` of kind Pod), else its `hostname`. */
  pod?: string
  /** Its slice's ports. */
  ports: Array<{ name: string; port: number; protocol: string }>
}

export interface ServiceEndpoints {
  /** How many slices the Service has (0: nothing manages its endpoints, or not yet). */
  slices: number
  ready: ReadyEndpoint[]
}

/** The ready endpoints of Service `namespace/name` among `slices` (pure). */
export function endpointsOf(slices: readonly k8s.V1EndpointSlice[], namespace: string, name: string): ServiceEndpoints {
  const mine = slices.filter(
    (s) => s.metadata?.namespace === namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === name && s.metadata.labels[SLICE_MANAGED_BY_LABEL] !== SLICE_MANAGED_BY_VALUE && s.addressType !== 'FQDN',
  )
  const ready: ReadyEndpoint[] = []
  const seen = new Set<string>()
  for (const s of mine) {
    const ports = (s.ports ?? []).flatMap((p) => (p.port === undefined ? [] : [{ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' }]))
    for (const e of s.endpoints ?? []) {
      // nil ready means unknown, which consumers treat as ready (the EndpointConditions contract)
      if (e.conditions?.ready === false || e.conditions?.terminating === true) continue
      const address = e.addresses[0]
      if (address === undefined || seen.has(address)) continue
      seen.add(address)
      const pod = e.targetRef?.kind === 'Pod' ? e.targetRef.name : e.hostname
      ready.push({ address, ...(pod !== undefined ? { pod } : {}), ports })
    }
  }
  return { slices: mine.length, ready: ready.sort((a, b) => (a.pod ?? a.address).localeCompare(b.pod ?? b.address)) }
}

/** The slice port a Service port lands on: same name, else the only one of its protocol. */
export function slicePort(ep: ReadyEndpoint, port: { name?: string; protocol?: string }): number | undefined {
  const protocol = port.protocol ?? 'TCP'
  const same = ep.ports.filter((p) => p.protocol === protocol)
  return (same.find((p) => p.name === (port.name ?? '')) ?? (same.length === 1 ? same[0] : undefined))?.port
}

const SPECIAL = new BlockList()
for (const [net, bits] of [['0.0.0.0', 8], ['127.0.0.0', 8], ['169.254.0.0', 16], ['224.0.0.0', 4]] as const) SPECIAL.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [['::', 128], ['::1', 128], ['fe80::', 10], ['ff00::', 8]] as const) SPECIAL.addSubnet(net, bits, 'ipv6')

/**
 * May the agent dial this pod address for a per-pod sub-share? Not unspecified, loopback,
 * link-local (cloud metadata) or multicast: whoever can write an EndpointSlice must not be able
 * to point the agent at its own loopback (status API) or the node's metadata service.
 */
export function dialablePodAddress(address: string): boolean {
  try {
    return !SPECIAL.check(address, isIPv6(address) ? 'ipv6' : 'ipv4')
  } catch {
    return false
  }
}

/** A cluster-wide EndpointSlice informer; `onChange(namespace, service)` on every change. */
export class SliceCache {
  private readonly informer: k8s.Informer<k8s.V1EndpointSlice> & k8s.ObjectCache<k8s.V1EndpointSlice>
  private readonly subscribers = new Set<(namespace: string, service: string) => void>()
  private started: Promise<void> | undefined
  private readonly log: LogLike

  constructor(kc: k8s.KubeConfig, log: LogLike) {
    this.log = log
    const api = kc.makeApiClient(k8s.DiscoveryV1Api)
    this.informer = k8s.makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => api.listEndpointSliceForAllNamespaces())
    const changed = (s: k8s.V1EndpointSlice): void => {
      const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL]
      if (svc === undefined || s.metadata?.labels?.[SLICE_MANAGED_BY_LABEL] === SLICE_MANAGED_BY_VALUE) return
      for (const fn of this.subscribers) fn(s.metadata?.namespace ?? '', svc)
    }
    for (const ev of ['add', 'update', 'delete'] as const) this.informer.on(ev, changed)
  }

  /** Starts the informer once; resolves after the first list. */
  start(signal: AbortSignal): Promise<void> {
    this.started ??= runInformer(this.informer, signal, this.log, 'EndpointSlices')
    return this.started
  }

  onChange(fn: (namespace: string, service: string) => void): () => void {
    this.subscribers.add(fn)
    return () => this.subscribers.delete(fn)
  }

  endpoints(namespace: string, name: string): ServiceEndpoints {
    return endpointsOf(this.informer.list(namespace), namespace, name)
  }
}
