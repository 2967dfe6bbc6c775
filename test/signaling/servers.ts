/**
 * Starts the signaling service under test: the Node adapter in this process, or the Worker
 * under workerd through `wrangler dev` as a child process (offline, loopback, free ports,
 * killed by its process-group id). Both take the same environment-style configuration.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling } from '../../signaling/node/server.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const WRANGLER = join(ROOT, 'node_modules/.bin/wrangler')

export interface Target {
  name: 'node' | 'workerd'
  /** http://127.0.0.1:PORT */
  url: string
  port: number
  env: Record<string, string>
  close: () => Promise<void>
  /** What the server process printed (workerd: wrangler's stdout and stderr, last 20 kB). */
  output: () => string
  /** Process id of the server's child process, if it runs in one. */
  pid?: number
}

/** A free loopback TCP port (listen on 0, read it, close). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      s.close(() => resolve(port))
    })
  })
}

export async function startNode (env: Record<string, string>): Promise<Target> {
  const s = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv(env) })
  await s.ready()
  return { name: 'node', url: s.url, port: s.port, env, close: s.close, output: () => '' }
}

async function waitHealthy (url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${output()}`)
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })
      if (res.ok) return
    } catch { /* not up yet */ }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`wrangler dev did not answer /healthz within ${timeoutMs} ms:\n${output()}`)
}

function killGroup (child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try { process.kill(-child.pid, signal) } catch { /* already gone */ }
}

/**
 * A copy of a wrangler config in `dir` with `main` made absolute and the static-assets directory
 * replaced by a snapshot (an empty one when it is not built): `wrangler dev` reloads the Worker,
 * dropping every WebSocket, when a watched file changes, and other work in the same checkout
 * (a page build) must not do that to a running test or benchmark.
 */
async function isolatedConfig (config: string, dir: string): Promise<string> {
  const base = dirname(config)
  let toml = await readFile(config, 'utf8')
  toml = toml.replace(/^main\s*=\s*"([^"]+)"/m, (_m, main: string) => `main = ${JSON.stringify(isAbsolute(main) ? main : resolve(base, main))}`)
  const assets = /^directory\s*=\s*"([^"]+)"/m.exec(toml)?.[1]
  if (assets !== undefined) {
    const snapshot = join(dir, 'assets')
    await mkdir(snapshot, { recursive: true })
    await cp(resolve(base, assets), snapshot, { recursive: true }).catch(() => { /* not built: serve none */ })
    toml = toml.replace(/^directory\s*=\s*"([^"]+)"/m, `directory = ${JSON.stringify(snapshot)}`)
  }
  const out = join(dir, 'wrangler.toml')
  await writeFile(out, toml)
  return out
}

/** `wrangler dev` of wrangler.toml (or `opts.config`) on a free loopback port, vars passed with --var. */
export async function startWorkerd (env: Record<string, string>, opts: { timeoutMs?: number, config?: string } = {}): Promise<Target> {
  const port = await freePort()
  const inspector = await freePort()
  const state = await mkdtemp(join(tmpdir(), 'causeway-wrangler-'))
  const config = await isolatedConfig(opts.config ?? join(ROOT, 'wrangler.toml'), state)
  const args = ['dev', '--config', config, '--ip', '127.0.0.1', '--port', String(port),
    '--inspector-port', String(inspector), '--persist-to', state, '--local', '--show-interactive-dev-session=false', '--log-level', 'warn']
  for (const [k, v] of Object.entries(env)) args.push('--var', `${k}:${v}`)
  const child = spawn(WRANGLER, args, {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: '1', NO_COLOR: '1', WRANGLER_LOG_PATH: state },
  })
  let out = ''
  const keep = (b: Buffer): void => { out = (out + b.toString()).slice(-20_000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const url = `http://127.0.0.1:${port}`
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
      killGroup(child, 'SIGTERM')
      const t = setTimeout(() => killGroup(child, 'SIGKILL'), 5000)
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 8000))])
      clearTimeout(t)
    }
    await rm(state, { recursive: true, force: true })
  }
  try {
    await waitHealthy(url, child, () => out, opts.timeoutMs ?? 60_000)
  } catch (err) {
    await close()
    throw err
  }
  return { name: 'workerd', url, port, env, close, output: () => out, ...(child.pid !== undefined ? { pid: child.pid } : {}) }
}
