/**
 * A Kubernetes API test server: a real HTTP server on 127.0.0.1 (port 0) speaking the REST
 * semantics that kubectl, @kubernetes/client-node and causeway's controller rely on.
 *
 * Served: legacy discovery (`/api`, `/apis`, `/api/v1`, `/apis/discovery.k8s.io/v1`),
 * `/version`, a minimal `/openapi/v3` (see `openapi.ts`: enough for kubectl to validate on the
 * server side, so plain `kubectl apply` and `kubectl create -f` work; `/openapi/v2` is 404), and
 * the resources in `resources.ts`. Semantics: list with
 * resourceVersion and label/field selectors, watch (`?watch=1`, JSON lines, resumption from a
 * resourceVersion, 410 Gone after `compact()`, `timeoutSeconds`), create (409 AlreadyExists),
 * update (409 Conflict on a stale resourceVersion), delete (404 NotFound, preconditions,
 * deletecollection), PATCH in merge, strategic-merge, json-patch and apply-patch (server-side
 * apply with `fieldManager` required and per-manager `managedFields`: see `apply.ts`),
 * `dryRun=All`, `fieldValidation=Strict`, `Table` output for kubectl, status subresources,
 * finalizers (DELETE sets `deletionTimestamp`; the write that removes the last finalizer deletes;
 * no new finalizers while deleting), ownerReference garbage collection, CustomResourceDefinitions
 * (served per server once created, Established at once, schema defaulting/pruning/validation:
 * see `crds.ts`; deleting a CRD deletes its instances), Status objects shaped like the real
 * apiserver's. How each was checked against the real one: the messages and status codes come
 * from kube-apiserver/apimachinery sources (registry rest.BeforeDelete/finalizers, the apply
 * patcher, apiextensions validation), and kubectl (real binary) and client-node drive it in
 * test/kube/*.test.ts exactly as they drive a real cluster. Request bodies must be JSON or YAML: protobuf (what
 * kubectl's typed `create configmap`/`create secret` send) is refused with 415.
 *
 * Authentication: `Authorization: Bearer <token>` looked up in `tokens` (TokenRequest,
 * `POST .../serviceaccounts/NAME/token`, adds one for that ServiceAccount); then `Impersonate-User`
 * and `Impersonate-Group` are honoured when `canImpersonate(user)` allows. Each request lands in
 * `audit` with the identity it ran as, so tests can check who did what.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { parse as parseYaml } from 'yaml'
import { serverSideApply } from './apply.ts'
import { resourceTypeOf } from './crds.ts'
import { openapiV3 } from './openapi.ts'
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from './patch.ts'
import {
  apiGroupList,
  apiResourceList,
  apiVersions,
  apiVersionOf,
  findResource,
  RESOURCES,
  toTable,
  VERSION_INFO,
  wantsTable,
  type ResourceType,
} from './resources.ts'
import { parseFieldSelector, parseLabelSelector, SelectorError, type Obj } from './selectors.ts'
import { ApiError, badRequest, Store, type WatchType } from './store.ts'

export interface Identity {
  user: string
  groups: string[]
}

export interface AuditEntry {
  user: string
  groups: string[]
  /** The authenticated user when the request impersonated someone. */
  impersonatedBy?: string
  verb: string
  method: string
  path: string
  resource: string
  subresource?: string
  namespace?: string
  name?: string
  code: number
}

export interface RequestAttributes extends Identity {
  verb: string
  group: string
  resource: string
  subresource?: string
  namespace?: string
  name?: string
}

export interface ApiServerOptions {
  /** Bearer token for the admin user (`admin`, group `system:masters`). Default `test-token`. */
  token?: string
  /** More tokens: token → identity. */
  tokens?: Record<string, Identity>
  /**
   * Who may impersonate whom: `target` is the requested user and groups (RBAC's `impersonate`
   * verb on `users` and `groups`, by resourceName). Default: members of `system:masters`, anyone.
   */
  canImpersonate?: (who: Identity, target: Identity) => boolean
  /** Authorization after impersonation. Default: everything allowed. */
  authorize?: (attrs: RequestAttributes) => boolean
  /** Changes kept for watch resumption before older resourceVersions get 410. Default 1000. */
  historyLimit?: number
  /** Log each request line to stderr (also `KUBE_TEST_LOG=1`). */
  log?: boolean
  /**
   * Serve HTTPS with the self-signed certificate in `fixtures/` (default true). kubectl never
   * sends a bearer token over plain HTTP, so kubectl tests need TLS; client-node works with both.
   */
  tls?: boolean
}

