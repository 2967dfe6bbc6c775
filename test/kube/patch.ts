/**
 * The three PATCH flavours of the kube-apiserver:
 *
 * - `application/merge-patch+json` (RFC 7386): maps merge, `null` deletes, lists are replaced.
 * - `application/strategic-merge-patch+json`: like merge patch, but lists with a known merge key
 *   (containers by `name`, Service ports by `port`, ...) merge element by element, and the
 *   directives `$patch: delete|replace|merge`, `$retainKeys`, `$setElementOrder/<list>` and
 *   `$deleteFromPrimitiveList/<list>` are understood. The merge keys come from a fixed table of the
 *   fields the resources of this server have (the real server reads them from the Go types).
 * - `application/json-patch+json` (RFC 6902): add, remove, replace, move, copy, test.
 */
import type { Obj } from './selectors.ts'

export class PatchError extends Error {
  override name = 'PatchError'
}

const isMap = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)
const clone = <T>(v: T): T => structuredClone(v)

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isMap(patch)) return clone(patch)
  const out: Obj = isMap(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

/** Merge keys of list fields, by field name. `ports` depends on what the elements hold. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  ownerReferences: 'uid',
  conditions: 'type',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  secrets: 'name',
}
/** Lists of scalars merged as sets. */
const SET_LISTS = new Set(['finalizers'])

function mergeKeyFor(field: string, items: unknown[]): string | undefined {
  if (field === 'ports') {
    const first = items.find(isMap)
    if (first && 'containerPort' in first) return 'containerPort'
    if (first && 'port' in first) return 'port'
    return undefined
  }
  return MERGE_KEYS[field]
}

export interface StrategicOptions {
  /** Lists under these top-level fields are atomic (EndpointSlice `endpoints`, `ports`). */
  atomicTopLevel?: ReadonlySet<string>
}

export function strategicMergePatch(target: unknown, patch: unknown, opts: StrategicOptions = {}): unknown {
  return smp(target, patch, opts, 0)
}

function smp(target: unknown, patch: unknown, opts: StrategicOptions, depth: number): unknown {
  if (!isMap(patch)) return clone(patch)
  const directive = patch.$patch
  if (directive === 'replace') {
    const { $patch: _drop, ...rest } = patch
    return stripDirectives(rest)
  }
  const out: Obj = isMap(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith('$setElementOrder/')) continue
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length)
      const cur = out[field]
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter((x) => !v.includes(x))
      continue
    }
    if (v === null) {
      delete out[k]
      continue
    }
    if (Array.isArray(v)) {
      const atomic = depth === 0 && opts.atomicTopLevel?.has(k)
      out[k] = atomic ? stripDirectives(v) : mergeList(k, out[k], v, opts, depth)
      continue
    }
    out[k] = isMap(v) ? smp(out[k], v, opts, depth + 1) : clone(v)
  }
  for (const [k, order] of Object.entries(patch)) {
    if (!k.startsWith('$setElementOrder/') || !Array.isArray(order)) continue
    const field = k.slice('$setElementOrder/'.length)
    const list = out[field]
    if (Array.isArray(list)) out[field] = reorder(field, list, order)
  }
  const retain = patch.$retainKeys
  if (Array.isArray(retain)) {
    for (const key of Object.keys(out)) if (!retain.includes(key)) delete out[key]
  }
  return out
}

function mergeList(field: string, current: unknown, patch: unknown[], opts: StrategicOptions, depth: number): unknown[] {
  const cur = Array.isArray(current) ? current : []
  if (SET_LISTS.has(field)) {
    const set = [...cur]
    for (const x of patch) if (!set.includes(x)) set.push(x)
    return set
  }
  const key = mergeKeyFor(field, [...patch, ...cur])
  if (key === undefined) return stripDirectives(patch) as unknown[]
  // A `$patch: replace` element replaces the whole list with the other elements.
  if (patch.some((p) => isMap(p) && p.$patch === 'replace')) {
    return stripDirectives(patch.filter((p) => !(isMap(p) && p.$patch === 'replace'))) as unknown[]
  }
  const out = cur.map(clone)
  for (const p of patch) {
    if (!isMap(p)) continue
    const idx = out.findIndex((c) => isMap(c) && c[key] === p[key])
    if (p.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1)
      continue
    }
    if (idx >= 0) out[idx] = smp(out[idx], p, opts, depth + 1)
    else out.push(stripDirectives(p))
  }
  return out
}

