/**
 * End to end, inside the test network namespace: two in-process Agents (cluster-a, cluster-b)
 * on a Node signaling service, each with its own API test server and the real Kubernetes mode
 * (controller + AgentPort adapter; cluster-a also shares its API server).
 *
 * (a) a Service annotated causeway.dev/share in cluster-a appears in cluster-b as a Service +
 *     EndpointSlice; connecting to the slice's address:port reaches cluster-a's backend;
 *     removing the annotation removes the import. The cluster DNS name of the export target
 *     cannot resolve here, so the adapter's `resolve` option maps it to a local TCP server.
 *     A Service's UDP port becomes a UDP share, imported in cluster-b as a Service with a UDP
 *     port whose slice address:port echoes datagrams through the tunnel.
 * (b) `causeway kubeconfig`'s library functions + the real kubectl get/apply through the
 *     tunnel; the API server's audit shows only the identity the exporting agent configured
 *     (ServiceAccount token, then impersonation), never the Authorization / Impersonate-*
 *     headers the remote client sends.
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/e2e.test.ts
 */
import { createSocket, type Socket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKubeMode, type KubeMode } from '../../cli/agent-kube.ts'
import { kubeconfigYaml, requestConnect } from '../../cli/kubeconfig.ts'
import type { Agent } from '../../agent/agent.ts'
import { tokenFromFile } from '../../agent/kube/apiserver-share.ts'
import { objectName } from '../../agent/kube/presence.ts'
import { startStatusServer } from '../../agent/status/server.ts'
import { listen, startNet, until, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { runCommand } from './exec.ts'
import { eventually } from './wait.ts'

const KUBECTL = '/usr/bin/kubectl'
const SA_USER = 'system:serviceaccount:causeway:causeway-apiserver-share'
const SA_TOKEN = 'sa-share-token'

let net: Net
let apiA: ApiServer
let apiB: ApiServer
let a: Agent
let b: Agent
let modeA: KubeMode
let backend: Server
let backendPort = 0
let udpBackend: Socket
let udpBackendPort = 0
let status: Awaited<ReturnType<typeof startStatusServer>>
let dir: string
const ctl = new AbortController()

// cluster-a's API server tells apart who calls it: the agent's own identity (controller, and
// the impersonator), the test itself, the share's ServiceAccount; the admin token is used only
// by the hostile client below, so `admin` in the audit would mean its header got through.
const AGENT_TOKEN = 'agent-a-token'
const TESTER_TOKEN = 'tester-token'
const kcOf = (s: ApiServer, token?: string): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(s.kubeconfig(token !== undefined ? { token } : {}))
  return kc
}
const coreOf = (s: ApiServer): k8s.CoreV1Api => kcOf(s, s === apiA ? TESTER_TOKEN : undefined).makeApiClient(k8s.CoreV1Api)
// Unauthenticated public-info requests (/version) have no user.
const proxied = (e: { user: string }): boolean => e.user !== '' && e.user !== 'tester' && e.user !== 'causeway-agent'

function kubectl(kubeconfig: string, args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCommand(KUBECTL, args, { HOME: dir, KUBECONFIG: kubeconfig }, input)
}

/** One request/response over a fresh TCP connection: sends `msg`, reads until the server closes. */
function roundTrip(port: number, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port })
    let got = ''
    const t = setTimeout(() => { sock.destroy(); reject(new Error('round trip timed out')) }, 15_000)
    sock.on('connect', () => sock.end(msg))
    sock.on('data', (d: Buffer) => (got += d.toString()))
    sock.on('error', (e) => { clearTimeout(t); reject(e) })
    sock.on('close', () => { clearTimeout(t); resolve(got) })
  })
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'causeway-kube-e2e-'))
  backend = createServer({ allowHalfOpen: true }, (s) => {
    let got = ''
    s.on('data', (d: Buffer) => (got += d.toString()))
    s.on('end', () => s.end(`backend-a got: ${got}`))
    s.on('error', () => {})
  })
  backendPort = await listen(backend)
  udpBackend = createSocket('udp4')
  udpBackend.on('message', (msg, from) => udpBackend.send(Buffer.concat([Buffer.from('udp-backend-a got: '), msg]), from.port, from.address))
  await new Promise<void>((resolve) => udpBackend.bind(0, '127.0.0.1', resolve))
  udpBackendPort = udpBackend.address().port
  const masters = ['system:masters', 'system:authenticated']
  apiA = await startApiServer({
    tokens: {
      [SA_TOKEN]: { user: SA_USER, groups: ['system:serviceaccounts', 'system:authenticated'] },
      [AGENT_TOKEN]: { user: 'causeway-agent', groups: masters },
      [TESTER_TOKEN]: { user: 'tester', groups: masters },
    },
  })
  apiB = await startApiServer()
  net = await startNet()
  a = await net.agent('cluster-a')
  b = await net.agent('cluster-b')
  writeFileSync(join(dir, 'sa-token'), SA_TOKEN)
  modeA = await startKubeMode({
    agent: a,
    kubeConfig: kcOf(apiA, AGENT_TOKEN),
    signal: ctl.signal,
    controller: {
      podIp: '127.0.0.1',
      resyncMs: 2000,
      // Cluster DNS does not exist here: web.default.svc:8080 is the local backend.
      resolve: (s) =>
        s.host === 'web.default.svc' && s.port === 8080 ? { host: '127.0.0.1', port: backendPort }
        : s.host === 'dns.default.svc' && s.port === 53 ? { host: '127.0.0.1', port: udpBackendPort }
        : { host: s.host, port: s.port },
    },
    apiserver: { identity: { mode: 'token', token: tokenFromFile(join(dir, 'sa-token')) }, peers: ['cluster-b'] },
  })
  await startKubeMode({ agent: b, kubeConfig: kcOf(apiB), signal: ctl.signal, controller: { podIp: '127.0.0.1', resyncMs: 2000, graceMs: 60_000 } })
  status = await startStatusServer(b, '127.0.0.1', 0)
}, 60_000)

