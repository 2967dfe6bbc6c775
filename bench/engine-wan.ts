/**
 * Focused data-plane bench on one emulated WAN link at a time (scripts/wan/link.ts): the
 * `ssh -L` (cubic) baseline, then the causeway tunnel with 1 and 8 concurrent connections for
 * each engine / agent setting under test. Made for short, single-profile runs while tuning
 * (the whole matrix is `npm run bench -- wan`). Prints one table with the load average.
 *
 *   scripts/netns-run.sh node bench/engine-wan.ts [RTT_MS...]   (default 20 40; root)
 *
 * Env: BENCH_MBIT (rate limit, 0 = none), BENCH_LOSS (random loss %), BENCH_QUEUE_KB (queue;
 * default one BDP), BENCH_MIB (per download, default 48), BENCH_SECONDS (bound, default 6),
 * BENCH_ENGINES (default datachannel), BENCH_CONNS (default 1,8), BENCH_SSH=0 (skip ssh -L),
 * BENCH_RAW_PCS=1,4 (also the raw data channel, no causeway code, over that many peer
 * connections between the same two processes; the variants' env applies to it too),
 * BENCH_VARIANTS: `;`-separated agent settings to compare, each `label=ENV=V,ENV=V` (the ENV go
 * to both agents, e.g. CAUSEWAY_SCTP_SETTINGS or CAUSEWAY_ASSOCIATIONS).
 *
 * The "drops" column says where packets were lost during the row's transfer (bench/wan-drops.ts).
 */
import { loadavg } from 'node:os'
import { WanLink } from '../scripts/wan/link.ts'
import { startCauseway, startServer, wanIo, CONNECT_PORT, type CausewayOnLink } from '../test/wan/causeway.ts'
import { sshOnLink } from './wan-paths.ts'
import { rawDcTransfer } from './wan-dc.ts'
import { withDrops } from './wan-drops.ts'
import type { EngineName } from '../agent/engine/index.ts'

const MIB = Number(process.env.BENCH_MIB ?? 48)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6)
const RATE = Number(process.env.BENCH_MBIT ?? 0)
const LOSS = Number(process.env.BENCH_LOSS ?? 0)
const QUEUE_KB = Number(process.env.BENCH_QUEUE_KB ?? 0)
const CONNS = (process.env.BENCH_CONNS ?? '1,8').split(',').filter(x => x !== '').map(Number)
const SERVE_PORT = 7002
const SSH_PORT = 7100
interface Dl { bytes: number, seconds: number, complete: boolean }

/** `label=K=V,K=V;label2=...` -> variants (env for both agents). */
function variants (): Array<{ label: string, env: Record<string, string> }> {
  const spec = process.env.BENCH_VARIANTS
  if (spec === undefined || spec === '') return [{ label: 'default', env: {} }]
  return spec.split(';').map((v) => {
    const [label = '', ...rest] = v.split('=')
    const env: Record<string, string> = {}
    // values may hold JSON with commas: split only on ",NAME=" boundaries
    for (const kv of rest.join('=').split(/,(?=[A-Z_]+=)/)) {
      const i = kv.indexOf('=')
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1)
    }
    return { label, env }
  })
}

const rate = (d: Dl): string => {
  const r = (d.bytes / (1 << 20) / d.seconds).toFixed(1)
  return d.complete ? r : `${r} (bound hit, ${(d.bytes / (1 << 20)).toFixed(0)} MiB)`
}
const download = async (link: WanLink, host: string, port: number, conns: number): Promise<Dl> =>
  await wanIo<Dl>(link, 'left', ['download', host, String(port), String(Math.max(1, Math.floor(MIB / conns))), String(conns), String(SECONDS * 1000)], SECONDS * 1000 + 30_000)

const rtts = process.argv.slice(2).map(Number).filter(n => n > 0)
const load0 = loadavg()
const rows: string[] = ['| link | path | conns | MiB/s | x ssh -L | drops |', '|---|---|---|---|---|---|']
for (const rttMs of rtts.length > 0 ? rtts : [20, 40]) {
  const link = await WanLink.create({ rttMs, ...(RATE > 0 ? { rateMbit: RATE } : {}), ...(LOSS > 0 ? { lossPct: LOSS } : {}), ...(QUEUE_KB > 0 ? { queueBytes: QUEUE_KB * 1024 } : {}), cc: 'cubic' })
  const name = link.describe()
  let base = 0
  try {
    if (process.env.BENCH_SSH !== '0') {
      const server = await startServer(link, 'right', SERVE_PORT)
      const ssh = await sshOnLink(link)
      if (typeof ssh === 'string') rows.push(`| ${name} | ssh -L (cubic) | 1 | ${ssh} | | |`)
      else {
        const fwd = await ssh.forward(SERVE_PORT, SSH_PORT)
        try {
          const [d, dropped] = await withDrops(link, async () => await download(link, '127.0.0.1', SSH_PORT, 1))
          base = d.bytes / d.seconds
          rows.push(`| ${name} | ssh -L (cubic) | 1 | ${rate(d)} | 1.00 | ${dropped} |`)
        } finally { await fwd.kill(); await ssh.close() }
      }
      await server.kill()
    }
    for (const engine of (process.env.BENCH_ENGINES ?? 'datachannel').split(',')) {
      for (const v of variants()) {
        for (const pcs of (process.env.BENCH_RAW_PCS ?? '').split(',').filter(x => x !== '').map(Number)) {
          const saved = { ...process.env }
          Object.assign(process.env, v.env)
          try {
            const [d, dropped] = await withDrops(link, async () => await rawDcTransfer(link, engine as EngineName, MIB, SECONDS, pcs))
            rows.push(`| ${name} | raw data channel ${engine} ${v.label}, ${pcs} peer connection(s) | ${pcs} | ${rate(d)} | ${base > 0 ? (d.bytes / d.seconds / base).toFixed(2) : ''} | ${dropped} |`)
          } finally { process.env = saved }
          process.stderr.write(`${rows.at(-1) ?? ''}\n`)
        }
        if (process.env.BENCH_CONNS === '') continue
        // startCauseway also starts the server on the right (port SERVER_PORT)
        let cw: CausewayOnLink | undefined
        const saved = { ...process.env }
        Object.assign(process.env, v.env)
        try {
          cw = await startCauseway(link, { extraArgs: ['--engine', engine] })
        } finally { process.env = saved }
        try {
          for (const conns of CONNS) {
            const [d, dropped] = await withDrops(link, async () => await download(link, '127.0.0.1', CONNECT_PORT, conns))
            rows.push(`| ${name} | causeway --engine ${engine} ${v.label} | ${conns} | ${rate(d)} | ${base > 0 ? (d.bytes / d.seconds / base).toFixed(2) : ''} | ${dropped} |`)
          }
        } finally { await cw.close() }
        process.stderr.write(`${rows.at(-1) ?? ''}\n`)
      }
    }
  } finally { await link.close() }
}
const load1 = loadavg()
process.stdout.write(`load average ${load0.map(x => x.toFixed(2)).join(' ')} at the start, ${load1.map(x => x.toFixed(2)).join(' ')} at the end\n${rows.join('\n')}\n`)
process.exit(0)
