/**
 * Status reconciler: writes the `causeway.dev/status` JSON annotation on exported and imported
 * Services (only when it changed) and records Kubernetes Events about them. Events are named
 * like the client-go recorder does (`<object>.<hash>`); a repeat of the same reason and message
 * bumps `count` and `lastTimestamp` instead of creating another Event.
 */
import { createHash } from 'node:crypto'
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { STATUS_ANNOTATION } from '../../protocol/annotations.ts'
import { apiCode } from './kubeutil.ts'

export interface ServiceRef {
  namespace: string
  name: string
  uid?: string
  /** The involved object's kind and apiVersion for Events. Default a v1 Service. */
  kind?: string
  apiVersion?: string
}

export interface ShareStatus {
  role: 'export' | 'import'
  /** Import: the peer it comes from. */
  peer?: string
  /** Import: the share name. Export: the share names published. */
  share?: string
  shares?: string[]
  /** Path to the peer (`direct`, `relay`, ...), or per peer for exports. */
  path?: string
  paths?: Record<string, string>
  /** Import: where the agent listens for it. */
  listener?: string
  /** Export: why the share is announced unavailable (its Service has no ready endpoint). */
  withdrawn?: string
  /** Merged import: per exporting cluster, whether it can take streams now and the streams it got. */
  clusters?: Record<string, { live: boolean; ejected?: boolean; streams: number }>
  lastError?: string
}

export interface StatusWriterInit {
  core: k8s.CoreV1Api
  /** `reportingComponent` / `source.component` of Events. Default `causeway-agent`. */
  component?: string
  /** Reporting instance (the pod name). Default `$POD_NAME` or `causeway-agent`. */
  instance?: string
  /** Writes only while this holds (the site's leader: lease.ts). Default: always. */
  gate?: () => boolean
  log?: LogLike
}

export class StatusWriter {
  private readonly core: k8s.CoreV1Api
  private readonly component: string
  private readonly instance: string
  private readonly log: LogLike
  private readonly gate: () => boolean
  /** Last annotation written per Service, to skip no-op writes. */
  private readonly written = new Map<string, string>()

  constructor(init: StatusWriterInit) {
    this.core = init.core
    this.component = init.component ?? 'causeway-agent'
    this.instance = init.instance ?? process.env.POD_NAME ?? 'causeway-agent'
    this.log = init.log ?? silentLog
    this.gate = init.gate ?? (() => true)
  }

  /** Writes the status annotation when it differs from the last one written. */
  async setStatus(ref: ServiceRef, status: ShareStatus, current?: string): Promise<void> {
    const value = JSON.stringify(status)
    const key = `${ref.namespace}/${ref.name}`
    if (!this.gate()) return
    if ((current ?? this.written.get(key)) === value) {
      this.written.set(key, value)
      return
    }
    try {
      await this.core.patchNamespacedService(
        { namespace: ref.namespace, name: ref.name, body: { metadata: { annotations: { [STATUS_ANNOTATION]: value } } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      )
      this.written.set(key, value)
    } catch (e) {
      if (apiCode(e) !== 404) this.log.warn({ err: String(e), service: key }, 'status annotation write failed')
    }
  }

  /** Removes the status annotation (a Service that is no longer exported). */
  async clearStatus(ref: ServiceRef): Promise<void> {
    if (!this.gate()) return this.forget(ref)
    try {
      await this.core.patchNamespacedService(
        { namespace: ref.namespace, name: ref.name, body: { metadata: { annotations: { [STATUS_ANNOTATION]: null } } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      )
    } catch (e) {
      if (apiCode(e) !== 404) this.log.warn({ err: String(e), service: `${ref.namespace}/${ref.name}` }, 'status annotation removal failed')
    }
    this.forget(ref)
  }

  forget(ref: ServiceRef): void {
    this.written.delete(`${ref.namespace}/${ref.name}`)
  }

  /** Records an Event about a Service (or `ref.kind`); repeats bump the count. */
  async event(ref: ServiceRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    if (!this.gate()) return
    const hash = createHash('sha256').update(`${ref.uid ?? ''}|${type}|${reason}|${message}`).digest('hex').slice(0, 16)
    const name = `${ref.name}.${hash}`
    const now = new Date()
    try {
      await this.core.createNamespacedEvent({
        namespace: ref.namespace,
        body: {
          metadata: { name, namespace: ref.namespace },
          involvedObject: { kind: ref.kind ?? 'Service', apiVersion: ref.apiVersion ?? 'v1', namespace: ref.namespace, name: ref.name, ...(ref.uid ? { uid: ref.uid } : {}) },
          type,
          reason,
          message,
          count: 1,
          firstTimestamp: now,
          lastTimestamp: now,
          source: { component: this.component },
          reportingComponent: this.component,
          reportingInstance: this.instance,
        },
      })
    } catch (e) {
      if (apiCode(e) !== 409) {
        this.log.warn({ err: String(e), event: `${ref.namespace}/${name}` }, 'event write failed')
        return
      }
      try {
        const cur = await this.core.readNamespacedEvent({ namespace: ref.namespace, name })
        await this.core.patchNamespacedEvent(
          { namespace: ref.namespace, name, body: { count: (cur.count ?? 1) + 1, lastTimestamp: now.toISOString() } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        )
      } catch (e2) {
        this.log.warn({ err: String(e2), event: `${ref.namespace}/${name}` }, 'event update failed')
      }
    }
  }
}
