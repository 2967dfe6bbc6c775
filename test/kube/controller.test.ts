/**
 * The agent's Kubernetes controller (agent/kube/) against the test apiserver, with a small
 * in-test AgentPort (no peers, no tunnels).
 */
import * as k8s from '@kubernetes/client-node'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startKubeController } from '../../agent/kube/controller.ts'
import { FakeAgent } from './fake-agent.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { eventually } from './wait.ts'

const until = async <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> => await eventually(what, fn, timeoutMs) as T

const notFound = async (p: Promise<unknown>): Promise<true | undefined> => {
  try {
    await p
    return undefined
  } catch (e) {
    return (e as { code?: number }).code === 404 ? true : undefined
  }
}

let server: ApiServer
let kc: k8s.KubeConfig
let core: k8s.CoreV1Api
let disc: k8s.DiscoveryV1Api
let agent: FakeAgent
let ctl: AbortController

beforeEach(async () => {
  server = await startApiServer()
  kc = new k8s.KubeConfig()
  kc.loadFromString(server.kubeconfig())
  core = kc.makeApiClient(k8s.CoreV1Api)
  disc = kc.makeApiClient(k8s.DiscoveryV1Api)
  agent = new FakeAgent()
  ctl = new AbortController()
})

afterEach(async () => {
  ctl.abort()
  await server.close()
})

// Per-site imports only: merged imports (one listener per share name) are tested in merged.test.ts.
const start = (extra: { graceMs?: number } = {}) =>
  startKubeController({ kubeConfig: kc, agent, signal: ctl.signal, podIp: '10.1.2.3', importNamespace: 'default', resyncMs: 60_000, site: 'west', instance: 'i1', mergedImports: false, ...extra })

const svc = (name: string, namespace: string, annotations: Record<string, string>, ports: k8s.V1ServicePort[]): k8s.V1Service => ({
  metadata: { name, namespace, annotations },
  spec: { selector: { app: name }, ports },
})

