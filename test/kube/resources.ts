/**
 * The resource types the test apiserver serves, their discovery documents, server-side defaults
 * and the `Table` rendering kubectl asks for (`Accept: application/json;as=Table;g=meta.k8s.io`).
 */
import type { Obj } from './selectors.ts'

export interface ResourceType {
  group: string // '' for core
  version: string
  resource: string // plural
  singular: string
  kind: string
  namespaced: boolean
  shortNames: string[]
  /** Subresources served (`status`). */
  subresources: string[]
  /** Custom resources: the CRD version's `openAPIV3Schema` (validation, defaults, pruning). */
  schema?: Obj
}

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']

const core = (resource: string, singular: string, kind: string, namespaced: boolean, shortNames: string[], subresources: string[] = []): ResourceType =>
  ({ group: '', version: 'v1', resource, singular, kind, namespaced, shortNames, subresources })

function grouped(group: string, resource: string, singular: string, kind: string, namespaced: boolean, shortNames: string[] = [], subresources: string[] = []): ResourceType {
  return { group, version: 'v1', resource, singular, kind, namespaced, shortNames, subresources }
}

export const RESOURCES: ResourceType[] = [
  core('namespaces', 'namespace', 'Namespace', false, ['ns'], ['status']),
  core('services', 'service', 'Service', true, ['svc'], ['status']),
  core('endpoints', 'endpoints', 'Endpoints', true, ['ep']),
  core('events', 'event', 'Event', true, ['ev']),
  core('pods', 'pod', 'Pod', true, ['po'], ['status']),
  core('serviceaccounts', 'serviceaccount', 'ServiceAccount', true, ['sa'], ['token']),
  core('configmaps', 'configmap', 'ConfigMap', true, ['cm']),
  core('secrets', 'secret', 'Secret', true, []),
  grouped('discovery.k8s.io', 'endpointslices', 'endpointslice', 'EndpointSlice', true),
  grouped('coordination.k8s.io', 'leases', 'lease', 'Lease', true),
  // Stored but not acted on (no controllers): enough for charts to be applied with --dry-run=server.
  grouped('apps', 'deployments', 'deployment', 'Deployment', true, ['deploy'], ['status']),
  grouped('apps', 'statefulsets', 'statefulset', 'StatefulSet', true, ['sts'], ['status']),
  grouped('rbac.authorization.k8s.io', 'clusterroles', 'clusterrole', 'ClusterRole', false),
  grouped('rbac.authorization.k8s.io', 'clusterrolebindings', 'clusterrolebinding', 'ClusterRoleBinding', false),
  grouped('rbac.authorization.k8s.io', 'roles', 'role', 'Role', true),
  grouped('rbac.authorization.k8s.io', 'rolebindings', 'rolebinding', 'RoleBinding', true),
  grouped('policy', 'poddisruptionbudgets', 'poddisruptionbudget', 'PodDisruptionBudget', true, ['pdb'], ['status']),
  grouped('networking.k8s.io', 'ingresses', 'ingress', 'Ingress', true, ['ing'], ['status']),
  grouped('apiextensions.k8s.io', 'customresourcedefinitions', 'customresourcedefinition', 'CustomResourceDefinition', false, ['crd', 'crds'], ['status']),
]

export const apiVersionOf = (rt: ResourceType): string => (rt.group === '' ? rt.version : `${rt.group}/${rt.version}`)

export function findResource(group: string, version: string, resource: string, list: ResourceType[] = RESOURCES): ResourceType | undefined {
  return list.find((r) => r.group === group && r.version === version && r.resource === resource)
}

export function apiResourceList(group: string, version: string, list: ResourceType[] = RESOURCES): Obj | undefined {
  const rts = list.filter((r) => r.group === group && r.version === version)
  if (rts.length === 0) return undefined
  const resources: Obj[] = []
  for (const r of rts) {
    resources.push({
      name: r.resource,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: VERBS,
      ...(r.shortNames.length > 0 ? { shortNames: r.shortNames } : {}),
    })
    for (const s of r.subresources) {
      resources.push({ name: `${r.resource}/${s}`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] })
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? version : `${group}/${version}`, resources }
}

