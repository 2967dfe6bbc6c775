/**
 * High-availability harness (tests and bench/ha.ts): real `bin/causeway agent` processes, several
 * instances per site under one agent token, a request/response target, a TCP balancer in front
 * of a site's connect listeners, and a load generator.
 *
 * The balancer stands in for a Kubernetes Service with kube-proxy: it sends each new connection
 * to one of its backends that answered the last readiness poll (`GET /readyz` every 200 ms, as a
 * kubelet probe feeds EndpointSlice readiness), round-robin, and never retries a backend that
 * refuses (neither does kube-proxy). So a request fails here whenever it would fail behind a
 * Service.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { issueAgentToken, newNetwork, type NetworkOwner } from '../../protocol/identity-owner.ts'
import { encodeToken } from '../../protocol/token.ts'
import { listen } from './harness.ts'
import { until } from '../until.ts'

const CAUSEWAY = fileURLToPath(new URL('../../bin/causeway', import.meta.url))

export async function freePort (): Promise<number> {
  const s = createServer()
  const port = await listen(s)
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

export interface AgentProc {
  site: string
  instance: string
  args: string[]
  statusPort: number
  /** Extra environment it runs with (kept by restart). */
  env: Record<string, string>
  child: ChildProcess
  /** The last lines it logged (JSON, pino). */
  logs: string[]
}

/** What an agent's /status says (the parts the HA tests read). */
export interface HaStatus {
  signaling: string
  draining: boolean
  peers: Array<{ name: string, instance?: string, state: string, responsive: boolean, draining: boolean, streams: number }>
}

export class HaNetwork {
  readonly dir = mkdtempSync(join(tmpdir(), 'causeway-ha-'))
  readonly procs: AgentProc[] = []
  private readonly owner: NetworkOwner
  private readonly tokens = new Map<string, string>()

  private constructor (owner: NetworkOwner) { this.owner = owner }

  static async create (signalingUrl: string): Promise<HaNetwork> {
    return new HaNetwork(await newNetwork(signalingUrl))
  }

  /** The token file of `site` (one per site: every instance runs with it). */
  async tokenFile (site: string): Promise<string> {
    let f = this.tokens.get(site)
    if (f === undefined) {
      f = join(this.dir, `${site}.token`)
      writeFileSync(f, encodeToken(await issueAgentToken(this.owner, site, { ttlSeconds: 3600 })), { mode: 0o600 })
      this.tokens.set(site, f)
    }
    return f
  }

  /** Starts `bin/causeway agent` as instance `instance` of `site` with `extra` flags and `env` (the status port is chosen here). */
  async start (site: string, instance: string, extra: string[], statusPort?: number, env: Record<string, string> = {}): Promise<AgentProc> {
    const port = statusPort ?? await freePort()
    const args = ['agent', '--token-file', await this.tokenFile(site), '--instance', instance, '--status', `127.0.0.1:${port}`, '--no-service-ice', ...extra]
    const child = spawn(CAUSEWAY, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CAUSEWAY_LOG_LEVEL: 'info', ...env } })
    const p: AgentProc = { site, instance, args, statusPort: port, env, child, logs: [] }
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      for (const l of d.split('\n')) if (l !== '') { p.logs.push(l); if (p.logs.length > 300) p.logs.shift() }
    })
    this.procs.push(p)
    return p
  }

  /** The same instance again (same flags and status port): a restarted process. */
  async restart (p: AgentProc): Promise<AgentProc> {
    const extra = p.args.slice(p.args.indexOf('--no-service-ice') + 1)
    return await this.start(p.site, p.instance, extra, p.statusPort, p.env)
  }

  async status (p: AgentProc): Promise<HaStatus | undefined> {
    try {
      const r = await fetch(`http://127.0.0.1:${p.statusPort}/status`, { signal: AbortSignal.timeout(1000) })
      return await r.json() as HaStatus
    } catch { return undefined }
  }

  /** Waits until `p` sees `site` with `instances` instances connected, answering and not draining. */
  async waitInstances (p: AgentProc, site: string, instances: number, ms = 30_000): Promise<void> {
    await until(async () => {
      const s = await this.status(p)
      return s !== undefined && s.peers.filter(x => x.name === site && x.state === 'connected' && x.responsive && !x.draining).length === instances
    }, ms, () => `${p.site}/${p.instance} to see ${instances} ready instances of ${site}${this.tail()}`, 200)
  }

  /** Sends `signal` and resolves with the exit code (null when killed by a signal). */
  async stop (p: AgentProc, signal: NodeJS.Signals): Promise<number | null> {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode
    const exited = new Promise<number | null>(resolve => p.child.once('exit', (code) => resolve(code)))
    if (p.child.pid !== undefined) process.kill(p.child.pid, signal)
    return await exited
  }

  /** Kills every process still running (by PID). */
  killAll (): void {
    for (const p of this.procs) if (p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined) process.kill(p.child.pid, 'SIGKILL')
  }

  /** The last log lines of every agent, for a failure message. */
  tail (n = 15): string {
    return this.procs.map(p => `\n--- ${p.site}/${p.instance}:\n${p.logs.slice(-n).join('\n')}`).join('')
  }
}

