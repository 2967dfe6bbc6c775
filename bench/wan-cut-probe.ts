/**
 * Probe: where the bytes of cancelled downloads wait (the WAN bench's "round trips right after
 * 8 downloads cut at 1 s" row). On an emulated lossy link, 8 downloads through causeway are cut
 * off after 1 s; from the cut on, every 250 ms, it reads how many bytes the link still carries
 * from the right (exporting) agent to the left, and how many the right agent's tunnels still
 * hand to their channels (`causeway_agent_bytes_out_total`). Bytes on the link that the agent no
 * longer hands down were queued below it when the streams were reset: in the associations'
 * send buffers (usrsctp), beyond the agent's per-association send budget. Round trips started
 * right at the cut show how long a new stream waits behind them.
 *
 *   scripts/netns-run.sh node bench/wan-cut-probe.ts      # root; ~1 min
 */
import { WanLink, wanAvailability, type LinkOptions } from '../scripts/wan/link.ts'
import { CONNECT_PORT, startCauseway, type CausewayOnLink } from '../test/wan/causeway.ts'

const LINKS: LinkOptions[] = [{ rttMs: 40, rateMbit: 100, lossPct: 0.2 }, { rttMs: 20, lossPct: 1 }]
const MiB = 1 << 20

async function bytesOut (link: WanLink): Promise<number> {
  const r = await link.exec('right', ['curl', '-s', '-m', '2', 'http://127.0.0.1:7777/metrics'], 5000)
  return Number(/^causeway_agent_bytes_out_total (\d+)/m.exec(r.stdout)?.[1] ?? NaN)
}

async function probe (opts: LinkOptions): Promise<string> {
  const link = await WanLink.create(opts)
  let cw: CausewayOnLink | undefined
  try {
    cw = await startCauseway(link)
    // warm the associations up (every one carries a stream once)
    await cw.io('left', ['download', '127.0.0.1', String(CONNECT_PORT), '1', '8', '4000'], 4000)
    await new Promise(resolve => setTimeout(resolve, 2000))
    await cw.io('left', ['download', '127.0.0.1', String(CONNECT_PORT), '6', '8', '1000'], 1000)
    const t0 = performance.now()
    const link0 = (await link.stats()).ba.bytes
    const out0 = await bytesOut(link)
    const rr = cw.io<{ count: number, p50: number, p99: number, stalled: number }>('left', ['rr', '127.0.0.1', String(CONNECT_PORT), '8', '4000'], 4000)
    const rows: string[] = []
    for (let i = 0; i < 24; i++) {
      await new Promise(resolve => setTimeout(resolve, 250))
      const l = (await link.stats()).ba.bytes - link0
      const o = await bytesOut(link) - out0
      rows.push(`| ${((performance.now() - t0) / 1000).toFixed(2)} | ${(l / MiB).toFixed(2)} | ${(o / MiB).toFixed(2)} |`)
    }
    const r = await rr
    return [`${link.describe()}: round trips from the cut for 4 s: ${r.count} answered, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, ${r.stalled} of 8 stalled`, '',
      '| s after the cut | MiB the link carried right → left since | MiB the right agent handed to its channels since |', '|---|---|---|', ...rows].join('\n')
  } finally {
    await cw?.close()
    await link.close()
  }
}

const available = await wanAvailability()
if (!available.ok) { process.stdout.write(`NOT RUN: ${available.reason}\n`); process.exit(0) }
for (const l of LINKS) process.stdout.write(`${await probe(l)}\n\n`)
process.exit(0)