export function apiGroupList(list: ResourceType[] = RESOURCES): Obj {
  const groups = [...new Set(list.filter((r) => r.group !== '').map((r) => r.group))]
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: groups.map((g) => {
      const versions = [...new Set(list.filter((r) => r.group === g).map((r) => r.version))]
      const gv = versions.map((v) => ({ groupVersion: `${g}/${v}`, version: v }))
      return { name: g, versions: gv, preferredVersion: gv[0] }
    }),
  }
}

export function apiVersions(serverAddress: string): Obj {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  }
}

export const VERSION_INFO = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-causeway-test',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z',
  goVersion: 'go1.23.0',
  compiler: 'gc',
  platform: 'linux/amd64',
}

// ---- defaults ----

let nextClusterIp = 1

/** Server-side defaulting, applied on create and update (like the registry strategies). */
export function applyDefaults(rt: ResourceType, obj: Obj, isCreate: boolean): void {
  const spec = (obj.spec ?? {}) as Obj
  switch (rt.kind) {
    case 'Service': {
      obj.spec = spec
      spec.type ??= 'ClusterIP'
      spec.sessionAffinity ??= 'None'
      if (isCreate && spec.clusterIP === undefined && spec.type !== 'ExternalName') {
        const n = nextClusterIp++
        spec.clusterIP = `10.96.${Math.floor(n / 250)}.${(n % 250) + 1}`
        spec.clusterIPs = [spec.clusterIP]
      }
      if (Array.isArray(spec.ports)) {
        for (const p of spec.ports as Obj[]) {
          p.protocol ??= 'TCP'
          p.targetPort ??= p.port
        }
      }
      obj.status ??= { loadBalancer: {} }
      break
    }
    case 'Pod': {
      obj.spec = spec
      spec.restartPolicy ??= 'Always'
      spec.dnsPolicy ??= 'ClusterFirst'
      obj.status ??= { phase: 'Pending' }
      break
    }
    case 'Namespace':
      obj.spec ??= { finalizers: ['kubernetes'] }
      obj.status ??= { phase: 'Active' }
      break
    case 'Event': {
      obj.count ??= 1
      break
    }
  }
}

// ---- Table rendering ----

interface Column {
  name: string
  type: string
  format?: string
  priority?: number
  cell: (o: Obj) => unknown
}

const meta = (o: Obj): Obj => (o.metadata ?? {}) as Obj
const get = (o: unknown, ...path: string[]): unknown => {
  let cur = o
  for (const p of path) cur = cur !== null && typeof cur === 'object' ? (cur as Obj)[p] : undefined
  return cur
}

