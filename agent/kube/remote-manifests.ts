/**
 * RemoteManifests (`causeway.dev/v1alpha1`): Kubernetes objects this agent keeps applied in
 * another cluster through that cluster's API-server share — server-side apply
 * (`fieldManager=causeway`, `force=true`) with exactly the identity the share grants there.
 *
 * Per object (serialized per RemoteManifests):
 * - a finalizer `causeway.dev/remote-manifests` is added first; on delete every object still
 *   listed in `status.applied` is deleted on the target (404 counts as done), then the
 *   finalizer is removed — while the peer is away the object waits (status says so);
 * - each manifest is applied; `status.objects[i]` is `Applied`, `Failed` (the API server's
 *   message), or `WaitingForPeer`; `status.applied` lists what exists on the target because of
 *   this object; with `spec.prune` (default true) what is no longer declared is deleted;
 * - condition `Ready` (`Applied`, `ApplyFailed`, `PeerUnavailable`) with `observedGeneration`;
 *   Events on the object for applies, failures, the peer going away and prunes;
 * - retries with back-off (1 s doubling to 60 s) while the peer is away or failing, at once
 *   when the peer's catalog comes back, on every spec change, and every `resyncMs`;
 * - a pass applies only what changed: an object whose manifest is the one last applied and
 *   whose `resourceVersion` on the target is still the one that apply returned is left alone
 *   (one GET, no write); an object edited or deleted on the target since (drift) is applied again.
 * The CRD is optional: the controller starts when discovery serves it.
 */
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { apiCode, mergePatchOptions, runInformer } from './kubeutil.ts'
import { APISERVER_SHARE } from './agent-port.ts'
import { mergeConditions, serves, type Condition } from './mcs.ts'
import type { AgentPort } from './ports.ts'
import { RemoteApi, RemoteApiError } from './remote-api.ts'
import type { StatusWriter } from './status.ts'

export const RM_GROUP = 'causeway.dev'
export const RM_VERSION = 'v1alpha1'
export const RM_PLURAL = 'remotemanifests'
export const RM_FINALIZER = 'causeway.dev/remote-manifests'
export const FIELD_MANAGER = 'causeway'

export interface ObjectRef { apiVersion: string; kind: string; namespace?: string; name: string }
export interface ObjectState extends ObjectRef { state: 'Applied' | 'Failed' | 'WaitingForPeer' | 'Pending'; message?: string }

interface Manifest { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } & Record<string, unknown> }
export interface RemoteManifests extends k8s.KubernetesObject {
  spec?: { peer?: string; manifests?: Manifest[]; prune?: boolean }
  status?: { conditions?: Condition[]; objects?: ObjectState[]; applied?: ObjectRef[]; observedGeneration?: number }
}

const refKey = (r: ObjectRef): string => `${r.apiVersion}|${r.kind}|${r.namespace ?? ''}|${r.name}`

/** `metadata.resourceVersion` of an API answer's object, if it has one. */
function rvOf(body: unknown): string | undefined {
  if (body === null || typeof body !== 'object' || !('metadata' in body)) return undefined
  const md = body.metadata
  if (md === null || typeof md !== 'object' || !('resourceVersion' in md)) return undefined
  return typeof md.resourceVersion === 'string' && md.resourceVersion !== '' ? md.resourceVersion : undefined
}

/** The target reference of a manifest, or why it cannot be applied. Pure. */
export function refOf(m: Manifest, namespaced = true): ObjectRef | string {
  if (typeof m.apiVersion !== 'string' || m.apiVersion === '') return 'apiVersion is required'
  if (typeof m.kind !== 'string' || m.kind === '') return 'kind is required'
  const name = m.metadata?.name
  if (typeof name !== 'string' || name === '') return 'metadata.name is required'
  const ns = m.metadata?.namespace
  return { apiVersion: m.apiVersion, kind: m.kind, name, ...(namespaced ? { namespace: typeof ns === 'string' && ns !== '' ? ns : 'default' } : {}) }
}

export interface RemoteManifestsInit {
  kubeConfig: k8s.KubeConfig
  agent: AgentPort
  status?: StatusWriter
  resyncMs?: number
  log?: LogLike
}

