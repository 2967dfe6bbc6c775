/**
 * CustomResourceDefinitions for the API test server: a CRD (apiextensions.k8s.io/v1) becomes a
 * served resource type, and its instances are defaulted, pruned and validated against the
 * storage version's `openAPIV3Schema` the way kube-apiserver's apiextensions handler does:
 *
 * - the CRD itself: `metadata.name` must be `<spec.names.plural>.<spec.group>`, the group must
 *   contain a dot, scope Namespaced/Cluster, at least one version, exactly one `storage: true`,
 *   and a schema whose root is `type: object` (apiextensions validation.go);
 * - instances: `default`s are applied where a field is absent (structural defaulting, also
 *   inside arrays), unknown fields are pruned unless `x-kubernetes-preserve-unknown-fields` or
 *   `x-kubernetes-embedded-resource` (which keeps apiVersion/kind/metadata) says otherwise; with
 *   `fieldValidation=Strict` (what kubectl sends) an unknown field is a 400
 *   `strict decoding error: unknown field "<path>"` instead; `type`, `required`, `enum`,
 *   `minLength`, `minItems` and `minimum` failures are a 422 Invalid with one cause per field
 *   (messages as in apimachinery's field errors: `Required value`, `Unsupported value: …`,
 *   `Invalid value: "string": spec.x in body must be of type integer: "string"`).
 * Checked against kube-apiserver's apiextensions-apiserver sources (structural pruning and
 * defaulting, `NewStrictDecodingError`, field.Error formats) and kubectl's output against it;
 * not implemented: CEL rules (`x-kubernetes-validations`), conversion webhooks, multiple served
 * versions with different schemas (every served version shares the storage version's schema).
 */
import type { ResourceType } from './resources.ts'
import type { Obj } from './selectors.ts'

export interface FieldProblem {
  field: string
  reason: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueNotSupported' | 'FieldValueTypeInvalid' | 'FieldValueForbidden'
  message: string
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)

/** The problems of a CRD object that kube-apiserver would refuse (empty when valid). */
export function crdProblems(crd: Obj): FieldProblem[] {
  const out: FieldProblem[] = []
  const spec = isObj(crd.spec) ? crd.spec : {}
  const names = isObj(spec.names) ? spec.names : {}
  const group = typeof spec.group === 'string' ? spec.group : ''
  const plural = typeof names.plural === 'string' ? names.plural : ''
  const name = isObj(crd.metadata) ? crd.metadata.name : undefined
  if (group === '') out.push({ field: 'spec.group', reason: 'FieldValueRequired', message: 'Required value' })
  else if (!group.includes('.')) out.push({ field: 'spec.group', reason: 'FieldValueInvalid', message: `Invalid value: "${group}": should be a domain with at least one dot` })
  if (plural === '') out.push({ field: 'spec.names.plural', reason: 'FieldValueRequired', message: 'Required value' })
  if (typeof names.kind !== 'string' || names.kind === '') out.push({ field: 'spec.names.kind', reason: 'FieldValueRequired', message: 'Required value' })
  if (plural !== '' && group !== '' && name !== `${plural}.${group}`) out.push({ field: 'metadata.name', reason: 'FieldValueInvalid', message: `Invalid value: "${String(name)}": must be spec.names.plural+"."+spec.group` })
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') out.push({ field: 'spec.scope', reason: 'FieldValueNotSupported', message: `Unsupported value: "${String(spec.scope)}": supported values: "Cluster", "Namespaced"` })
  const versions = Array.isArray(spec.versions) ? (spec.versions as unknown[]).filter(isObj) : []
  if (versions.length === 0) out.push({ field: 'spec.versions', reason: 'FieldValueInvalid', message: 'Invalid value: null: must have exactly one version marked as storage version' })
  else if (versions.filter((v) => v.storage === true).length !== 1) out.push({ field: 'spec.versions', reason: 'FieldValueInvalid', message: 'Invalid value: []apiextensions.CustomResourceDefinitionVersion(nil): must have exactly one version marked as storage version' })
  versions.forEach((v, i) => {
    const schema = isObj(v.schema) && isObj(v.schema.openAPIV3Schema) ? v.schema.openAPIV3Schema : undefined
    if (schema === undefined) out.push({ field: `spec.versions[${i}].schema.openAPIV3Schema`, reason: 'FieldValueRequired', message: 'Required value: schemas are required' })
    else if (schema.type !== 'object') out.push({ field: `spec.versions[${i}].schema.openAPIV3Schema.type`, reason: 'FieldValueInvalid', message: `Invalid value: "${String(schema.type)}": must be object at the root` })
  })
  return out
}

