/**
 * The Multi-Cluster Services API end to end, inside the test network namespace: two in-process
 * Agents (cluster-a, cluster-b) with their own API test servers, the chart's MCS CRDs
 * (charts/causeway-agent/files/mcs-crds.yaml) applied with the real kubectl, ServiceExports
 * written with the real kubectl.
 *
 * - a ServiceExport in cluster-a produces the import Service and a ServiceImport (ports, the
 *   import's cluster IP, the exporting cluster) in cluster-b; its conditions are Valid/NoConflicts;
 * - a second Service publishing the same share name gets Conflict=True (the older one wins);
 *   a ServiceExport without its Service gets Valid=False/NoService, an ExternalName one
 *   Valid=False/InvalidServiceType;
 * - deleting the ServiceExport withdraws the Service and the ServiceImport in cluster-b.
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/mcs.test.ts
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKubeMode } from '../../cli/agent-kube.ts'
import type { Condition, McsObject } from '../../agent/kube/mcs.ts'
import { startNet, until, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { runCommand } from './exec.ts'
import { eventually } from './wait.ts'

const CRDS = join(import.meta.dirname, '..', '..', 'charts', 'causeway-agent', 'files', 'mcs-crds.yaml')
const MCS = { group: 'multicluster.x-k8s.io', version: 'v1alpha1' }

let net: Net
let apiA: ApiServer
let apiB: ApiServer
let dir: string
const ctl = new AbortController()

const kcOf = (s: ApiServer): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(s.kubeconfig())
  return kc
}

async function kubectl(s: ApiServer, args: string[], input?: string): Promise<string> {
  const file = join(dir, `kc-${s === apiA ? 'a' : 'b'}`)
  writeFileSync(file, s.kubeconfig())
  const r = await runCommand('/usr/bin/kubectl', args, { HOME: dir, KUBECONFIG: file }, input)
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

const exportOf = async (name: string): Promise<McsObject> =>
  (await kcOf(apiA).makeApiClient(k8s.CustomObjectsApi).getNamespacedCustomObject({ ...MCS, namespace: 'default', plural: 'serviceexports', name })) as McsObject
const cond = (o: McsObject, type: string): Condition | undefined => o.status?.conditions?.find((c) => c.type === type)

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'causeway-kube-mcs-'))
  apiA = await startApiServer()
  apiB = await startApiServer()
  for (const s of [apiA, apiB]) await kubectl(s, ['apply', '-f', CRDS])
  net = await startNet()
  const a = await net.agent('cluster-a')
  const b = await net.agent('cluster-b')
  await startKubeMode({ agent: a, kubeConfig: kcOf(apiA), signal: ctl.signal, controller: { podIp: '127.0.0.1', resyncMs: 1000 } })
  await startKubeMode({ agent: b, kubeConfig: kcOf(apiB), signal: ctl.signal, controller: { podIp: '127.0.0.1', resyncMs: 1000, graceMs: 60_000 } })
}, 60_000)

afterAll(async () => {
  ctl.abort()
  await net?.close()
  await apiA?.close()
  await apiB?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('Multi-Cluster Services API (ServiceExport / ServiceImport)', () => {
  it('the chart\'s CRDs are served (kubectl sees the MCS kinds)', async () => {
    const out = await kubectl(apiB, ['api-resources', '--api-group', 'multicluster.x-k8s.io', '-o', 'name'])
    expect(out.split('\n').sort()).toEqual(['', 'serviceexports.multicluster.x-k8s.io', 'serviceimports.multicluster.x-k8s.io'])
    expect(readFileSync(CRDS, 'utf8')).toContain('kind: ServiceImport')
  })

  it('a ServiceExport exports its Service: import Service + ServiceImport in cluster-b, Valid and no conflict; deleting it withdraws both', async () => {
    await kubectl(apiA, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 8080}\n')
    await kubectl(apiA, ['apply', '-f', '-'], 'apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata:\n  name: web\n')
    const coreB = kcOf(apiB).makeApiClient(k8s.CoreV1Api)
    const svc = await eventually('import Service in cluster-b', () => coreB.readNamespacedService({ namespace: 'default', name: 'web-cluster-a' }))
    expect(svc.spec?.ports?.[0]?.port).toBe(8080)
    const customB = kcOf(apiB).makeApiClient(k8s.CustomObjectsApi)
    const si = await eventually('ServiceImport in cluster-b', async () => {
      const o = (await customB.getNamespacedCustomObject({ ...MCS, namespace: 'default', plural: 'serviceimports', name: 'web-cluster-a' })) as McsObject
      return o.status?.clusters !== undefined ? o : undefined
    })
    expect(si.spec).toEqual({ type: 'ClusterSetIP', ips: [svc.spec?.clusterIP], ports: [{ name: 'tcp', protocol: 'TCP', port: 8080 }] })
    expect(si.status?.clusters).toEqual([{ cluster: 'cluster-a' }])
    expect(si.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'Service', name: 'web-cluster-a', uid: svc.metadata?.uid })
    const se = await eventually('ServiceExport conditions', async () => { const o = await exportOf('web'); return cond(o, 'Valid') ? o : undefined })
    expect(cond(se, 'Valid')).toMatchObject({ status: 'True', reason: 'Valid' })
    expect(cond(se, 'Conflict')).toMatchObject({ status: 'False', reason: 'NoConflicts' })
    expect(cond(se, 'Valid')?.lastTransitionTime).toMatch(/^\d{4}-\d\d-\d\dT/)
    // kubectl shows them as a user would read them.
    expect(await kubectl(apiA, ['get', 'serviceexport', 'web', '-o', 'jsonpath={.status.conditions[?(@.type=="Valid")].status}'])).toBe('True')

    await kubectl(apiA, ['delete', 'serviceexport', 'web'])
    await eventually('import Service withdrawn', async () => (await coreB.readNamespacedService({ namespace: 'default', name: 'web-cluster-a' }).then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined))))
    await eventually('ServiceImport withdrawn', async () => (await customB.getNamespacedCustomObject({ ...MCS, namespace: 'default', plural: 'serviceimports', name: 'web-cluster-a' }).then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined))))
  }, 90_000)

  it('conflicting, missing and ExternalName exports get the KEP conditions', async () => {
    await kubectl(apiA, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  ports:\n  - {port: 5432}\n')
    await new Promise((r) => setTimeout(r, 1100)) // creationTimestamp has second resolution: db is the older one
    await kubectl(apiA, ['apply', '-f', '-'], [
      'apiVersion: v1\nkind: Service\nmetadata:\n  name: db2\n  annotations: {causeway.dev/name: db}\nspec:\n  ports:\n  - {port: 5433}',
      'apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\nspec:\n  type: ExternalName\n  externalName: localhost\n  ports:\n  - {port: 7777}',
      ...['db', 'db2', 'nothing', 'ext'].map((n) => `apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata:\n  name: ${n}`),
    ].join('\n---\n'))
    const loser = await eventually('Conflict condition', async () => { const o = await exportOf('db2'); return cond(o, 'Conflict')?.status === 'True' ? o : undefined })
    expect(cond(loser, 'Conflict')).toMatchObject({ reason: 'NameConflict', message: expect.stringContaining('default/db') })
    const winner = await eventually('winner conditions', async () => { const o = await exportOf('db'); return cond(o, 'Conflict') ? o : undefined })
    expect(cond(winner, 'Conflict')?.status).toBe('False')
    const missing = await eventually('NoService', async () => { const o = await exportOf('nothing'); return cond(o, 'Valid') ? o : undefined })
    expect(cond(missing, 'Valid')).toMatchObject({ status: 'False', reason: 'NoService' })
    const ext = await eventually('InvalidServiceType', async () => { const o = await exportOf('ext'); return cond(o, 'Valid') ? o : undefined })
    expect(cond(ext, 'Valid')).toMatchObject({ status: 'False', reason: 'InvalidServiceType' })
    const coreB = kcOf(apiB).makeApiClient(k8s.CoreV1Api)
    await eventually('db imported', () => coreB.readNamespacedService({ namespace: 'default', name: 'db-cluster-a' }))
    expect((await coreB.listNamespacedService({ namespace: 'default' })).items.map((s) => s.metadata?.name)).not.toContain('ext-cluster-a')
  }, 90_000)
})
