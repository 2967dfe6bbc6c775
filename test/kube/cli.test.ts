/**
 * The CLI wiring, inside the test network namespace: a real `causeway agent --kube --kubeconfig
 * … --share-apiserver --apiserver-sa NAME` process (the chart's default mode: a token minted
 * with TokenRequest for the dedicated ServiceAccount) and a real `causeway kubeconfig` process
 * against an in-process agent's status API; then the real kubectl through the tunnel.
 *
 * Run: scripts/netns-run.sh npx vitest run test/kube/cli.test.ts
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { startKubeMode } from '../../cli/agent-kube.ts'
import { startStatusServer } from '../../agent/status/server.ts'
import { startNet, tokenString, until, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { runCommand } from './exec.ts'
import { prerequisite } from '../prereq.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const CAUSEWAY = join(ROOT, 'bin', 'causeway')
const SA_USER = 'system:serviceaccount:causeway:causeway-apiserver-share'

let net: Net
let apiA: ApiServer
let apiB: ApiServer
let b: Agent
let status: Awaited<ReturnType<typeof startStatusServer>>
let dir: string
let proc: ChildProcess | undefined
let procLog = ''
const ctl = new AbortController()

const kcOf = (s: ApiServer, token?: string): k8s.KubeConfig => {
  const kc = new k8s.KubeConfig()
  kc.loadFromString(s.kubeconfig(token !== undefined ? { token } : {}))
  return kc
}

/** TCP ports process `pid` listens on (its socket inodes matched in /proc/PID/net/tcp{,6}). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set(readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] } catch { return undefined } }).filter((x) => x !== undefined))
  const ports: number[] = []
  for (const f of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${f}`, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols[3] === '0A' && inodes.has(cols[9] ?? '')) ports.push(parseInt(cols[1]?.split(':')[1] ?? '0', 16))
    }
  }
  return ports
}

function run(cmd: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCommand(cmd, args, { HOME: dir, ...env }, input)
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'causeway-kube-cli-'))
  apiA = await startApiServer({ tokens: { 'agent-a-token': { user: 'causeway-agent', groups: ['system:authenticated'] } }, canImpersonate: () => false })
  apiB = await startApiServer()
  const coreA = kcOf(apiA).makeApiClient(k8s.CoreV1Api)
  await coreA.createNamespace({ body: { metadata: { name: 'causeway' } } })
  await coreA.createNamespacedServiceAccount({ namespace: 'causeway', body: { metadata: { name: 'causeway-apiserver-share' } } })
  await coreA.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'pod-in-a' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } })
  await coreA.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'db', annotations: { 'causeway.dev/share': 'true' } }, spec: { selector: { app: 'db' }, ports: [{ port: 5432 }] } },
  })
  writeFileSync(join(dir, 'kubeconfig-agent-a'), apiA.kubeconfig({ token: 'agent-a-token' }))
  net = await startNet()
  b = await net.agent('cluster-b')
  await startKubeMode({ agent: b, kubeConfig: kcOf(apiB), signal: ctl.signal, controller: { podIp: '127.0.0.1', resyncMs: 2000 } })
  status = await startStatusServer(b, '127.0.0.1', 0)
  proc = spawn(CAUSEWAY, [
    'agent', '--name', 'cluster-a', '--status', 'off',
    '--kube', '--kubeconfig', join(dir, 'kubeconfig-agent-a'),
    '--share-apiserver', '--apiserver-sa', 'causeway-apiserver-share',
  ], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CAUSEWAY_TOKEN: tokenString(await net.issue('cluster-a')), POD_IP: '127.0.0.1', POD_NAMESPACE: 'causeway', CAUSEWAY_APISERVER_PEERS: 'cluster-b', CAUSEWAY_IMPORT_GRACE: '1m', CAUSEWAY_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stdout?.on('data', (d: Buffer) => (procLog += d.toString()))
  proc.stderr?.on('data', (d: Buffer) => (procLog += d.toString()))
}, 60_000)

afterAll(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc?.once('exit', r))
    proc.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
    if (proc.exitCode === null) proc.kill('SIGKILL')
  }
  ctl.abort()
  await status?.close()
  await net?.close()
  await apiA?.close()
  await apiB?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('causeway agent --kube --share-apiserver and causeway kubeconfig (real processes)', () => {
  it('the agent process exports annotated Services (imported by cluster-b) and the API server share', async () => {
    const coreB = kcOf(apiB).makeApiClient(k8s.CoreV1Api)
    await until(async () => (await coreB.readNamespacedService({ namespace: 'default', name: 'db-cluster-a' }).then(() => true, () => false)), 30_000, `db imported in cluster-b (agent log: ${procLog.slice(-2000)})`)
    const svc = await coreB.readNamespacedService({ namespace: 'default', name: 'db-cluster-a' })
    expect(svc.spec?.ports?.[0]?.port).toBe(5432)
    const seen = b.status().peers.find((p) => p.name === 'cluster-a')?.shares.map((s) => s.name) ?? []
    expect(seen).toContain('kube-apiserver')
  }, 60_000)

  it('causeway kubeconfig + kubectl run as the minted ServiceAccount token', async () => {
    const out = join(dir, 'kubeconfig-a')
    const r = await run(CAUSEWAY, ['kubeconfig', '--peer', 'cluster-a', '--status-addr', status.url.replace(/^http:\/\//, ''), '--out', out])
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(out, 'utf8')).toMatch(/server: http:\/\/127\.0\.0\.1:\d+/)
    const before = apiA.audit.length
    const pods = await run('/usr/bin/kubectl', ['--token', 'stolen', 'get', 'pods'], { KUBECONFIG: out })
    expect(pods.code, pods.stderr).toBe(0)
    expect(pods.stdout).toContain('pod-in-a')
    const mine = apiA.audit.slice(before).filter((e) => e.user !== '' && e.user !== 'causeway-agent')
    expect(mine.length).toBeGreaterThan(0)
    for (const e of mine) expect(e.user).toBe(SA_USER)
    expect(apiA.audit.some((e) => e.user === 'causeway-agent' && e.resource === 'serviceaccounts' && e.subresource === 'token')).toBe(true)
  }, 60_000)

  it('a local client cannot reach the API-server share: the agent process has no listener that answers as its identity', async () => {
    // The attack of review finding 7: before, the share's proxy listened on 127.0.0.1 with no
    // authentication, so anything in the pod or on the node got the ServiceAccount's identity.
    // Here: every TCP socket the agent process listens on gets the request kubectl would send.
    const ports = listeningPorts(proc?.pid ?? 0)
    expect(listeningPorts(process.pid)).toContain(status.port) // the scan sees listeners (this process's status API)
    const before = apiA.audit.length
    for (const port of ports) {
      const answer = await new Promise<string>((resolve) => {
        const sock = connect({ host: '127.0.0.1', port })
        let got = ''
        sock.on('data', (d: Buffer) => (got += d.toString()))
        sock.on('error', () => resolve(got))
        sock.on('close', () => resolve(got))
        sock.on('connect', () => sock.write('GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
        setTimeout(() => { sock.destroy(); resolve(got) }, 2000)
      })
      expect(answer).not.toContain('pod-in-a')
    }
    expect(apiA.audit.slice(before).filter((e) => e.user === SA_USER)).toEqual([])
    // The share is still there for the peer it is granted to (through the tunnel only).
    expect(b.status().peers.find((p) => p.name === 'cluster-a')?.shares.map((s) => s.name)).toContain('kube-apiserver')
  })

  it('refuses an empty impersonated user or group before joining (it would mean the agent\'s own identity)', async () => {
    for (const flags of [['--impersonate-user='], ['--impersonate-user', ' '], ['--impersonate-user=remote', '--impersonate-group=']]) {
      const r = await run(CAUSEWAY, ['agent', '--name', 'cluster-x', '--status', 'off', '--kubeconfig', join(dir, 'kubeconfig-agent-a'), '--share-apiserver', ...flags], { CAUSEWAY_TOKEN: tokenString(await net.issue('cluster-x')) })
      expect(r.code, r.stderr).toBe(1)
      expect(r.stderr).toMatch(/BAD_CONFIG: --impersonate-(user|group) .*empty/)
    }
  }, 60_000)

  it('the status API adds connect listeners only for loopback clients', async () => {
    const veth = Object.values(networkInterfaces()).flat().find((i) => i?.family === 'IPv4' && i.address === '198.18.0.1')
    // outside the test namespace there is no non-loopback address to try from
    if (!prerequisite('the test network namespace (scripts/netns-run.sh) for a non-loopback address', veth !== undefined)) return
    const open = await startStatusServer(b, '0.0.0.0', 0)
    try {
      const res = await fetch(`http://198.18.0.1:${open.port}/v1/connects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ share: 'kube-apiserver', peer: 'cluster-a' }) })
      expect(res.status).toBe(403)
      const bad = await fetch(`http://127.0.0.1:${open.port}/v1/connects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ share: 'kube-apiserver', peer: 'cluster-a', listen: '0.0.0.0:0' }) })
      expect(bad.status).toBe(400)
    } finally {
      await open.close()
    }
  })
})
