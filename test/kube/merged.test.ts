/**
 * Merged imports, policies, withdrawal and per-pod addressing end to end, inside the test
 * network namespace: three in-process Agents (east, west, local) on one signaling service, each
 * with its own API test server running the real Kubernetes mode (controller + AgentPort), the
 * chart's MCS CRDs, and objects written with the real kubectl where a user would write them.
 *
 * There are no pods, kube-proxy or cluster DNS in the stand-in: a cluster's "backend" of a
 * Service is a loopback TCP server answering its own name (the export's `resolve` maps the
 * Service's DNS name to it), EndpointSlices are created with kubectl as the EndpointSlice
 * controller would, "pods" are loopback listeners on distinct 127.0.0.N addresses (the slices
 * list them as pod IPs 10.244.0.N, which `resolve` maps there: the agent refuses to dial
 * loopback pod addresses), and a client connects where kube-proxy / DNS would send it: to an address:port of the
 * import's EndpointSlice (per pod: the `hostname` endpoint of the headless Service, whose address
 * is the pod Service's cluster IP, then that Service's slice).
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/merged.test.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKubeMode } from '../../cli/agent-kube.ts'
import type { Agent } from '../../agent/agent.ts'
import type { Condition, McsObject } from '../../agent/kube/mcs.ts'
import type { LocalShare } from '../../agent/kube/ports.ts'
import { startStatusServer } from '../../agent/status/server.ts'
import { startNet, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { runCommand } from './exec.ts'
import { eventually } from './wait.ts'

const CRDS = join(import.meta.dirname, '..', '..', 'charts', 'causeway-agent', 'files', 'mcs-crds.yaml')
const MCS = { group: 'multicluster.x-k8s.io', version: 'v1alpha1' }
const CLUSTERS = ['east', 'west', 'local'] as const
type Cluster = (typeof CLUSTERS)[number]

let net: Net
let dir: string
const api = {} as Record<Cluster, ApiServer>
const agents = {} as Record<Cluster, Agent>
const stops = {} as Record<Cluster, AbortController>
/** Per cluster and Service: the loopback server standing for `<svc>.default.svc`, and the connections it got. */
const backends = new Map<string, { server: Server; port: number; hits: number }>()
const servers: Server[] = []

const kcOf = (c: Cluster): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(api[c].kubeconfig())
  return kc
}
const core = (c: Cluster): k8s.CoreV1Api => kcOf(c).makeApiClient(k8s.CoreV1Api)
const disc = (c: Cluster): k8s.DiscoveryV1Api => kcOf(c).makeApiClient(k8s.DiscoveryV1Api)
const custom = (c: Cluster): k8s.CustomObjectsApi => kcOf(c).makeApiClient(k8s.CustomObjectsApi)

async function kubectl(c: Cluster, args: string[], input?: string): Promise<string> {
  const file = join(dir, `kc-${c}`)
  writeFileSync(file, api[c].kubeconfig())
  const r = await runCommand('/usr/bin/kubectl', args, { HOME: dir, KUBECONFIG: file }, input)
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** A TCP server on `host` answering `name` to every connection, then closing. */
async function answering(name: string, host = '127.0.0.1', port = 0): Promise<{ server: Server; port: number; hits: () => number }> {
  let hits = 0
  const server = createServer((s) => {
    hits++
    s.on('error', () => {})
    s.end(name)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  servers.push(server)
  const addr = server.address()
  return { server, port: typeof addr === 'object' && addr !== null ? addr.port : 0, hits: () => hits }
}

/** One connection to host:port: what the server answered ('' when refused or reset). */
function ask(host: string, port: number, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect({ host, port })
    let got = ''
    const t = setTimeout(() => sock.destroy(), timeoutMs)
    sock.on('data', (d: Buffer) => (got += d.toString()))
    sock.on('error', () => {})
    sock.on('close', () => {
      clearTimeout(t)
      resolve(got)
    })
  })
}

/** `n` connections, `parallel` at a time; the answers counted. */
async function askMany(host: string, port: number, n: number, parallel = 16): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  let next = 0
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        next++
        const a = await ask(host, port)
        counts[a] = (counts[a] ?? 0) + 1
      }
    }),
  )
  return counts
}

