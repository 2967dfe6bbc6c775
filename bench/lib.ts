/** Shared helpers of the benchmarks: byte sources and sinks, timing, tables, processes. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import type { AddressInfo } from 'node:net'
import { until } from '../test/until.ts'

export const BLOCK = Buffer.alloc(1 << 20, 0x5a)

/** A TCP server that sends `mib` MiB to every client (first byte at once), then closes. */
export async function sourceServer (mib: number): Promise<{ server: Server, port: number }> {
  const server = createServer((s) => {
    let sent = 0
    s.on('error', () => {})
    s.setNoDelay(true)
    const pump = (): void => {
      while (sent < mib) { sent++; if (!s.write(BLOCK)) { s.once('drain', pump); return } }
      s.end()
    }
    pump()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

/** A TCP server that answers one byte immediately and then holds the connection. */
export async function pingServer (): Promise<{ server: Server, port: number }> {
  const server = createServer((s) => { s.on('error', () => {}); s.setNoDelay(true); s.write('!') })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

/** Downloads everything from host:port; returns bytes and seconds. */
export async function download (port: number, timeoutMs = 120_000): Promise<{ bytes: number, seconds: number }> {
  const t0 = performance.now()
  return await new Promise((resolve, reject) => {
    let bytes = 0
    const s = connect({ host: '127.0.0.1', port })
    const t = setTimeout(() => { s.destroy(); reject(new Error(`download from port ${port} timed out after ${bytes} bytes`)) }, timeoutMs)
    s.on('data', (d: Buffer) => { bytes += d.length })
    s.on('end', () => { clearTimeout(t); s.destroy(); resolve({ bytes, seconds: (performance.now() - t0) / 1000 }) })
    s.on('error', (e) => { clearTimeout(t); reject(e) })
  })
}

/** Time from connect() to the first byte, ms. */
export async function firstByte (port: number, timeoutMs = 10_000): Promise<number> {
  const t0 = performance.now()
  return await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port })
    s.setNoDelay(true)
    const t = setTimeout(() => { s.destroy(); reject(new Error('no first byte')) }, timeoutMs)
    s.once('data', () => { clearTimeout(t); const ms = performance.now() - t0; s.destroy(); resolve(ms) })
    s.on('error', (e) => { clearTimeout(t); reject(e) })
  })
}

export function percentile (values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN
}

export function table (rows: Array<Array<string | number>>): string {
  const cells = rows.map(r => r.map(String))
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map(r => (r[i] ?? '').length)))
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`
  return [line(cells[0]!), `|${widths.map(w => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n')
}

export function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] !== undefined ? Number(m[1]) / 1024 : NaN
}

/** Starts a child process and kills it (by PID) on cleanup. */
export function child (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  p.stderr?.on('data', () => {})
  children.add(p)
  p.on('exit', () => children.delete(p))
  return p
}

const children = new Set<ChildProcess>()
export function killChildren (): void {
  for (const p of children) { try { if (p.pid !== undefined) process.kill(p.pid, 'SIGKILL') } catch { /* gone */ } }
}
process.on('exit', killChildren)

/** test/until.ts's `until`, polling every 100 ms. */
export async function waitFor (cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  await until(cond, ms, what, 100)
}

export async function sleep (ms: number): Promise<void> { await new Promise(resolve => setTimeout(resolve, ms)) }