describe('exports', () => {
  it('annotating a Service publishes its ports; removing the annotation withdraws them', async () => {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } })
    await core.createNamespacedService({ namespace: 'shop', body: svc('api', 'shop', {}, [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'grpc', port: 9000 }]) })
    await start()
    expect(agent.sources.get('kube')).toEqual([])
    await core.patchNamespacedService(
      { namespace: 'shop', name: 'api', body: { metadata: { annotations: { 'causeway.dev/share': 'true', 'causeway.dev/peers': 'east' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )
    const shares = await until('catalog', async () => (agent.sources.get('kube')?.length === 2 ? agent.sources.get('kube') : undefined))
    expect(shares).toEqual([
      { name: 'shop-api-http', host: 'api.shop.svc', port: 80, namespace: 'shop', peers: ['east'], announce: { service: 'api', since: expect.any(Number) } },
      { name: 'shop-api-grpc', host: 'api.shop.svc', port: 9000, namespace: 'shop', peers: ['east'], announce: { service: 'api', since: expect.any(Number) } },
    ])
    const annotated = await until('status annotation', async () => {
      const s = await core.readNamespacedService({ namespace: 'shop', name: 'api' })
      return s.metadata?.annotations?.['causeway.dev/status'] ? s : undefined
    })
    expect(JSON.parse(annotated.metadata?.annotations?.['causeway.dev/status'] ?? '')).toEqual({
      role: 'export',
      shares: ['shop-api-http', 'shop-api-grpc'],
      paths: { east: 'disconnected' },
    })
    const events = await until('Exported event', async () => {
      const list = await core.listNamespacedEvent({ namespace: 'shop' })
      return list.items.some((e) => e.reason === 'Exported') ? list.items : undefined
    })
    expect(events.find((e) => e.reason === 'Exported')).toMatchObject({ type: 'Normal', involvedObject: { kind: 'Service', name: 'api' }, message: 'shared as shop-api-http, shop-api-grpc' })

    await core.patchNamespacedService(
      { namespace: 'shop', name: 'api', body: { metadata: { annotations: { 'causeway.dev/share': null } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )
    await until('withdrawn', async () => (agent.sources.get('kube')?.length === 0 ? true : undefined))
    await until('status cleared', async () => {
      const s = await core.readNamespacedService({ namespace: 'shop', name: 'api' })
      return s.metadata?.annotations?.['causeway.dev/status'] === undefined ? true : undefined
    })
  })
})

describe('UDP ports', () => {
  it('an annotated Service\'s UDP ports become UDP shares; its TCP share keeps its name', async () => {
    await core.createNamespacedService({ namespace: 'default', body: svc('dns', 'default', { 'causeway.dev/share': 'true' }, [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'sig', port: 5060, protocol: 'SCTP' }]) })
    await core.createNamespacedService({ namespace: 'default', body: svc('syslog', 'default', { 'causeway.dev/share': 'true' }, [{ port: 514, protocol: 'UDP' }]) })
    await start()
    const shares = await until('catalog', async () => (agent.sources.get('kube')?.length === 3 ? agent.sources.get('kube') : undefined))
    expect(shares).toEqual([
      { name: 'dns', host: 'dns.default.svc', port: 53, namespace: 'default', announce: { service: 'dns', since: expect.any(Number) } },
      { name: 'dns-dns', host: 'dns.default.svc', port: 53, namespace: 'default', protocol: 'udp', announce: { service: 'dns', since: expect.any(Number) } },
      { name: 'syslog', host: 'syslog.default.svc', port: 514, namespace: 'default', protocol: 'udp', announce: { service: 'syslog', since: expect.any(Number) } },
    ])
  })

  it('a UDP share in a remote catalog becomes a Service and EndpointSlice with a UDP port', async () => {
    await start()
    agent.emit('east', [{ name: 'syslog', port: 514, protocol: 'udp' }])
    const s = await until('imported Service', () => core.readNamespacedService({ namespace: 'default', name: 'syslog-east' }))
    const listenerPort = Number(agent.opened[0]?.split(':')[1])
    expect(s.spec?.ports).toEqual([{ name: 'udp', protocol: 'UDP', port: 514, targetPort: listenerPort }])
    const slice = await until('EndpointSlice', () => disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'syslog-east-i1' }))
    expect(slice.ports).toEqual([{ name: 'udp', protocol: 'UDP', port: listenerPort }])
    // The share turns into a TCP one: the import follows, with a new listener.
    agent.emit('east', [{ name: 'syslog', port: 514 }])
    await until('TCP port', async () => ((await core.readNamespacedService({ namespace: 'default', name: 'syslog-east' })).spec?.ports?.[0]?.protocol === 'TCP' ? true : undefined))
    expect(agent.closed).toEqual([`east/syslog:${listenerPort}`])
    const tcpSlice = await until('TCP slice', async () => {
      const x = await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'syslog-east-i1' })
      return x.ports?.[0]?.protocol === 'TCP' ? x : undefined
    })
    expect(tcpSlice.ports?.[0]?.name).toBe('tcp')
  })
})

describe('exports refuse ExternalName Services', () => {
  it('an annotated ExternalName Service is not shared; its status and a Warning Event say why', async () => {
    await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'evil', annotations: { 'causeway.dev/share': 'true' } }, spec: { type: 'ExternalName', externalName: 'localhost', ports: [{ port: 7777 }] } } })
    await core.createNamespacedService({ namespace: 'default', body: svc('good', 'default', { 'causeway.dev/share': 'true' }, [{ port: 80 }]) })
    await start()
    const shares = await until('catalog', async () => (agent.sources.get('kube')?.length ? agent.sources.get('kube') : undefined))
    expect(shares?.map((s) => s.name)).toEqual(['good'])
    const st = await until('status', async () => (await core.readNamespacedService({ namespace: 'default', name: 'evil' })).metadata?.annotations?.['causeway.dev/status'])
    expect(JSON.parse(st)).toMatchObject({ role: 'export', shares: [], lastError: expect.stringContaining('ExternalName Services are not exported') })
    await until('Warning event', async () => ((await core.listNamespacedEvent({ namespace: 'default' })).items.some((e) => e.reason === 'ExportFailed' && e.involvedObject.name === 'evil') ? true : undefined))
  })
})

