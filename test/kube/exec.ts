/** Runs a command asynchronously (the API test server lives in the test's own event loop), bounded to 60 s. */
import { spawn } from 'node:child_process'

export interface RunResult { code: number | null, stdout: string, stderr: string }

export async function runCommand (cmd: string, args: string[], env: Record<string, string>, input?: string): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(input)
  })
}
