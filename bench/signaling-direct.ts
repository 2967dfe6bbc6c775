/**
 * Finds the address of the workerd that runs the Worker itself under `wrangler dev`, behind
 * wrangler's own dev proxy (a second workerd on the public port). Benchmark only: lets the
 * bench measure the Worker without the extra local hop that a deployment does not have.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

function parentOf (pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch { return undefined }
}

function descendants (root: number): Set<number> {
  const all = readdirSync('/proc').filter(d => /^\d+$/.test(d)).map(Number)
  const found = new Set<number>([root])
  for (let round = 0; round < 8; round++) {
    for (const pid of all) {
      const parent = parentOf(pid)
      if (parent !== undefined && found.has(parent)) found.add(pid)
    }
  }
  return found
}

/** http://127.0.0.1:PORT of the Worker's own workerd, or undefined when it cannot be found. */
export async function directWorkerdUrl (wranglerPid: number, proxyPort: number): Promise<string | undefined> {
  const pids = descendants(wranglerPid)
  let listing: string
  try { listing = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8', timeout: 5000 }) } catch { return undefined }
  const ports: number[] = []
  for (const line of listing.split('\n')) {
    const m = /127\.0\.0\.1:(\d+)\s.*"workerd",pid=(\d+)/.exec(line)
    if (m === null) continue
    const port = Number(m[1])
    if (pids.has(Number(m[2])) && port !== proxyPort) ports.push(port)
  }
  for (const port of ports) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) })
      const body = await res.text()
      if (res.ok && body.includes('"protocol"')) return `http://127.0.0.1:${port}`
    } catch { /* not the entry socket */ }
  }
  return undefined
}
