/** Helpers for the relay tests: byte pumping with backpressure, hashing, relay processes. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Stream } from '@libp2p/interface'
import { until as waitFor } from '../until.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const NODE = `${ROOT}node_modules/.bin/node`

/** Writes `data` in 64 KiB chunks honouring backpressure, then half-closes. */
export async function sendAll (stream: Stream, data: Uint8Array, signal: AbortSignal): Promise<void> {
  const chunk = 64 * 1024
  for (let at = 0; at < data.byteLength; at += chunk) {
    if (!stream.send(data.subarray(at, at + chunk))) await stream.onDrain({ signal })
  }
  await stream.close({ signal })
}

/** Reads a stream to its end; returns the SHA-256 (hex) and byte count. */
export async function hashAll (stream: Stream): Promise<{ hash: string, bytes: number }> {
  const h = createHash('sha256')
  let bytes = 0
  for await (const chunk of stream) {
    const b = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    h.update(b)
    bytes += b.byteLength
  }
  return { hash: h.digest('hex'), bytes }
}

export function sha256 (data: Uint8Array): string { return createHash('sha256').update(data).digest('hex') }
export function randomData (bytes: number): Uint8Array { return new Uint8Array(randomBytes(bytes)) }

export interface RelayProcess { child: ChildProcess, addrs: string[], stdout: () => string, stop: () => Promise<void> }

/** Starts `causeway relay` as a child process and waits (bounded) for its addresses. */
export async function spawnRelay (args: string[], timeoutMs = 15_000): Promise<RelayProcess> {
  const child = spawn(`${ROOT}bin/causeway`, ['relay', ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAUSEWAY_LOG_LEVEL: 'warn' },
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { err += b.toString() })
  const deadline = Date.now() + timeoutMs
  while (!/relay listening on/.test(out)) {
    if (child.exitCode !== null) throw new Error(`relay exited ${child.exitCode}: ${err}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`relay did not start: ${err}`) }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  await new Promise(resolve => setTimeout(resolve, 50))
  const addrs = [...out.matchAll(/relay listening on (\S+)/g)].map(m => m[1] ?? '')
  return {
    child,
    addrs,
    stdout: () => out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGKILL')
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
    },
  }
}

/** test/until.ts's `until`, returning the elapsed ms. */
export async function until (cond: () => boolean, ms: number, what: string): Promise<number> {
  const start = Date.now()
  await waitFor(cond, ms, what)
  return Date.now() - start
}