afterAll(async () => {
  ctl.abort()
  await modeA?.close()
  await status?.close()
  await net?.close()
  await apiA?.close()
  await apiB?.close()
  backend?.close()
  udpBackend?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('Kubernetes end to end through the agents', () => {
  it('(a) an annotated Service in cluster-a becomes a Service + EndpointSlice in cluster-b that reaches the backend', async () => {
    const coreA = coreOf(apiA)
    const coreB = coreOf(apiB)
    const discB = kcOf(apiB).makeApiClient(k8s.DiscoveryV1Api)
    await coreA.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: 'web', annotations: { 'causeway.dev/share': 'true' } }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 8080, targetPort: 80 }] } },
    })
    const svc = await eventually('import Service in cluster-b', async () => await coreB.readNamespacedService({ namespace: 'default', name: 'web-cluster-a' }))
    expect(svc.metadata?.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'causeway', 'causeway.dev/peer': 'cluster-a', 'causeway.dev/import': 'web' })
    expect(svc.spec?.ports?.[0]?.port).toBe(8080) // the exporting Service's port, from the catalog
    const slice = await eventually('ready EndpointSlice', async () => {
      const s = await discB.readNamespacedEndpointSlice({ namespace: 'default', name: objectName('web-cluster-a', b.instance) })
      return s.endpoints?.[0]?.conditions?.ready === true ? s : undefined
    })
    const address = slice.endpoints?.[0]?.addresses[0]
    const port = slice.ports?.[0]?.port ?? 0
    expect(address).toBe('127.0.0.1')
    expect(svc.spec?.ports?.[0]?.targetPort).toBe(port)
    expect(await roundTrip(port, 'hello from b')).toBe('backend-a got: hello from b')
    expect(b.status().imports).toContainEqual({ share: 'web', peer: 'cluster-a', service: 'web-cluster-a' })
    // The API server share is never imported as a Service.
    const all = await coreB.listServiceForAllNamespaces()
    expect(all.items.map((s) => s.metadata?.name)).not.toContain('kube-apiserver-cluster-a')

    await coreA.patchNamespacedService(
      { namespace: 'default', name: 'web', body: { metadata: { annotations: { 'causeway.dev/share': null } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )
    await eventually('import removed', async () => {
      try {
        await coreB.readNamespacedService({ namespace: 'default', name: 'web-cluster-a' })
        return undefined
      } catch (e) {
        return (e as { code?: number }).code === 404 ? true : undefined
      }
    })
    await until(() => !b.status().imports.some((i) => i.share === 'web'), 10_000, 'import listener closed')
  }, 90_000)

  it('(a) a UDP Service port in cluster-a becomes a UDP import in cluster-b that carries datagrams', async () => {
    const coreA = coreOf(apiA)
    const coreB = coreOf(apiB)
    const discB = kcOf(apiB).makeApiClient(k8s.DiscoveryV1Api)
    await coreA.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: 'dns', annotations: { 'causeway.dev/share': 'true' } }, spec: { selector: { app: 'dns' }, ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } },
    })
    const svc = await eventually('UDP import Service in cluster-b', async () => await coreB.readNamespacedService({ namespace: 'default', name: 'dns-cluster-a' }))
    expect(svc.spec?.ports?.[0]).toMatchObject({ name: 'udp', protocol: 'UDP', port: 53 })
    const slice = await eventually('ready EndpointSlice', async () => {
      const s = await discB.readNamespacedEndpointSlice({ namespace: 'default', name: objectName('dns-cluster-a', b.instance) })
      return s.endpoints?.[0]?.conditions?.ready === true ? s : undefined
    })
    expect(slice.ports?.[0]).toMatchObject({ name: 'udp', protocol: 'UDP' })
    const port = slice.ports?.[0]?.port ?? 0
    expect(b.status().connects).toContainEqual(expect.objectContaining({ share: 'dns', peer: 'cluster-a', protocol: 'udp' }))
    const client = createSocket('udp4')
    try {
      const reply = await eventually('a datagram echoed through the UDP import', async () => await new Promise<string | undefined>((resolve) => {
        const t = setTimeout(() => { client.removeAllListeners('message'); resolve(undefined) }, 1000)
        client.once('message', (m) => { clearTimeout(t); resolve(m.toString()) })
        client.send('ping from b', port, '127.0.0.1')
      }))
      expect(reply).toBe('udp-backend-a got: ping from b')
    } finally {
      client.close()
    }
    await coreA.deleteNamespacedService({ namespace: 'default', name: 'dns' })
    await eventually('UDP import removed', async () => !b.status().connects.some((c) => c.share === 'dns') || undefined)
  }, 60_000)

  it('(b) kubectl get/apply through the tunnel run as the configured ServiceAccount; client credentials are dropped', async () => {
    const shown = await eventually('kube-apiserver in cluster-b’s view of cluster-a', async () => (b.status().peers.find((p) => p.name === 'cluster-a')?.shares.some((s) => s.name === 'kube-apiserver') ? true : undefined))
    expect(shown).toBe(true)
    const statusAddr = status.url.replace(/^http:\/\//, '')
    const listenAddr = await requestConnect(statusAddr, 'cluster-a')
    expect(listenAddr).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(await requestConnect(statusAddr, 'cluster-a')).toBe(listenAddr) // idempotent
    const kubeconfig = join(dir, 'kubeconfig-a')
    writeFileSync(kubeconfig, kubeconfigYaml(listenAddr, 'causeway-cluster-a'))

    await coreOf(apiA).createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'only-in-a' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } })
    const before = apiA.audit.length
    const pods = await kubectl(kubeconfig, ['get', 'pods'])
    expect(pods.stderr).toBe('')
    expect(pods.code).toBe(0)
    expect(pods.stdout).toMatch(/^NAME\s+READY\s+STATUS/)
    expect(pods.stdout).toContain('only-in-a')
    const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-b\ndata:\n  k: v\n')
    expect(applied.code, applied.stderr).toBe(0)
    expect(applied.stdout).toContain('configmap/from-b created')
    const cm = await coreOf(apiA).readNamespacedConfigMap({ namespace: 'default', name: 'from-b' })
    expect(cm.data).toEqual({ k: 'v' })
    // The remote client tries to choose its identity: kubectl --as, and raw headers.
    const as = await kubectl(kubeconfig, ['--as', 'admin', '--as-group', 'system:masters', 'get', 'configmaps'])
    expect(as.code, as.stderr).toBe(0)
    const res = await fetch(`http://${listenAddr}/api/v1/namespaces/default/pods`, {
      headers: { authorization: `Bearer ${apiA.token}`, 'impersonate-user': 'admin', 'impersonate-group': 'system:masters', 'x-remote-user': 'admin' },
    })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    const mine = apiA.audit.slice(before).filter(proxied)
    expect(mine.length).toBeGreaterThan(3)
    for (const e of mine) {
      expect(e.user).toBe(SA_USER)
      expect(e.impersonatedBy).toBeUndefined()
    }
    expect(mine.some((e) => e.verb === 'create' && e.resource === 'configmaps')).toBe(true)
  }, 90_000)

  it('(b) a watch streams through the tunnel', async () => {
    const listenAddr = await requestConnect(status.url.replace(/^http:\/\//, ''), 'cluster-a')
    const ac = new AbortController()
    const res = await fetch(`http://${listenAddr}/api/v1/namespaces/default/configmaps?watch=1`, { signal: ac.signal })
    expect(res.status).toBe(200)
    const reader = (res.body ?? new ReadableStream()).getReader()
    await coreOf(apiA).createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'watched' }, data: {} } })
    let text = ''
    for (let i = 0; i < 50 && !text.includes('"watched"'); i++) {
      const { value, done } = await reader.read()
      if (done) break
      text += new TextDecoder().decode(value)
    }
    ac.abort()
    expect(text).toContain('"watched"')
  }, 30_000)

  it('(b) impersonation mode: requests run as the configured user and groups', async () => {
    await modeA.close()
    modeA = await startKubeMode({ agent: a, kubeConfig: kcOf(apiA, AGENT_TOKEN), signal: ctl.signal, apiserver: { identity: { mode: 'impersonate', user: 'remote-ops', groups: ['causeway-remote'] }, peers: ['cluster-b'] } })
    const listenAddr = await requestConnect(status.url.replace(/^http:\/\//, ''), 'cluster-a')
    const kubeconfig = join(dir, 'kubeconfig-a2')
    writeFileSync(kubeconfig, kubeconfigYaml(listenAddr, 'causeway-cluster-a'))
    const before = apiA.audit.length
    const r = await kubectl(kubeconfig, ['--as', 'admin', 'get', 'pods'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('only-in-a')
    const mine = apiA.audit.slice(before).filter((e) => e.user !== '' && e.user !== 'tester' && !(e.user === 'causeway-agent' && e.impersonatedBy === undefined))
    expect(mine.length).toBeGreaterThan(0)
    for (const e of mine) {
      expect(e.user).toBe('remote-ops')
      expect(e.groups).toContain('causeway-remote')
      expect(e.groups).not.toContain('system:masters')
      expect(e.impersonatedBy).toBe('causeway-agent')
    }
  }, 60_000)
})
