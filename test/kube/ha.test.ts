/**
 * Several instances of one site in Kubernetes mode, inside the test network namespace: two real
 * `bin/causeway agent --kube` processes of site `east` (one agent token, instances east-1 and
 * east-2, pod IPs 127.0.0.2 and 127.0.0.3) on one API test server, and a real `west` agent
 * process in Kubernetes mode on its own API test server that exports annotated Services and a
 * `--share` to a local echo target, all on a Node signaling service.
 *
 * - exactly one east instance holds the Lease `causeway-east` (real kubectl reads it) and only
 *   that one ever logged that it leads;
 * - both instances appear in each import's EndpointSlices, ready, each with its own pod IP and
 *   listener port, and each endpoint carries traffic to west's target;
 * - kill -9 the holder: the other instance takes the Lease within the documented bound
 *   (lease duration + a third of it), the dead instance's slices are removed, and imports are
 *   rewritten by the new leader: a share west withdraws after the kill is removed, a new one is
 *   added (Service, the survivor's slice, status annotation);
 * - the killed instance comes back and adds its slices again; SIGTERM of the holder: its
 *   endpoints turn `ready: false, serving: true, terminating: true` while a long-lived connection
 *   through it finishes, the Lease moves within a renew period, and when it exits its slices and
 *   presence Lease are gone.
 *
 * Run: npm run build && scripts/netns-run.sh npx vitest run test/kube/ha.test.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../../signaling/node/server.ts'
import { log, until } from '../agent/harness.ts'
import { echoTarget, holdConnection, HaNetwork, type AgentProc } from '../agent/ha-harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { runCommand } from './exec.ts'

const KUBECTL = '/usr/bin/kubectl'
const LEASE_S = 3
/** The documented bound for a dead holder's replacement: lease duration + a renew period (a third). */
const TAKEOVER_BOUND_MS = LEASE_S * 1000 + (LEASE_S * 1000) / 3
/** Scheduling and API round trips on a shared 2-core machine, on top of the bound. */
const SLACK_MS = 1500

let signaling: NodeSignaling
let net: HaNetwork
let apiEast: ApiServer
let apiWest: ApiServer
let target: Awaited<ReturnType<typeof echoTarget>>
let dir: string
let west: AgentProc
const east = new Map<string, AgentProc>()

const kcOf = (s: ApiServer): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(s.kubeconfig())
  return kc
}
const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)

async function kubectl(args: string[]): Promise<string> {
  const r = await runCommand(KUBECTL, args, { HOME: dir, KUBECONFIG: join(dir, 'east.kubeconfig') })
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** The Lease holder as `kubectl get lease` shows it ('' when released). */
const holder = async (): Promise<string> => (await kubectl(['get', 'lease', 'causeway-east', '-n', 'causeway', '-o', 'jsonpath={.spec.holderIdentity}'])).trim()

interface SliceView { name: string; instance: string; address: string; port: number; ready?: boolean; serving?: boolean; terminating?: boolean }

/** The EndpointSlices of imported Service `service` (any namespace), by instance. */
async function slicesOf(service: string): Promise<SliceView[]> {
  const list = await kcOf(apiEast).makeApiClient(k8s.DiscoveryV1Api).listEndpointSliceForAllNamespaces({ labelSelector: `kubernetes.io/service-name=${service}` })
  return list.items.map((s) => {
    const c = s.endpoints?.[0]?.conditions
    return {
      name: s.metadata?.name ?? '',
      instance: s.metadata?.labels?.['causeway.dev/instance'] ?? '',
      address: s.endpoints?.[0]?.addresses[0] ?? '',
      port: s.ports?.[0]?.port ?? 0,
      ...(c?.ready !== undefined ? { ready: c.ready } : {}),
      ...(c?.serving !== undefined ? { serving: c.serving } : {}),
      ...(c?.terminating !== undefined ? { terminating: c.terminating } : {}),
    }
  }).sort((a, b) => a.instance.localeCompare(b.instance))
}

const serviceExists = async (name: string): Promise<boolean> => {
  const all = await kcOf(apiEast).makeApiClient(k8s.CoreV1Api).listServiceForAllNamespaces({ labelSelector: 'app.kubernetes.io/managed-by=causeway' })
  return all.items.some((s) => s.metadata?.name === name)
}

/** One request through `address:port`: the echo target answers `ok <line>`. */
function request(address: string, port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: address, port })
    let got = ''
    const t = setTimeout(() => { sock.destroy(); reject(new Error('request timed out')) }, 10_000)
    sock.on('connect', () => sock.write(`${line}\n`))
    sock.setEncoding('utf8').on('data', (d: string) => (got += d))
    sock.on('error', (e) => { clearTimeout(t); reject(e) })
    sock.on('close', () => { clearTimeout(t); resolve(got.trim()) })
  })
}

