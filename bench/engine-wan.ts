/**
 * Engine comparison across an emulated WAN link (scripts/wan/link.ts): one 32 MiB download
 * direct TCP (cubic), then through a causeway tunnel with `--engine wrtc` and with
 * `--engine datachannel`, at each RTT. Prints one table.
 *
 *   scripts/netns-run.sh node bench/engine-wan.ts [RTT_MS...]   (default 20 40; root)
 */
import { WanLink } from '../scripts/wan/link.ts'
import { startCauseway, wanIo, CONNECT_PORT, SERVER_PORT } from '../test/wan/causeway.ts'

const MIB = Number(process.env.BENCH_MIB ?? 32)
const RATE = Number(process.env.BENCH_MBIT ?? 0)
const rtts = process.argv.slice(2).map(Number).filter(n => n > 0)
interface Dl { bytes: number, seconds: number, complete: boolean }
const rows: string[] = ['| RTT ms | Mbit/s | path | MiB/s |', '|---|---|---|---|']
for (const rttMs of rtts.length > 0 ? rtts : [20, 40]) {
  const link = await WanLink.create({ rttMs, ...(RATE > 0 ? { rateMbit: RATE } : {}), cc: 'cubic' })
  try {
    const rate = (d: Dl): string => d.complete ? (d.bytes / (1 << 20) / d.seconds).toFixed(1) : `incomplete (${(d.bytes / (1 << 20)).toFixed(0)} MiB in ${d.seconds.toFixed(0)} s)`
    for (const engine of (process.env.BENCH_ENGINES ?? 'wrtc,datachannel').split(',')) {
      // startCauseway also starts the server on the right (port SERVER_PORT)
      const cw = await startCauseway(link, { extraArgs: ['--engine', engine] })
      try {
        if (process.env.BENCH_DIRECT !== '0' && engine === 'wrtc') {
          const direct = await wanIo<Dl>(link, 'left', ['download', link.addr('right'), String(SERVER_PORT), String(MIB), '1', '60000'], 60_000)
          rows.push(`| ${rttMs} | ${RATE || 'no limit'} | direct TCP (cubic) | ${rate(direct)} |`)
        }
        const d = await wanIo<Dl>(link, 'left', ['download', '127.0.0.1', String(CONNECT_PORT), String(MIB), '1', '60000'], 60_000)
        rows.push(`| ${rttMs} | ${RATE || 'no limit'} | causeway tunnel, --engine ${engine} | ${rate(d)} |`)
      } finally { await cw.close() }
    }
  } finally { await link.close() }
  process.stderr.write(`${rows.join('\n')}\n`)
}
process.stdout.write(`${rows.join('\n')}\n`)
process.exit(0)
