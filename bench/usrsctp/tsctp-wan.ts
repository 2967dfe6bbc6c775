/**
 * Bench diagnostic: usrsctp alone (its own `tsctp` throughput program over UDP encapsulation, no
 * DTLS, no Node) across an emulated WAN link, stock against patched, with libdatachannel's SCTP
 * settings (tsctp-libdatachannel.patch). Answers whether a usrsctp change moves the
 * one-association ceiling before anyone rebuilds node-datachannel with it. The patch under test
 * is t3-restart.patch: the SACK fast path (sctp_express_handle_sack) restarts the T3 timer when
 * the cumulative ack moves, as the slow path (sctp_handle_sack) and RFC 4960 6.3.2 R3 do.
 *
 *   USRSCTP_SRC=/path/to/usrsctp scripts/netns-run.sh node bench/usrsctp/tsctp-wan.ts [RTT_MS...]
 *
 * USRSCTP_SRC: a checkout of github.com/sctplab/usrsctp at the commit libdatachannel 0.24.5
 * pins (fec583d, the one in node-datachannel 0.33.4; the patches apply to it). Root (namespaces).
 * Env: BENCH_MBIT (default 500), BENCH_SECONDS (client sends for, default 6), BENCH_RUNS
 * (per variant, default 3). Builds with gcc into node_modules/.cache/causeway-tsctp.
 */
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WanLink } from '../../scripts/wan/link.ts'
import { withDrops } from '../wan-drops.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const HERE = fileURLToPath(new URL('./', import.meta.url))
const SRC = process.env.USRSCTP_SRC
const RATE = Number(process.env.BENCH_MBIT ?? 500)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const DEFINES = ['-D__Userspace__', '-DSCTP_SIMPLE_ALLOCATOR', '-DSCTP_PROCESS_LEVEL_LOCKS', '-D_GNU_SOURCE', '-DINET', '-DHAVE_SYS_QUEUE_H', '-DHAVE_STDATOMIC_H', '-DHAVE_LINUX_IF_ADDR_H', '-DHAVE_LINUX_RTNETLINK_H', '-DHAVE_NETINET_IP_ICMP_H']

/** Copies the usrsctp tree, applies the patches, compiles tsctp; returns the binary. */
function build (variant: string, patches: string[]): string {
  const dir = join(ROOT, 'node_modules/.cache/causeway-tsctp', variant)
  const bin = join(dir, 'tsctp')
  if (existsSync(bin)) return bin
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  cpSync(join(SRC!, 'usrsctplib'), join(dir, 'usrsctplib'), { recursive: true })
  cpSync(join(SRC!, 'programs'), join(dir, 'programs'), { recursive: true })
  for (const p of patches) execFileSync('patch', ['-p1', '-s', '-i', join(HERE, p)], { cwd: dir, stdio: 'inherit' })
  const lib = execFileSync('find', ['usrsctplib', '-name', '*.c'], { cwd: dir }).toString().trim().split('\n')
  execFileSync('gcc', ['-O2', '-pthread', ...DEFINES, '-Iusrsctplib', '-o', 'tsctp', 'programs/tsctp.c', 'programs/programs_helper.c', ...lib], { cwd: dir, stdio: 'inherit' })
  return bin
}

interface Run { mibs: number, t3: number, fast: number, drops: string }

async function once (link: WanLink, bin: string): Promise<Run | string> {
  const server = link.spawn('right', [bin, '-D', '-S', String(1 << 20), '-R', String(4 << 20)])
  try {
    await new Promise(resolve => setTimeout(resolve, 500))
    const [out, dropped] = await withDrops(link, async () => {
      const client = link.spawn('left', [bin, '-D', '-S', String(1 << 20), '-l', '65536', '-T', String(SECONDS), '-U', '9899', link.addr('right')])
      const done = await Promise.race([client.exited(), new Promise<'timeout'>(resolve => setTimeout(() => resolve('timeout'), (SECONDS + 30) * 1000))])
      if (done === 'timeout') { await client.kill(); return 'timeout' }
      return client.output()
    })
    if (out === 'timeout') return out
    const tp = /Throughput was ([\d.]+) Byte\/sec/.exec(out)
    const st = /stats t3 (\d+) fastretrans (\d+)/.exec(out)
    if (tp === null || st === null) return `no result: ${out.slice(-300)}`
    return { mibs: Number(tp[1]) / (1 << 20), t3: Number(st[1]), fast: Number(st[2]), drops: dropped }
  } finally { await server.kill() }
}

if (SRC === undefined || !existsSync(join(SRC, 'usrsctplib/netinet/sctp_indata.c'))) {
  process.stderr.write('USRSCTP_SRC must point at a usrsctp checkout (fec583d)\n')
  process.exit(2)
}
const variants = [
  { label: 'usrsctp fec583d (as in node-datachannel 0.33.4)', bin: build('stock', ['tsctp-libdatachannel.patch']) },
  { label: 'usrsctp fec583d + t3-restart.patch', bin: build('t3-restart', ['tsctp-libdatachannel.patch', 't3-restart.patch']) },
]
const rows = ['| link | usrsctp | MiB/s per run | T3 expiries | fast retransmits | drops |', '|---|---|---|---|---|---|']
const rtts = process.argv.slice(2).map(Number).filter(n => n > 0)
for (const rttMs of rtts.length > 0 ? rtts : [80]) {
  const link = await WanLink.create({ rttMs, ...(RATE > 0 ? { rateMbit: RATE } : {}), cc: 'cubic' })
  try {
    for (const v of variants) {
      const runs: Run[] = []
      const notes: string[] = []
      for (let i = 0; i < RUNS; i++) {
        const r = await once(link, v.bin)
        if (typeof r === 'string') notes.push(r); else runs.push(r)
      }
      const col = (f: (r: Run) => string): string => runs.map(f).join(', ')
      rows.push(`| ${link.describe()} | ${v.label} | ${col(r => r.mibs.toFixed(1))}${notes.length > 0 ? ` (${notes.join('; ')})` : ''} | ${col(r => String(r.t3))} | ${col(r => String(r.fast))} | ${col(r => r.drops)} |`)
      process.stderr.write(`${rows.at(-1) ?? ''}\n`)
    }
  } finally { await link.close() }
}
process.stdout.write(`${rows.join('\n')}\n`)
process.exit(0)