/** The instance's /readyz status code (the chart's readinessProbe). */
const readyz = async (p: AgentProc): Promise<number> => (await fetch(`http://127.0.0.1:${p.statusPort}/readyz`, { signal: AbortSignal.timeout(2000) })).status

const leadLogs = (p: AgentProc): number => p.logs.filter((l) => l.includes('"lease: leading"') || l.includes('"lease: took over"')).length

const startEast = async (instance: string, ip: string): Promise<AgentProc> => {
  const p = await net.start('east', instance, ['--kube', '--kubeconfig', join(dir, 'east.kubeconfig'), '--lease-duration', `${LEASE_S}s`, '--drain', '4000'], undefined, { POD_IP: ip, POD_NAMESPACE: 'causeway', POD_NAME: instance })
  east.set(instance, p)
  return p
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'causeway-kube-ha-'))
  apiEast = await startApiServer()
  apiWest = await startApiServer()
  await kcOf(apiEast).makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: 'causeway' } } })
  const coreW = kcOf(apiWest).makeApiClient(k8s.CoreV1Api)
  for (const [name, shared] of [['api', true], ['extra', false]] as const) {
    await coreW.createNamespacedService({ namespace: 'default', body: { metadata: { name, annotations: shared ? { 'causeway.dev/share': 'true' } : {} }, spec: { selector: { app: name }, ports: [{ port: 80 }] } } })
  }
  writeFileSync(join(dir, 'east.kubeconfig'), apiEast.kubeconfig())
  writeFileSync(join(dir, 'west.kubeconfig'), apiWest.kubeconfig())
  signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}), log })
  net = await HaNetwork.create(signaling.url)
  target = await echoTarget()
  west = await net.start('west', 'west-1', ['--kube', '--kubeconfig', join(dir, 'west.kubeconfig'), '--share', `legacy=127.0.0.1:${target.port}`], undefined, { POD_IP: '127.0.0.4', POD_NAMESPACE: 'default' })
  await startEast('east-1', '127.0.0.2')
  await startEast('east-2', '127.0.0.3')
  await net.waitInstances(west, 'east', 2)
}, 90_000)