export interface ApiServer {
  url: string
  token: string
  /** PEM of the server's certificate (its own CA); empty without TLS. */
  ca: string
  /** A kubeconfig (YAML) for this server; the admin token unless another is given. */
  kubeconfig(opts?: { token?: string; namespace?: string }): string
  store: Store
  audit: AuditEntry[]
  /** Forget the change history: watches from older resourceVersions get 410 Gone. */
  compact(): void
  /** Forget everything and end open watches: every resuming watch gets 410 and must re-list. */
  expireWatches(): void
  /** End every open watch (clients must re-watch). */
  endWatches(): void
  close(): Promise<void>
}

const json = (res: ServerResponse, code: number, body: unknown): void => {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' })
  res.end(text)
}

const MAX_BODY = 3 * 1024 * 1024

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    const b = c as Buffer
    size += b.length
    if (size > MAX_BODY) throw new ApiError(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728')
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function parseObject(text: string, contentType: string): unknown {
  if (contentType.includes('protobuf') || contentType.includes('cbor')) {
    throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`)
  }
  try {
    return contentType.includes('yaml') ? parseYaml(text) : JSON.parse(text)
  } catch (e) {
    throw badRequest(`the body of the request was in an unknown format: ${(e as Error).message}`)
  }
}

function asObj(v: unknown): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw badRequest('the body must be a JSON object')
  return v as Obj
}

interface Route {
  rt: ResourceType
  namespace: string | undefined
  name: string | undefined
  subresource: string | undefined
  legacyWatch: boolean
}

/** Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths. */
function route(segs: string[], list: ResourceType[]): Route | undefined {
  let group: string
  let version: string
  let rest: string[]
  if (segs[0] === 'api' && segs.length >= 3) {
    group = ''
    version = segs[1] ?? ''
    rest = segs.slice(2)
  } else if (segs[0] === 'apis' && segs.length >= 4) {
    group = segs[1] ?? ''
    version = segs[2] ?? ''
    rest = segs.slice(3)
  } else return undefined
  let legacyWatch = false
  if (rest[0] === 'watch') {
    legacyWatch = true
    rest = rest.slice(1)
  }
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length >= 3 && !(rest.length === 3 && ['status', 'finalize'].includes(rest[2] ?? ''))) {
    namespace = rest[1]
    rest = rest.slice(2)
  }
  const rt = findResource(group, version, rest[0] ?? '', list)
  if (!rt || rest.length > 3) return undefined
  return { rt, namespace: rt.namespaced ? namespace : undefined, name: rest[1], subresource: rest[2], legacyWatch }
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const token = opts.token ?? 'test-token'
  const tokens = new Map<string, Identity>(Object.entries(opts.tokens ?? {}))
  tokens.set(token, { user: 'admin', groups: ['system:masters', 'system:authenticated'] })
  const canImpersonate = opts.canImpersonate ?? ((who: Identity) => who.groups.includes('system:masters'))
  const authorize = opts.authorize ?? (() => true)
  const log = opts.log ?? process.env.KUBE_TEST_LOG === '1'
  const store = new Store(opts.historyLimit)
  // Served types: the built-in ones plus those of established CRDs (per server).
  const resources: ResourceType[] = [...RESOURCES]
  store.register(resources)
  store.onRemoved = (rt, obj) => {
    if (rt.kind !== 'CustomResourceDefinition') return
    // A deleted CRD stops being served and its instances go with it.
    const served = resourceTypeOf(obj)
    const i = resources.findIndex((r) => r.group === served.group && r.resource === served.resource)
    if (i < 0) return
    const [gone] = resources.splice(i, 1)
    if (gone === undefined) return
    for (const o of store.list(gone, undefined, () => true, () => true).items) {
      const m = o.metadata as Obj
      if (store.has(gone, m.namespace as string | undefined, String(m.name))) store.forceRemove(gone, m.namespace as string | undefined, String(m.name))
    }
  }
  /** A created CRD is served at once and reported Established (no controller delay here). */
  const establish = (crd: Obj): void => {
    const rt = resourceTypeOf(crd)
    if (findResource(rt.group, rt.version, rt.resource, resources) === undefined) {
      resources.push(rt)
      store.register([rt])
    }
    const crdRt = findResource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', resources)
    const name = String((crd.metadata as Obj).name)
    if (crdRt === undefined) return
    const t = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
    const cond = (type: string, reason: string, message: string): Obj => ({ type, status: 'True', lastTransitionTime: t, reason, message })
    store.update(crdRt, undefined, name, {
      ...store.get(crdRt, undefined, name),
      status: {
        conditions: [cond('NamesAccepted', 'NoConflicts', 'no conflicts found'), cond('Established', 'InitialNamesAccepted', 'the initial names have been accepted')],
        acceptedNames: (crd.spec as Obj).names,
        storedVersions: [rt.version],
      },
    }, { subresource: 'status' })
  }
  const nsRt = RESOURCES.find((r) => r.kind === 'Namespace')
  for (const ns of ['default', 'kube-system', 'kube-public']) if (nsRt) store.create(nsRt, undefined, { metadata: { name: ns } })
  const audit: AuditEntry[] = []
  const closers = new Set<() => void>()
  let url = ''

  function authenticate(req: IncomingMessage): { id: Identity; impersonatedBy?: string } {
    const auth = req.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)$/i.exec(auth)
    const found = m ? tokens.get(m[1] ?? '') : undefined
    if (!found) throw new ApiError(401, 'Unauthorized', 'Unauthorized')
    const iu = req.headersDistinct['impersonate-user']
    const ig = req.headersDistinct['impersonate-group'] ?? []
    if (!iu || iu.length === 0) {
      if (ig.length > 0) throw badRequest('requested [Impersonate-Group] without impersonating a user')
      return { id: found }
    }
    const user = iu[0] ?? ''
    const groups = ig.flatMap((g) => g.split(',').map((x) => x.trim()))
    if (!canImpersonate(found, { user, groups })) {
      throw new ApiError(403, 'Forbidden', `users "${user}" is forbidden: User "${found.user}" cannot impersonate resource "users" in API group "" at the cluster scope`)
    }
    return { id: { user, groups: [...groups, 'system:authenticated'] }, impersonatedBy: found.user }
  }

  async function handle(req: IncomingMessage, res: ServerResponse, entry: AuditEntry): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://localhost')
    const segs = u.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent)
    const q = u.searchParams
    const method = req.method ?? 'GET'
    // Public info, readable without credentials (system:public-info-viewer).
    const p = u.pathname.replace(/\/$/, '')
    if (method === 'GET') {
      if (p === '/version') return json(res, 200, VERSION_INFO)
      if (p === '/healthz' || p === '/readyz' || p === '/livez') {
        res.writeHead(200, { 'Content-Type': 'text/plain' })
        return void res.end('ok')
      }
    }
    const who = authenticate(req)
    entry.user = who.id.user
    entry.groups = who.id.groups
    if (who.impersonatedBy !== undefined) entry.impersonatedBy = who.impersonatedBy

    // Discovery.
    if (method === 'GET') {
      const openapi = openapiV3(p, resources)
      if (openapi) return json(res, 200, openapi)
      if (p === '/api') return json(res, 200, apiVersions(new URL(url).host))
      if (p === '/apis') return json(res, 200, apiGroupList(resources))
      if (p === '/api/v1' || (segs[0] === 'apis' && segs.length === 3)) {
        const list = p === '/api/v1' ? apiResourceList('', 'v1', resources) : apiResourceList(segs[1] ?? '', segs[2] ?? '', resources)
        if (list) return json(res, 200, list)
      }
      if (segs[0] === 'apis' && segs.length === 2) {
        const g = (apiGroupList(resources).groups as Obj[]).find((x) => x.name === segs[1])
        if (g) return json(res, 200, { kind: 'APIGroup', apiVersion: 'v1', ...g })
      }
    }
    const r = route(segs, resources)
    if (!r) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource')
    const { rt, namespace, name, subresource } = r
    if (subresource !== undefined && !rt.subresources.includes(subresource)) {
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource')
    }
    const isWatch = r.legacyWatch || q.get('watch') === 'true' || q.get('watch') === '1'
    const verb =
      method === 'GET' ? (isWatch ? 'watch' : name === undefined ? 'list' : 'get')
      : method === 'POST' ? 'create'
      : method === 'PUT' ? 'update'
      : method === 'PATCH' ? 'patch'
      : method === 'DELETE' ? (name === undefined ? 'deletecollection' : 'delete')
      : ''
    Object.assign(entry, { verb, resource: rt.resource })
    if (subresource !== undefined) entry.subresource = subresource
    if (namespace !== undefined) entry.namespace = namespace
    if (name !== undefined) entry.name = name
    if (verb === '') throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`)
    const attrs: RequestAttributes = { ...who.id, verb, group: rt.group, resource: rt.resource, subresource, namespace, name }
    if (!authorize(attrs)) {
      const scope = namespace !== undefined ? `in the namespace "${namespace}"` : 'at the cluster scope'
      throw new ApiError(
        403,
        'Forbidden',
        `${rt.group ? `${rt.resource}.${rt.group}` : rt.resource}${name ? ` "${name}"` : ''} is forbidden: User "${who.id.user}" cannot ${verb} resource "${rt.resource}${subresource ? `/${subresource}` : ''}" in API group "${rt.group}" ${scope}`,
        { ...(name ? { name } : {}), ...(rt.group ? { group: rt.group } : {}), kind: rt.resource },
      )
    }
    const dryRun = q.getAll('dryRun').includes('All')
    const strict = q.get('fieldValidation') === 'Strict'
    const accept = req.headers.accept
    const contentType = String(req.headers['content-type'] ?? 'application/json')
    const label = parseLabelSelector(q.get('labelSelector'))
    const field = parseFieldSelector(q.get('fieldSelector'))

    switch (verb) {
      case 'get': {
        const o = store.get(rt, namespace, name ?? '')
        return json(res, 200, wantsTable(accept) ? toTable(rt, [o], store.resourceVersion, q.get('includeObject')) : o)
      }
      case 'list': {
        const { items, resourceVersion } = store.list(rt, namespace, label, field)
        if (wantsTable(accept)) return json(res, 200, toTable(rt, items, resourceVersion, q.get('includeObject')))
        for (const o of items) {
          delete o.kind
          delete o.apiVersion
        }
        return json(res, 200, { kind: `${rt.kind}List`, apiVersion: apiVersionOf(rt), metadata: { resourceVersion }, items })
      }
      case 'watch':
        return startWatch(req, res, rt, namespace, name, q, accept)
      case 'create': {
        if (rt.kind === 'ServiceAccount' && subresource === 'token' && name !== undefined) {
          // TokenRequest: a fresh bearer token that authenticates as the ServiceAccount.
          store.get(rt, namespace, name)
          const body = asObj(parseObject(await readBody(req), contentType))
          const spec = (body.spec ?? {}) as Obj
          const seconds = typeof spec.expirationSeconds === 'number' ? spec.expirationSeconds : 3600
          const minted = `sa-${randomBytes(16).toString('hex')}`
          const ns = namespace ?? 'default'
          tokens.set(minted, { user: `system:serviceaccount:${ns}:${name}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'] })
          return json(res, 201, {
            kind: 'TokenRequest',
            apiVersion: 'authentication.k8s.io/v1',
            metadata: { name, namespace: ns, creationTimestamp: new Date().toISOString() },
            spec: { ...spec, expirationSeconds: seconds },
            status: { token: minted, expirationTimestamp: new Date(Date.now() + seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z') },
          })
        }
        if (name !== undefined) throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
        const body = asObj(parseObject(await readBody(req), contentType))
        const created = store.create(rt, namespace, body, { dryRun, strict })
        if (rt.kind === 'CustomResourceDefinition' && !dryRun) {
          establish(created)
          return json(res, 201, store.get(rt, undefined, String((created.metadata as Obj).name)))
        }
        return json(res, dryRun ? 200 : 201, created)
      }
      case 'update': {
        const body = asObj(parseObject(await readBody(req), contentType))
        return json(res, 200, store.update(rt, namespace, name ?? '', body, { dryRun, subresource, strict }))
      }
      case 'patch':
        return json(res, ...(await patch(req, rt, namespace, name ?? '', subresource, contentType, { dryRun, strict }, q.get('fieldManager'))))
      case 'delete': {
        const text = await readBody(req)
        const dopts = text.trim() ? asObj(parseObject(text, contentType)) : {}
        const pre = (dopts.preconditions ?? {}) as Obj
        if (q.getAll('dryRun').length === 0 && Array.isArray(dopts.dryRun) && dopts.dryRun.includes('All')) {
          return json(res, 200, store.get(rt, namespace, name ?? ''))
        }
        const gone = store.delete(rt, namespace, name ?? '', {
          dryRun,
          preconditionRv: typeof pre.resourceVersion === 'string' ? pre.resourceVersion : undefined,
          preconditionUid: typeof pre.uid === 'string' ? pre.uid : undefined,
        })
        return json(res, 200, gone)
      }
      case 'deletecollection': {
        const { items } = store.list(rt, namespace, label, field)
        for (const o of items) {
          const m = o.metadata as Obj
          if (store.has(rt, m.namespace as string | undefined, String(m.name))) store.delete(rt, m.namespace as string | undefined, String(m.name), { dryRun })
        }
        return json(res, 200, { kind: `${rt.kind}List`, apiVersion: apiVersionOf(rt), metadata: { resourceVersion: store.resourceVersion }, items })
      }
    }
  }

  async function patch(req: IncomingMessage, rt: ResourceType, namespace: string | undefined, name: string, subresource: string | undefined, contentType: string, wopts: { dryRun: boolean; strict: boolean }, manager: string | null): Promise<[number, Obj]> {
    const { dryRun } = wopts
    const raw = parseObject(await readBody(req), contentType)
    const ct = contentType.split(';')[0]?.trim()
    if (ct === 'application/apply-patch+yaml') {
      return serverSideApply({ store, rt, namespace, name, applied: asObj(raw), manager, subresource, opts: wopts, atomic: atomicFor(rt) })
    }
    const cur = store.get(rt, namespace, name)
    let next: unknown
    try {
      if (ct === 'application/merge-patch+json') next = mergePatch(cur, asObj(raw))
      else if (ct === 'application/strategic-merge-patch+json' && rt.schema !== undefined) {
        // Custom resources have no patch strategy metadata: the apiserver refuses strategic merge.
        throw new ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml')
      } else if (ct === 'application/strategic-merge-patch+json') next = strategicMergePatch(cur, asObj(raw), atomicFor(rt))
      else if (ct === 'application/json-patch+json') next = jsonPatch(cur, raw)
      else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`)
    } catch (e) {
      if (e instanceof PatchError) throw new ApiError(422, 'Invalid', e.message)
      throw e
    }
    const obj = asObj(next)
    const m = (obj.metadata ?? {}) as Obj
    // A patch that does not mention resourceVersion is unconditional.
    const patchRv = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? ((raw as Obj).metadata as Obj | undefined)?.resourceVersion : undefined
    if (patchRv === undefined && ct !== 'application/json-patch+json') m.resourceVersion = (cur.metadata as Obj).resourceVersion
    return [200, store.update(rt, namespace, name, obj, { ...wopts, subresource })]
  }

  function startWatch(req: IncomingMessage, res: ServerResponse, rt: ResourceType, namespace: string | undefined, name: string | undefined, q: URLSearchParams, accept: string | undefined): void {
    const table = wantsTable(accept)
    const nameMatch = name !== undefined ? parseFieldSelector(`metadata.name=${name}`) : () => true
    const field = parseFieldSelector(q.get('fieldSelector'))
    let ended = false
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' })
    res.flushHeaders()
    const send = (type: WatchType, obj: Obj): void => {
      if (ended) return
      const object = table && type !== 'ERROR' && type !== 'BOOKMARK' ? toTable(rt, [obj], String((obj.metadata as Obj).resourceVersion ?? ''), q.get('includeObject')) : obj
      res.write(`${JSON.stringify({ type, object })}\n`)
    }
    let stop = (): void => {}
    const end = (): void => {
      if (ended) return
      ended = true
      stop()
      clearTimeout(timer)
      closers.delete(end)
      res.end()
    }
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? '1800')
    const timer = setTimeout(end, Math.max(1, Math.min(timeoutSeconds, 3600)) * 1000)
    timer.unref()
    closers.add(end)
    req.on('close', end)
    stop = store.watch(
      { rt, namespace, label: parseLabelSelector(q.get('labelSelector')), field: (o) => nameMatch(o) && field(o), send, end },
      q.get('resourceVersion') ?? undefined,
    )
    if (q.get('allowWatchBookmarks') === 'true' && !ended) {
      send('BOOKMARK', { kind: rt.kind, apiVersion: apiVersionOf(rt), metadata: { resourceVersion: store.resourceVersion } })
    }
  }

  const fixture = (f: string): string => readFileSync(new URL(`./fixtures/${f}`, import.meta.url), 'utf8')
  const tls = opts.tls ?? true
  const ca = tls ? fixture('apiserver.crt') : ''
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const entry: AuditEntry = { user: '', groups: [], verb: '', method: req.method ?? '', path: req.url ?? '', resource: '', code: 0 }
    res.on('finish', () => {
      entry.code = res.statusCode
      audit.push(entry)
      if (log) process.stderr.write(`[apiserver] ${entry.user || '-'} ${req.method} ${req.url} ${String(req.headers['content-type'] ?? '')} -> ${res.statusCode}\n`)
    })
    handle(req, res, entry).catch((e: unknown) => {
      const err =
        e instanceof ApiError ? e
        : e instanceof SelectorError ? badRequest(e.message)
        : new ApiError(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`)
      if (res.headersSent) res.end()
      else json(res, err.code, err.toStatus())
    })
  }
  const server = tls ? createHttpsServer({ cert: ca, key: fixture('apiserver.key') }, listener) : createHttpServer(listener)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  const kubeconfig = (k: { token?: string; namespace?: string } = {}): string =>
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: test',
      '  cluster:',
      `    server: ${url}`,
      ...(tls ? [`    certificate-authority-data: ${Buffer.from(ca).toString('base64')}`] : []),
      'users:',
      '- name: test',
      '  user:',
      `    token: ${k.token ?? token}`,
      'contexts:',
      '- name: test',
      '  context:',
      '    cluster: test',
      '    user: test',
      `    namespace: ${k.namespace ?? 'default'}`,
      'current-context: test',
      '',
    ].join('\n')

  return {
    url,
    token,
    ca,
    kubeconfig,
    store,
    audit,
    compact: () => store.compact(),
    expireWatches: () => {
      for (const end of [...closers]) end()
      store.compact(true)
    },
    endWatches: () => {
      for (const end of [...closers]) end()
      store.endWatches()
    },
    close: async () => {
      for (const end of [...closers]) end()
      store.endWatches()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

const ENDPOINTSLICE_ATOMIC = new Set(['endpoints', 'ports'])
const atomicFor = (rt: ResourceType): { atomicTopLevel?: ReadonlySet<string> } => (rt.kind === 'EndpointSlice' ? { atomicTopLevel: ENDPOINTSLICE_ATOMIC } : {})
