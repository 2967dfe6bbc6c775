/**
 * The merged imports' naming and ownership rules (agent/kube/merged.ts) against the test API
 * server, with the in-test AgentPort (test/kube/fake-agent.ts: no peers, no tunnels; the test
 * emits the sites' catalogs).
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/merged-naming.test.ts
 */
import * as k8s from '@kubernetes/client-node'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startKubeController } from '../../agent/kube/controller.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { FakeAgent } from './fake-agent.ts'
import { eventually } from './wait.ts'

let server: ApiServer
let core: k8s.CoreV1Api
let disc: k8s.DiscoveryV1Api
let agent: FakeAgent
let ctl: AbortController
let kc: k8s.KubeConfig

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

const start = (perSiteImports = true) => startKubeController({ kubeConfig: kc, agent, signal: ctl.signal, podIp: '10.1.2.3', importNamespace: 'default', resyncMs: 60_000, graceMs: 1000, perSiteImports })
const gone = async (p: Promise<unknown>): Promise<true | undefined> => p.then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined))
const web = (since: number, extra: Record<string, unknown> = {}) => ({ name: 'web', port: 8080, namespace: 'shop', service: 'web', since, ...extra })

describe('merged import names', () => {
  it('the exported Service\'s own name in its namespace when that exists here; one any-site listener; --merged-only: no per-site Services', async () => {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } })
    await start(false)
    agent.emit('east', [web(1000)])
    agent.emit('west', [web(2000)])
    const svc = await eventually('merged Service shop/web', () => core.readNamespacedService({ namespace: 'shop', name: 'web' }))
    expect(svc.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/merged': 'web', 'causeway.dev/import': 'web' })
    expect(agent.opened).toEqual([expect.stringMatching(/^\*\/web:\d+$/)])
    const port = Number(agent.opened[0]?.split(':')[1])
    expect(svc.spec?.ports).toEqual([{ name: 'tcp', protocol: 'TCP', port: 8080, targetPort: port }])
    const slice = await eventually('its EndpointSlice', () => disc.readNamespacedEndpointSlice({ namespace: 'shop', name: 'web-causeway' }))
    expect(slice.endpoints).toEqual([{ addresses: ['10.1.2.3'], conditions: { ready: true } }])
    const names = (await core.listServiceForAllNamespaces()).items.map((s) => `${s.metadata?.namespace ?? ''}/${s.metadata?.name ?? ''}`)
    expect(names.filter((n) => n.includes('web'))).toEqual(['shop/web'])
  })

  it('<share>-clusterset when the Service name is someone else\'s or the namespace does not exist here; the user\'s Service is never touched', async () => {
    await core.createNamespace({ body: { metadata: { name: 'shop' } } })
    const mine = await core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'web' }, spec: { ports: [{ port: 1 }] } } })
    await start()
    agent.emit('east', [web(1000), { name: 'cache', port: 6379, namespace: 'nowhere', service: 'cache' }])
    await eventually('shop/web-clusterset', () => core.readNamespacedService({ namespace: 'shop', name: 'web-clusterset' }))
    await eventually('default/cache-clusterset', () => core.readNamespacedService({ namespace: 'default', name: 'cache-clusterset' }))
    await eventually('per-site too', () => core.readNamespacedService({ namespace: 'shop', name: 'web-east' }))
    expect((await core.readNamespacedService({ namespace: 'shop', name: 'web' })).metadata?.resourceVersion).toBe(mine.metadata?.resourceVersion)
    const writes = server.audit.filter((a) => ['update', 'patch', 'delete'].includes(a.verb) && a.namespace === 'shop' && a.name === 'web')
    expect(writes).toEqual([])
  })

  it('a site gone keeps the import (not ready) for the grace period; the last export withdrawn deletes it and its listener', async () => {
    await start()
    agent.emit('east', [{ name: 'db', port: 5432 }])
    await eventually('default/db-clusterset', () => core.readNamespacedService({ namespace: 'default', name: 'db-clusterset' }))
    agent.emit('east', null)
    await eventually('not ready', async () => (await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'db-clusterset-causeway' })).endpoints?.[0]?.conditions?.ready === false || undefined)
    await eventually('deleted after the grace period', () => gone(core.readNamespacedService({ namespace: 'default', name: 'db-clusterset' })), 10_000)
    expect(agent.closed).toContainEqual(expect.stringMatching(/^\*\/db:\d+$/))
  })
})