export class RemoteManifestsController {
  private readonly init: RemoteManifestsInit
  private readonly api: k8s.CustomObjectsApi
  private informer: (k8s.Informer<RemoteManifests> & k8s.ObjectCache<RemoteManifests>) | undefined
  private readonly queues = new Map<string, Promise<void>>()
  private readonly retry = new Map<string, { delay: number; timer?: NodeJS.Timeout }>()
  private readonly clients = new Map<string, RemoteApi>()
  private readonly lastReason = new Map<string, string>()
  /** Per RemoteManifests, peer and target object: the body last applied and the resourceVersion it got. */
  private readonly lastApplied = new Map<string, { body: string; rv: string }>()
  private signal: AbortSignal | undefined

  constructor(init: RemoteManifestsInit) {
    this.init = init
    this.api = init.kubeConfig.makeApiClient(k8s.CustomObjectsApi)
  }

  private get log(): LogLike { return this.init.log ?? silentLog }

  /** Starts when the CRD is served; call again (resync tick) to pick up a CRD installed later. */
  async start(signal: AbortSignal): Promise<void> {
    this.signal = signal
    if (this.informer !== undefined || signal.aborted) return
    if (!(await serves(this.init.kubeConfig, RM_GROUP, RM_VERSION, RM_PLURAL))) return
    const informer = k8s.makeInformer<RemoteManifests>(this.init.kubeConfig, `/apis/${RM_GROUP}/${RM_VERSION}/${RM_PLURAL}`, async () =>
      (await this.api.listCustomObjectForAllNamespaces({ group: RM_GROUP, version: RM_VERSION, resourcePlural: RM_PLURAL })) as k8s.KubernetesListObject<RemoteManifests>)
    informer.on('add', (o) => this.schedule(o))
    informer.on('update', (o) => this.schedule(o))
    this.informer = informer
    const off = this.init.agent.onCatalog((peer, shares) => {
      if (shares !== null) for (const o of this.objects()) if (o.spec?.peer === peer) this.schedule(o, true)
    })
    const tick = setInterval(() => { for (const o of this.objects()) this.schedule(o) }, this.init.resyncMs ?? 30_000)
    tick.unref()
    signal.addEventListener('abort', () => {
      off()
      clearInterval(tick)
      for (const r of this.retry.values()) clearTimeout(r.timer)
    }, { once: true })
    await runInformer(informer, signal, this.log, 'remotemanifests')
    this.log.info({}, 'remotemanifests: watching RemoteManifests (causeway.dev/v1alpha1)')
  }

  private objects(): RemoteManifests[] { return [...(this.informer?.list() ?? [])] }

