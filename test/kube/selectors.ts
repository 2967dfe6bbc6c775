/**
 * Label and field selectors as the kube-apiserver parses them (`?labelSelector=`, `?fieldSelector=`).
 *
 * Label selector grammar: comma-separated requirements, each one of `k=v`, `k==v`, `k!=v`, `k`,
 * `!k`, `k in (a,b)`, `k notin (a,b)`. Field selectors: `path=v`, `path==v`, `path!=v` over a
 * dotted path into the object (`metadata.name`, `metadata.namespace`, `involvedObject.name`, ...).
 */
export type Obj = Record<string, unknown>

export type Matcher = (obj: Obj) => boolean

export class SelectorError extends Error {
  override name = 'SelectorError'
}

type LabelReq =
  | { op: 'eq' | 'neq'; key: string; value: string }
  | { op: 'exists' | 'notexists'; key: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }

/** Splits at commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = []
  let depth = 0
  let cur = ''
  for (const ch of s) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (ch === ',' && depth === 0) {
      out.push(cur)
      cur = ''
    } else cur += ch
  }
  out.push(cur)
  return out.map((x) => x.trim()).filter((x) => x !== '')
}

function parseLabelReq(part: string): LabelReq {
  let m = /^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part)
  if (m) {
    const values = (m[3] ?? '').split(',').map((v) => v.trim()).filter((v) => v !== '')
    return { op: m[2] === 'in' ? 'in' : 'notin', key: m[1] ?? '', values }
  }
  m = /^([^\s!=()]+)\s*(!=|==|=)\s*([^\s!=(),]*)$/.exec(part)
  if (m) return { op: m[2] === '!=' ? 'neq' : 'eq', key: m[1] ?? '', value: m[3] ?? '' }
  m = /^!\s*([^\s!=(),]+)$/.exec(part)
  if (m) return { op: 'notexists', key: m[1] ?? '' }
  m = /^([^\s!=(),]+)$/.exec(part)
  if (m) return { op: 'exists', key: m[1] ?? '' }
  throw new SelectorError(`unable to parse requirement: ${JSON.stringify(part)}`)
}

function labelsOf(obj: Obj): Record<string, string> {
  const md = obj.metadata
  if (md === null || typeof md !== 'object') return {}
  const labels = (md as Obj).labels
  if (labels === null || typeof labels !== 'object') return {}
  return labels as Record<string, string>
}

export function parseLabelSelector(sel: string | null | undefined): Matcher {
  if (sel === null || sel === undefined || sel.trim() === '') return () => true
  const reqs = splitTop(sel).map(parseLabelReq)
  return (obj) => {
    const labels = labelsOf(obj)
    return reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key)
      const v = labels[r.key]
      switch (r.op) {
        case 'eq':
          return has && v === r.value
        case 'neq':
          return !has || v !== r.value
        case 'exists':
          return has
        case 'notexists':
          return !has
        case 'in':
          return has && v !== undefined && r.values.includes(v)
        case 'notin':
          return !has || v === undefined || !r.values.includes(v)
      }
    })
  }
}

/** Reads a dotted path; non-string scalars are stringified like the apiserver's field sets. */
export function fieldValue(obj: Obj, path: string): string {
  let cur: unknown = obj
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return ''
    cur = (cur as Obj)[p]
  }
  if (typeof cur === 'string') return cur
  if (typeof cur === 'number' || typeof cur === 'boolean') return String(cur)
  return ''
}

export function parseFieldSelector(sel: string | null | undefined): Matcher {
  if (sel === null || sel === undefined || sel.trim() === '') return () => true
  const reqs = splitTop(sel).map((part) => {
    const m = /^([A-Za-z0-9_.]+)\s*(!=|==|=)\s*(.*)$/.exec(part)
    if (!m) throw new SelectorError(`invalid selector: '${part}'; can't understand '${part}'`)
    return { path: m[1] ?? '', neq: m[2] === '!=', value: (m[3] ?? '').trim() }
  })
  return (obj) => reqs.every((r) => (fieldValue(obj, r.path) === r.value) !== r.neq)
}