/** `$setElementOrder`: the listed elements first, in that order, then the others as they were. */
function reorder(field: string, list: unknown[], order: unknown[]): unknown[] {
  const key = mergeKeyFor(field, [...order, ...list])
  const same = (a: unknown, b: unknown): boolean =>
    key !== undefined && isMap(a) && isMap(b) ? a[key] === b[key] : JSON.stringify(a) === JSON.stringify(b)
  const first: unknown[] = []
  for (const o of order) {
    const found = list.find((x) => same(x, o))
    if (found !== undefined && !first.includes(found)) first.push(found)
  }
  return [...first, ...list.filter((x) => !first.includes(x))]
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives)
  if (!isMap(v)) return v
  const out: Obj = {}
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith('$')) continue
    out[k] = stripDirectives(x)
  }
  return out
}

// ---- RFC 6902 ----

function decodePointer(p: string): string[] {
  if (p === '') return []
  if (!p.startsWith('/')) throw new PatchError(`invalid JSON pointer ${JSON.stringify(p)}`)
  return p.slice(1).split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
}

function parentOf(doc: unknown, path: string[]): { parent: unknown; key: string } {
  let cur = doc
  for (const seg of path.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(seg)]
    else if (isMap(cur)) cur = cur[seg]
    else cur = undefined
    if (cur === undefined) throw new PatchError(`path not found: /${path.join('/')}`)
  }
  const key = path[path.length - 1]
  if (key === undefined) throw new PatchError('cannot address the document root')
  return { parent: cur, key }
}

function getAt(doc: unknown, path: string[]): unknown {
  let cur = doc
  for (const seg of path) {
    if (Array.isArray(cur)) cur = cur[Number(seg)]
    else if (isMap(cur)) cur = cur[seg]
    else return undefined
  }
  return cur
}

function addAt(doc: unknown, path: string[], value: unknown): unknown {
  if (path.length === 0) return clone(value)
  const { parent, key } = parentOf(doc, path)
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : Number(key)
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new PatchError(`bad array index ${key}`)
    parent.splice(i, 0, clone(value))
  } else if (isMap(parent)) parent[key] = clone(value)
  else throw new PatchError(`path not found: /${path.join('/')}`)
  return doc
}

function removeAt(doc: unknown, path: string[]): unknown {
  const { parent, key } = parentOf(doc, path)
  if (Array.isArray(parent)) {
    const i = Number(key)
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw new PatchError(`bad array index ${key}`)
    parent.splice(i, 1)
  } else if (isMap(parent) && Object.hasOwn(parent, key)) delete parent[key]
  else throw new PatchError(`unable to remove nonexistent key: ${key}: missing value`)
  return doc
}

export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError('json patch must be an array of operations')
  let doc = clone(target)
  for (const op of ops) {
    if (!isMap(op) || typeof op.op !== 'string' || typeof op.path !== 'string') {
      throw new PatchError('json patch operation needs op and path')
    }
    const path = decodePointer(op.path)
    switch (op.op) {
      case 'add':
        doc = addAt(doc, path, op.value)
        break
      case 'remove':
        doc = removeAt(doc, path)
        break
      case 'replace':
        if (getAt(doc, path) === undefined) throw new PatchError(`replace operation does not apply: doc is missing key: ${op.path}`)
        doc = path.length === 0 ? clone(op.value) : addAt(removeAt(doc, path), path, op.value)
        break
      case 'move':
      case 'copy': {
        if (typeof op.from !== 'string') throw new PatchError(`${op.op} needs from`)
        const from = decodePointer(op.from)
        const v = getAt(doc, from)
        if (v === undefined) throw new PatchError(`${op.op}: from path not found: ${op.from}`)
        if (op.op === 'move') doc = removeAt(doc, from)
        doc = addAt(doc, path, v)
        break
      }
      case 'test':
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op.value)) {
          throw new PatchError(`testing value ${op.path} failed`)
        }
        break
      default:
        throw new PatchError(`unexpected kind: ${op.op}`)
    }
  }
  return doc
}