export function age(ts: unknown, now = Date.now()): string {
  if (typeof ts !== 'string') return '<unknown>'
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000))
  if (s < 120) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h`
  return `${Math.floor(h / 24)}d`
}

const NAME: Column = { name: 'Name', type: 'string', format: 'name', cell: (o) => meta(o).name }
const AGE: Column = { name: 'Age', type: 'string', cell: (o) => age(meta(o).creationTimestamp) }

function servicePorts(o: Obj): string {
  const ports = get(o, 'spec', 'ports')
  if (!Array.isArray(ports) || ports.length === 0) return '<none>'
  return ports.map((p: Obj) => `${String(p.port)}${p.nodePort ? `:${String(p.nodePort)}` : ''}/${String(p.protocol ?? 'TCP')}`).join(',')
}

function podReady(o: Obj): string {
  const containers = get(o, 'spec', 'containers')
  const statuses = get(o, 'status', 'containerStatuses')
  const total = Array.isArray(containers) ? containers.length : 0
  const ready = Array.isArray(statuses) ? statuses.filter((s: Obj) => s.ready === true).length : 0
  return `${ready}/${total}`
}

function podRestarts(o: Obj): number {
  const statuses = get(o, 'status', 'containerStatuses')
  return Array.isArray(statuses) ? statuses.reduce((n: number, s: Obj) => n + (typeof s.restartCount === 'number' ? s.restartCount : 0), 0) : 0
}

const COLUMNS: Record<string, Column[]> = {
  Service: [
    NAME,
    { name: 'Type', type: 'string', cell: (o) => get(o, 'spec', 'type') ?? 'ClusterIP' },
    { name: 'Cluster-IP', type: 'string', cell: (o) => get(o, 'spec', 'clusterIP') ?? '<none>' },
    { name: 'External-IP', type: 'string', cell: () => '<none>' },
    { name: 'Port(s)', type: 'string', cell: servicePorts },
    AGE,
    { name: 'Selector', type: 'string', priority: 1, cell: (o) => Object.entries((get(o, 'spec', 'selector') ?? {}) as Obj).map(([k, v]) => `${k}=${String(v)}`).join(',') || '<none>' },
  ],
  Pod: [
    NAME,
    { name: 'Ready', type: 'string', cell: podReady },
    { name: 'Status', type: 'string', cell: (o) => get(o, 'status', 'phase') ?? 'Unknown' },
    { name: 'Restarts', type: 'string', cell: (o) => String(podRestarts(o)) },
    AGE,
    { name: 'IP', type: 'string', priority: 1, cell: (o) => get(o, 'status', 'podIP') ?? '<none>' },
  ],
  Namespace: [NAME, { name: 'Status', type: 'string', cell: (o) => get(o, 'status', 'phase') ?? 'Active' }, AGE],
  ConfigMap: [NAME, { name: 'Data', type: 'integer', cell: (o) => Object.keys((o.data ?? {}) as Obj).length }, AGE],
  ServiceAccount: [NAME, { name: 'Secrets', type: 'integer', cell: (o) => (Array.isArray(o.secrets) ? o.secrets.length : 0) }, AGE],
  EndpointSlice: [
    NAME,
    { name: 'AddressType', type: 'string', cell: (o) => o.addressType ?? '' },
    { name: 'Ports', type: 'string', cell: (o) => (Array.isArray(o.ports) ? o.ports.map((p: Obj) => String(p.port)).join(',') || '<unset>' : '<unset>') },
    {
      name: 'Endpoints',
      type: 'string',
      cell: (o) => (Array.isArray(o.endpoints) ? o.endpoints.flatMap((e: Obj) => (Array.isArray(e.addresses) ? e.addresses : [])).join(',') || '<unset>' : '<unset>'),
    },
    AGE,
  ],
  Lease: [NAME, { name: 'Holder', type: 'string', cell: (o) => get(o, 'spec', 'holderIdentity') ?? '' }, AGE],
  Event: [
    { name: 'Last Seen', type: 'string', cell: (o) => age(o.lastTimestamp ?? meta(o).creationTimestamp) },
    { name: 'Type', type: 'string', cell: (o) => o.type ?? '' },
    { name: 'Reason', type: 'string', cell: (o) => o.reason ?? '' },
    { name: 'Object', type: 'string', cell: (o) => `${String(get(o, 'involvedObject', 'kind') ?? '').toLowerCase()}/${String(get(o, 'involvedObject', 'name') ?? '')}` },
    { name: 'Message', type: 'string', cell: (o) => o.message ?? '' },
  ],
}

export function toTable(rt: ResourceType, items: Obj[], resourceVersion: string, includeObject: string | null): Obj {
  const cols = COLUMNS[rt.kind] ?? [NAME, AGE]
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: cols.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      description: c.name,
      priority: c.priority ?? 0,
    })),
    rows: items.map((o) => ({
      cells: cols.map((c) => c.cell(o) ?? ''),
      object:
        includeObject === 'Object'
          ? o
          : includeObject === 'None'
            ? undefined
            : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
    })),
  }
}

/** Does an `Accept` header ask for a meta.k8s.io Table? */
export const wantsTable = (accept: string | undefined): boolean => accept !== undefined && /as=Table/.test(accept.split(',')[0] ?? '')