describe('imports', () => {
  it('a remote catalog becomes a Service + EndpointSlice; changes update it; withdrawal deletes it', async () => {
    agent.paths.set('east', 'direct')
    await start()
    agent.emit('east', [{ name: 'db', port: 5432 }])
    const s = await until('imported Service', () => core.readNamespacedService({ namespace: 'default', name: 'db-east' }))
    const listenerPort = Number(agent.opened[0]?.split(':')[1])
    expect(s.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/peer': 'east', 'causeway.dev/import': 'db' })
    expect(s.spec?.selector).toBeUndefined()
    expect(s.spec?.ports).toEqual([{ name: 'tcp', protocol: 'TCP', port: 5432, targetPort: listenerPort }])
    // The Service is written first, its EndpointSlice right after: wait for both.
    const slice = await until('EndpointSlice', () => disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-east-i1' }))
    expect(slice.addressType).toBe('IPv4')
    expect(slice.endpoints).toEqual([{ addresses: ['10.1.2.3'], conditions: { ready: true, serving: true, terminating: false } }])
    expect(slice.ports).toEqual([{ name: 'tcp', protocol: 'TCP', port: listenerPort }])
    expect(slice.metadata?.labels).toMatchObject({
      'kubernetes.io/service-name': 'db-east',
      'app.kubernetes.io/managed-by': 'causeway',
      'causeway.dev/peer': 'east',
      'causeway.dev/import': 'db',
    })
    expect(slice.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'Service', name: 'db-east', uid: s.metadata?.uid, controller: true })
    const withStatus = await until('import status', async () => {
      const x = await core.readNamespacedService({ namespace: 'default', name: 'db-east' })
      return x.metadata?.annotations?.['causeway.dev/status'] ? x : undefined
    })
    expect(JSON.parse(withStatus.metadata?.annotations?.['causeway.dev/status'] ?? '')).toEqual({
      role: 'import',
      peer: 'east',
      share: 'db',
      path: 'direct',
      listener: `10.1.2.3:${listenerPort}`,
    })

    agent.emit('east', [{ name: 'db', port: 6432 }])
    await until('port update', async () => {
      const x = await core.readNamespacedService({ namespace: 'default', name: 'db-east' })
      return x.spec?.ports?.[0]?.port === 6432 ? true : undefined
    })

    agent.emit('east', [])
    await until('Service deleted', () => notFound(core.readNamespacedService({ namespace: 'default', name: 'db-east' })))
    await until('slice deleted', () => notFound(disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-east-i1' })))
    expect(agent.closed).toEqual([`east/db:${listenerPort}`])
  })

  it('puts an import in the exporter namespace when it exists here', async () => {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } })
    await start()
    agent.emit('west', [{ name: 'shop-api', port: 80, namespace: 'shop' }, { name: 'cache', port: 6379, namespace: 'nowhere' }])
    await until('in shop', () => core.readNamespacedService({ namespace: 'shop', name: 'shop-api-west' }))
    await until('fallback namespace', () => core.readNamespacedService({ namespace: 'default', name: 'cache-west' }))
  })

  it('never touches objects without the managed-by label', async () => {
    const foreign = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'db-east', labels: { team: 'x' } }, spec: { ports: [{ port: 1 }] } } })
    const other = await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'unrelated', labels: { 'causeway.dev/peer': 'east' } }, spec: { ports: [{ port: 2 }] } } })
    await start()
    agent.emit('east', [{ name: 'db', port: 5432 }, { name: 'web', port: 80 }])
    await until('the other import', () => core.readNamespacedService({ namespace: 'default', name: 'web-east' }))
    agent.emit('east', [])
    await until('the other import gone', () => notFound(core.readNamespacedService({ namespace: 'default', name: 'web-east' })))
    const after = await core.readNamespacedService({ namespace: 'default', name: 'db-east' })
    expect(after.metadata?.resourceVersion).toBe(foreign.metadata?.resourceVersion)
    expect(after.metadata?.labels).toEqual({ team: 'x' })
    const still = await core.readNamespacedService({ namespace: 'default', name: 'unrelated' })
    expect(still.metadata?.resourceVersion).toBe(other.metadata?.resourceVersion)
    expect(await notFound(disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-east-i1' }))).toBe(true)
    const writes = server.audit.filter((a) => ['update', 'patch', 'delete'].includes(a.verb) && (a.name === 'db-east' || a.name === 'unrelated'))
    expect(writes).toEqual([])
  })

  it('keeps a gone peer\'s imports (not ready) for the grace period, then deletes them', async () => {
    await start({ graceMs: 1500 })
    agent.emit('east', [{ name: 'db', port: 5432 }])
    await until('imported', () => core.readNamespacedService({ namespace: 'default', name: 'db-east' }))
    const goneAt = Date.now()
    agent.emit('east', null)
    await until('endpoint not ready', async () => {
      const sl = await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-east-i1' })
      return sl.endpoints?.[0]?.conditions?.ready === false ? true : undefined
    })
    expect(await core.readNamespacedService({ namespace: 'default', name: 'db-east' })).toBeDefined()
    await until('grace expiry', () => notFound(core.readNamespacedService({ namespace: 'default', name: 'db-east' })), 10_000)
    expect(Date.now() - goneAt).toBeGreaterThanOrEqual(1400)
  })

  it('imports left from a previous run are kept for the grace period, then collected', async () => {
    const labels = { 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/peer': 'south', 'causeway.dev/import': 'old' }
    await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'old-south', labels }, spec: { ports: [{ name: 'tcp', port: 80 }] } } })
    const startedAt = Date.now()
    await start({ graceMs: 1200 })
    await new Promise((r) => setTimeout(r, 300))
    expect(await core.readNamespacedService({ namespace: 'default', name: 'old-south' })).toBeDefined()
    await until('collected', () => notFound(core.readNamespacedService({ namespace: 'default', name: 'old-south' })), 10_000)
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(1100)
  })

  it('a peer back within the grace period keeps its import', async () => {
    await start({ graceMs: 1500 })
    agent.emit('east', [{ name: 'db', port: 5432 }])
    const first = await until('imported', () => core.readNamespacedService({ namespace: 'default', name: 'db-east' }))
    agent.emit('east', null)
    await new Promise((r) => setTimeout(r, 300))
    agent.emit('east', [{ name: 'db', port: 5432 }])
    await new Promise((r) => setTimeout(r, 2000))
    const again = await core.readNamespacedService({ namespace: 'default', name: 'db-east' })
    expect(again.metadata?.uid).toBe(first.metadata?.uid)
    const sl = await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-east-i1' })
    expect(sl.endpoints?.[0]?.conditions?.ready).toBe(true)
  })
})

