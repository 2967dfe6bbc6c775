/**
 * Reserved share names (issue 22): a namespace user creates a Service named `kube-apiserver` in
 * `default`, and another one elsewhere publishing under `causeway.dev/name: kube-apiserver`, on a
 * cluster whose agent shares its API server. Before, the agent refused its whole Kubernetes
 * catalog from then on (the name is taken by the API-server share), so every later export change
 * failed. Now only those two Services are refused, each with its status annotation and a Warning
 * Event; the API-server share is untouched; a Service annotated afterwards is exported, and an
 * existing export keeps following its Service.
 *
 * A real in-process Agent with the real Kubernetes mode (controller + AgentPort adapter +
 * API-server share) against the API test server standing in for kube-apiserver
 * (test/kube/apiserver.ts).
 */
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKubeMode, type KubeMode } from '../../cli/agent-kube.ts'
import type { Agent } from '../../agent/agent.ts'
import { startNet, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { eventually } from './wait.ts'

let api: ApiServer
let net: Net
let agent: Agent
let mode: KubeMode
let core: k8s.CoreV1Api
const ctl = new AbortController()

const share = (name: string, ns: string, annotations: Record<string, string>, port = 80): k8s.V1Service =>
  ({ metadata: { name, namespace: ns, annotations: { 'causeway.dev/share': 'true', ...annotations } }, spec: { selector: { app: name }, ports: [{ name: 'http', port }] } })
const kubeShares = (): string[] => agent.status().shares.filter(s => s.name !== 'kube-apiserver').map(s => s.name).sort()
const statusOf = async (ns: string, name: string): Promise<{ shares?: string[], lastError?: string } | undefined> => {
  const text = (await core.readNamespacedService({ namespace: ns, name })).metadata?.annotations?.['causeway.dev/status']
  return text === undefined ? undefined : JSON.parse(text) as { shares?: string[], lastError?: string }
}

beforeAll(async () => {
  api = await startApiServer()
  const kc = new k8s.KubeConfig()
  kc.loadFromString(api.kubeconfig())
  core = kc.makeApiClient(k8s.CoreV1Api)
  await core.createNamespace({ body: { metadata: { name: 'team' } } })
  net = await startNet()
  agent = await net.agent('cluster-a')
  mode = await startKubeMode({
    agent,
    kubeConfig: kc,
    signal: ctl.signal,
    controller: { podIp: '127.0.0.1', resyncMs: 2000 },
    apiserver: { identity: { mode: 'token', token: async () => api.token } },
  })
}, 60_000)

afterAll(async () => {
  ctl.abort()
  await mode?.close()
  await net?.close()
  await api?.close()
})

describe('reserved share names', () => {
  it('a Service named kube-apiserver is refused on its own; other exports keep changing', async () => {
    await core.createNamespacedService({ namespace: 'default', body: share('web', 'default', {}) })
    await eventually('web exported', async () => kubeShares().includes('web') || undefined)
    // the hostile Services, in default and in another namespace
    await core.createNamespacedService({ namespace: 'default', body: share('kube-apiserver', 'default', {}, 6443) })
    await core.createNamespacedService({ namespace: 'team', body: share('sneaky', 'team', { 'causeway.dev/name': 'kube-apiserver' }, 443) })
    for (const [ns, name] of [['default', 'kube-apiserver'], ['team', 'sneaky']] as const) {
      const st = await eventually(`${ns}/${name} refused in its status`, async () => (await statusOf(ns, name))?.lastError?.includes('reserved') === true ? await statusOf(ns, name) : undefined)
      expect(st.shares).toEqual([])
      await eventually(`a Warning Event on ${ns}/${name}`, async () => (await core.listNamespacedEvent({ namespace: ns })).items.some(e => e.type === 'Warning' && e.reason === 'ExportFailed' && e.involvedObject.name === name && (e.message ?? '').includes('reserved')) || undefined)
    }
    // the API-server share is still the agent's own
    const own = agent.shares.get('kube-apiserver')
    expect(own?.serve).toBeDefined()
    expect(own?.host).toBe('in-process')
    // later changes go through: a new export, and a change of an existing one
    await core.createNamespacedService({ namespace: 'team', body: share('db', 'team', {}, 5432) })
    await eventually('team-db exported', async () => kubeShares().includes('team-db') || undefined)
    await core.patchNamespacedService({ namespace: 'default', name: 'web', body: { metadata: { annotations: { 'causeway.dev/name': 'store' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch))
    await eventually('web republished as store', async () => (kubeShares().includes('store') && !kubeShares().includes('web')) || undefined)
    expect(kubeShares()).toEqual(['store', 'team-db'])
    expect((await statusOf('team', 'db'))?.lastError).toBeUndefined()
  }, 60_000)
})
