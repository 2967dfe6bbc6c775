/**
 * The Worker under a bare `workerd serve` (no wrangler dev: no dev proxy, inspector or log
 * tail), for the benchmark: bundles with `wrangler deploy --dry-run`, writes a workerd config
 * with the ROOMS namespace (SQLite-backed, in memory) and the given vars, and runs workerd.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort, ROOT, WRANGLER, type Target } from '../test/signaling/servers.ts'

const WORKERD = join(ROOT, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd')

/** compatibility_date and compatibility_flags of a wrangler.toml (top-level keys only). */
export function compatibilityOf (toml: string): { compatibilityDate: string, compatibilityFlags: string[] } {
  const date = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)?.[1]
  const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)?.[1] ?? ''
  if (date === undefined) throw new Error('wrangler.toml has no compatibility_date')
  return { compatibilityDate: date, compatibilityFlags: [...flags.matchAll(/"([^"]+)"/g)].map(m => m[1] ?? '') }
}

export async function startBareWorkerd (env: Record<string, string>, opts: { compatibilityDate: string, compatibilityFlags: string[] }): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), 'causeway-workerd-'))
  await promisify(execFile)(WRANGLER, ['deploy', '--dry-run', '--outdir', join(dir, 'bundle'), '--config', join(ROOT, 'wrangler.toml')], {
    cwd: ROOT, timeout: 90_000, env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: '1', WRANGLER_LOG_PATH: dir },
  })
  const port = await freePort()
  const q = (s: string): string => JSON.stringify(s)
  const bindings = [`(name = "ROOMS", durableObjectNamespace = "SignalingRoom")`, ...Object.entries(env).map(([k, v]) => `(name = ${q(k)}, text = ${q(v)})`)]
  await writeFile(join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .w) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const w :Workerd.Worker = (
  modules = [ (name = "index.js", esModule = embed "bundle/index.js") ],
  compatibilityDate = ${q(opts.compatibilityDate)},
  compatibilityFlags = [${opts.compatibilityFlags.map(q).join(', ')}],
  bindings = [ ${bindings.join(', ')} ],
  durableObjectNamespaces = [ (className = "SignalingRoom", uniqueKey = "causeway-bench", enableSql = true) ],
  durableObjectStorage = (inMemory = void),
);
`)
  const child = spawn(WORKERD, ['serve', join(dir, 'config.capnp')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-20_000) })
  child.stderr?.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-20_000) })
  const url = `http://127.0.0.1:${port}`
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
      clearTimeout(t)
    }
    await rm(dir, { recursive: true, force: true })
  }
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break
    try { if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })).ok) return { name: 'workerd', url, port, env, close, output: () => out, ...(child.pid !== undefined ? { pid: child.pid } : {}) } } catch { /* starting */ }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  await close()
  throw new Error(`workerd serve did not start:\n${out}`)
}
