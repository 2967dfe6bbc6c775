/** Raw data-channel throughput across a WAN link: one process per namespace (bench/wan-dc-peer.ts). */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { EngineName } from '../agent/engine/index.ts'
import type { WanLink } from '../scripts/wan/link.ts'

const PEER = fileURLToPath(new URL('./wan-dc-peer.ts', import.meta.url))
const NODE = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url))

export interface Transfer { bytes: number, seconds: number, complete: boolean }

/** Sends up to `mib` MiB from left to right over one channel (on each of `pcs` peer connections), for at most `seconds` after it opens. */
export async function rawDcTransfer (link: WanLink, engine: EngineName, mib: number, seconds: number, pcs = 1): Promise<Transfer> {
  const start = (side: 'left' | 'right', args: string[]): ChildProcess =>
    spawn('ip', ['netns', 'exec', link.ns(side), NODE, '--disable-warning=ExperimentalWarning', PEER, ...args], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
  const answer = start('right', [engine, 'answer', String(pcs)])
  const offer = start('left', [engine, 'offer', String(mib << 20), String(seconds), String(pcs)])
  let err = ''
  for (const p of [answer, offer]) p.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-2000) })
  try {
    return await new Promise<Transfer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`raw data channel: no result in time ${err}`)), (seconds + 30) * 1000)
      offer.on('message', (m: Record<string, unknown>) => { if (m.open === undefined) answer.send(m) })
      answer.on('message', (m: { result?: { bytes: number, seconds: number } }) => {
        if (m.result !== undefined) { clearTimeout(t); resolve({ ...m.result, complete: m.result.bytes >= mib << 20 }) } else offer.send(m)
      })
      for (const p of [answer, offer]) p.on('exit', (code) => { clearTimeout(t); reject(new Error(`raw data-channel peer exited ${String(code)}: ${err}`)) })
    })
  } finally {
    for (const p of [answer, offer]) { if (p.pid !== undefined && p.exitCode === null) { try { process.kill(p.pid, 'SIGKILL') } catch { /* gone */ } } }
  }
}
