/**
 * Probe: is one tunnelled connection on a loss-free emulated link held by the CPU? For each link
 * and `--stripe on|off`, one 4 s download through causeway while reading the CPU time of both
 * agent processes (/proc/PID/stat, utime + stime) and of the whole machine (/proc/stat): 200 %
 * is both cores.
 *
 *   scripts/netns-run.sh node bench/wan-cpu-probe.ts      # root; ~1.5 min
 */
import { readFileSync } from 'node:fs'
import { WanLink, wanAvailability, type LinkOptions } from '../scripts/wan/link.ts'
import { CONNECT_PORT, startCauseway, type CausewayOnLink } from '../test/wan/causeway.ts'

const LINKS: LinkOptions[] = [{ rttMs: 20 }, { rttMs: 40, rateMbit: 500 }]
const TICK = 100 // USER_HZ

const procCpu = (pid: number | undefined): number => {
  if (pid === undefined) return NaN
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) / TICK
}
const machine = (): { busy: number, all: number } => {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const all = v.reduce((a, b) => a + b, 0)
  return { busy: all - (v[3] ?? 0) - (v[4] ?? 0), all }
}

async function one (link: WanLink, stripe: 'on' | 'off'): Promise<string> {
  let cw: CausewayOnLink | undefined
  try {
    cw = await startCauseway(link, { extraArgs: ['--stripe', stripe] })
    await new Promise(resolve => setTimeout(resolve, 3000)) // associations up
    const near0 = procCpu(cw.near.child.pid)
    const far0 = procCpu(cw.far.child.pid)
    const m0 = machine()
    const t0 = performance.now()
    const d = await cw.io<{ bytes: number, seconds: number }>('left', ['download', '127.0.0.1', String(CONNECT_PORT), '48', '1', '4000'], 4000)
    const s = (performance.now() - t0) / 1000
    const m1 = machine()
    const pct = (x: number): string => `${Math.round(100 * x / s)} %`
    return `| ${link.describe()} | ${stripe} | ${(d.bytes / (1 << 20) / d.seconds).toFixed(1)} | ${pct(procCpu(cw.near.child.pid) - near0)} | ${pct(procCpu(cw.far.child.pid) - far0)} | ${Math.round(200 * (m1.busy - m0.busy) / (m1.all - m0.all))} % |`
  } finally { await cw?.close() }
}

const available = await wanAvailability()
if (!available.ok) { process.stdout.write(`NOT RUN: ${available.reason}\n`); process.exit(0) }
const rows = ['| link | --stripe | MiB/s | near agent CPU | far agent CPU | machine CPU (of 200 %) |', '|---|---|---|---|---|---|']
for (const l of LINKS) {
  const link = await WanLink.create(l)
  try { for (const s of ['on', 'off'] as const) rows.push(await one(link, s)) } finally { await link.close() }
}
process.stdout.write(`${rows.join('\n')}\n`)
process.exit(0)