afterAll(async () => {
  net?.killAll()
  await signaling?.close()
  await apiEast?.close()
  await apiWest?.close()
  target?.server.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('two instances of a site in Kubernetes mode (real processes, real kubectl)', () => {
  let leader = ''

  it('exactly one instance holds the Lease; both serve every import through their own ready EndpointSlice', async () => {
    leader = await until(async () => { const h = await holder().catch(() => ''); return east.has(h) ? h : undefined }, 20_000, () => `a Lease holder${net.tail()}`)
    for (const svc of ['legacy-west', 'api-west']) {
      await until(async () => { const s = await slicesOf(svc); return s.length === 2 && s.every((x) => x.ready === true) }, 30_000, () => `two ready slices of ${svc}${net.tail()}`)
    }
    const slices = await slicesOf('legacy-west')
    expect(slices.map((s) => [s.instance, s.address, s.serving, s.terminating])).toEqual([['east-1', '127.0.0.2', true, false], ['east-2', '127.0.0.3', true, false]])
    expect(new Set(slices.map((s) => s.port)).size).toBe(2) // each instance its own listener
    // (the status API starts after the controller's first reconcile)
    for (const p of east.values()) await until(async () => (await readyz(p).catch(() => 0)) === 200, 10_000, () => `${p.instance} /readyz 200${net.tail()}`, 100)
    // every endpoint carries traffic (kube-proxy may pick either)
    for (const s of slices) expect(await request(s.address, s.port, `via ${s.instance}`)).toBe(`ok via ${s.instance}`)
    // still exactly one: the holder is the only instance that ever led
    expect(await holder()).toBe(leader)
    const led = [...east.values()].filter((p) => leadLogs(p) > 0).map((p) => p.instance)
    expect(led).toEqual([leader])
    // the Service, written by the leader only, lists the peer's port; the presence Leases of both instances exist
    const leases = await kubectl(['get', 'leases', '-n', 'causeway', '-l', 'causeway.dev/site=east,causeway.dev/instance', '-o', 'jsonpath={.items[*].spec.holderIdentity}'])
    expect(leases.trim().split(' ').sort()).toEqual(['east-1', 'east-2'])
  }, 90_000)

  it('kill -9 of the holder: the other takes the Lease within the bound and rewrites the imports', async () => {
    const dead = east.get(leader)!
    const survivor = [...east.keys()].find((k) => k !== leader)!
    const killedAt = Date.now()
    await net.stop(dead, 'SIGKILL')
    await until(async () => (await holder().catch(() => '')) === survivor, TAKEOVER_BOUND_MS + SLACK_MS + 2000, () => `${survivor} to take the Lease${net.tail()}`, 100)
    const tookMs = Date.now() - killedAt
    leader = survivor
    expect(tookMs).toBeLessThanOrEqual(TAKEOVER_BOUND_MS + SLACK_MS)
    // the dead instance's endpoints are removed (its presence Lease stands still for a lease duration)
    await until(async () => { const s = await slicesOf('legacy-west'); return s.length === 1 && s[0]?.instance === survivor }, 15_000, () => `only ${survivor}'s slice left${net.tail()}`)
    // west withdraws one share and adds another: only the new leader can rewrite the Services
    const coreW = kcOf(apiWest).makeApiClient(k8s.CoreV1Api)
    await coreW.patchNamespacedService({ namespace: 'default', name: 'api', body: { metadata: { annotations: { 'causeway.dev/share': null } } } }, merge)
    await coreW.patchNamespacedService({ namespace: 'default', name: 'extra', body: { metadata: { annotations: { 'causeway.dev/share': 'true' } } } }, merge)
    await until(async () => !(await serviceExists('api-west')), 20_000, () => `api-west removed${net.tail()}`)
    expect(await slicesOf('api-west')).toEqual([])
    await until(async () => { const s = await slicesOf('extra-west'); return s.length === 1 && s[0]?.instance === survivor && s[0].ready === true }, 20_000, () => `extra-west served by ${survivor}${net.tail()}`)
    // (the status annotation follows the slice in the same reconcile)
    const status = await until(async () => (await kcOf(apiEast).makeApiClient(k8s.CoreV1Api).readNamespacedService({ namespace: 'default', name: 'extra-west' })).metadata?.annotations?.['causeway.dev/status'], 10_000, 'the status annotation of extra-west')
    expect(JSON.parse(status)).toMatchObject({ role: 'import', peer: 'west', share: 'extra' })
    const left = (await slicesOf('legacy-west'))[0]!
    expect(await request(left.address, left.port, 'after the kill')).toBe('ok after the kill')
    log.info({ tookMs }, 'lease taken over after kill -9')
  }, 90_000)

  it('the killed instance comes back; SIGTERM of the holder: its endpoints turn terminating, the Lease moves within a renew period', async () => {
    const back = [...east.values()].find((p) => p.instance !== leader)!
    const revived = await net.restart(back)
    east.set(revived.instance, revived)
    await until(async () => { const s = await slicesOf('legacy-west'); return s.length === 2 && s.every((x) => x.ready === true) }, 30_000, () => `both slices ready again${net.tail()}`)
    expect(await holder()).toBe(leader) // a returning instance does not take the Lease from a live holder
    const draining = east.get(leader)!
    const mine = (await slicesOf('legacy-west')).find((s) => s.instance === leader)!
    // a long-lived connection through the draining instance keeps its drain going for --drain
    const held = holdConnection(mine.port)
    await until(() => held.ticks() > 0, 10_000, 'ticks through the held connection')
    const termAt = Date.now()
    const exited = net.stop(draining, 'SIGTERM')
    const seen = await until(async () => {
      const s = (await slicesOf('legacy-west')).find((x) => x.instance === leader)
      return s?.terminating === true ? s : undefined
    }, 5000, () => `${leader}'s endpoint terminating${net.tail()}`, 100)
    expect([seen.ready, seen.serving, seen.terminating]).toEqual([false, true, true])
    expect(await readyz(draining)).toBe(503)
    await until(async () => (await holder().catch(() => '')) === revived.instance, (LEASE_S * 1000) / 3 + SLACK_MS, () => `${revived.instance} to take the released Lease${net.tail()}`, 100)
    expect(Date.now() - termAt).toBeLessThan(4000) // before the drain ends: a release, not an expiry
    // the other instance's endpoint stays ready throughout and carries new connections
    const other = (await slicesOf('legacy-west')).find((s) => s.instance === revived.instance)!
    expect(other.ready).toBe(true)
    expect(await request(other.address, other.port, 'during the drain')).toBe('ok during the drain')
    expect(await exited, draining.logs.slice(-15).join('\n')).toBe(0)
    held.end()
    await until(async () => { const s = await slicesOf('legacy-west'); return s.length === 1 && s[0]?.instance === revived.instance }, 5000, () => `the drained instance's slice removed${net.tail()}`)
    const leases = await kubectl(['get', 'leases', '-n', 'causeway', '-l', 'causeway.dev/site=east,causeway.dev/instance', '-o', 'jsonpath={.items[*].spec.holderIdentity}'])
    expect(leases.trim()).toBe(revived.instance)
  }, 90_000)
})
