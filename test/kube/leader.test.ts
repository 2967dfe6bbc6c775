/**
 * Two instances of one site's Kubernetes controller (in-process, each with its own identity on
 * the API test server, so its audit tells who wrote what) and the Lease between them:
 * - the follower writes nothing shared: no Service, Event, status annotation (only its own
 *   EndpointSlice and Leases), while both instances' slices serve the import;
 * - drain() of the leader hands the Lease over within a renew period; the new leader rewrites
 *   imports and the drained instance's endpoint is terminating; stop() removes its objects;
 * - the leader removes slices of instances without a presence Lease and slices from before
 *   instances (`<service>-causeway` with a `causeway.dev/peer` label, no instance label).
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/leader.test.ts
 */
import * as k8s from '@kubernetes/client-node'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startKubeController, type KubeController } from '../../agent/kube/controller.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { FakeAgent } from './fake-agent.ts'
import { eventually } from './wait.ts'

const LEASE_MS = 3000
const SLACK_MS = 1500
const USERS = { i1: 'ctl-i1', i2: 'ctl-i2' } as const

let server: ApiServer
let ctl: AbortController
const agents = { i1: new FakeAgent(41000), i2: new FakeAgent(42000) }

const kcFor = (token?: string): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(server.kubeconfig(token !== undefined ? { token } : {}))
  return kc
}
const admin = (): { core: k8s.CoreV1Api; disc: k8s.DiscoveryV1Api; coord: k8s.CoordinationV1Api } => {
  const kc = kcFor()
  return { core: kc.makeApiClient(k8s.CoreV1Api), disc: kc.makeApiClient(k8s.DiscoveryV1Api), coord: kc.makeApiClient(k8s.CoordinationV1Api) }
}

const start = (instance: 'i1' | 'i2'): Promise<KubeController> =>
  startKubeController({
    kubeConfig: kcFor(`token-${instance}`),
    agent: agents[instance],
    signal: ctl.signal,
    podIp: instance === 'i1' ? '10.0.0.1' : '10.0.0.2',
    importNamespace: 'default',
    resyncMs: 60_000,
    site: 'west',
    instance,
    lease: { durationMs: LEASE_MS, namespace: 'causeway' },
  })

const holder = async (): Promise<string | undefined> => (await admin().coord.readNamespacedLease({ namespace: 'causeway', name: 'causeway-west' })).spec?.holderIdentity ?? undefined
const slices = async (service: string): Promise<k8s.V1EndpointSlice[]> => (await admin().disc.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: `kubernetes.io/service-name=${service}` })).items
/** Writes of shared objects by `user` (audit): Services, Events, ServiceImports. */
const sharedWrites = (user: string): string[] =>
  server.audit.filter((e) => e.user === user && ['create', 'update', 'patch', 'delete'].includes(e.verb) && ['services', 'events', 'serviceimports'].includes(e.resource)).map((e) => `${e.verb} ${e.resource}/${e.name ?? ''}`)

beforeEach(async () => {
  server = await startApiServer({ tokens: { 'token-i1': { user: USERS.i1, groups: [] }, 'token-i2': { user: USERS.i2, groups: [] } } })
  await admin().core.createNamespace({ body: { metadata: { name: 'causeway' } } })
  ctl = new AbortController()
  agents.i1 = new FakeAgent(41000)
  agents.i2 = new FakeAgent(42000)
})

afterEach(async () => {
  ctl.abort()
  await server.close()
})

