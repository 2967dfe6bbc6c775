/**
 * WAN benchmark: `npm run bench -- wan` (as root; inside scripts/netns-run.sh). For each
 * emulated link (scripts/wan/link.ts: two namespaces joined by a userspace delay line) it
 * measures, left downloading from right:
 * - direct TCP, `ssh -L` and WireGuard (wireguard-go), each with cubic and with bbr in both
 *   namespaces;
 * - one raw data channel of each WebRTC engine (agent/engine, default settings; two processes);
 * - the causeway tunnel (real `bin/causeway` signaling and agents), 1 and 8 concurrent
 *   connections (striped, the default), 1 connection with `--stripe off`, and the relay path
 *   (causeway relay; the right side drops UDP so the agents fall back to it);
 * - request/response round trips (64 bytes each way) on 8 concurrent connections, on an idle
 *   path and right after 8 downloads were cut off mid-transfer (abandoned bytes ahead of new ones).
 * Every transfer is bounded in time (BENCH_WAN_SECONDS, default 4 s): a collapsed path shows
 * as "timeout" with the bytes it moved, and the whole run stays under 10 minutes. Prints one
 * markdown table: rows are paths, columns are links. A baseline cell (direct TCP, ssh -L,
 * WireGuard) without a number is reported (bench/baselines.ts) and fails the run (exit 1).
 * Knobs (env): BENCH_WAN_LINKS=0,3 (only those links), BENCH_WAN_RELAY=all|0,1,3 (links that
 * measure the relay path), BENCH_WAN_STRIPE_OFF=0 (no `--stripe off` row), BENCH_WAN_MIB, BENCH_WAN_SECONDS, BENCH_WAN_RR_MS, BENCH_WAN_BUDGET_S.
 */
import { loadavg } from 'node:os'
import { WanLink, wanAvailability, type CongestionControl, type LinkOptions } from '../scripts/wan/link.ts'
import { CONNECT_PORT, startCauseway, startServer, wanIo, type CausewayOnLink } from '../test/wan/causeway.ts'
import { baselineFailures, failureReport, isFailedCell, reportBaselineFailure } from './baselines.ts'
import { table } from './lib.ts'
import { rawDcTransfer } from './wan-dc.ts'
import { sshOnLink, WG_ADDRS, wireguardOnLink } from './wan-paths.ts'
import { ENGINE_NAMES, ENGINE_PACKAGES } from '../agent/engine/index.ts'

const MIB = Number(process.env.BENCH_WAN_MIB ?? 48)
const SECONDS = Number(process.env.BENCH_WAN_SECONDS ?? 4)
const RR_MS = Number(process.env.BENCH_WAN_RR_MS ?? 1500)
/** The 8 downloads before the "after cut downloads" round trips are cut off after this long, ms. */
const CUT_MS = 1000
/** Stop starting new measurements after this long (the run must end within 10 minutes). */
const BUDGET_MS = Number(process.env.BENCH_WAN_BUDGET_S ?? 540) * 1000

export const WAN_LINKS: LinkOptions[] = [
  { rttMs: 20 },
  { rttMs: 40, rateMbit: 500 },
  { rttMs: 80, rateMbit: 500 },
  { rttMs: 40, rateMbit: 100, lossPct: 0.2 },
  { rttMs: 20, lossPct: 1 },
  { rttMs: 2 },
]

/** Links (indices of WAN_LINKS) that also measure the relay path: ~30 s each to set up. BENCH_WAN_RELAY=all for every link. */
const RELAY_LINKS = process.env.BENCH_WAN_RELAY === 'all' ? undefined : (process.env.BENCH_WAN_RELAY ?? '0,1,3').split(',').map(Number)

const SERVE_PORT = 7002
const SSH_PORT = 7100
const CCS: CongestionControl[] = ['cubic', 'bbr']

interface Download { bytes: number, seconds: number, complete: boolean }
interface RoundTrips { count: number, p50: number, p99: number, stalled: number }