const backendHits: Record<string, () => number> = {}

/** Starts cluster `c`'s agent and Kubernetes mode (again after a stop: same name, same API server). */
async function startCluster(c: Cluster): Promise<void> {
  agents[c] = await net.agent(c)
  stops[c] = new AbortController()
  const resolve = (s: LocalShare): { host: string; port: number } => {
    const m = /^([a-z0-9-]+)\.default\.svc$/.exec(s.host)
    const b = m !== null ? backends.get(`${c}/${m[1]}`) : undefined
    if (b !== undefined) return { host: '127.0.0.1', port: b.port }
    // a pod IP (10.244.0.N, from the EndpointSlice) is the "pod" listening on 127.0.0.N
    const pod = /^10\.244\.0\.(\d+)$/.exec(s.host)
    return { host: pod !== null ? `127.0.0.${pod[1]}` : s.host, port: s.targetPort ?? s.port }
  }
  await startKubeMode({ agent: agents[c], kubeConfig: kcOf(c), signal: stops[c].signal, controller: { podIp: '127.0.0.1', resyncMs: 1000, graceMs: 60_000, resolve } })
}

async function stopCluster(c: Cluster): Promise<void> {
  stops[c].abort()
  await agents[c].stop()
}

const svcYaml = (name: string, port: number, extra = ''): string => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  selector: {app: ${name}}\n${extra}  ports:\n  - {name: main, port: ${port}}\n`
const exportYaml = (name: string, annotations: Record<string, string> = {}): string =>
  `apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata:\n  name: ${name}\n${Object.keys(annotations).length > 0 ? `  annotations: ${JSON.stringify(annotations)}\n` : ''}`
const sliceYaml = (svc: string, name: string, port: number, eps: Array<{ ip: string; ready: boolean; pod?: string }>): string =>
  [
    'apiVersion: discovery.k8s.io/v1',
    'kind: EndpointSlice',
    'metadata:',
    `  name: ${name}`,
    `  labels: {kubernetes.io/service-name: ${svc}, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}`,
    'addressType: IPv4',
    `ports: [{name: main, port: ${port}, protocol: TCP}]`,
    'endpoints:',
    ...eps.map((e) => `- {addresses: ["${e.ip}"], conditions: {ready: ${e.ready}}${e.pod !== undefined ? `, hostname: ${e.pod}, targetRef: {kind: Pod, name: ${e.pod}, namespace: default}` : ''}}`),
    '',
  ].join('\n')

const getSi = async (c: Cluster, name: string): Promise<McsObject> => (await custom(c).getNamespacedCustomObject({ ...MCS, namespace: 'default', plural: 'serviceimports', name })) as McsObject
const condOf = (o: McsObject, type: string): Condition | undefined => o.status?.conditions?.find((x) => x.type === type)
const clustersOf = (o: McsObject): string[] => ((o.status?.clusters ?? []) as Array<{ cluster: string }>).map((x) => x.cluster)

/** The EndpointSlices of Service `name` in the local cluster (the agent instances' and the leader's shared one). */
const slicesOf = async (name: string): Promise<k8s.V1EndpointSlice[]> => (await disc('local').listNamespacedEndpointSlice({ namespace: 'default', labelSelector: `kubernetes.io/service-name=${name}` })).items

/** The address:port kube-proxy would send a connection to for import Service `name` in the local cluster (the first ready endpoint of its slices). */
async function sliceTarget(name: string, want?: (s: k8s.V1EndpointSlice) => boolean): Promise<{ host: string; port: number }> {
  const s = await eventually(`a ready EndpointSlice for ${name}`, async () =>
    (await slicesOf(name)).find((x) => x.endpoints?.some((e) => e.conditions?.ready === true) === true && (want?.(x) ?? true)))
  const ep = s.endpoints?.find((e) => e.conditions?.ready === true)
  return { host: ep?.addresses[0] ?? '', port: s.ports?.[0]?.port ?? 0 }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'causeway-kube-merged-'))
  for (const c of CLUSTERS) {
    api[c] = await startApiServer()
    await kubectl(c, ['apply', '-f', CRDS])
  }
  for (const c of ['east', 'west'] as const) {
    for (const svc of ['web', 'api', 'cfg']) {
      const b = await answering(`${c}/${svc}`)
      backends.set(`${c}/${svc}`, { server: b.server, port: b.port, hits: 0 })
      backendHits[`${c}/${svc}`] = b.hits
    }
  }
  net = await startNet()
  for (const c of CLUSTERS) await startCluster(c)
}, 90_000)

afterAll(async () => {
  for (const c of CLUSTERS) stops[c]?.abort()
  await net?.close()
  for (const c of CLUSTERS) await api[c]?.close()
  for (const s of servers) s.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('merged imports (one Service and one ServiceImport for a share exported by several clusters)', () => {
  it('web exported by east and west: one Service web + one ServiceImport with both clusters; 1,000 connections split 3:1 by weight; east stopped: every connection on west; back: traffic returns', async () => {
    // Services first, then their exports: a Service created in a cluster that already imports that name merged would meet the import (README)
    for (const c of ['east', 'west'] as const) await kubectl(c, ['apply', '-f', '-'], svcYaml('web', 8080))
    await kubectl('east', ['apply', '-f', '-'], exportYaml('web', { 'causeway.dev/weight': '3' }))
    await kubectl('west', ['apply', '-f', '-'], exportYaml('web'))
    const si = await eventually('ServiceImport web with both clusters', async () => {
      const o = await getSi('local', 'web')
      return clustersOf(o).length === 2 && condOf(o, 'Ready')?.status === 'True' ? o : undefined
    })
    expect(clustersOf(si)).toEqual(['east', 'west'])
    const svc = await core('local').readNamespacedService({ namespace: 'default', name: 'web' })
    expect(svc.metadata?.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/merged': 'web' })
    expect(si.spec).toEqual({ type: 'ClusterSetIP', ips: [svc.spec?.clusterIP], ports: [{ name: 'tcp', protocol: 'TCP', port: 8080 }] })
    expect(si.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'Service', name: 'web', uid: svc.metadata?.uid })
    expect(condOf(si, 'Conflict')).toMatchObject({ status: 'False', reason: 'NoConflicts' })
    // per-site imports stay available
    for (const peer of ['east', 'west']) await eventually(`web-${peer}`, () => core('local').readNamespacedService({ namespace: 'default', name: `web-${peer}` }))
    const { host, port } = await sliceTarget('web')
    expect(host).toBe('127.0.0.1')
    expect(svc.spec?.ports?.[0]?.targetPort).toBe(port)

    const counts = await askMany(host, port, 1000)
    expect(counts['']).toBeUndefined() // every connection answered
    expect((counts['east/web'] ?? 0) + (counts['west/web'] ?? 0)).toBe(1000)
    expect(counts['east/web']).toBeGreaterThanOrEqual(700) // weight 3:1 → 750 ± 50
    expect(counts['east/web']).toBeLessThanOrEqual(800)
    // status annotation and /metrics-side split per cluster
    const annotated = await eventually('status with the split', async () => {
      const s = await core('local').readNamespacedService({ namespace: 'default', name: 'web' })
      const st = JSON.parse(s.metadata?.annotations?.['causeway.dev/status'] ?? '{}') as { clusters?: Record<string, { live: boolean; streams: number }> }
      return (st.clusters?.east?.streams ?? 0) >= 700 ? st : undefined
    })
    expect(annotated.clusters?.west).toMatchObject({ live: true })
    expect(agents.local.siteSplit('web').map((x) => [x.site, x.live])).toEqual([['east', true], ['west', true]])
    expect(agents.local.status().imports).toContainEqual({ share: 'web', peer: '*', service: 'web' })
    const status = await startStatusServer(agents.local, '127.0.0.1', 0)
    try {
      const text = await (await fetch(`${status.url}/metrics`)).text()
      const streams = (site: string): number => Number(new RegExp(`causeway_agent_connect_site_streams\\{share="web",site="${site}"\\} (\\d+)`).exec(text)?.[1] ?? -1)
      expect(streams('east')).toBe(counts['east/web'])
      expect(streams('west')).toBe(counts['west/web'])
      expect(text).toContain('causeway_agent_connect_site_state{share="web",site="west",state="live"} 1')
    } finally {
      await status.close()
    }

    await stopCluster('east')
    const during = await askMany(host, port, 100, 8)
    expect(during).toEqual({ 'west/web': 100 })
    await startCluster('east')
    await eventually('traffic back on east', async () => ((await askMany(host, port, 20, 4))['east/web'] ?? 0) > 0 || undefined)
    const after = await askMany(host, port, 100, 8)
    expect(after['']).toBeUndefined()
    expect(after['east/web']).toBeGreaterThanOrEqual(60)
  }, 240_000)

  it('an exporter whose Service loses its ready endpoints withdraws; the importer stops routing there within 5 s (a lower-priority cluster takes over), and routes there again when they are back', async () => {
    await kubectl('west', ['apply', '-f', '-'], sliceYaml('web', 'web-abc', 80, [{ ip: '10.0.0.7', ready: true }]))
    const { host, port } = await sliceTarget('web')
    await eventually('west still serving', async () => ((await askMany(host, port, 20, 4))['west/web'] ?? 0) > 0 || undefined)
    const t0 = Date.now()
    await kubectl('west', ['apply', '-f', '-'], sliceYaml('web', 'web-abc', 80, [{ ip: '10.0.0.7', ready: false }]))
    // the first moment from which 40 connections in a row go to east only
    await eventually('no connection to west', async () => {
      const c = await askMany(host, port, 40, 4)
      return c['west/web'] === undefined && c['east/web'] === 40 ? true : undefined
    }, 10_000)
    const bound = Date.now() - t0
    expect(bound).toBeLessThan(5000)
    const wrote = await eventually('west export status says withdrawn', async () => {
      const s = await core('west').readNamespacedService({ namespace: 'default', name: 'web' })
      return (s.metadata?.annotations?.['causeway.dev/status'] ?? '').includes('withdrawn') ? s : undefined
    })
    expect(wrote).toBeDefined()
    const si = await eventually('ServiceImport still lists west', async () => clustersOf(await getSi('local', 'web')).length === 2 || undefined)
    expect(si).toBe(true)
    expect(agents.local.siteSplit('web').find((x) => x.site === 'west')?.live).toBe(false)
    // the per-site import of west stays, its endpoint not ready
    const perSite = await eventually('web-west not ready', async () => {
      const [x, more] = await slicesOf('web-west')
      return more === undefined && x?.endpoints?.[0]?.conditions?.ready === false ? x : undefined
    })
    expect(perSite.endpoints).toHaveLength(1)
    // priority: east at 1 (after west's 0) still gets everything while west has no ready endpoint
    await kubectl('east', ['annotate', '--overwrite', 'serviceexport', 'web', 'causeway.dev/priority=1'])
    await eventually('east announces priority 1', async () => agents.local.sitePolicy('web').priorities.east === 1 || undefined, 10_000)
    expect(await askMany(host, port, 40, 4)).toEqual({ 'east/web': 40 })
    await kubectl('west', ['apply', '-f', '-'], sliceYaml('web', 'web-abc', 80, [{ ip: '10.0.0.7', ready: true }]))
    // west is back and, at priority 0 before east's 1, takes every connection
    await eventually('west back', async () => ((await askMany(host, port, 20, 4))['west/web'] ?? 0) === 20 || undefined, 10_000)
    expect(await askMany(host, port, 40, 4)).toEqual({ 'west/web': 40 })
    await kubectl('east', ['annotate', 'serviceexport', 'web', 'causeway.dev/priority-'])
    await eventually('east back in the rotation', async () => ((await askMany(host, port, 20, 4))['east/web'] ?? 0) > 0 || undefined, 10_000)
  }, 120_000)

  it('local-first: while the local Service has a ready endpoint no connection leaves the cluster; remote clusters only when it has none', async () => {
    const localApi = await answering('local/api', '127.0.0.5')
    await kubectl('local', ['apply', '-f', '-'], `${svcYaml('api', 9000)}---\n${sliceYaml('api', 'api-xyz', localApi.port, [{ ip: '127.0.0.5', ready: true }])}`)
    for (const c of ['east', 'west'] as const) await kubectl(c, ['apply', '-f', '-'], svcYaml('api', 9000))
    for (const c of ['east', 'west'] as const) await kubectl(c, ['apply', '-f', '-'], exportYaml('api', { 'causeway.dev/failover': 'local-first' }))
    // the local Service api is the user's: the merged import is api-clusterset, its ServiceImport api
    const si = await eventually('ServiceImport api', async () => {
      const o = await getSi('local', 'api')
      return clustersOf(o).length === 2 ? o : undefined
    })
    const backing = await core('local').readNamespacedService({ namespace: 'default', name: 'api-clusterset' })
    expect(si.spec?.ips).toEqual([backing.spec?.clusterIP])
    expect((await core('local').readNamespacedService({ namespace: 'default', name: 'api' })).metadata?.labels?.['app.kubernetes.io/managed-by']).toBeUndefined()
    const local = await sliceTarget('api-clusterset', (s) => s.endpoints?.[0]?.addresses[0] === '127.0.0.5')
    expect(local).toEqual({ host: '127.0.0.5', port: localApi.port })
    const before = { east: backendHits['east/api']?.() ?? 0, west: backendHits['west/api']?.() ?? 0 }
    const counts = await askMany(local.host, local.port, 200)
    expect(counts).toEqual({ 'local/api': 200 })
    expect(backendHits['east/api']?.()).toBe(before.east)
    expect(backendHits['west/api']?.()).toBe(before.west)
    expect(agents.local.siteSplit('api').reduce((n, x) => n + x.streams, 0)).toBe(0)
    // the local endpoint goes unready: the import's slice goes back to the agent, remote clusters serve
    await kubectl('local', ['apply', '-f', '-'], sliceYaml('api', 'api-xyz', localApi.port, [{ ip: '127.0.0.5', ready: false }]))
    const remote = await sliceTarget('api-clusterset', (s) => s.endpoints?.[0]?.addresses[0] === '127.0.0.1')
    const far = await askMany(remote.host, remote.port, 40, 4)
    expect((far['east/api'] ?? 0) + (far['west/api'] ?? 0)).toBe(40)
  }, 120_000)

  it('KEP conflict resolution: a younger export with another port gets Conflict=True on its ServiceExport; the ServiceImport keeps the oldest port and says why; deleting every export deletes the ServiceImport', async () => {
    await kubectl('east', ['apply', '-f', '-'], svcYaml('cfg', 7000))
    await kubectl('west', ['apply', '-f', '-'], svcYaml('cfg', 7001))
    await kubectl('east', ['apply', '-f', '-'], exportYaml('cfg'))
    await eventually('cfg imported from east', async () => clustersOf(await getSi('local', 'cfg')).length === 1 || undefined)
    await new Promise((r) => setTimeout(r, 1100)) // creationTimestamp has second resolution: east's export is the older one
    await kubectl('west', ['apply', '-f', '-'], exportYaml('cfg'))
    const si = await eventually('cfg ServiceImport conflict', async () => {
      const o = await getSi('local', 'cfg')
      return condOf(o, 'Conflict')?.status === 'True' ? o : undefined
    })
    expect(clustersOf(si)).toEqual(['east', 'west'])
    expect(si.spec?.ports).toEqual([{ name: 'tcp', protocol: 'TCP', port: 7000 }])
    expect(condOf(si, 'Conflict')).toMatchObject({ reason: 'PortConflict', message: expect.stringContaining('cluster west exports port 7001, cluster east (oldest export) 7000') })
    const se = await eventually('west ServiceExport Conflict', async () => {
      const o = (await custom('west').getNamespacedCustomObject({ ...MCS, namespace: 'default', plural: 'serviceexports', name: 'cfg' })) as McsObject
      return condOf(o, 'Conflict')?.status === 'True' ? o : undefined
    })
    expect(condOf(se, 'Conflict')).toMatchObject({ reason: 'PortConflict', message: expect.stringContaining('cluster east exported it first with port 7000/TCP') })
    const east = (await custom('east').getNamespacedCustomObject({ ...MCS, namespace: 'default', plural: 'serviceexports', name: 'cfg' })) as McsObject
    expect(condOf(east, 'Conflict')?.status).toBe('False')
    for (const c of ['east', 'west'] as const) await kubectl(c, ['delete', 'serviceexport', 'cfg'])
    await eventually('cfg ServiceImport deleted', async () => getSi('local', 'cfg').then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined)))
    await eventually('cfg Service deleted', async () => core('local').readNamespacedService({ namespace: 'default', name: 'cfg' }).then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined)))
  }, 120_000)
})

describe('per-pod addressing', () => {
  it('a StatefulSet of 3 behind a headless Service exported with causeway.dev/pods: each pod name reaches exactly that pod', async () => {
    const first = await answering('db-0', '127.0.0.2')
    await answering('db-1', '127.0.0.3', first.port)
    await answering('db-2', '127.0.0.4', first.port)
    const pods = ['db-0', 'db-1', 'db-2']
    await kubectl('east', ['apply', '-f', '-'], [
      svcYaml('db', 5432, '  clusterIP: None\n'),
      'apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  replicas: 3\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: postgres}]\n',
      ...pods.map((p) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${p}\n  labels: {app: db}\nspec:\n  hostname: ${p}\n  subdomain: db\n  containers: [{name: db, image: postgres}]\n`),
      sliceYaml('db', 'db-sts', first.port, pods.map((p, i) => ({ ip: `10.244.0.${i + 2}`, ready: true, pod: p }))),
      exportYaml('db', { 'causeway.dev/pods': 'true' }),
    ].join('---\n'))
    const si = await eventually('ServiceImport db (Headless)', async () => {
      const o = await getSi('local', 'db')
      return o.spec?.type === 'Headless' ? o : undefined
    })
    expect(si.spec?.ips).toBeUndefined()
    const headless = await core('local').readNamespacedService({ namespace: 'default', name: 'db' })
    expect(headless.spec?.clusterIP).toBe('None')
    const slice = await eventually('one endpoint per pod', async () => {
      const s = await disc('local').readNamespacedEndpointSlice({ namespace: 'default', name: 'db-causeway' })
      return s.endpoints?.filter((e) => e.conditions?.ready === true).length === 3 ? s : undefined
    })
    expect(slice.endpoints?.map((e) => e.hostname)).toEqual(pods)
    // what cluster DNS answers for <pod>.db.default.svc, then what kube-proxy does with that cluster IP
    const services = (await core('local').listNamespacedService({ namespace: 'default' })).items
    for (const pod of pods) {
      const ip = slice.endpoints?.find((e) => e.hostname === pod)?.addresses[0]
      const podSvc = services.find((s) => s.spec?.clusterIP === ip)
      expect(podSvc?.metadata?.name).toBe(`${pod}-db`)
      expect(podSvc?.spec?.ports?.[0]?.port).toBe(5432)
      const target = await sliceTarget(`${pod}-db`)
      expect(await askMany(target.host, target.port, 10, 2)).toEqual({ [pod]: 10 })
    }
    // a pod goes away (its endpoint unready): its per-pod Service goes with it
    await kubectl('east', ['apply', '-f', '-'], sliceYaml('db', 'db-sts', first.port, pods.map((p, i) => ({ ip: `10.244.0.${i + 2}`, ready: p !== 'db-2', pod: p }))))
    await eventually('db-2 gone', async () => core('local').readNamespacedService({ namespace: 'default', name: 'db-2-db' }).then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined)))
    const after = await disc('local').readNamespacedEndpointSlice({ namespace: 'default', name: 'db-causeway' })
    expect(after.endpoints?.map((e) => e.hostname)).toEqual(['db-0', 'db-1'])
  }, 120_000)
})
