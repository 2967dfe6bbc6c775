/**
 * RemoteManifests end to end, inside the test network namespace: two in-process Agents on a
 * Node signaling service; cluster-a runs the controller with the chart's CRD
 * (charts/causeway-agent/crds/remotemanifests.yaml, applied with the real kubectl, objects
 * written with the real kubectl); cluster-b shares its API server with cluster-a as a
 * ServiceAccount that may not touch Secrets. Every write in cluster-b must come from that
 * ServiceAccount through the tunnel (the audit tells).
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/remote-manifests.test.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { tokenFromFile } from '../../agent/kube/apiserver-share.ts'
import type { RemoteManifests } from '../../agent/kube/remote-manifests.ts'
import { startKubeMode, type KubeMode } from '../../cli/agent-kube.ts'
import { startNet, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { runCommand } from './exec.ts'
import { eventually } from './wait.ts'

const CRD = join(import.meta.dirname, '..', '..', 'charts', 'causeway-agent', 'crds', 'remotemanifests.yaml')
const SA_USER = 'system:serviceaccount:causeway:causeway-apiserver-share'
const SA_TOKEN = 'sa-share-token'

let net: Net
let apiA: ApiServer
let apiB: ApiServer
let b: Agent
let modeB: KubeMode | undefined
let dir: string
const ctl = new AbortController()
const ctlB = new AbortController()

const kcOf = (s: ApiServer): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(s.kubeconfig())
  return kc
}

async function kubectlA(args: string[], input?: string): Promise<string> {
  const r = await runCommand('/usr/bin/kubectl', args, { HOME: dir, KUBECONFIG: join(dir, 'kc-a') }, input)
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

const rm = (manifests: string[]): string => `apiVersion: causeway.dev/v1alpha1
kind: RemoteManifests
metadata:
  name: cfg
  namespace: default
spec:
  peer: cluster-b
  manifests:
${manifests.map((m) => `  - ${m}`).join('\n')}
`
const CM = (mode: string): string => `{apiVersion: v1, kind: ConfigMap, metadata: {name: settings}, data: {mode: "${mode}"}}`
const DEPLOY = '{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: default}, spec: {replicas: 1, selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: nginx}]}}}}'
const SECRET = '{apiVersion: v1, kind: Secret, metadata: {name: creds}, stringData: {password: x}}'

const getRm = async (): Promise<RemoteManifests> =>
  (await kcOf(apiA).makeApiClient(k8s.CustomObjectsApi).getNamespacedCustomObject({ group: 'causeway.dev', version: 'v1alpha1', namespace: 'default', plural: 'remotemanifests', name: 'cfg' })) as RemoteManifests
const ready = (o: RemoteManifests): { status: string; reason: string; message: string } | undefined => o.status?.conditions?.find((c) => c.type === 'Ready')
const gone = (p: Promise<unknown>): Promise<true | undefined> => p.then(() => undefined, (e: { code?: number }) => (e.code === 404 ? true : undefined))

async function startB(): Promise<void> {
  b = await net.agent('cluster-b')
  modeB = await startKubeMode({ agent: b, kubeConfig: kcOf(apiB), signal: ctlB.signal, apiserver: { identity: { mode: 'token', token: tokenFromFile(join(dir, 'sa-token')) }, peers: ['cluster-a'] } })
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'causeway-kube-rm-'))
  writeFileSync(join(dir, 'sa-token'), SA_TOKEN)
  apiA = await startApiServer()
  apiB = await startApiServer({
    tokens: { [SA_TOKEN]: { user: SA_USER, groups: ['system:serviceaccounts', 'system:authenticated'] } },
    authorize: (a) => !(a.user === SA_USER && a.resource === 'secrets'),
  })
  writeFileSync(join(dir, 'kc-a'), apiA.kubeconfig())
  await kubectlA(['apply', '-f', CRD])
  net = await startNet()
  const a = await net.agent('cluster-a')
  await startKubeMode({ agent: a, kubeConfig: kcOf(apiA), signal: ctl.signal, controller: { podIp: '127.0.0.1', resyncMs: 1000 } })
  await startB()
}, 60_000)

afterAll(async () => {
  ctl.abort()
  ctlB.abort()
  await modeB?.close()
  await net?.close()
  await apiA?.close()
  await apiB?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('RemoteManifests through a real tunnel', () => {
  const coreB = (): k8s.CoreV1Api => kcOf(apiB).makeApiClient(k8s.CoreV1Api)
  const appsB = (): k8s.AppsV1Api => kcOf(apiB).makeApiClient(k8s.AppsV1Api)

  it('creates a ConfigMap and a Deployment in cluster-b with the share\'s identity; status and finalizer in cluster-a', async () => {
    await kubectlA(['apply', '-f', '-'], rm([CM('a'), DEPLOY]))
    const cm = await eventually('ConfigMap in cluster-b', () => coreB().readNamespacedConfigMap({ namespace: 'default', name: 'settings' }))
    expect(cm.data).toEqual({ mode: 'a' })
    await eventually('Deployment in cluster-b', () => appsB().readNamespacedDeployment({ namespace: 'default', name: 'web' }))
    const writes = apiB.audit.filter((e) => e.verb === 'patch' || e.verb === 'create' || e.verb === 'delete')
    expect(writes.length).toBeGreaterThan(0)
    for (const w of writes) expect(w.user).toBe(SA_USER)
    expect(writes.some((w) => w.path.includes('fieldManager=causeway'))).toBe(true)
    expect(cm.metadata?.managedFields?.[0]).toMatchObject({ manager: 'causeway', operation: 'Apply' })
    const o = await eventually('Ready', async () => { const x = await getRm(); return ready(x)?.status === 'True' ? x : undefined })
    expect(o.metadata?.finalizers).toEqual(['causeway.dev/remote-manifests'])
    expect(o.status?.objects?.map((x) => [x.kind, x.name, x.state])).toEqual([['ConfigMap', 'settings', 'Applied'], ['Deployment', 'web', 'Applied']])
    expect(o.status?.observedGeneration).toBe(o.metadata?.generation)
    expect(await kubectlA(['get', 'remotemanifests', 'cfg', '-o', 'jsonpath={.status.conditions[0].reason}'])).toBe('Applied')
  }, 60_000)

  it('a changed spec updates the target; a removed manifest is pruned', async () => {
    await kubectlA(['apply', '-f', '-'], rm([CM('b')]))
    await eventually('ConfigMap updated', async () => ((await coreB().readNamespacedConfigMap({ namespace: 'default', name: 'settings' })).data?.mode === 'b' ? true : undefined))
    await eventually('Deployment pruned', () => gone(appsB().readNamespacedDeployment({ namespace: 'default', name: 'web' })))
    const o = await eventually('applied list', async () => { const x = await getRm(); return x.status?.applied?.length === 1 ? x : undefined })
    expect(o.status?.applied).toEqual([{ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'settings' }])
  }, 60_000)

  it('a resync writes nothing that has not changed, and repairs an object edited on the target', async () => {
    const cmPath = '/api/v1/namespaces/default/configmaps/settings'
    const reads = (): number => apiB.audit.filter((e) => e.verb === 'get' && e.user === SA_USER && e.path.startsWith(cmPath)).length
    const applies = (): number => apiB.audit.filter((e) => e.verb === 'patch' && e.path.startsWith(`${cmPath}?fieldManager=causeway`)).length
    // Resyncs run every second here: three of them check the ConfigMap (a read each) and write nothing.
    const [reads0, applies0] = [reads(), applies()]
    await eventually('three resyncs', async () => (reads() >= reads0 + 3 ? true : undefined))
    expect(applies()).toBe(applies0)
    // Someone edits it in cluster-b: the next resync applies the declared state again.
    await coreB().patchNamespacedConfigMap({ namespace: 'default', name: 'settings', body: { data: { mode: 'edited' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch))
    await eventually('drift repaired', async () => ((await coreB().readNamespacedConfigMap({ namespace: 'default', name: 'settings' })).data?.mode === 'b' ? true : undefined))
    expect(applies()).toBe(applies0 + 1)
  }, 60_000)

  it('an object the share\'s identity may not create gets a failed condition with the API server\'s message', async () => {
    await kubectlA(['apply', '-f', '-'], rm([CM('b'), SECRET]))
    const o = await eventually('ApplyFailed', async () => { const x = await getRm(); return ready(x)?.reason === 'ApplyFailed' ? x : undefined })
    const secret = o.status?.objects?.find((x) => x.kind === 'Secret')
    expect(secret?.state).toBe('Failed')
    expect(secret?.message).toBe(`secrets "creds" is forbidden: User "${SA_USER}" cannot patch resource "secrets" in API group "" in the namespace "default"`)
    expect(o.status?.objects?.find((x) => x.kind === 'ConfigMap')?.state).toBe('Applied')
    const events = await kcOf(apiA).makeApiClient(k8s.CoreV1Api).listNamespacedEvent({ namespace: 'default' })
    expect(events.items.some((e) => e.reason === 'ApplyFailed' && e.involvedObject.kind === 'RemoteManifests' && e.involvedObject.name === 'cfg')).toBe(true)
  }, 60_000)

  it('with the peer away the status says so; the change is applied when it returns', async () => {
    ctlB.abort()
    await modeB?.close()
    await b.stop()
    await kubectlA(['apply', '-f', '-'], rm([CM('c')]))
    // (until its goodbye arrives, the draining peer is connected without the share: "does not share its API server")
    const o = await eventually('PeerUnavailable', async () => { const x = await getRm(); return ready(x)?.reason === 'PeerUnavailable' && ready(x)?.message.includes('is not connected') === true ? x : undefined })
    expect(ready(o)?.message).toContain('peer cluster-b is not connected')
    expect(o.status?.objects?.[0]?.state).toBe('WaitingForPeer')
    expect((await coreB().readNamespacedConfigMap({ namespace: 'default', name: 'settings' })).data?.mode).toBe('b')
    await startB()
    await eventually('applied after the peer came back', async () => ((await coreB().readNamespacedConfigMap({ namespace: 'default', name: 'settings' })).data?.mode === 'c' ? true : undefined), 60_000)
    await eventually('Ready again', async () => { const x = await getRm(); return ready(x)?.status === 'True' ? x : undefined })
  }, 120_000)

  it('deleting the object removes everything it applied and clears the finalizer', async () => {
    await kubectlA(['delete', 'remotemanifests', 'cfg', '--wait=false'])
    await eventually('ConfigMap removed from cluster-b', () => gone(coreB().readNamespacedConfigMap({ namespace: 'default', name: 'settings' })))
    await eventually('RemoteManifests gone', () => gone(getRm()))
  }, 60_000)
})