const startMerged = (perSiteImports = true) => startKubeController({ kubeConfig: kc, agent, signal: ctl.signal, podIp: '10.1.2.3', importNamespace: 'default', resyncMs: 60_000, graceMs: 1000, perSiteImports, site: 'west', instance: 'i1' })
const web = (since: number, extra: Record<string, unknown> = {}) => ({ name: 'web', port: 8080, namespace: 'shop', service: 'web', since, ...extra })

// Merged imports (agent/kube/merged.ts): naming and ownership rules; end to end in merged.test.ts.
describe('merged import names', () => {
  it('the exported Service\'s own name in its namespace when that exists here; one any-site listener; --merged-only: no per-site Services', async () => {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } })
    await startMerged(false)
    agent.emit('east', [web(1000)])
    agent.emit('west', [web(2000)])
    const svc = await eventually('merged Service shop/web', () => core.readNamespacedService({ namespace: 'shop', name: 'web' }))
    expect(svc.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/merged': 'web', 'causeway.dev/import': 'web' })
    expect(agent.opened).toEqual([expect.stringMatching(/^\*\/web:\d+$/)])
    const port = Number(agent.opened[0]?.split(':')[1])
    expect(svc.spec?.ports).toEqual([{ name: 'tcp', protocol: 'TCP', port: 8080, targetPort: port }])
    const slice = await eventually('this instance\'s EndpointSlice', () => disc.readNamespacedEndpointSlice({ namespace: 'shop', name: 'web-i1' }))
    expect(slice.endpoints).toEqual([{ addresses: ['10.1.2.3'], conditions: { ready: true, serving: true, terminating: false } }])
    expect(slice.ports).toEqual([{ name: 'tcp', protocol: 'TCP', port }])
    // the leader's shared slice lists local endpoints only while local-first routes there: none here
    expect((await disc.readNamespacedEndpointSlice({ namespace: 'shop', name: 'web-causeway' })).endpoints ?? []).toEqual([])
    const names = (await core.listServiceForAllNamespaces()).items.map((s) => `${s.metadata?.namespace ?? ''}/${s.metadata?.name ?? ''}`)
    expect(names.filter((n) => n.includes('web'))).toEqual(['shop/web'])
  })

  it('<share>-clusterset when the Service name is someone else\'s or the namespace does not exist here; the user\'s Service is never touched', async () => {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } })
    const mine = await core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'web' }, spec: { ports: [{ port: 1 }] } } })
    await startMerged()
    agent.emit('east', [web(1000), { name: 'cache', port: 6379, namespace: 'nowhere', service: 'cache' }])
    await eventually('shop/web-clusterset', () => core.readNamespacedService({ namespace: 'shop', name: 'web-clusterset' }))
    await eventually('default/cache-clusterset', () => core.readNamespacedService({ namespace: 'default', name: 'cache-clusterset' }))
    await eventually('per-site too', () => core.readNamespacedService({ namespace: 'shop', name: 'web-east' }))
    expect((await core.readNamespacedService({ namespace: 'shop', name: 'web' })).metadata?.resourceVersion).toBe(mine.metadata?.resourceVersion)
    const writes = server.audit.filter((a) => ['update', 'patch', 'delete'].includes(a.verb) && a.namespace === 'shop' && a.name === 'web')
    expect(writes).toEqual([])
  })

  it('a site gone keeps the import (not ready) for the grace period; the last export withdrawn deletes it and its listener', async () => {
    await startMerged()
    agent.emit('east', [{ name: 'db', port: 5432 }])
    await eventually('default/db-clusterset', () => core.readNamespacedService({ namespace: 'default', name: 'db-clusterset' }))
    agent.emit('east', null)
    await eventually('not ready', async () => (await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-clusterset-i1' })).endpoints?.[0]?.conditions?.ready === false || undefined)
    await eventually('deleted after the grace period', () => notFound(core.readNamespacedService({ namespace: 'default', name: 'db-clusterset' })), 10_000)
    expect(agent.closed).toContainEqual(expect.stringMatching(/^\*\/db:\d+$/))
  })
})

