/**
 * Server-side apply for the API test server (PATCH `application/apply-patch+yaml`), with the
 * parts of kube-apiserver's field manager a controller relies on:
 *
 * - `fieldManager` is required (422 `PatchOptions.meta.k8s.io "" is invalid: fieldManager:
 *   Required value: is required for apply patch`, apimachinery's ValidatePatchOptions);
 * - applying to a missing object creates it (201), else 200;
 * - each manager's applied fields are recorded in `metadata.managedFields` (operation `Apply`,
 *   `fieldsType: FieldsV1`, keys `f:<name>`); a field the manager applied before and no longer
 *   applies is removed from the object — so "apply the new desired state" shrinks maps such as
 *   a ConfigMap's `data`, as with the real server.
 * Simplified (documented, not needed by causeway): lists are atomic (no `listType=map` merge
 * keys, except the strategic-merge keys built-in kinds already use), ownership conflicts
 * between managers are not detected (every apply acts as `force=true`), and Update managers
 * are not tracked.
 */
import { mergePatch, strategicMergePatch } from './patch.ts'
import { apiVersionOf, type ResourceType } from './resources.ts'
import type { Obj } from './selectors.ts'
import { ApiError, type Store, type WriteOptions } from './store.ts'

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)

/** FieldsV1 of an applied object: `f:<key>` per object field, lists and scalars as leaves. */
export function fieldsOf(v: Obj, top = true): Obj {
  const out: Obj = {}
  for (const [k, x] of Object.entries(v)) {
    if (top && (k === 'apiVersion' || k === 'kind' || k === 'status')) continue
    if (top && k === 'metadata' && isObj(x)) {
      const m: Obj = {}
      for (const mk of ['labels', 'annotations', 'finalizers', 'ownerReferences']) if (x[mk] !== undefined) m[`f:${mk}`] = isObj(x[mk]) ? fieldsOf(x[mk] as Obj, false) : {}
      if (Object.keys(m).length > 0) out['f:metadata'] = m
      continue
    }
    out[`f:${k}`] = isObj(x) ? fieldsOf(x, false) : {}
  }
  return out
}

function leaves(f: Obj, prefix: string[] = []): string[][] {
  const out: string[][] = []
  for (const [k, x] of Object.entries(f)) {
    const path = [...prefix, k.slice(2)]
    if (isObj(x) && Object.keys(x).length > 0) out.push(...leaves(x, path))
    else out.push(path)
  }
  return out
}

function removePath(o: Obj, path: string[]): void {
  let cur: unknown = o
  for (const p of path.slice(0, -1)) cur = isObj(cur) ? cur[p] : undefined
  const last = path.at(-1)
  if (isObj(cur) && last !== undefined) delete cur[last]
}

export interface ApplyInit {
  store: Store
  rt: ResourceType
  namespace: string | undefined
  name: string
  applied: Obj
  manager: string | null
  subresource: string | undefined
  opts: WriteOptions
  /** Strategic-merge atomic fields of built-in kinds. */
  atomic: { atomicTopLevel?: ReadonlySet<string> }
}

export function serverSideApply(a: ApplyInit): [number, Obj] {
  if (a.manager === null || a.manager === '') {
    throw new ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', {
      group: 'meta.k8s.io',
      kind: 'PatchOptions',
      causes: [{ reason: 'FieldValueRequired', message: 'Required value: is required for apply patch', field: 'fieldManager' }],
    })
  }
  const entry = (fieldsV1: Obj): Obj => ({ manager: a.manager, operation: 'Apply', apiVersion: apiVersionOf(a.rt), time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), fieldsType: 'FieldsV1', fieldsV1 })
  const m = isObj(a.applied.metadata) ? a.applied.metadata : {}
  const fields = fieldsOf(a.applied)
  if (!a.store.has(a.rt, a.namespace, a.name)) {
    const body = { ...a.applied, metadata: { ...m, name: a.name, managedFields: [entry(fields)] } }
    return [201, a.store.create(a.rt, a.namespace, body, a.opts)]
  }
  const cur = a.store.get(a.rt, a.namespace, a.name)
  const cm = cur.metadata as Obj
  const managed = Array.isArray(cm.managedFields) ? (cm.managedFields as Obj[]) : []
  const mine = managed.find((e) => e.manager === a.manager && e.operation === 'Apply')
  const now = new Set(leaves(fields).map((p) => p.join('\u0000')))
  if (mine !== undefined && isObj(mine.fieldsV1)) {
    for (const p of leaves(mine.fieldsV1)) if (!now.has(p.join('\u0000'))) removePath(cur, p)
  }
  const merged = (a.rt.schema !== undefined ? mergePatch(cur, a.applied) : strategicMergePatch(cur, a.applied, a.atomic)) as Obj
  const mm = merged.metadata as Obj
  mm.resourceVersion = cm.resourceVersion
  mm.managedFields = [...managed.filter((e) => e !== mine), entry(fields)]
  return [200, a.store.update(a.rt, a.namespace, a.name, merged, { ...a.opts, subresource: a.subresource })]
}
