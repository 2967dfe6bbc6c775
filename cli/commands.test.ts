/**
 * Commands load only what they use: `causeway status` (through bin/causeway, the bundle users
 * run) resolves no Hono, ws, prom-client or libp2p module. A module-resolution hook (Node's
 * module.registerHooks, loaded with NODE_OPTIONS) reports every npm package the process
 * resolves; `causeway signaling --help` is the control that proves the hook sees them.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const HEAVY = /node_modules\/(hono|@hono|ws|prom-client|libp2p|@libp2p|@kubernetes)\//
let dir = ''
let hook = ''

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'causeway-lazy-'))
  hook = join(dir, 'hook.mjs')
  await writeFile(hook, `import { registerHooks } from 'node:module'
registerHooks({ resolve (specifier, context, next) { const r = next(specifier, context); if (r.url.includes('/node_modules/')) process.stderr.write('RESOLVED ' + r.url + '\\n'); return r } })
`)
})
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

async function run (args: string[]): Promise<{ code: number | null, resolved: string[], stderr: string }> {
  const child = spawn(join(ROOT, 'bin/causeway'), args, { env: { ...process.env, NODE_OPTIONS: `--import=${hook}` }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  child.stdout.resume()
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  clearTimeout(timer)
  return { code, stderr, resolved: [...stderr.matchAll(/^RESOLVED (\S+)$/gm)].map(m => m[1] ?? '') }
}

describe('lazy commands', () => {
  it('causeway status loads no Hono, ws, prom-client, libp2p or Kubernetes client', async () => {
    // nothing listens on port 1: the command fails fast, after loading everything it needs
    const r = await run(['status', '--status-addr', '127.0.0.1:1'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/causeway: /)
    expect(r.resolved.filter(u => HEAVY.test(u))).toEqual([])
  })

  it('the hook sees what a command loads (control: signaling --help resolves Hono)', async () => {
    const r = await run(['signaling', '--help'])
    expect(r.code).toBe(0)
    expect(r.resolved.some(u => /node_modules\/hono\//.test(u))).toBe(true)
  })
})
