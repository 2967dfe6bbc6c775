/**
 * Proves the test apiserver speaks real Kubernetes: the real kubectl (/usr/bin/kubectl) and
 * @kubernetes/client-node's informer (list + watch, 410 re-list) drive it over HTTPS with a
 * bearer token. `kubectl apply` runs client-side (last-applied-configuration + strategic-merge
 * PATCH, `fieldValidation=Strict` left to the server as the minimal OpenAPI v3 allows) and
 * server-side (`--server-side`: apply-patch, simplified by the test server to create-or-merge).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { raw } from './raw.ts'
import { RESOURCES } from './resources.ts'
import { eventually } from './wait.ts'

const KUBECTL = '/usr/bin/kubectl'
let server: ApiServer
let dir: string

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function kubectl(args: string[], input?: string, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(KUBECTL, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, KUBECONFIG: join(dir, 'kubeconfig') } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(input)
  })
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input)
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r.stdout
}

const until = async <T>(what: string, fn: () => T | undefined, timeoutMs = 10_000): Promise<T> => await eventually(what, async () => fn(), timeoutMs) as T

const manifest = (data: string, port: number): string => `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: ${data}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: ${port}, targetPort: 8080}
  - {name: admin, port: 9000}
`

beforeAll(async () => {
  server = await startApiServer()
  dir = mkdtempSync(join(tmpdir(), 'causeway-kubectl-'))
  writeFileSync(join(dir, 'kubeconfig'), server.kubeconfig())
})

afterAll(async () => {
  await server?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('kubectl against the test apiserver', () => {
  it('lists nothing, then namespaces, with the server-side Table', async () => {
    const none = await kubectl(['get', 'services'])
    expect(none.code).toBe(0)
    expect(none.stderr).toContain('No resources found in default namespace.')
    const ns = await ok(['get', 'namespaces'])
    expect(ns).toMatch(/^NAME\s+STATUS\s+AGE\n/)
    expect(ns).toMatch(/\ndefault\s+Active\s+\d+s\n/)
  })

  it('apply creates, apply again patches (client-side, strategic merge)', async () => {
    const first = await ok(['apply', '-f', '-'], manifest('a', 80))
    expect(first).toContain('configmap/settings created')
    expect(first).toContain('service/web created')
    const second = await ok(['apply', '-f', '-'], manifest('b', 81))
    expect(second).toContain('configmap/settings configured')
    expect(second).toContain('service/web configured')
    const unchanged = await ok(['apply', '-f', '-'], manifest('b', 81))
    expect(unchanged).toContain('service/web unchanged')

    const svc = JSON.parse(await ok(['get', 'service', 'web', '-o', 'json'])) as k8s.V1Service
    expect(svc.spec?.ports?.map((p) => [p.name, p.port, p.targetPort])).toEqual([
      ['http', 81, 8080],
      ['admin', 9000, 9000],
    ])
    expect(svc.metadata?.generation).toBe(2)
    expect(svc.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration']).toContain('"port":81')
    expect(await ok(['get', 'configmap', 'settings', '-o', 'jsonpath={.data.mode}'])).toBe('b')
    const table = await ok(['get', 'svc'])
    expect(table).toMatch(/^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\n/)
    expect(table).toMatch(/\nweb\s+ClusterIP\s+10\.96\.\d+\.\d+\s+<none>\s+81\/TCP,9000\/TCP\s+\d+s\n/)
    const created = server.audit.find((a) => a.verb === 'create' && a.resource === 'services')
    expect(created?.path).toContain('fieldManager=kubectl-client-side-apply')
    expect(created?.path).toContain('fieldValidation=Strict')
    const patches = server.audit.filter((a) => a.verb === 'patch' && a.resource === 'services')
    expect(patches.length).toBeGreaterThanOrEqual(1)
    expect(patches.every((a) => a.user === 'admin')).toBe(true)
  })

  it('server-side apply creates and then updates', async () => {
    const doc = (v: string): string => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {mode: "${v}"}\n`
    expect(await ok(['apply', '--server-side', '-f', '-'], doc('one'))).toBe('configmap/ssa serverside-applied\n')
    expect(await ok(['apply', '--server-side', '-f', '-'], doc('two'))).toBe('configmap/ssa serverside-applied\n')
    expect(await ok(['get', 'configmap', 'ssa', '-o', 'jsonpath={.data.mode}'])).toBe('two')
    const applies = server.audit.filter((a) => a.verb === 'patch' && a.name === 'ssa')
    expect(applies.map((a) => a.code)).toEqual([201, 200])
  })

  it('refuses protobuf bodies (typed kubectl create) with 415, JSON/YAML only', async () => {
    const r = await kubectl(['create', 'configmap', 'typed', '--from-literal=a=b'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('the body of the request was in an unknown format')
  })

  it('annotates, selects by label, and reports NotFound like the real apiserver', async () => {
    expect(await ok(['annotate', 'service', 'web', 'causeway.dev/share=true'])).toContain('service/web annotated')
    expect(await ok(['get', 'svc', 'web', '-o', 'jsonpath={.metadata.annotations.causeway\\.dev/share}'])).toBe('true')
    const conflict = await kubectl(['annotate', 'service', 'web', 'causeway.dev/share=false'])
    expect(conflict.code).not.toBe(0)
    expect(conflict.stderr).toContain("already has a value (true)")
    expect(await ok(['get', 'svc', '-l', 'app=web', '-o', 'name'])).toBe('service/web\n')
    expect(await ok(['get', 'svc', '-l', 'app!=web', '-o', 'name'])).toBe('')
    expect(await ok(['get', 'svc', '--field-selector', 'metadata.name=web', '-o', 'name'])).toBe('service/web\n')
    const missing = await kubectl(['get', 'svc', 'nope'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('Error from server (NotFound): services "nope" not found')
    const r = await raw(server, 'GET', '/api/v1/namespaces/default/services/nope')
    expect(r.status).toBe(404)
    expect(r.json()).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'services "nope" not found',
      reason: 'NotFound',
      details: { name: 'nope', kind: 'services' },
      code: 404,
    })
    const dup = await kubectl(['create', '-f', '-'], 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n')
    expect(dup.stderr).toContain('Error from server (AlreadyExists): error when creating "STDIN": configmaps "settings" already exists')
  })

  it('watches: kubectl get --watch prints changes until killed by PID', async () => {
    const child = spawn(KUBECTL, ['get', 'configmaps', '--watch', '-o', 'name'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, KUBECONFIG: join(dir, 'kubeconfig') },
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    try {
      await until('the initial list', () => (out.includes('configmap/settings') ? true : undefined))
      await until('the watch to open', () => (server.store.watchCount > 0 ? true : undefined))
      await ok(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'watched' }, data: { k: 'v' } }))
      await until('ADDED', () => (out.includes('configmap/watched') ? true : undefined))
      await ok(['delete', 'configmap', 'watched'])
      await until('DELETED', () => (out.split('configmap/watched').length >= 3 ? true : undefined))
    } finally {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
    }
    const watches = server.audit.filter((a) => a.verb === 'watch')
    expect(out.trim().split('\n')).toEqual(['configmap/settings', 'configmap/ssa', 'configmap/watched', 'configmap/watched'])
    expect(watches.length + server.store.watchCount).toBeGreaterThanOrEqual(1)
  })

  it('gets pods as kubectl prints them', async () => {
    server.store.create(podType(), 'default', {
      metadata: { name: 'web-1', labels: { app: 'web' } },
      spec: { containers: [{ name: 'c', image: 'nginx' }] },
      status: { phase: 'Running', podIP: '10.0.0.5', containerStatuses: [{ name: 'c', ready: true, restartCount: 2 }] },
    })
    const out = await ok(['get', 'pods'])
    expect(out).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\n/)
    expect(out).toMatch(/\nweb-1\s+1\/1\s+Running\s+2\s+\d+s\n/)
    expect(await ok(['get', 'pods', '-o', 'wide'])).toContain('10.0.0.5')
  })

  it('deletes and then reports NotFound', async () => {
    expect(await ok(['delete', 'service', 'web'])).toBe('service "web" deleted\n')
    const again = await kubectl(['delete', 'service', 'web'])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('Error from server (NotFound): services "web" not found')
  })

  it('runs requests as the impersonated identity (--as / --as-group)', async () => {
    await ok(['get', 'svc', '--as', 'system:serviceaccount:causeway:apiserver-share', '--as-group', 'viewers'])
    const last = server.audit.filter((a) => a.verb === 'list' && a.resource === 'services').at(-1)
    expect(last?.user).toBe('system:serviceaccount:causeway:apiserver-share')
    expect(last?.groups).toContain('viewers')
    expect(last?.impersonatedBy).toBe('admin')
  })

  it('server-side apply (kubectl apply --server-side): managedFields, fields no longer applied are removed, fieldManager required', async () => {
    const cm = (data: string): string => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n${data}`
    expect(await ok(['apply', '--server-side', '-f', '-'], cm('  a: "1"\n  b: "2"\n'))).toBe('configmap/ssa serverside-applied\n')
    await ok(['apply', '--server-side', '-f', '-'], cm('  a: "3"\n'))
    const got = JSON.parse(await ok(['get', 'configmap', 'ssa', '-o', 'json', '--show-managed-fields'])) as { data: Record<string, string>; metadata: { managedFields: Array<{ manager: string; operation: string }> } }
    expect(got.data).toEqual({ a: '3' })
    expect(got.metadata.managedFields).toEqual([expect.objectContaining({ manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1' })])
    const r = await raw(server, 'PATCH', '/api/v1/namespaces/default/configmaps/ssa', { body: cm('  a: "4"\n'), contentType: 'application/apply-patch+yaml' })
    expect(r.status).toBe(422)
    expect(r.json()).toMatchObject({ reason: 'Invalid', message: 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch' })
  })

  it('finalizers: delete only marks the object, removing the last finalizer deletes it, none may be added meanwhile', async () => {
    await ok(['apply', '-f', '-'], 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.org/hold]\n')
    await ok(['delete', 'configmap', 'held', '--wait=false'])
    const held = JSON.parse(await ok(['get', 'configmap', 'held', '-o', 'json'])) as { metadata: { deletionTimestamp?: string } }
    expect(held.metadata.deletionTimestamp).toMatch(/^\d{4}-/)
    const add = await kubectl(['patch', 'configmap', 'held', '--type', 'merge', '-p', '{"metadata":{"finalizers":["example.org/hold","example.org/more"]}}'])
    expect(add.code).toBe(1)
    expect(add.stderr).toContain('metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.org/more"}')
    await ok(['patch', 'configmap', 'held', '--type', 'json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]'])
    const gone = await kubectl(['get', 'configmap', 'held'])
    expect(gone.stderr).toContain('configmaps "held" not found')
  })

  it('rejects a missing or wrong token with 401', async () => {
    const r = await raw(server, 'GET', '/api/v1/namespaces', { token: 'wrong' })
    expect(r.status).toBe(401)
    expect(r.json()).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401 })
  })
})

function podType(): (typeof RESOURCES)[number] {
  const rt = RESOURCES.find((r) => r.kind === 'Pod')
  if (!rt) throw new Error('no pod resource')
  return rt
}

describe('client-node informer against the test apiserver', () => {
  it('lists, watches, and re-lists after 410 Gone', async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromString(server.kubeconfig())
    const core = kc.makeApiClient(k8s.CoreV1Api)
    await core.createNamespace({ body: { metadata: { name: 'inf' } } })
    await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'one', labels: { team: 'a' } } } })
    const informer = k8s.makeInformer(kc, '/api/v1/namespaces/inf/configmaps', () => core.listNamespacedConfigMap({ namespace: 'inf' }))
    const events: string[] = []
    const errors: unknown[] = []
    informer.on('add', (o) => events.push(`add ${o.metadata?.name}`))
    informer.on('update', (o) => events.push(`update ${o.metadata?.name}`))
    informer.on('delete', (o) => events.push(`delete ${o.metadata?.name}`))
    informer.on('error', (e) => errors.push(e))
    await informer.start()
    try {
      await until('initial add', () => (events.includes('add one') ? true : undefined))
      await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'two' } } })
      await until('watch add', () => (events.includes('add two') ? true : undefined))
      await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'two', body: { data: { x: '1' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch))
      await until('watch update', () => (events.includes('update two') ? true : undefined))

      // A resumed watch from a compacted resourceVersion gets an ERROR event with 410: the
      // informer must re-list and then keep watching.
      server.compact()
      await core.deleteNamespacedConfigMap({ namespace: 'inf', name: 'one' })
      await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'three' } } })
      await until('the watch to see the changes', () => (events.includes('add three') ? true : undefined))
      const lists = (): number => server.audit.filter((a) => a.verb === 'list' && a.namespace === 'inf').length
      const gone = (): number => server.audit.filter((a) => a.verb === 'watch' && a.namespace === 'inf').length
      const before = lists()
      const watchesBefore = gone()
      server.expireWatches()
      await until('re-list after 410', () => (lists() > before ? true : undefined), 15_000)
      expect(gone()).toBeGreaterThan(watchesBefore)
      await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'four' } } })
      await until('watch after re-list', () => (events.includes('add four') ? true : undefined), 15_000)
      expect(informer.list().map((o) => o.metadata?.name).sort()).toEqual(['four', 'three', 'two'])
      expect(events).toContain('delete one')
      expect(errors).toEqual([])
    } finally {
      await informer.stop()
    }
  })

  it('a label-filtered watch turns "stopped matching" into DELETED and "started matching" into ADDED', async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromString(server.kubeconfig())
    const core = kc.makeApiClient(k8s.CoreV1Api)
    const list = await core.listNamespacedConfigMap({ namespace: 'inf', labelSelector: 'team=a' })
    const rv = list.metadata?.resourceVersion ?? ''
    const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)
    // The stream ends by itself after timeoutSeconds; meanwhile, move objects in and out of the selector.
    const stream = raw(server, 'GET', `/api/v1/namespaces/inf/configmaps?watch=true&labelSelector=team%3Da&resourceVersion=${rv}&timeoutSeconds=1`)
    await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'three', body: { metadata: { labels: { team: 'a' } } } }, merge)
    await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'three', body: { data: { k: 'v' } } }, merge)
    await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'three', body: { metadata: { labels: { team: 'b' } } } }, merge)
    await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'four', body: { data: { k: 'v' } } }, merge)
    const events = (await stream).body.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: k8s.V1ConfigMap })
    expect(events.map((e) => `${e.type} ${e.object.metadata?.name} ${e.object.metadata?.labels?.team}`)).toEqual(['ADDED three a', 'MODIFIED three a', 'DELETED three b'])
    expect(Number(events[2]?.object.metadata?.resourceVersion)).toBeGreaterThan(Number(rv))
  })

  it('reports AlreadyExists and Conflict as 409', async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromString(server.kubeconfig())
    const core = kc.makeApiClient(k8s.CoreV1Api)
    await expect(core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'two' } } })).rejects.toMatchObject({ code: 409 })
    const cur = await core.readNamespacedConfigMap({ namespace: 'inf', name: 'two' })
    await core.replaceNamespacedConfigMap({ namespace: 'inf', name: 'two', body: { ...cur, data: { x: '2' } } })
    const stale = core.replaceNamespacedConfigMap({ namespace: 'inf', name: 'two', body: { ...cur, data: { x: '3' } } })
    await expect(stale).rejects.toMatchObject({ code: 409 })
    const r = await raw(server, 'PUT', '/api/v1/namespaces/inf/configmaps/two', { body: { ...cur, data: { x: '3' } } })
    expect(r.json()).toMatchObject({ kind: 'Status', reason: 'Conflict', code: 409 })
    const w = await raw(server, 'GET', `/api/v1/namespaces/inf/configmaps?watch=1&resourceVersion=1`)
    expect(w.body.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      { type: 'ERROR', object: expect.objectContaining({ kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 }) },
    ])
  })
})