/**
 * A request/response target: reads one line, answers `ok <line>` and closes; the line `hold`
 * instead gets `tick\n` every 100 ms until the client closes (a long-lived connection).
 */
export async function echoTarget (): Promise<{ server: Server, port: number, served: () => number }> {
  let served = 0
  const server = createServer((s) => {
    s.on('error', () => {})
    let buf = ''
    s.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line === 'hold') {
        let n = 0
        const t = setInterval(() => { if (n++ >= 3000) { clearInterval(t); s.end() } else s.write('tick\n') }, 100)
        s.on('close', () => clearInterval(t))
        return
      }
      served++
      s.end(`ok ${line}\n`)
    })
  })
  return { server, port: await listen(server), served: () => served }
}

/** A long-lived connection through `port` (the target's `hold`): records the longest gap between ticks and how it ended. */
export function holdConnection (port: number): { maxGapMs: () => number, closed: () => string | undefined, ticks: () => number, end: () => void } {
  const sock = connect({ host: '127.0.0.1', port })
  let last = Date.now()
  let maxGap = 0
  let ticks = 0
  let closed: string | undefined
  sock.on('connect', () => { sock.write('hold\n'); last = Date.now() })
  sock.setEncoding('utf8').on('data', (d: string) => {
    const now = Date.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
    ticks += d.split('tick').length - 1
  })
  sock.on('error', (err) => { closed ??= `error: ${err.message}` })
  sock.on('close', () => { closed ??= 'closed' })
  return { maxGapMs: () => Math.max(maxGap, closed === undefined ? Date.now() - last : 0), closed: () => closed, ticks: () => ticks, end: () => { closed ??= 'ended by the test'; sock.destroy() } }
}

/** The stand-in for a Service + kube-proxy in front of a site's connect listeners (see the module comment). */
export class Balancer {
  readonly backends: Array<{ port: number, statusPort: number, ready: boolean }>
  private server?: Server
  private poller?: ReturnType<typeof setInterval>
  private next = 0
  port = 0

  constructor (backends: Array<{ port: number, statusPort: number }>) {
    this.backends = backends.map(b => ({ ...b, ready: false }))
  }

  async start (): Promise<void> {
    const sockets = new Set<Socket>()
    this.server = createServer((client) => {
      sockets.add(client)
      client.on('close', () => sockets.delete(client))
      client.on('error', () => {})
      const ready = this.backends.filter(b => b.ready)
      if (ready.length === 0) { client.resetAndDestroy(); return }
      const b = ready[this.next++ % ready.length]!
      const up = connect({ host: '127.0.0.1', port: b.port })
      up.on('error', () => client.resetAndDestroy())
      client.on('error', () => up.destroy())
      client.pipe(up)
      up.pipe(client)
    })
    this.port = await listen(this.server)
    const poll = async (): Promise<void> => {
      await Promise.all(this.backends.map(async (b) => {
        try {
          const r = await fetch(`http://127.0.0.1:${b.statusPort}/readyz`, { signal: AbortSignal.timeout(500) })
          b.ready = r.status === 200
        } catch { b.ready = false }
      }))
    }
    await poll()
    this.poller = setInterval(() => { void poll() }, 200)
  }

  close (): void {
    clearInterval(this.poller)
    this.server?.close()
  }
}

export interface RequestResult { n: number, start: number, ms: number, ok: boolean, why?: string }

/** One request through `port`: `n\n` out, `ok n\n` back. */
export async function request (port: number, n: number, timeoutMs = 15_000): Promise<RequestResult> {
  const start = Date.now()
  return await new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port })
    let got = ''
    const done = (ok: boolean, why?: string): void => { clearTimeout(t); sock.destroy(); resolve({ n, start, ms: Date.now() - start, ok, ...(why !== undefined ? { why } : {}) }) }
    const t = setTimeout(() => done(false, 'timed out'), timeoutMs)
    sock.on('connect', () => sock.write(`${n}\n`))
    sock.setEncoding('utf8').on('data', (d: string) => { got += d })
    sock.on('error', (err) => done(false, err.message))
    sock.on('end', () => done(got === `ok ${n}\n`, got === `ok ${n}\n` ? undefined : `answer ${JSON.stringify(got.slice(0, 40))}`))
  })
}

/**
 * Starts `rate` requests per second through `port` for `durationMs` (bounded: at most rate x
 * duration requests, each with its own timeout); resolves with every result once all ended.
 * `during(elapsedMs)` is awaited alongside (the test's actions: kills, restarts).
 */
export async function runLoad (port: number, rate: number, durationMs: number, during?: () => Promise<void>): Promise<RequestResult[]> {
  const results: Array<Promise<RequestResult>> = []
  const started = Date.now()
  const total = Math.floor(rate * durationMs / 1000)
  const driver = (async () => {
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / rate
      const wait = due - Date.now()
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
      results.push(request(port, i))
    }
  })()
  await Promise.all([driver, during?.()])
  return await Promise.all(results)
}
