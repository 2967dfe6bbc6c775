/**
 * Object storage of the test apiserver: one global resourceVersion counter (like etcd's
 * revision), a bounded history of changes for watch resumption, `410 Gone` below the compaction
 * point, and label/field-filtered watches that turn "stopped matching" into DELETED and "started
 * matching" into ADDED, as the real watch cache does.
 */
import { randomUUID } from 'node:crypto'
import { applySchema, crdProblems, type FieldProblem } from './crds.ts'
import { applyDefaults, apiVersionOf, type ResourceType } from './resources.ts'
import type { Matcher, Obj } from './selectors.ts'

export type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'ERROR' | 'BOOKMARK'

/** An error the apiserver answers with a `Status` object. */
export class ApiError extends Error {
  override name = 'ApiError'
  code: number
  reason: string
  details: Obj | undefined
  constructor(code: number, reason: string, message: string, details?: Obj) {
    super(message)
    this.code = code
    this.reason = reason
    this.details = details
  }
  toStatus(): Obj {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    }
  }
}

/** `services` or `endpointslices.discovery.k8s.io`, as in the apiserver's messages. */
export const qualified = (rt: ResourceType): string => (rt.group === '' ? rt.resource : `${rt.resource}.${rt.group}`)
const details = (rt: ResourceType, name: string): Obj => ({ name, ...(rt.group ? { group: rt.group } : {}), kind: rt.resource })

export const notFound = (rt: ResourceType, name: string): ApiError =>
  new ApiError(404, 'NotFound', `${qualified(rt)} "${name}" not found`, details(rt, name))
export const alreadyExists = (rt: ResourceType, name: string): ApiError =>
  new ApiError(409, 'AlreadyExists', `${qualified(rt)} "${name}" already exists`, details(rt, name))
export const conflict = (rt: ResourceType, name: string): ApiError =>
  new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualified(rt)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(rt, name),
  )
export const invalid = (rt: ResourceType, name: string, field: string, msg: string): ApiError =>
  new ApiError(422, 'Invalid', `${rt.kind} "${name}" is invalid: ${field}: ${msg}`, {
    ...details(rt, name),
    kind: rt.kind,
    causes: [{ reason: 'FieldValueInvalid', message: msg, field }],
  })
export const badRequest = (msg: string): ApiError => new ApiError(400, 'BadRequest', msg)

