/** Bounded command runs for the namespace labs (NAT lab, WAN link): never throws on failure unless asked. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface ExecResult { code: number, stdout: string, stderr: string }

/** Runs argv (no shell), waits at most `timeoutMs`; a failure is a non-zero `code`, not an exception. */
export async function sh (argv: string[], timeoutMs = 20_000): Promise<ExecResult> {
  const [cmd, ...args] = argv
  if (cmd === undefined) throw new Error('empty command')
  try {
    const r = await run(cmd, args, { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: unknown, stdout?: string, stderr?: string, message?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message ?? '' }
  }
}

/** Like sh, but throws with the command and its stderr when it fails; returns stdout. */
export async function must (argv: string[], timeoutMs?: number): Promise<string> {
  const r = await sh(argv, timeoutMs)
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}
