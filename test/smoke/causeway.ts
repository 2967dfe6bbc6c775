/**
 * Runs `bin/causeway` as users do (the launcher, hence the bundle): long-running commands as
 * child processes whose output is kept, one-shot commands to completion. Every process started
 * here is killed (by PID) by `stopAll`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { until } from '../until.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const CAUSEWAY = `${ROOT}bin/causeway`

export interface Proc {
  child: ChildProcess
  output: () => string
  /** Resolves with the first match of `re` in the output; throws (with the output) after `ms`. */
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpExecArray>
  stop: () => Promise<number | null>
}

const procs = new Set<ChildProcess>()

export function start (args: string[], env: Record<string, string> = {}, cwd = ROOT): Proc {
  const child = spawn(CAUSEWAY, args, { cwd, env: { ...process.env, CAUSEWAY_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  procs.add(child)
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { procs.delete(child); resolve(code) }))
  return {
    child,
    output: () => out,
    waitFor: async (re, ms = 20_000) => await until(() => {
      if (child.exitCode !== null) throw new Error(`causeway ${args[0]} exited ${child.exitCode}`)
      return re.exec(out) ?? undefined
    }, ms, () => `${re} in the output of causeway ${args.join(' ')}:\n${out.slice(-3000)}`),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const code = await Promise.race([exited, new Promise<'slow'>(resolve => setTimeout(() => resolve('slow'), 10_000))])
      if (code !== 'slow') return code
      child.kill('SIGKILL')
      return await exited
    },
  }
}

export interface RunResult { code: number | null, stdout: string, stderr: string }

/** Runs `causeway ...args` to its end (bounded by `ms`). */
export async function run (args: string[], opts: { env?: Record<string, string>, cwd?: string, ms?: number } = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(CAUSEWAY, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    procs.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.ms ?? 60_000)
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(timer); procs.delete(child); resolve({ code, stdout, stderr }) })
  })
}

export function stopAll (): void {
  for (const c of procs) if (c.pid !== undefined && c.exitCode === null) { try { process.kill(c.pid, 'SIGKILL') } catch { /* gone */ } }
}

export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}