type Row = 'direct' | 'ssh' | 'wg' | 'dc' | 'cw1' | 'cw8' | 'cwoff' | 'relay' | 'rr' | 'rrcut'
/** Also measure one connection between agents started with `--stripe off` (the stream on one association, as before striping). BENCH_WAN_STRIPE_OFF=0 skips it (~15 s a link). */
const STRIPE_OFF_ROW = process.env.BENCH_WAN_STRIPE_OFF !== '0'
const started = Date.now()
const step = (s: string): void => { process.stderr.write(`bench wan [${Math.round((Date.now() - started) / 1000)} s]: ${s}\n`) }
const f = (x: number): string => x >= 100 ? x.toFixed(0) : x.toFixed(1)
const rate = (d: Download): number => (d.bytes / (1 << 20)) / d.seconds
const cell = (d: Download): string => d.complete ? f(rate(d)) : `${f(rate(d))} (timeout, ${(d.bytes / (1 << 20)).toFixed(1)} MiB)`
const rrCell = (r: RoundTrips): string => (r.count === 0 ? 'none' : `${r.p50.toFixed(1)} / ${r.p99.toFixed(1)}`) + (r.stalled > 0 ? ` (${r.stalled} of 8 stalled)` : '')
const ratio = (d: Download, base: Download | undefined): string => base === undefined || rate(base) === 0 ? '' : ` (${(rate(d) / rate(base)).toFixed(2)}x)`
const overBudget = (): boolean => Date.now() - started > BUDGET_MS
/** A failed cell keeps the error's whole first line (bench failures quote it); the table shows its start. */
const failed = (err: unknown): string => `failed: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 400) ?? ''}`
const shown = (v: string): string => v.startsWith('failed: ') && v.length > 68 ? `${v.slice(0, 68)}…` : v
/** The baseline rows (cell keys start with these): a failed cell in one fails the run (bench/run.ts exits 1). */
const BASELINES = ['direct:', 'ssh:', 'wg:']

async function measure<T> (what: string, fn: () => Promise<T>, show: (t: T) => string): Promise<string> {
  if (overBudget()) return 'skipped (time budget)'
  step(what)
  try { return show(await fn()) } catch (err) {
    const msg = err instanceof Error ? err.message : String(err)
    step(`${what} failed: ${msg.slice(0, 500)}`)
    return failed(err)
  }
}

async function download (link: WanLink, host: string, port: number, conns = 1): Promise<Download> {
  return await wanIo<Download>(link, 'left', ['download', host, String(port), String(Math.max(1, Math.floor(MIB / conns))), String(conns), String(SECONDS * 1000)], SECONDS * 1000)
}

async function roundTrips (link: WanLink, host: string, port: number): Promise<RoundTrips> {
  return await wanIo<RoundTrips>(link, 'left', ['rr', host, String(port), '8', String(RR_MS)], RR_MS)
}

/**
 * Round trips right after 8 downloads were cut off mid-transfer (their clients closed at
 * CUT_MS): what a user's interactive session feels after cancelling bulk transfers, i.e. how
 * long the path keeps carrying the abandoned bytes in front of new ones.
 */
async function afterCut (link: WanLink, port: number): Promise<RoundTrips> {
  await wanIo<Download>(link, 'left', ['download', '127.0.0.1', String(port), String(Math.max(1, Math.floor(MIB / 8))), '8', String(CUT_MS)], CUT_MS)
  return await roundTrips(link, '127.0.0.1', port)
}

