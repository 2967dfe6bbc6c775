/**
 * A minimal OpenAPI v3 for kubectl: the index (`/openapi/v3`) and one document per group-version
 * with the create/update/patch operations of each resource, tagged with
 * `x-kubernetes-group-version-kind` and declaring the `fieldValidation` query parameter. That is
 * what kubectl's QueryParamVerifier looks for: when the server declares `fieldValidation`, kubectl
 * leaves validation to the server (`?fieldValidation=Strict`) instead of downloading schemas.
 * No component schemas are served; kubectl's apply then takes the strategic-merge patch metadata
 * of built-in kinds from its compiled-in types. `/openapi/v2` stays 404.
 */
import { createHash } from 'node:crypto'
import { RESOURCES, type ResourceType } from './resources.ts'
import type { Obj } from './selectors.ts'

const gvPath = (rt: ResourceType): string => (rt.group === '' ? `api/${rt.version}` : `apis/${rt.group}/${rt.version}`)

function gvDocument(path: string, list: ResourceType[]): Obj | undefined {
  const rts = list.filter((r) => gvPath(r) === path)
  if (rts.length === 0) return undefined
  const params = [
    { name: 'dryRun', in: 'query', schema: { type: 'string' } },
    { name: 'fieldManager', in: 'query', schema: { type: 'string' } },
    { name: 'fieldValidation', in: 'query', schema: { type: 'string' } },
  ]
  const paths: Obj = {}
  for (const rt of rts) {
    const gvk = { group: rt.group, version: rt.version, kind: rt.kind }
    const op = (action: string): Obj => ({ 'x-kubernetes-action': action, 'x-kubernetes-group-version-kind': gvk, parameters: params, responses: {} })
    const base = `/${path}${rt.namespaced ? '/namespaces/{namespace}' : ''}/${rt.resource}`
    paths[base] = { post: op('post') }
    paths[`${base}/{name}`] = { put: op('put'), patch: op('patch') }
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: 'v1.32.0' }, paths, components: { schemas: {} } }
}

const hashOf = (doc: Obj): string => createHash('sha512').update(JSON.stringify(doc)).digest('hex').slice(0, 128).toUpperCase()

/** Answers `/openapi/v3` and `/openapi/v3/<gv path>`; undefined for anything else. */
export function openapiV3(pathname: string, list: ResourceType[] = RESOURCES): Obj | undefined {
  if (pathname === '/openapi/v3') {
    const out: Obj = {}
    for (const p of new Set(list.map(gvPath))) {
      const doc = gvDocument(p, list)
      if (doc) out[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hashOf(doc)}` }
    }
    return { paths: out }
  }
  if (pathname.startsWith('/openapi/v3/')) return gvDocument(pathname.slice('/openapi/v3/'.length), list)
  return undefined
}