/** The served resource type of an (accepted) CRD: the storage version and its schema. */
export function resourceTypeOf(crd: Obj): ResourceType {
  const spec = crd.spec as Obj
  const names = spec.names as Obj
  const storage = ((spec.versions as Obj[]).find((v) => v.storage === true) ?? {}) as Obj
  const subs = isObj(storage.subresources) ? storage.subresources : {}
  return {
    group: String(spec.group),
    version: String(storage.name),
    resource: String(names.plural),
    singular: typeof names.singular === 'string' ? names.singular : String(names.kind).toLowerCase(),
    kind: String(names.kind),
    namespaced: spec.scope === 'Namespaced',
    shortNames: Array.isArray(names.shortNames) ? names.shortNames.map(String) : [],
    subresources: 'status' in subs ? ['status'] : [],
    schema: (storage.schema as Obj).openAPIV3Schema as Obj,
  }
}

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v === 'number' ? 'number' : typeof v)

function typeOk(type: unknown, v: unknown): boolean {
  switch (type) {
    case 'object': return isObj(v)
    case 'array': return Array.isArray(v)
    case 'string': return typeof v === 'string'
    case 'integer': return Number.isInteger(v)
    case 'number': return typeof v === 'number'
    case 'boolean': return typeof v === 'boolean'
    default: return true
  }
}

/**
 * Defaults, prunes and validates `obj` (a custom resource, changed in place) against `schema`.
 * Returns the fields pruned as unknown and the validation problems.
 */
export function applySchema(schema: Obj, obj: Obj): { unknown: string[]; problems: FieldProblem[] } {
  const unknown: string[] = []
  const problems: FieldProblem[] = []
  const walk = (s: Obj, v: unknown, path: string, root: boolean): void => {
    if (v === null || v === undefined) return
    if (s.type !== undefined && !typeOk(s.type, v)) {
      const shown = typeof v === 'string' ? `"${v}"` : JSON.stringify(v)
      problems.push({ field: path, reason: 'FieldValueTypeInvalid', message: `Invalid value: "${typeName(v)}": ${path} in body must be of type ${String(s.type)}: ${shown}` })
      return
    }
    if (Array.isArray(s.enum) && !s.enum.includes(v)) problems.push({ field: path, reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(v)}: supported values: ${s.enum.map((e) => JSON.stringify(e)).join(', ')}` })
    if (typeof v === 'string' && typeof s.minLength === 'number' && v.length < s.minLength) problems.push({ field: path, reason: 'FieldValueInvalid', message: `Invalid value: "${v}": ${path} in body should be at least ${s.minLength} chars long` })
    if (typeof v === 'number' && typeof s.minimum === 'number' && v < s.minimum) problems.push({ field: path, reason: 'FieldValueInvalid', message: `Invalid value: ${v}: ${path} in body should be greater than or equal to ${s.minimum}` })
    if (Array.isArray(v)) {
      if (typeof s.minItems === 'number' && v.length < s.minItems) problems.push({ field: path, reason: 'FieldValueInvalid', message: `Invalid value: ${v.length}: ${path} in body should have at least ${s.minItems} items` })
      const items = isObj(s.items) ? s.items : undefined
      if (items !== undefined) v.forEach((x, i) => { defaults(items, x); walk(items, x, `${path}[${i}]`, false) })
      return
    }
    if (!isObj(v)) return
    const props = isObj(s.properties) ? s.properties : undefined
    const embedded = s['x-kubernetes-embedded-resource'] === true
    const preserve = s['x-kubernetes-preserve-unknown-fields'] === true
    const known = new Set([...(props ? Object.keys(props) : []), ...(root || embedded ? ['apiVersion', 'kind', 'metadata'] : [])])
    for (const r of Array.isArray(s.required) ? s.required : []) {
      if (v[String(r)] === undefined) problems.push({ field: `${path}.${String(r)}`.replace(/^\./, ''), reason: 'FieldValueRequired', message: 'Required value' })
    }
    const additional = isObj(s.additionalProperties) ? s.additionalProperties : undefined
    for (const k of Object.keys(v)) {
      if (k === 'metadata' && (root || embedded)) continue // ObjectMeta: validated by the apiserver itself, never pruned
      const child = `${path === '' ? '' : `${path}.`}${k}`
      const ps = props?.[k]
      if (isObj(ps)) walk(ps, v[k], child, false)
      else if (additional !== undefined) { defaults(additional, v[k]); walk(additional, v[k], child, false) }
      else if (!known.has(k) && !preserve) {
        unknown.push(child)
        delete v[k]
      }
    }
  }
  defaults(schema, obj)
  walk(schema, obj, '', true)
  return { unknown, problems }
}

/** Structural defaulting: `default` of absent properties, recursively (apiserver defaults before validating). */
function defaults(s: Obj, v: unknown): void {
  if (!isObj(v) || !isObj(s.properties)) return
  for (const [k, ps] of Object.entries(s.properties)) {
    if (!isObj(ps)) continue
    if (v[k] === undefined && ps.default !== undefined) v[k] = structuredClone(ps.default)
    defaults(ps, v[k])
  }
}
