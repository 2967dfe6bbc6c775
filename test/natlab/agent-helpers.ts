/**
 * Helpers for NAT-lab tests with real agents: `./bin/causeway agent` processes inside the LAN
 * namespaces (bound to the LAN address). The LAN namespaces have `lo` down, so a process there
 * cannot reach its own address: the site router (`ra`/`rb`, also on the LAN) plays the other
 * LAN hosts — it reads the status API with curl, runs the TCP clients against the agent's
 * connect listener and the echo server behind b's share (agent-io.ts).
 */
import { join } from 'node:path'
import type { Lab, LabProcess, Site } from './lab.ts'
import { NODE, ROOT } from './relay-helpers.ts'
import { until } from '../until.ts'

export const STATUS_PORT = 7777
export const CONNECT_PORT = 7001
export const ECHO_PORT = 7000
const IO = join(ROOT, 'test/natlab/agent-io.ts')

export interface PeerStatusView { name: string, state: string, path: string, pair?: string, bytesIn: number, bytesOut: number, streams: number, engine?: string }
export interface AgentStatusView {
  name: string
  peers: PeerStatusView[]
  relay?: { peer: string, addrs: string[], relays: Array<{ relay: string, reserved: boolean, lastError?: string }> }
  netcheck?: { site: string, ok: boolean, verdict: string, udp: boolean | null, expect: Record<string, string>, relays: Array<{ addr?: string, reserved: boolean }> } | null
  engine?: { choice: string, engine: string, udp: boolean | null }
}

export interface LabAgent {
  site: Site
  name: string
  proc: LabProcess
  status: () => Promise<AgentStatusView | undefined>
  metrics: () => Promise<string>
  kill: () => Promise<void>
}

let curl: boolean | undefined
/** One HTTP GET from a lab namespace: curl when installed, else Node (slower to start). */
export async function httpGet (lab: Lab, ns: 'ra' | 'rb', url: string): Promise<string | undefined> {
  curl ??= (await lab.exec('pub', ['sh', '-c', 'command -v curl'], 5000)).code === 0
  const r = curl
    ? await lab.exec(ns, ['curl', '-s', '-m', '2', url], 5000)
    : await lab.exec(ns, [NODE, '--disable-warning=ExperimentalWarning', IO, 'get', url], 8000)
  return r.code === 0 ? r.stdout : undefined
}

export function lanAddr (lab: Lab, site: Site): string { return site === 'a' ? lab.addrs.a : lab.addrs.b }
/** The site router's LAN address and namespace (another host on the site's LAN). */
export function lanHost (site: Site): { ns: 'ra' | 'rb', addr: string } { return site === 'a' ? { ns: 'ra', addr: '10.0.1.1' } : { ns: 'rb', addr: '10.0.2.1' } }

/** Starts an agent in `site`; `connectTo` adds `--connect echo@PEER=<lan>:CONNECT_PORT`, `share` the echo share. */
export function startAgent (lab: Lab, site: Site, opts: { name: string, token: string, share?: boolean, connectTo?: string, extra?: string[], statusPort?: number }): LabAgent {
  const lan = lanAddr(lab, site)
  const statusPort = opts.statusPort ?? STATUS_PORT
  const args = [`${ROOT}bin/causeway`, 'agent', '--name', opts.name, '--status', `${lan}:${statusPort}`, '--drain', '200',
    ...(opts.share === true ? ['--share', `echo=${lanHost(site).addr}:${ECHO_PORT}`] : []),
    ...(opts.connectTo !== undefined ? ['--connect', `echo@${opts.connectTo}=${lan}:${CONNECT_PORT}`] : []),
    ...(opts.extra ?? [])]
  const proc = lab.spawn(site, args, { CAUSEWAY_TOKEN: opts.token, CAUSEWAY_LOG_LEVEL: process.env.CAUSEWAY_TEST_LOG ?? 'info' })
  return {
    site,
    name: opts.name,
    proc,
    status: async () => {
      const body = await httpGet(lab, lanHost(site).ns, `http://${lan}:${statusPort}/status`)
      if (body === undefined) return undefined
      try { return JSON.parse(body) as AgentStatusView } catch { return undefined }
    },
    metrics: async () => await httpGet(lab, lanHost(site).ns, `http://${lan}:${statusPort}/metrics`) ?? '',
    kill: async () => { await proc.kill() },
  }
}

/** Polls `fn` every 250 ms until it returns a value, or throws after `ms` with `what` and the last value. */
export async function waitUntil<T> (fn: () => Promise<T | undefined>, ms: number, what: string): Promise<{ value: T, ms: number }> {
  const start = Date.now()
  const value = await until(fn, ms, what, 250) as T
  return { value, ms: Date.now() - start }
}

/** Waits until `agent` reports peer `peer` connected on one of `paths`; returns that peer's view. */
export async function waitPath (agent: LabAgent, peer: string, paths: string[], ms: number): Promise<{ value: PeerStatusView, ms: number }> {
  let seen = ''
  try {
    return await waitUntil(async () => {
      const s = await agent.status()
      const p = s?.peers.find(x => x.name === peer)
      seen = JSON.stringify(p ?? s?.peers ?? 'no status')
      return p !== undefined && p.state === 'connected' && paths.includes(p.path) ? p : undefined
    }, ms, `${agent.name} to see ${peer} on ${paths.join('|')}`)
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; last view: ${seen}; agent log: ${agent.proc.output().slice(-3000)}`)
  }
}

export interface XferResult { ok: boolean, intact: boolean, sent: number, got: number, ms: number, error?: string }

/** Starts a transfer from `site` through its agent's connect listener (the echo share of the other site). */
export function startXfer (lab: Lab, site: Site, bytes: number, rateKiBs: number, timeoutMs: number): { proc: LabProcess, result: () => Promise<XferResult> } {
  const proc = lab.spawn(lanHost(site).ns, [NODE, '--disable-warning=ExperimentalWarning', IO, 'xfer', lanAddr(lab, site), String(CONNECT_PORT), String(bytes), String(rateKiBs), String(timeoutMs)])
  return {
    proc,
    result: async () => {
      const m = await proc.waitFor(/^\{.*\}$/m, timeoutMs + 10_000)
      return JSON.parse(m[0]) as XferResult
    },
  }
}

export async function xfer (lab: Lab, site: Site, bytes: number, timeoutMs = 60_000): Promise<XferResult> {
  return await startXfer(lab, site, bytes, 0, timeoutMs).result()
}

export async function startEcho (lab: Lab, site: Site): Promise<LabProcess> {
  const proc = lab.spawn(lanHost(site).ns, [NODE, '--disable-warning=ExperimentalWarning', IO, 'echo', lanHost(site).addr, String(ECHO_PORT)])
  await proc.waitFor(/echo listening/, 15_000)
  return proc
}