/** 422 with one cause per field, as apimachinery's `NewInvalid` formats an ErrorList. */
export function invalidAll(rt: ResourceType, name: string, problems: FieldProblem[]): ApiError {
  const kind = rt.group === '' ? rt.kind : `${rt.kind}.${rt.group}`
  const list = problems.map((p) => `${p.field}: ${p.message}`)
  return new ApiError(422, 'Invalid', `${kind} "${name}" is invalid: ${list.length === 1 ? list[0] ?? '' : `[${list.join(', ')}]`}`, {
    ...details(rt, name),
    kind,
    causes: problems.map((p) => ({ reason: p.reason, message: p.message, field: p.field })),
  })
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const PATH_SEGMENT = /^(?!\.\.?$)[^/%]+$/

interface HistoryEntry {
  rv: number
  rtKey: string
  namespace: string
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  obj: Obj
  prev: Obj | undefined
}

export interface WatchSpec {
  rt: ResourceType
  namespace: string | undefined
  label: Matcher
  field: Matcher
  send: (type: WatchType, obj: Obj) => void
  end: () => void
}

export interface WriteOptions {
  dryRun?: boolean
  /** `fieldValidation=Strict`: unknown fields of custom resources are an error, not pruned. */
  strict?: boolean
}

const rtKey = (rt: ResourceType): string => `${rt.group}/${rt.resource}`
const md = (o: Obj): Obj => {
  if (o.metadata === null || typeof o.metadata !== 'object' || Array.isArray(o.metadata)) o.metadata = {}
  return o.metadata as Obj
}
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z')
const clone = <T>(v: T): T => structuredClone(v)
/** Everything except metadata and status: what bumps `metadata.generation`. */
const specOf = (o: Obj): string => JSON.stringify({ ...o, metadata: undefined, status: undefined })

export class Store {
  private rv = 1
  private readonly objects = new Map<string, Obj>()
  private history: HistoryEntry[] = []
  private compactedRv = 0
  private readonly watchers = new Set<WatchSpec>()
  private readonly historyLimit: number

  constructor(historyLimit = 1000) {
    this.historyLimit = historyLimit
  }

  get resourceVersion(): string {
    return String(this.rv)
  }

  private key(rt: ResourceType, namespace: string | undefined, name: string): string {
    return `${rtKey(rt)}|${rt.namespaced ? (namespace ?? '') : ''}|${name}`
  }

  list(rt: ResourceType, namespace: string | undefined, label: Matcher, field: Matcher): { items: Obj[]; resourceVersion: string } {
    const prefix = `${rtKey(rt)}|${rt.namespaced && namespace !== undefined ? `${namespace}|` : ''}`
    const items: Obj[] = []
    for (const [k, o] of this.objects) if (k.startsWith(prefix) && label(o) && field(o)) items.push(clone(o))
    items.sort((a, b) => String(md(a).namespace ?? '').localeCompare(String(md(b).namespace ?? '')) || String(md(a).name).localeCompare(String(md(b).name)))
    return { items, resourceVersion: this.resourceVersion }
  }

  get(rt: ResourceType, namespace: string | undefined, name: string): Obj {
    const o = this.objects.get(this.key(rt, namespace, name))
    if (!o) throw notFound(rt, name)
    return clone(o)
  }

  has(rt: ResourceType, namespace: string | undefined, name: string): boolean {
    return this.objects.has(this.key(rt, namespace, name))
  }

  private validate(rt: ResourceType, obj: Obj, namespace: string | undefined, opts: WriteOptions = {}): string {
    const m = md(obj)
    if (typeof obj.kind === 'string' && obj.kind !== rt.kind) {
      throw badRequest(`the kind of the object (${obj.kind}) does not match the kind of the resource (${rt.kind})`)
    }
    if (typeof obj.apiVersion === 'string' && obj.apiVersion !== apiVersionOf(rt)) {
      throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(rt)})`)
    }
    if (rt.namespaced) {
      if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request')
      }
      m.namespace = namespace
    } else delete m.namespace
    const name = m.name
    if (typeof name !== 'string' || name === '') throw invalid(rt, '', 'metadata.name', 'Required value: name or generateName is required')
    // RBAC objects only need a valid path segment (`system:viewer` is fine); others are DNS names.
    const re = rt.kind === 'Service' || rt.kind === 'Namespace' ? DNS1035_LABEL : rt.group === 'rbac.authorization.k8s.io' ? PATH_SEGMENT : DNS1123_SUBDOMAIN
    if (name.length > (rt.kind === 'Service' ? 63 : 253) || !re.test(name)) {
      throw invalid(rt, name, 'metadata.name', `Invalid value: "${name}": a lowercase RFC 1123 name must consist of lower case alphanumeric characters or '-'`)
    }
    if (rt.kind === 'EndpointSlice' && !['IPv4', 'IPv6', 'FQDN'].includes(String(obj.addressType))) {
      throw invalid(rt, name, 'addressType', `Unsupported value: ${JSON.stringify(obj.addressType)}: supported values: "FQDN", "IPv4", "IPv6"`)
    }
    if (rt.kind === 'CustomResourceDefinition') {
      const problems = crdProblems(obj)
      if (problems.length > 0) throw invalidAll(rt, name, problems)
    }
    if (rt.schema !== undefined) {
      const { unknown, problems } = applySchema(rt.schema, obj)
      if (opts.strict === true && unknown.length > 0) throw badRequest(`strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(', ')}`)
      if (problems.length > 0) throw invalidAll(rt, name, problems)
    }
    return name
  }

  private requireNamespace(rt: ResourceType, namespace: string | undefined): void {
    if (!rt.namespaced || namespace === undefined) return
    if (!this.objects.has(`/namespaces||${namespace}`)) {
      throw new ApiError(404, 'NotFound', `namespaces "${namespace}" not found`, { name: namespace, kind: 'namespaces' })
    }
  }

  create(rt: ResourceType, namespace: string | undefined, input: Obj, opts: WriteOptions = {}): Obj {
    const obj = clone(input)
    const m = md(obj)
    if ((m.name === undefined || m.name === '') && typeof m.generateName === 'string') {
      m.name = `${m.generateName}${Math.random().toString(36).slice(2, 7)}`
    }
    const name = this.validate(rt, obj, namespace, opts)
    this.requireNamespace(rt, namespace)
    const key = this.key(rt, namespace, name)
    if (this.objects.has(key)) throw alreadyExists(rt, name)
    obj.kind = rt.kind
    obj.apiVersion = apiVersionOf(rt)
    m.uid = randomUUID()
    m.creationTimestamp = now()
    m.generation = 1
    delete m.deletionTimestamp
    delete m.deletionGracePeriodSeconds
    applyDefaults(rt, obj, true)
    return this.commit(rt, namespace, key, obj, 'ADDED', undefined, opts.dryRun === true ? this.resourceVersion : undefined)
  }

  /** PUT: optimistic concurrency on `metadata.resourceVersion` when the body carries one. */
  update(rt: ResourceType, namespace: string | undefined, name: string, input: Obj, opts: WriteOptions & { subresource?: string } = {}): Obj {
    const key = this.key(rt, namespace, name)
    const cur = this.objects.get(key)
    if (!cur) throw notFound(rt, name)
    let obj = clone(input)
    const m = md(obj)
    if (m.name !== undefined && m.name !== name) throw badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`)
    m.name = name
    this.validate(rt, obj, namespace, opts)
    const cm = md(cur)
    if (m.resourceVersion !== undefined && m.resourceVersion !== '' && m.resourceVersion !== cm.resourceVersion) throw conflict(rt, name)
    const finalizersOf = (x: Obj): string[] => (Array.isArray(x.finalizers) ? x.finalizers.map(String) : [])
    if (cm.deletionTimestamp !== undefined && opts.subresource === undefined) {
      // Being deleted: finalizers may only go away (registry's "no new finalizers can be added").
      const added = finalizersOf(m).filter((f) => !finalizersOf(cm).includes(f))
      if (added.length > 0) throw invalidAll(rt, name, [{ field: 'metadata.finalizers', reason: 'FieldValueForbidden', message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}` }])
    }
    if (opts.subresource === 'status') obj = { ...clone(cur), status: obj.status }
    else if (opts.subresource === undefined && cur.status !== undefined && rt.subresources.includes('status')) obj.status = clone(cur.status)
    const nm = md(obj)
    nm.uid = cm.uid
    nm.creationTimestamp = cm.creationTimestamp
    nm.generation = specOf(obj) !== specOf(cur) ? Number(cm.generation ?? 1) + 1 : cm.generation
    nm.namespace = cm.namespace
    if (!rt.namespaced) delete nm.namespace
    // deletionTimestamp is set only by DELETE and never cleared by a write.
    if (cm.deletionTimestamp !== undefined) {
      nm.deletionTimestamp = cm.deletionTimestamp
      nm.deletionGracePeriodSeconds = cm.deletionGracePeriodSeconds
    } else {
      delete nm.deletionTimestamp
      delete nm.deletionGracePeriodSeconds
    }
    obj.kind = rt.kind
    obj.apiVersion = apiVersionOf(rt)
    applyDefaults(rt, obj, false)
    if (opts.subresource === 'status') md(obj).finalizers = cm.finalizers
    if (nm.deletionTimestamp !== undefined && finalizersOf(nm).length === 0 && opts.dryRun !== true) {
      // The last finalizer went away: the object is deleted now (what the registry's update does).
      const updated = this.commit(rt, namespace, key, obj, 'MODIFIED', cur, undefined)
      return this.remove(rt, namespace, key, this.objects.get(key) ?? updated) ?? updated
    }
    return this.commit(rt, namespace, key, obj, 'MODIFIED', cur, opts.dryRun === true ? String(cm.resourceVersion) : undefined)
  }

  /** Stores a created or updated object with the next resourceVersion and tells watchers; a dry run only stamps `dryRunRv`. */
  private commit(rt: ResourceType, namespace: string | undefined, key: string, obj: Obj, type: 'ADDED' | 'MODIFIED', prev: Obj | undefined, dryRunRv: string | undefined): Obj {
    const m = md(obj)
    if (dryRunRv !== undefined) {
      m.resourceVersion = dryRunRv
      return obj
    }
    m.resourceVersion = String(++this.rv)
    this.objects.set(key, obj)
    this.record(rt, namespace, type, obj, prev)
    return clone(obj)
  }

  delete(rt: ResourceType, namespace: string | undefined, name: string, opts: WriteOptions & { preconditionRv?: string; preconditionUid?: string } = {}): Obj {
    const key = this.key(rt, namespace, name)
    const cur = this.objects.get(key)
    if (!cur) throw notFound(rt, name)
    const cm = md(cur)
    if (opts.preconditionUid !== undefined && opts.preconditionUid !== cm.uid) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(rt)} "${name}": Precondition failed: UID in precondition: ${opts.preconditionUid}, UID in object meta: ${String(cm.uid)}`)
    }
    if (opts.preconditionRv !== undefined && opts.preconditionRv !== cm.resourceVersion) throw conflict(rt, name)
    if (opts.dryRun) return clone(cur)
    if (Array.isArray(cm.finalizers) && cm.finalizers.length > 0) {
      // Graceful deletion with finalizers: only mark it; the last finalizer's removal deletes it.
      if (cm.deletionTimestamp !== undefined) return clone(cur)
      const marked = clone(cur)
      md(marked).deletionTimestamp = now()
      md(marked).deletionGracePeriodSeconds = 0
      md(marked).generation = Number(cm.generation ?? 1) + 1
      return this.commit(rt, namespace, key, marked, 'MODIFIED', cur, undefined)
    }
    return this.remove(rt, namespace, key, cur) ?? clone(cur)
  }

  /** Removes a stored object for good: DELETED event, dependents collected. */
  private remove(rt: ResourceType, namespace: string | undefined, key: string, cur: Obj): Obj | undefined {
    if (!this.objects.has(key)) return undefined
    const cm = md(cur)
    this.objects.delete(key)
    const gone = clone(cur)
    md(gone).resourceVersion = String(++this.rv)
    this.record(rt, namespace, 'DELETED', gone, cur)
    this.collectGarbage(String(cm.uid), rt.kind === 'Namespace' ? String(cm.name) : undefined)
    this.onRemoved?.(rt, gone)
    return clone(gone)
  }

  /** Deletes at once, finalizers or not (a deleted CRD's instances). */
  forceRemove(rt: ResourceType, namespace: string | undefined, name: string): void {
    const key = this.key(rt, namespace, name)
    const cur = this.objects.get(key)
    if (cur !== undefined) this.remove(rt, namespace, key, cur)
  }

  /** Called after an object is really gone (the server unregisters a deleted CRD's type). */
  onRemoved: ((rt: ResourceType, obj: Obj) => void) | undefined

  /** Background cascading deletion: dependents by ownerReference, and a namespace's contents. */
  private collectGarbage(uid: string, namespace: string | undefined): void {
    for (const [key, o] of [...this.objects]) {
      const m = md(o)
      const owned = Array.isArray(m.ownerReferences) && m.ownerReferences.some((r: Obj) => r.uid === uid)
      const inNs = namespace !== undefined && m.namespace === namespace
      if (!owned && !inNs) continue
      const rt = this.rtOfKey.get(key.slice(0, key.indexOf('|')))
      if (rt && this.objects.has(key)) this.delete(rt, m.namespace as string | undefined, String(m.name))
    }
  }

  private readonly rtOfKey = new Map<string, ResourceType>()

  register(rts: ResourceType[]): void {
    for (const rt of rts) this.rtOfKey.set(rtKey(rt), rt)
  }

  private record(rt: ResourceType, namespace: string | undefined, type: HistoryEntry['type'], obj: Obj, prev: Obj | undefined): void {
    const entry: HistoryEntry = { rv: this.rv, rtKey: rtKey(rt), namespace: rt.namespaced ? (namespace ?? '') : '', type, obj: clone(obj), prev: prev ? clone(prev) : undefined }
    this.history.push(entry)
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit)
      this.compactedRv = dropped[dropped.length - 1]?.rv ?? this.compactedRv
    }
    for (const w of this.watchers) this.deliver(w, entry)
  }

  /**
   * Forgets all history: any watch from an older resourceVersion now gets 410 Gone. With
   * `everything`, even a watch from the current resourceVersion gets 410 (like an apiserver whose
   * watch cache restarted), and open watches end so their clients must resume and re-list.
   */
  compact(everything = false): void {
    this.compactedRv = everything ? this.rv + 1 : this.rv
    this.history = []
    if (everything) this.endWatches()
  }

  private deliver(w: WatchSpec, e: HistoryEntry): void {
    if (e.rtKey !== rtKey(w.rt)) return
    if (w.rt.namespaced && w.namespace !== undefined && e.namespace !== w.namespace) return
    const match = (o: Obj | undefined): boolean => o !== undefined && w.label(o) && w.field(o)
    const now = match(e.obj)
    const before = e.type === 'ADDED' ? false : match(e.prev)
    if (e.type === 'DELETED') {
      if (before) w.send('DELETED', clone(e.obj))
      return
    }
    if (now && before) w.send('MODIFIED', clone(e.obj))
    else if (now) w.send('ADDED', clone(e.obj))
    else if (before) w.send('DELETED', clone(e.obj))
  }

  /**
   * Starts a watch. No resourceVersion (or "0"): synthetic ADDED events for the current state,
   * then live changes. A resourceVersion: replay of the history after it, or an ERROR event with
   * a 410 `Expired` Status (and the end of the stream) when it is older than the compaction point.
   * Returns the function that stops the watch.
   */
  watch(spec: WatchSpec, resourceVersion: string | undefined): () => void {
    if (resourceVersion === undefined || resourceVersion === '' || resourceVersion === '0') {
      for (const o of this.list(spec.rt, spec.namespace, spec.label, spec.field).items) spec.send('ADDED', o)
    } else {
      const from = Number(resourceVersion)
      if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resource version: ${resourceVersion}`)
      if (from < this.compactedRv) {
        spec.send('ERROR', new ApiError(410, 'Expired', `too old resource version: ${from} (${this.compactedRv + 1})`).toStatus())
        spec.end()
        return () => {}
      }
      for (const e of this.history) if (e.rv > from) this.deliver(spec, e)
    }
    this.watchers.add(spec)
    return () => this.watchers.delete(spec)
  }

  /** Ends every open watch stream (server shutdown, or tests forcing a reconnect). */
  endWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w)
      w.end()
    }
  }

  get watchCount(): number {
    return this.watchers.size
  }
}
