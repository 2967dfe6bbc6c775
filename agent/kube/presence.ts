/**
 * Instance presence: every instance of a site keeps its own `coordination.k8s.io/v1` Lease
 * (`causeway-<site>-<instance>`, labelled `causeway.dev/site` and `causeway.dev/instance`),
 * renewed every renew period, deleted when the instance stops cleanly — the way kubelets keep
 * node Leases. The site's leader removes the EndpointSlices of instances that are gone: no
 * presence Lease at all, or one that has not changed for the lease duration as observed on the
 * leader's own clock (no clock comparison between machines). One write per instance per period,
 * however many imports there are.
 */
import { createHash } from 'node:crypto'
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../../protocol/annotations.ts'
import { apiCode, labelValue } from './kubeutil.ts'

export const SITE_LABEL = 'causeway.dev/site'
export const INSTANCE_LABEL = 'causeway.dev/instance'

/**
 * A DNS-1123 label made of `parts` joined by `-` (≤ 63): lower case, `[a-z0-9-]`; when that
 * changed the text (case, `_`, `.`) or had to be cut, a short hash of the original is appended,
 * so distinct instance names give distinct object names.
 */
export function objectName(...parts: string[]): string {
  const raw = parts.join('-')
  const clean = raw.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '')
  if (clean === raw && clean.length <= 63 && clean !== '') return clean
  const hash = createHash('sha256').update(raw).digest('hex').slice(0, 8)
  return `${clean.slice(0, 54).replace(/-+$/, '')}-${hash}`.replace(/^-+/, '')
}

/** The Lease calls presence makes (a CoordinationV1Api; a fake in the unit tests). */
export type LeaseApi = Pick<k8s.CoordinationV1Api, 'readNamespacedLease' | 'replaceNamespacedLease' | 'createNamespacedLease' | 'listNamespacedLease' | 'deleteNamespacedLease'>

export interface PresenceInit {
  api: LeaseApi
  namespace: string
  site: string
  instance: string
  leaseDurationMs: number
  now?: () => number
  log?: LogLike
}

export class InstancePresence {
  private readonly init: PresenceInit
  private readonly now: () => number
  private readonly log: LogLike
  private readonly startedAt: number
  /** Per instance label value: the presence Lease's last resourceVersion and when it was first seen so. */
  private readonly seen = new Map<string, { rv: string; at: number }>()
  private listedAt: number | undefined
  readonly name: string
  readonly label: string

  constructor(init: PresenceInit) {
    this.init = init
    this.now = init.now ?? Date.now
    this.log = init.log ?? silentLog
    this.startedAt = this.now()
    this.name = objectName('causeway', init.site, init.instance)
    this.label = labelValue(init.instance)
  }

  private get labels(): Record<string, string> {
    return { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [SITE_LABEL]: labelValue(this.init.site), [INSTANCE_LABEL]: this.label }
  }

  /** Creates or renews this instance's presence Lease. */
  async renew(): Promise<void> {
    const { api, namespace } = this.init
    const spec: k8s.V1LeaseSpec = { holderIdentity: this.init.instance, leaseDurationSeconds: Math.ceil(this.init.leaseDurationMs / 1000), renewTime: new k8s.V1MicroTime(this.now()) }
    try {
      const cur = await api.readNamespacedLease({ namespace, name: this.name })
      await api.replaceNamespacedLease({ namespace, name: this.name, body: { metadata: { name: this.name, namespace, labels: this.labels, resourceVersion: cur.metadata?.resourceVersion ?? '' }, spec } })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
      await api.createNamespacedLease({ namespace, body: { metadata: { name: this.name, namespace, labels: this.labels }, spec } })
    }
  }

  /** Lists the site's presence Leases and records which changed since the last look. */
  async refresh(): Promise<void> {
    const list = await this.init.api.listNamespacedLease({ namespace: this.init.namespace, labelSelector: `${SITE_LABEL}=${labelValue(this.init.site)},${INSTANCE_LABEL}` })
    const now = this.now()
    const present = new Set<string>()
    for (const l of list.items) {
      const inst = l.metadata?.labels?.[INSTANCE_LABEL]
      if (inst === undefined) continue
      present.add(inst)
      const rv = l.metadata?.resourceVersion ?? ''
      if (this.seen.get(inst)?.rv !== rv) this.seen.set(inst, { rv, at: now })
    }
    for (const inst of this.seen.keys()) if (!present.has(inst)) this.seen.delete(inst)
    this.listedAt = now
  }

  /**
   * Whether the instance with label value `label` may still be alive: itself; one whose presence
   * Lease changed within the lease duration; or, before this instance has watched for a lease
   * duration, any (it cannot tell yet).
   */
  alive(label: string): boolean {
    if (label === this.label) return true
    const now = this.now()
    if (this.listedAt === undefined || now - this.startedAt < this.init.leaseDurationMs) return true
    const s = this.seen.get(label)
    if (s === undefined) return false
    return now - s.at < this.init.leaseDurationMs
  }

  /** Deletes this instance's presence Lease (clean stop). */
  async remove(): Promise<void> {
    try {
      await this.init.api.deleteNamespacedLease({ namespace: this.init.namespace, name: this.name })
    } catch (e) {
      if (apiCode(e) !== 404) this.log.warn({ err: String(e) }, 'presence: lease removal failed')
    }
  }

  /** Deletes the presence Leases of instances that are gone (leader's housekeeping). */
  async collect(): Promise<void> {
    const list = await this.init.api.listNamespacedLease({ namespace: this.init.namespace, labelSelector: `${SITE_LABEL}=${labelValue(this.init.site)},${INSTANCE_LABEL}` })
    for (const l of list.items) {
      const inst = l.metadata?.labels?.[INSTANCE_LABEL]
      if (inst === undefined || this.alive(inst)) continue
      await this.init.api.deleteNamespacedLease({ namespace: this.init.namespace, name: l.metadata?.name ?? '' }).catch((e: unknown) => {
        if (apiCode(e) !== 404) throw e
      })
    }
  }
}
