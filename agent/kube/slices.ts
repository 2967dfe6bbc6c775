/**
 * Per-instance EndpointSlices of imports. Every instance of a site opens its own listener for
 * each import and keeps its own EndpointSlice `<service>-<instance>` for it (owned by the
 * Service, labelled `kubernetes.io/service-name`, `causeway.dev/instance` and
 * `endpointslice.kubernetes.io/managed-by: causeway.dev/agent`), with this pod's IP and the
 * listener's port, so kube-proxy balances over every ready instance of the cluster:
 * - ready: the peer is connected and this instance is not draining;
 * - draining (SIGTERM): `ready: false, serving: true, terminating: true`, as Kubernetes marks a
 *   terminating pod's endpoints: new connections go to the other instances, open ones finish;
 * - the instance removes its own slices when it stops cleanly, and the slice of an import it no
 *   longer has;
 * - the site's leader removes the slices of instances that are gone (no fresh presence Lease:
 *   presence.ts) and per-site import slices without an instance label (the single slice of
 *   versions before instances).
 */
import * as k8s from '@kubernetes/client-node'
import type { LogLike } from '../../peer/log.ts'
import { IMPORT_PEER_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../../protocol/annotations.ts'
import { SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, SLICE_MANAGED_BY_VALUE } from './imports.ts'
import { apiCode, mergePatchOptions } from './kubeutil.ts'
import { INSTANCE_LABEL, objectName, type InstancePresence } from './presence.ts'

export interface SliceWant {
  namespace: string
  /** The imported Service's name and uid (owner). */
  service: string
  uid: string
  /** Labels shared with the Service (managed-by, peer, import). */
  labels: Record<string, string>
  port: { name: string; protocol: 'TCP' | 'UDP'; port: number }
  /** The peer the import comes from is connected. */
  connected: boolean
}

export interface InstanceSlicesInit {
  discovery: k8s.DiscoveryV1Api
  /** This instance's name and its label value (presence.ts). */
  instance: string
  instanceLabel: string
  podIp: string
  /** This instance drains: its endpoints are terminating. */
  draining: () => boolean
  log: LogLike
}

const selector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${SLICE_MANAGED_BY_LABEL}=${SLICE_MANAGED_BY_VALUE}`

export class InstanceSlices {
  private readonly init: InstanceSlicesInit
  private readonly discovery: k8s.DiscoveryV1Api
  /** The slices this instance wrote (`namespace/name`). */
  private readonly mine = new Set<string>()

  constructor(init: InstanceSlicesInit) {
    this.init = init
    this.discovery = init.discovery
  }

  /** This instance's slice name for `service`. */
  nameFor(service: string): string {
    return objectName(service, this.init.instance)
  }

  /** The endpoint conditions this instance has now. */
  conditions(connected: boolean): k8s.V1EndpointConditions {
    const draining = this.init.draining()
    return { ready: connected && !draining, serving: connected, terminating: draining }
  }

  /** Creates or corrects this instance's slice for one import. */
  async ensure(w: SliceWant): Promise<void> {
    const name = this.nameFor(w.service)
    const body: k8s.V1EndpointSlice = {
      metadata: {
        name,
        namespace: w.namespace,
        labels: { ...w.labels, [SERVICE_NAME_LABEL]: w.service, [SLICE_MANAGED_BY_LABEL]: SLICE_MANAGED_BY_VALUE, [INSTANCE_LABEL]: this.init.instanceLabel },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: w.service, uid: w.uid, controller: true, blockOwnerDeletion: true }],
      },
      addressType: this.init.podIp.includes(':') ? 'IPv6' : 'IPv4',
      endpoints: [{ addresses: [this.init.podIp], conditions: this.conditions(w.connected) }],
      ports: [w.port],
    }
    this.mine.add(`${w.namespace}/${name}`)
    let cur: k8s.V1EndpointSlice | undefined
    try {
      cur = await this.discovery.readNamespacedEndpointSlice({ namespace: w.namespace, name })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
    if (!cur) {
      await this.discovery.createNamespacedEndpointSlice({ namespace: w.namespace, body })
      return
    }
    if (cur.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return
    const ends = (s: k8s.V1EndpointSlice): string => JSON.stringify(s.endpoints?.map((e) => [e.addresses, e.conditions?.ready ?? null, e.conditions?.serving ?? null, e.conditions?.terminating ?? null]))
    const same =
      ends(cur) === ends(body) &&
      JSON.stringify(cur.ports?.map((p) => [p.name, p.protocol ?? 'TCP', p.port])) === JSON.stringify(body.ports?.map((p) => [p.name, p.protocol, p.port])) &&
      cur.addressType === body.addressType &&
      cur.metadata?.ownerReferences?.[0]?.uid === w.uid &&
      Object.entries(body.metadata?.labels ?? {}).every(([k, v]) => cur.metadata?.labels?.[k] === v)
    if (same) return
    await this.discovery.patchNamespacedEndpointSlice(
      { namespace: w.namespace, name, body: { metadata: { labels: body.metadata?.labels, ownerReferences: body.metadata?.ownerReferences }, endpoints: body.endpoints, ports: body.ports } },
      mergePatchOptions(),
    )
  }

  /** Deletes this instance's slices other than those of `keep` (`namespace/service`). */
  async prune(keep: Set<string>): Promise<void> {
    const wanted = new Set([...keep].map((k) => { const [ns = '', svc = ''] = k.split('/'); return `${ns}/${this.nameFor(svc)}` }))
    for (const key of [...this.mine]) {
      if (wanted.has(key)) continue
      const [namespace = '', name = ''] = key.split('/')
      await this.delete(namespace, name)
    }
  }

  /** Deletes every slice this instance wrote (clean stop). */
  async removeAll(): Promise<void> {
    for (const key of [...this.mine]) {
      const [namespace = '', name = ''] = key.split('/')
      await this.delete(namespace, name).catch((e: unknown) => this.init.log.warn({ err: String(e), slice: key }, 'slices: removal failed'))
    }
  }

  private async delete(namespace: string, name: string): Promise<void> {
    try {
      await this.discovery.deleteNamespacedEndpointSlice({ namespace, name })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
    this.mine.delete(`${namespace}/${name}`)
  }

  /**
   * Leader's housekeeping: deletes import slices of instances that are gone (`presence`, refreshed
   * after the slices were listed, so a new instance's presence Lease, made before its first
   * slice, is seen) and slices without an instance label.
   */
  async collect(presence: InstancePresence): Promise<number> {
    const slices = await this.discovery.listEndpointSliceForAllNamespaces({ labelSelector: selector })
    await presence.refresh()
    let removed = 0
    for (const s of slices.items) {
      const inst = s.metadata?.labels?.[INSTANCE_LABEL]
      if (inst !== undefined && presence.alive(inst)) continue
      // without an instance label: only a per-site import's slice from before instances (other
      // writers of causeway slices without the label, if any, keep theirs)
      if (inst === undefined && s.metadata?.labels?.[IMPORT_PEER_LABEL] === undefined) continue
      const namespace = s.metadata?.namespace ?? ''
      const name = s.metadata?.name ?? ''
      await this.delete(namespace, name)
      removed++
      this.init.log.info({ slice: `${namespace}/${name}`, instance: inst ?? null }, 'slices: removed the slice of an instance that is gone')
    }
    return removed
  }
}
