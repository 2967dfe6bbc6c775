import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { connect, createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { encodeToken, newSecret } from '../../protocol/token.ts'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling } from '../../signaling/node/server.ts'
import { listen, log, until } from './harness.ts'

const CAUSEWAY = fileURLToPath(new URL('../../bin/causeway', import.meta.url))
const procs: ChildProcess[] = []

const stderr: string[] = []

function agent (args: string[]): ChildProcess {
  const p = spawn(CAUSEWAY, ['agent', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CAUSEWAY_LOG_LEVEL: 'info' } })
  const name = args[args.indexOf('--name') + 1] ?? '?'
  p.stderr?.setEncoding('utf8').on('data', (d: string) => { for (const l of d.split('\n')) if (l !== '') { stderr.push(`${name}: ${l}`); if (stderr.length > 200) stderr.shift() } })
  procs.push(p)
  return p
}

/** The agents' logs, for a failure message. */
const logs = (): string => `\n${stderr.slice(-80).join('\n')}`

async function status (port: number): Promise<{ peers: Array<{ name: string, state: string }> } | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(1000) })
    return await r.json() as { peers: Array<{ name: string, state: string }> }
  } catch { return undefined }
}

async function freePort (): Promise<number> {
  const s = createServer()
  const port = await listen(s)
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

describe('causeway agent process', () => {
  afterAll(() => { for (const p of procs) if (p.exitCode === null && p.pid !== undefined) process.kill(p.pid, 'SIGKILL') })

  it('on SIGTERM lets a running transfer finish, then exits 0', { timeout: 90_000 }, async () => {
    const block = Buffer.alloc(1 << 20, 3)
    const src = createServer((s) => {
      let n = 0
      const t = setInterval(() => { if (n++ >= 16) { clearInterval(t); s.end() } else s.write(block) }, 125) // 16 MiB over ~2 s
      s.on('close', () => clearInterval(t))
      s.on('error', () => {})
    })
    const srcPort = await listen(src)
    const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}), log })
    const token = encodeToken({ kind: 'member', signaling: signaling.url, secret: newSecret() })
    const [sa, sb, lp] = [await freePort(), await freePort(), await freePort()]
    const exporter = agent(['--token', token, '--name', 'exp', '--status', `127.0.0.1:${sa}`, '--drain', '30000', '--share', `src=127.0.0.1:${srcPort}`])
    agent(['--token', token, '--name', 'imp', '--status', `127.0.0.1:${sb}`, '--connect', `src@exp=127.0.0.1:${lp}`])
    await until(async () => (await status(sb))?.peers.some(p => p.name === 'exp' && p.state === 'connected') ?? false, 30_000, 'agents connected')
    const got = await new Promise<{ bytes: number, hash: string, exitedBefore: boolean }>((resolve, reject) => {
      const h = createHash('sha256')
      let bytes = 0
      const s = connect({ host: '127.0.0.1', port: lp })
      const t = setTimeout(() => reject(new Error(`transfer timed out after ${bytes} bytes${logs()}`)), 45_000)
      s.on('data', (d: Buffer) => {
        if (bytes === 0) exporter.kill('SIGTERM') // stop the exporting agent mid-transfer
        bytes += d.length
        h.update(d)
      })
      s.on('end', () => { clearTimeout(t); resolve({ bytes, hash: h.digest('hex'), exitedBefore: exporter.exitCode !== null }) })
      s.on('error', (e) => { clearTimeout(t); reject(new Error(`${e.message} after ${bytes} bytes${logs()}`)) })
    })
    expect(got.bytes).toBe(16 << 20)
    expect(got.exitedBefore).toBe(false)
    const code = await new Promise<number | null>((resolve) => { if (exporter.exitCode !== null) resolve(exporter.exitCode); else exporter.once('exit', (c) => resolve(c)) })
    expect(code).toBe(0)
    // a new connection is refused now: the exporter is gone
    await until(async () => !((await status(sb))?.peers.some(p => p.name === 'exp' && p.state === 'connected') ?? true), 20_000, 'importer to notice')
    await signaling.close()
    src.close()
  })
})