  private keyOf(o: RemoteManifests): string { return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}` }

  /** Queues a reconcile of `o` (its latest cached version); `now` skips a pending back-off. */
  schedule(o: RemoteManifests, now = false): Promise<void> {
    const key = this.keyOf(o)
    const r = this.retry.get(key)
    if (r?.timer !== undefined) {
      if (!now) return this.queues.get(key) ?? Promise.resolve()
      clearTimeout(r.timer)
      r.timer = undefined
    }
    const next = (this.queues.get(key) ?? Promise.resolve()).then(async () => {
      if (this.signal?.aborted) return
      const cur = this.informer?.get(o.metadata?.name ?? '', o.metadata?.namespace) ?? o
      const ok = await this.reconcile(cur).catch((e: unknown) => { this.log.warn({ err: String(e), remoteManifests: key }, 'remotemanifests: reconcile failed'); return false })
      this.backoff(key, cur, ok)
    })
    this.queues.set(key, next)
    return next
  }

  private backoff(key: string, o: RemoteManifests, ok: boolean): void {
    if (ok) { this.retry.delete(key); return }
    const r = this.retry.get(key) ?? { delay: 500 }
    r.delay = Math.min(r.delay * 2, 60_000)
    clearTimeout(r.timer)
    r.timer = setTimeout(() => { r.timer = undefined; void this.schedule(o) }, r.delay)
    r.timer.unref()
    this.retry.set(key, r)
  }

  private client(peer: string): RemoteApi {
    let c = this.clients.get(peer)
    if (c === undefined) { c = new RemoteApi(this.init.agent, peer); this.clients.set(peer, c) }
    return c
  }

  private async event(o: RemoteManifests, type: 'Normal' | 'Warning', reason: string, message: string, once = false): Promise<void> {
    const key = this.keyOf(o)
    if (once && this.lastReason.get(key) === `${reason}|${message}`) return
    this.lastReason.set(key, `${reason}|${message}`)
    await this.init.status?.event({ namespace: o.metadata?.namespace ?? 'default', name: o.metadata?.name ?? '', uid: o.metadata?.uid, kind: 'RemoteManifests', apiVersion: `${RM_GROUP}/${RM_VERSION}` }, type, reason, message)
  }

  private ref(o: RemoteManifests): { group: string; version: string; namespace: string; plural: string; name: string } {
    return { group: RM_GROUP, version: RM_VERSION, namespace: o.metadata?.namespace ?? '', plural: RM_PLURAL, name: o.metadata?.name ?? '' }
  }

  private async setFinalizers(o: RemoteManifests, finalizers: string[]): Promise<void> {
    // JSON merge patch with the resourceVersion: a concurrent change makes it fail (409) and retry.
    await this.api.patchNamespacedCustomObject({ ...this.ref(o), body: { metadata: { finalizers, resourceVersion: o.metadata?.resourceVersion } } }, mergePatchOptions())
  }

  private async writeStatus(o: RemoteManifests, status: NonNullable<RemoteManifests['status']>): Promise<void> {
    const same = JSON.stringify({ ...o.status, conditions: undefined }) === JSON.stringify({ ...status, conditions: undefined }) &&
      JSON.stringify((o.status?.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration])) === JSON.stringify((status.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration]))
    if (same) return
    try {
      await this.api.patchNamespacedCustomObjectStatus({ ...this.ref(o), body: { status: { ...status, applied: status.applied ?? [] } } }, mergePatchOptions())
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
  }

  /** One pass; true when everything is in the desired state (no retry needed). */
  private async reconcile(o: RemoteManifests): Promise<boolean> {
    const gen = o.metadata?.generation
    const peer = o.spec?.peer ?? ''
    const finalizers = o.metadata?.finalizers ?? []
    const deleting = o.metadata?.deletionTimestamp !== undefined
    if (deleting && !finalizers.includes(RM_FINALIZER)) return true
    if (!deleting && !finalizers.includes(RM_FINALIZER)) {
      await this.setFinalizers(o, [...finalizers, RM_FINALIZER])
      return true // the update event brings the next pass
    }
    const applied = [...(o.status?.applied ?? [])]
    const manifests = o.spec?.manifests ?? []
    const cond = (status: Condition['status'], reason: string, message: string): Condition[] =>
      mergeConditions(o.status?.conditions, [{ type: 'Ready', status, reason, message }], gen)
    const away = this.init.agent.peerPath(peer) === undefined ? `peer ${peer} is not connected`
      : !this.init.agent.peerOffers(peer, APISERVER_SHARE) ? `peer ${peer} does not share its API server (${APISERVER_SHARE}) with this agent`
      : undefined
    if (away !== undefined) {
      const objects: ObjectState[] = manifests.map((m) => { const r = refOf(m); return typeof r === 'string' ? { apiVersion: String(m.apiVersion ?? ''), kind: String(m.kind ?? ''), name: '', state: 'Failed', message: r } : { ...r, state: 'WaitingForPeer', message: away } })
      await this.writeStatus(o, { observedGeneration: gen, conditions: cond('False', 'PeerUnavailable', `${away}; ${deleting ? 'deleting' : 'applying'} when it is back`), objects, applied })
      await this.event(o, 'Warning', 'PeerUnavailable', away, true)
      return false
    }
    const api = this.client(peer)
    const remove = async (r: ObjectRef): Promise<string | undefined> => {
      this.lastApplied.delete(`${this.keyOf(o)}|${peer}|${refKey(r)}`)
      try {
        const res = await api.request('DELETE', await api.path(r), { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' })
        return res.status < 300 || res.status === 404 ? undefined : res.message
      } catch (e) {
        if (e instanceof RemoteApiError && / is not served by /.test(e.message)) return undefined // the kind itself is gone
        return e instanceof Error ? e.message : String(e)
      }
    }
    if (deleting) {
      const left: ObjectRef[] = []
      const errors: string[] = []
      for (const r of applied) {
        const err = await remove(r)
        if (err !== undefined) { left.push(r); errors.push(`${r.kind} ${r.namespace ?? ''}/${r.name}: ${err}`) }
      }
      if (left.length > 0) {
        await this.writeStatus(o, { observedGeneration: gen, conditions: cond('False', 'DeleteFailed', errors.join('; ')), objects: o.status?.objects ?? [], applied: left })
        await this.event(o, 'Warning', 'DeleteFailed', errors.join('; '), true)
        return false
      }
      await this.event(o, 'Normal', 'Deleted', `deleted ${applied.length} object(s) from peer ${peer}`)
      await this.setFinalizers(o, finalizers.filter((f) => f !== RM_FINALIZER))
      return true
    }
    // Apply every manifest.
    const objects: ObjectState[] = []
    const now = new Map<string, ObjectRef>()
    for (const m of manifests) {
      let ref = refOf(m)
      if (typeof ref === 'string') { objects.push({ apiVersion: String(m.apiVersion ?? ''), kind: String(m.kind ?? ''), name: String(m.metadata?.name ?? ''), state: 'Failed', message: ref }); continue }
      try {
        const info = await api.resource(ref.apiVersion, ref.kind)
        const r2 = refOf(m, info.namespaced)
        if (typeof r2 !== 'string') ref = r2
        const body = { ...m, metadata: { ...m.metadata, ...(ref.namespace !== undefined ? { namespace: ref.namespace } : {}) } }
        const path = await api.path(ref)
        const memo = `${this.keyOf(o)}|${peer}|${refKey(ref)}`
        const text = JSON.stringify(body)
        const last = this.lastApplied.get(memo)
        if (last !== undefined && last.body === text && rvOf((await api.request('GET', path)).body) === last.rv) {
          objects.push({ ...ref, state: 'Applied' }) // unchanged here and there: nothing to write
          now.set(refKey(ref), ref)
          continue
        }
        this.lastApplied.delete(memo)
        const res = await api.request('PATCH', `${path}?fieldManager=${FIELD_MANAGER}&force=true`, body, 'application/apply-patch+yaml')
        if (res.status >= 300) { objects.push({ ...ref, state: 'Failed', message: res.message }); continue }
        const rv = rvOf(res.body)
        if (rv !== undefined) this.lastApplied.set(memo, { body: text, rv })
        objects.push({ ...ref, state: 'Applied' })
        now.set(refKey(ref), ref)
      } catch (e) {
        objects.push({ ...ref, state: 'Failed', message: e instanceof Error ? e.message : String(e) })
      }
    }
    // Prune what this object applied earlier and no longer declares.
    const declared = new Set(objects.map((x) => refKey(x)))
    const keep: ObjectRef[] = [...now.values()]
    const pruneErrors: string[] = []
    for (const r of applied) {
      if (now.has(refKey(r))) continue
      if (declared.has(refKey(r))) { keep.push(r); continue } // declared but failed this time: still ours
      if (o.spec?.prune === false) continue // forgotten, left in place
      const err = await remove(r)
      if (err !== undefined) { keep.push(r); pruneErrors.push(`prune ${r.kind} ${r.namespace ?? ''}/${r.name}: ${err}`) }
      else await this.event(o, 'Normal', 'Pruned', `deleted ${r.kind} ${r.namespace !== undefined ? `${r.namespace}/` : ''}${r.name} from peer ${peer}`)
    }
    const failed = objects.filter((x) => x.state === 'Failed')
    const problems = [...failed.map((x) => `${x.kind} ${x.namespace !== undefined ? `${x.namespace}/` : ''}${x.name}: ${x.message ?? ''}`), ...pruneErrors]
    const conditions = problems.length === 0
      ? cond('True', 'Applied', `${objects.length} object(s) applied to peer ${peer}`)
      : cond('False', 'ApplyFailed', problems.join('; '))
    const changed = o.status?.observedGeneration !== gen || o.status?.conditions?.find((c) => c.type === 'Ready')?.status !== conditions[0]?.status
    await this.writeStatus(o, { observedGeneration: gen, conditions, objects, applied: keep })
    if (problems.length > 0) await this.event(o, 'Warning', 'ApplyFailed', problems.join('; '), true)
    else if (changed) await this.event(o, 'Normal', 'Applied', `${objects.length} object(s) applied to peer ${peer}`)
    return problems.length === 0
  }
}
