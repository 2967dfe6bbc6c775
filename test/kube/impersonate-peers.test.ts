/**
 * Who did what (issue 22): cluster-a shares its API server in per-peer impersonation mode
 * (`--impersonate-peers`, the chart's `apiserverShare.mode: impersonatePeers`) with cluster-b and
 * cluster-c. The API test server standing in for kube-apiserver (test/kube/apiserver.ts) lets the
 * agent's own identity impersonate exactly the users `causeway:cluster-b`, `causeway:cluster-c`
 * and the group `causeway:peers` (RBAC `impersonate` by resourceName, as the chart grants), and
 * authorizes by user. It sees each caller as itself: cluster-b's requests as `causeway:cluster-b`
 * (even when cluster-b sends its own Impersonate-User header), cluster-c's as
 * `causeway:cluster-c`, which RBAC here may not list pods. cluster-d, not granted the share, is
 * refused by cluster-a. cluster-a writes one info-level audit line per stream (accepted with
 * bytes and duration, refused with the code) and counts them in `causeway_agent_share_*`.
 */
import { request } from 'node:http'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKubeMode, type KubeMode } from '../../cli/agent-kube.ts'
import type { Agent } from '../../agent/agent.ts'
import { agentMetrics } from '../../agent/status/metrics.ts'
import { startNet, type Net } from '../agent/harness.ts'
import { startApiServer, type ApiServer } from './apiserver.ts'

const AGENT_TOKEN = 'agent-a-token'
let api: ApiServer
let net: Net
let a: Agent
let mode: KubeMode
const ctl = new AbortController()
const audit: Array<Record<string, unknown>> = []

/** One GET over a fresh connection (so the tunnelled stream ends, and is audited, right after). */
async function get (port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close', ...headers } }, res => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

beforeAll(async () => {
  api = await startApiServer({
    tokens: { [AGENT_TOKEN]: { user: 'causeway-agent', groups: ['system:authenticated'] } },
    canImpersonate: (who, target) => who.user === 'causeway-agent' && ['causeway:cluster-b', 'causeway:cluster-c'].includes(target.user) && target.groups.every(g => g === 'causeway:peers'),
    authorize: (r) => r.user === 'admin' || r.user === 'causeway:cluster-b' || (r.user === 'causeway:cluster-c' && r.resource !== 'pods'),
  })
  const kc = new k8s.KubeConfig()
  kc.loadFromString(api.kubeconfig({ token: AGENT_TOKEN }))
  net = await startNet()
  const log = { debug () {}, warn () {}, info (obj: object, msg?: string) { if (msg === 'share stream') audit.push({ ...obj }) } }
  a = await net.agent('cluster-a', { log })
  mode = await startKubeMode({ agent: a, kubeConfig: kc, signal: ctl.signal, apiserver: { identity: { mode: 'impersonate-peer' }, peers: ['cluster-b', 'cluster-c'] } })
}, 60_000)

afterAll(async () => {
  ctl.abort()
  await mode?.close()
  await net?.close()
  await api?.close()
})

describe('the API-server share impersonates each calling cluster', () => {
  it('the API server sees causeway:<site> per caller; RBAC tells them apart; every stream is on record', async () => {
    const caller = async (name: string): Promise<number> => {
      const agent = await net.agent(name)
      return (await agent.addConnect({ share: 'kube-apiserver', peer: 'cluster-a', host: '127.0.0.1', port: 0 })).port
    }
    const [b, c, d] = [await caller('cluster-b'), await caller('cluster-c'), await caller('cluster-d')]
    const before = api.audit.length
    const asB = await get(b, '/api/v1/namespaces/default/pods', { 'impersonate-user': 'causeway:cluster-c', authorization: `Bearer ${api.token}` })
    expect(asB.status).toBe(200)
    expect((await get(c, '/api/v1/namespaces/default/configmaps')).status).toBe(200)
    expect((await get(c, '/api/v1/namespaces/default/pods')).status).toBe(403) // RBAC: cluster-c may not
    // cluster-d is not granted the share: the stream is refused before any request
    await expect(get(d, '/api/v1/namespaces/default/pods')).rejects.toThrow()
    const seen = api.audit.slice(before).filter(e => e.user !== '')
    expect(seen.map(e => `${e.user} ${e.resource} ${e.code}`)).toEqual(['causeway:cluster-b pods 200', 'causeway:cluster-c configmaps 200', 'causeway:cluster-c pods 403'])
    for (const e of seen) {
      expect(e.impersonatedBy).toBe('causeway-agent')
      expect(e.groups).toEqual(['causeway:peers', 'system:authenticated'])
    }

    // cluster-a's audit lines: three accepted streams with bytes and duration, one refused
    await new Promise(resolve => setTimeout(resolve, 500))
    const lines = audit.filter(l => l.share === 'kube-apiserver')
    const accepted = lines.filter(l => l.result === 'accepted')
    expect(accepted.map(l => l.peer).sort()).toEqual(['cluster-b', 'cluster-c', 'cluster-c'])
    for (const l of accepted) {
      expect(l).toMatchObject({ audit: 'stream', role: 'agent', protocol: 'tcp', reason: 'done' })
      expect(l.peerId).toEqual(expect.stringMatching(/^[A-Za-z0-9_-]{8,}$/))
      expect(l.bytesIn).toBeGreaterThan(50)
      expect(l.bytesOut).toBeGreaterThan(50)
      expect(typeof l.durationMs).toBe('number')
    }
    expect(lines.filter(l => l.result === 'refused')).toEqual([expect.objectContaining({ peer: 'cluster-d', code: 'SHARE_FORBIDDEN' })])
    const metrics = await agentMetrics(a).metrics()
    expect(metrics).toMatch(/causeway_agent_share_streams_total\{share="kube-apiserver",peer="cluster-b",result="accepted"\} 1/)
    expect(metrics).toMatch(/causeway_agent_share_streams_total\{share="kube-apiserver",peer="cluster-c",result="accepted"\} 2/)
    expect(metrics).toMatch(/causeway_agent_share_streams_total\{share="kube-apiserver",peer="cluster-d",result="refused"\} 1/)
    expect(metrics).toMatch(/causeway_agent_share_bytes_total\{share="kube-apiserver",peer="cluster-b",direction="in"\} [1-9]\d*/)
  }, 60_000)
})