describe('merged imports with several instances of a site', () => {
  it('a follower (leader() false) keeps its listener and writes nothing; the leader writes the import', async () => {
    const { MergedImports } = await import('../../agent/kube/merged.ts')
    const { ServiceImportWriter } = await import('../../agent/kube/mcs.ts')
    const { SliceCache } = await import('../../agent/kube/endpoints.ts')
    const { silentLog: silent } = await import('../../peer/log.ts')
    const { InstanceSlices } = await import('../../agent/kube/slices.ts')
    let leading = false
    let retries = 0
    const instanceSlices = new InstanceSlices({ discovery: kc.makeApiClient(k8s.DiscoveryV1Api), instance: 'i2', instanceLabel: 'i2', podIp: '10.1.2.3', draining: () => false, log: silent })
    const merged = new MergedImports({
      kubeConfig: kc, agent, podIp: '10.1.2.3', slices: new SliceCache(kc, silent), serviceImports: new ServiceImportWriter(kc, silent), log: silent,
      targetNamespace: async () => 'default', keepUnwanted: () => false, onLocalChange: () => {}, leader: () => leading, instanceSlices, retry: () => { retries++ },
    })
    const sites = [{ site: 'east', connected: true, shares: [{ name: 'web', port: 80 }] }]
    const before = server.audit.length
    await merged.reconcile(sites)
    expect(agent.opened).toEqual([expect.stringMatching(/^\*\/web:\d+$/)])
    expect(server.audit.slice(before).filter((a) => !['get', 'list', 'watch'].includes(a.verb))).toEqual([])
    expect(retries).toBe(1) // it asks for another round: the leader's Service is not there yet
    leading = true
    await merged.reconcile(sites)
    expect((await core.readNamespacedService({ namespace: 'default', name: 'web-clusterset' })).metadata?.labels?.['causeway.dev/merged']).toBe('web')
    expect(agent.opened).toHaveLength(1)
    // as a follower again, it keeps only its own slice behind the leader's Service (deleted: it makes it again)
    leading = false
    await disc.deleteNamespacedEndpointSlice({ namespace: 'default', name: 'web-clusterset-i2' })
    const mark = server.audit.length
    await merged.reconcile(sites)
    const writes = server.audit.slice(mark).filter((a) => !['get', 'list', 'watch'].includes(a.verb)).map((a) => a.resource)
    expect(writes).toEqual(['endpointslices'])
    expect((await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'web-clusterset-i2' })).endpoints?.[0]?.conditions?.ready).toBe(true)
    await merged.close()
  })
})