/** One link: every row's cell for it. */
async function benchLink (opts: LinkOptions, index: number): Promise<Map<string, string>> {
  const cells = new Map<string, string>()
  const set = (row: Row, sub: string, v: string): void => { cells.set(`${row}:${sub}`, v) }
  if (overBudget()) return cells
  const link = await WanLink.create({ ...opts, cc: 'cubic' })
  step(`link ${link.describe()}`)
  // the causeway agents connect while the baselines run (they idle until their rows)
  const direct = startCauseway(link).then(cw => ({ cw }), (err: unknown) => ({ err }))
  try {
    await startServer(link, 'right', SERVE_PORT)
    const right = link.addr('right')
    const ssh = await sshOnLink(link).catch(failed)
    const wg = await wireguardOnLink(link, SERVE_PORT).catch(failed)
    let sshCubic: Download | undefined
    for (const cc of CCS) {
      await link.setCongestionControl('both', cc)
      set('direct', cc, await measure(`direct ${cc}`, async () => await download(link, right, SERVE_PORT), cell))
      if (typeof ssh === 'string') set('ssh', cc, ssh)
      else {
        set('ssh', cc, await measure(`ssh -L ${cc}`, async () => {
          const p = await ssh.forward(SERVE_PORT, SSH_PORT)
          try {
            if (cc === 'cubic') set('rr', 'ssh', await measure('ssh -L round trips', async () => await roundTrips(link, '127.0.0.1', SSH_PORT), rrCell))
            const d = await download(link, '127.0.0.1', SSH_PORT)
            if (cc === 'cubic') {
              sshCubic = d
              set('rrcut', 'ssh', await measure('ssh -L round trips after cut downloads', async () => await afterCut(link, SSH_PORT), rrCell))
            }
            return d
          } finally { await p.kill() }
        }, cell))
      }
      set('wg', cc, typeof wg === 'string' ? wg : await measure(`WireGuard ${cc}`, async () => await download(link, WG_ADDRS.right, SERVE_PORT), cell))
    }
    await link.setCongestionControl('both', 'cubic')
    set('rr', 'direct', await measure('direct round trips', async () => await roundTrips(link, right, SERVE_PORT), rrCell))
    if (typeof ssh !== 'string') await ssh.close()
    if (typeof wg !== 'string') await wg.close()
    for (const engine of ENGINE_NAMES) set('dc', engine, await measure(`raw data channel ${engine}`, async () => await rawDcTransfer(link, engine, MIB, SECONDS), cell))

    if (!overBudget()) {
      step('causeway (direct)')
      let cw: CausewayOnLink | undefined
      try {
        const started = await direct
        if ('err' in started) throw started.err
        cw = started.cw
        set('rr', 'causeway', await measure('causeway round trips', async () => await roundTrips(link, '127.0.0.1', CONNECT_PORT), rrCell))
        set('cw1', '', await measure('causeway 1 conn', async () => await download(link, '127.0.0.1', CONNECT_PORT), d => cell(d) + ratio(d, sshCubic)))
        set('cw8', '', await measure('causeway 8 conns', async () => await download(link, '127.0.0.1', CONNECT_PORT, 8), d => cell(d) + ratio(d, sshCubic)))
        set('rrcut', 'causeway', await measure('causeway round trips after cut downloads', async () => await afterCut(link, CONNECT_PORT), rrCell))
      } catch (err) {
        set('cw1', '', `failed: ${err instanceof Error ? err.message.split('\n')[0]?.slice(0, 60) : String(err)}`)
      } finally { await cw?.close() }
    } else await direct.then(r => 'cw' in r ? r.cw.close() : undefined)
    if (STRIPE_OFF_ROW && !overBudget()) {
      step('causeway (--stripe off)')
      let cw: CausewayOnLink | undefined
      try {
        cw = await startCauseway(link, { extraArgs: ['--stripe', 'off'] })
        set('cwoff', '', await measure('causeway 1 conn, --stripe off', async () => await download(link, '127.0.0.1', CONNECT_PORT), d => cell(d) + ratio(d, sshCubic)))
      } catch (err) {
        set('cwoff', '', failed(err))
      } finally { await cw?.close() }
    }
    if (RELAY_LINKS !== undefined && !RELAY_LINKS.includes(index)) set('relay', '', 'not measured (BENCH_WAN_RELAY)')
    else if (!overBudget()) {
      step('causeway (relay)')
      let cw: CausewayOnLink | undefined
      try {
        cw = await startCauseway(link, { relay: true })
        set('relay', '', await measure('causeway relay 1 conn', async () => await download(link, '127.0.0.1', CONNECT_PORT), d => cell(d) + ratio(d, sshCubic)))
      } catch (err) {
        set('relay', '', `failed: ${err instanceof Error ? err.message.split('\n')[0]?.slice(0, 60) : String(err)}`)
      } finally { await cw?.close() }
    }
  } finally {
    await direct.then(r => 'cw' in r ? r.cw.close() : undefined)
    await link.close()
  }
  return cells
}