describe('two controller instances of one site', () => {
  it('the follower writes only its own slice and Leases; both slices serve; drain hands the Lease over; stop cleans up', async () => {
    const c1 = await start('i1')
    const c2 = await start('i2')
    expect([c1.isLeader(), c2.isLeader()]).toEqual([true, false]) // i1 created the Lease first
    expect(await holder()).toBe('i1')
    for (const a of Object.values(agents)) a.emit('east', [{ name: 'db', port: 5432 }])
    const both = await eventually('two ready slices', async () => {
      const s = await slices('db-east')
      return s.length === 2 && s.every((x) => x.endpoints?.[0]?.conditions?.ready === true) ? s : undefined
    })
    const portOf = (i: 'i1' | 'i2', target: string): number => Number(agents[i].opened.find((x) => x.startsWith(`${target}:`))?.split(':')[1])
    expect(both.map((s) => [s.metadata?.name, s.metadata?.labels?.['causeway.dev/instance'], s.endpoints?.[0]?.addresses[0], s.ports?.[0]?.port]).sort()).toEqual([
      ['db-east-i1', 'i1', '10.0.0.1', portOf('i1', 'east/db')],
      ['db-east-i2', 'i2', '10.0.0.2', portOf('i2', 'east/db')],
    ])
    // the merged import (one Service per share name) too: each instance's own any-site listener behind it
    const merged = await eventually('two ready merged slices', async () => {
      const s = (await slices('db-clusterset')).filter((x) => x.metadata?.labels?.['causeway.dev/instance'] !== undefined)
      return s.length === 2 && s.every((x) => x.endpoints?.[0]?.conditions?.ready === true) ? s : undefined
    })
    expect(merged.map((s) => [s.endpoints?.[0]?.addresses[0], s.ports?.[0]?.port]).sort()).toEqual([['10.0.0.1', portOf('i1', '*/db')], ['10.0.0.2', portOf('i2', '*/db')]])
    const svc = await eventually('status annotation', async () => {
      const s = await admin().core.readNamespacedService({ namespace: 'default', name: 'db-east' })
      return s.metadata?.annotations?.['causeway.dev/status'] !== undefined ? s : undefined
    })
    expect(JSON.parse(svc.metadata?.annotations?.['causeway.dev/status'] ?? '')).toMatchObject({ role: 'import', listener: `10.0.0.1:${portOf('i1', 'east/db')}` })
    await c2.resync()
    expect(sharedWrites(USERS.i1)).toContain('create services/')
    expect(sharedWrites(USERS.i2)).toEqual([])
    // the presence Leases of both
    const presence = await admin().coord.listNamespacedLease({ namespace: 'causeway', labelSelector: 'causeway.dev/site=west,causeway.dev/instance' })
    expect(presence.items.map((l) => l.spec?.holderIdentity).sort()).toEqual(['i1', 'i2'])

    // the leader drains: the Lease moves within a renew period, its endpoint terminates
    const drainedAt = Date.now()
    await c1.drain()
    expect(c1.isLeader()).toBe(false)
    await eventually('i2 leads', async () => (c2.isLeader() && (await holder()) === 'i2' ? true : undefined), LEASE_MS / 3 + SLACK_MS)
    expect(Date.now() - drainedAt).toBeLessThanOrEqual(LEASE_MS / 3 + SLACK_MS)
    const s1 = (await slices('db-east')).find((s) => s.metadata?.name === 'db-east-i1')
    expect(s1?.endpoints?.[0]?.conditions).toEqual({ ready: false, serving: true, terminating: true })
    // the new leader rewrites imports: the share is withdrawn
    const before = sharedWrites(USERS.i1).length
    for (const a of Object.values(agents)) a.emit('east', [])
    await eventually('import removed by i2', async () => (sharedWrites(USERS.i2).includes('delete services/db-east') ? true : undefined))
    expect(sharedWrites(USERS.i1).length).toBe(before) // the drained one wrote nothing more
    await c1.stop()
    const left = await admin().coord.listNamespacedLease({ namespace: 'causeway', labelSelector: 'causeway.dev/site=west,causeway.dev/instance' })
    expect(left.items.map((l) => l.spec?.holderIdentity)).toEqual(['i2'])
  }, 30_000)

  it('the leader removes slices of instances that are gone and the single per-site slice from before instances', async () => {
    const { core, disc } = admin()
    const svc = await core.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: 'db-east', labels: { 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/peer': 'east', 'causeway.dev/import': 'db' } }, spec: { ports: [{ name: 'tcp', port: 5432 }] } },
    })
    const slice = (name: string, labels: Record<string, string>): Promise<k8s.V1EndpointSlice> =>
      disc.createNamespacedEndpointSlice({
        namespace: 'default',
        body: {
          metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'causeway', 'kubernetes.io/service-name': 'db-east', 'endpointslice.kubernetes.io/managed-by': 'causeway.dev/agent', ...labels }, ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'db-east', uid: svc.metadata?.uid ?? '' }] },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.0.0.9'], conditions: { ready: true } }],
          ports: [{ name: 'tcp', protocol: 'TCP', port: 40000 }],
        },
      })
    // the labels imports.ts gave its one slice before instances
    await slice('db-east-causeway', { 'causeway.dev/peer': 'east', 'causeway.dev/import': 'db' })
    await slice('db-east-ghost', { 'causeway.dev/peer': 'east', 'causeway.dev/import': 'db', 'causeway.dev/instance': 'ghost' })
    // a causeway slice that is no per-site import's (no peer label): not this housekeeping's to remove
    await slice('db-east-other', {})
    const startedAt = Date.now()
    await start('i1')
    agents.i1.emit('east', [{ name: 'db', port: 5432 }])
    await eventually('only i1\'s slice left', async () => {
      const names = (await slices('db-east')).map((s) => s.metadata?.name).sort()
      return names.length === 2 && names[0] === 'db-east-i1' && names[1] === 'db-east-other' ? true : undefined
    }, LEASE_MS + LEASE_MS / 3 + SLACK_MS + 2000)
    // not before a lease duration: a new leader cannot tell a gone instance from one it has not seen yet
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(LEASE_MS)
  }, 30_000)
})
