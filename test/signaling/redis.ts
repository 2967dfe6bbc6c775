/**
 * A real Debian `redis-server` for the tests, started by the test itself on a free loopback
 * port (no persistence), never a machine-wide service; stopped by its PID. `stop` and `start`
 * take it away and bring it back on the same port (an empty Redis, as after a crash).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onPath, prerequisite } from '../prereq.ts'
import { until } from '../until.ts'
import { freePort } from './servers.ts'

export interface RedisServer {
  port: number
  url: string
  pid: () => number | undefined
  /** SIGKILL by PID (or SIGTERM with `graceful`), and wait for the exit. */
  stop: (graceful?: boolean) => Promise<void>
  /** Starts it again on the same port. */
  start: () => Promise<void>
  output: () => string
  close: () => Promise<void>
}

/** Whether redis-server is installed (under CI=true a missing one fails the run). */
export const haveRedis = (): boolean => prerequisite('redis-server (scripts/setup-system.sh)', onPath('redis-server'))

export async function startRedis (): Promise<RedisServer> {
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'causeway-redis-'))
  let child: ChildProcess | undefined
  let out = ''
  const launch = async (): Promise<void> => {
    out = ''
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = c
    c.stdout?.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-20_000) })
    c.stderr?.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-20_000) })
    await until(() => {
      if (c.exitCode !== null) throw new Error(`redis-server exited ${c.exitCode}: ${out}`)
      return out.includes('Ready to accept connections')
    }, 10_000, () => `redis-server on port ${port}:\n${out}`, 20)
  }
  const stop = async (graceful = false): Promise<void> => {
    const c = child
    if (c === undefined || c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise<void>(resolve => c.once('exit', () => resolve()))
    process.kill(c.pid, graceful ? 'SIGTERM' : 'SIGKILL')
    await exited
  }
  await launch()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => child?.pid,
    stop,
    start: launch,
    output: () => out,
    close: async () => {
      await stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