export async function wanBench (): Promise<string> {
  const available = await wanAvailability()
  if (!available.ok) return `WAN bench NOT RUN: ${available.reason}`
  const load0 = loadavg()
  const links: string[] = []
  const results: Array<Map<string, string>> = []
  // BENCH_WAN_LINKS=0,3 runs only those links of WAN_LINKS (by index)
  const pick = process.env.BENCH_WAN_LINKS?.split(',').map(Number)
  for (const [index, opts] of WAN_LINKS.entries()) {
    if (pick !== undefined && !pick.includes(index)) continue
    const o = { rateMbit: 0, lossPct: 0, ...opts }
    links.push(`${o.rttMs} ms${o.rateMbit > 0 ? `, ${o.rateMbit} Mbit/s` : ''}${o.lossPct > 0 ? `, ${o.lossPct} % loss` : ''}`)
    results.push(overBudget() ? new Map() : await benchLink(opts, index))
  }
  const load1 = loadavg()
  const rows: Array<[string, string]> = [
    ['direct TCP, cubic', 'direct:cubic'], ['direct TCP, bbr', 'direct:bbr'],
    ['ssh -L, cubic', 'ssh:cubic'], ['ssh -L, bbr', 'ssh:bbr'],
    ['WireGuard (wireguard-go), cubic', 'wg:cubic'], ['WireGuard (wireguard-go), bbr', 'wg:bbr'],
    ...ENGINE_NAMES.map((e): [string, string] => [`raw data channel, ${ENGINE_PACKAGES[e]}`, `dc:${e}`]),
    ['causeway (--engine auto), 1 conn (x ssh -L cubic)', 'cw1:'], ['causeway (--engine auto), 8 conns (x ssh -L cubic)', 'cw8:'],
    ['causeway, 1 conn, --stripe off (x ssh -L cubic)', 'cwoff:'],
    ['causeway relay path, 1 conn (x ssh -L cubic)', 'relay:'],
    ['round trips p50 / p99 ms, 8 conns: direct', 'rr:direct'], ['… ssh -L', 'rr:ssh'], ['… causeway', 'rr:causeway'],
    [`… ssh -L, right after 8 downloads cut at ${CUT_MS / 1000} s`, 'rrcut:ssh'], [`… causeway, right after 8 downloads cut at ${CUT_MS / 1000} s`, 'rrcut:causeway'],
  ]
  const head = ['MiB/s (left downloads from right)', ...links]
  const body = rows.map(([label, key]) => [label, ...results.map(r => r.get(key) ?? (overBudget() ? 'skipped (time budget)' : 'not run'))])
  for (const [r, [label, key]] of rows.entries()) {
    if (!BASELINES.some(b => key.startsWith(b))) continue
    body[r]!.slice(1).forEach((v, c) => { if (isFailedCell(v)) reportBaselineFailure({ bench: 'wan', row: label, column: links[c]!, reason: v }) })
  }
  return [
    `Links: emulated (scripts/wan/link.ts), the same RTT / rate / random loss in both directions, drop-tail queue of one`,
    `bandwidth-delay product (at least 64 KiB) where rate-limited. Each cell: one download of up to ${MIB} MiB`,
    `(8 conns: ${MIB / 8} MiB each), bounded at ${SECONDS} s; "timeout" = the bound hit, with the bytes moved. causeway`,
    `rows run with cubic in both namespaces (only the relay path's TCP uses it). Round trips: 64-byte request/response`,
    `for ${RR_MS / 1000} s on each of 8 connections (idle path, and right after 8 downloads were cut off at ${CUT_MS / 1000} s;`,
    `"stalled": no answer within 5 s after the measurement). Load average ${load0.map(x => x.toFixed(2)).join(' ')} at the start,`,
    `${load1.map(x => x.toFixed(2)).join(' ')} at the end; ${Math.round((Date.now() - started) / 1000)} s in all.`,
    '', table([head, ...body.map(cells => cells.map(shown))]),
  ].join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  wanBench().then(t => {
    process.stdout.write(`${t}\n`)
    if (baselineFailures().length > 0) process.stdout.write(`\n${failureReport(baselineFailures())}\n`)
    process.exit(baselineFailures().length > 0 ? 1 : 0)
  }, (err: unknown) => { process.stderr.write(`${String(err instanceof Error ? err.stack : err)}\n`); process.exit(1) })
}
