/**
 * `causeway netcheck` as users run it (bin/causeway) against a signaling service on loopback:
 * a service that offers no STUN/TURN/relay (exit 0, nothing to test), one that refuses the
 * token's /v1/ice (exit 1, says why), a token that is not one (exit 2). The NAT lab
 * (test/natlab/agents.test.ts) checks the verdicts behind real NAT.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeToken, newSecret } from '../protocol/token.ts'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../signaling/node/server.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))

async function netcheck (args: string[], token: string): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(join(ROOT, 'bin/causeway'), ['netcheck', ...args], { env: { ...process.env, CAUSEWAY_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('causeway netcheck', () => {
  let open: NodeSignaling
  let locked: NodeSignaling
  beforeAll(async () => {
    open = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) })
    locked = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({ CAUSEWAY_ACCESS_SECRET: 'a-test-access-secret-of-32-chars!' }) })
  })
  afterAll(async () => { await open.close(); await locked.close() })

  it('a service that offers nothing: exit 0, signaling measured, nothing else to test', async () => {
    const r = await netcheck(['--json'], encodeToken({ kind: 'member', signaling: open.url, secret: newSecret() }))
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout) as { ok: boolean, site: string, verdict: string, signaling: { reachable: boolean, latencyMs: number, ice: boolean }, udp: { reachable: null }, turn: unknown[], relays: unknown[] }
    expect(report).toMatchObject({ ok: true, site: 'unknown', signaling: { reachable: true, ice: true }, udp: { reachable: null }, turn: [], relays: [] })
    expect(report.signaling.latencyMs).toBeGreaterThan(0)
    expect(report.verdict).toMatch(/^signaling ok; no STUN\/TURN servers or relays offered/)
  }, 40_000)

  it('a service that refuses the token (no access ticket): exit 1, the verdict says /v1/ice failed', async () => {
    const r = await netcheck([], encodeToken({ kind: 'member', signaling: locked.url, secret: newSecret() }))
    expect(r.code).toBe(1)
    expect(r.stdout.split('\n')[0]).toMatch(/^NO PATH: the signaling service answers, but \/v1\/ice failed \(\/v1\/ice: HTTP 401\)/)
  }, 40_000)

  it('bad usage or a bad token: exit 2 with a message', async () => {
    const bad = await netcheck([], 'not-a-token')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/causeway netcheck: bad token/)
    const flag = await netcheck(['--timeout', '10'], encodeToken({ kind: 'member', signaling: open.url, secret: newSecret() }))
    expect(flag.code).toBe(2)
    expect(flag.stderr).toMatch(/--timeout/)
  }, 40_000)
})
