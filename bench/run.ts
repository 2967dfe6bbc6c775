/**
 * `npm run bench`: every benchmark in one run, printed as markdown tables.
 *   npm run bench                 signaling (Node and workerd) + tunnel
 *   npm run bench -- tunnel       only the tunnel benchmark
 *   npm run bench -- signaling    only the signaling benchmark
 *   npm run bench -- wan          the WAN benchmark (root: emulated links between namespaces; < 10 min)
 *   npm run bench -- udp          iperf3 UDP through a UDP share and without it (loss, jitter; ~1 min)
 *   npm run bench -- ha           failover between two instances of a site (20 kills, 20 drains) and between two sites of web@* (20 kills); ~8 min
 * The NAT-lab benchmark needs root and runs separately: `node bench/natlab.ts`.
 * A baseline cell without a number (bench/baselines.ts: failed, or its tool missing) or a bench
 * that exits non-zero fails the run: every failure is listed after the tables, and the exit code is 1.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { baselineFailures, failureReport } from './baselines.ts'
import { haBench } from './ha.ts'
import { tunnelBench } from './tunnel.ts'
import { udpBench } from './udp.ts'
import { wanBench } from './wan.ts'

const which = new Set(process.argv.slice(2))
const all = which.size === 0
/** Failures other than baseline cells (those are in baselineFailures()). */
const failures: string[] = []

if (all || which.has('signaling')) {
  process.stdout.write('## Signaling\n\n')
  const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', fileURLToPath(new URL('./signaling.ts', import.meta.url))], { stdio: 'inherit', timeout: 10 * 60_000 })
  if (r.status !== 0) failures.push(`signaling bench exited ${String(r.status ?? r.signal ?? r.error?.message)}`)
}
if (all || which.has('tunnel')) {
  process.stdout.write('\n## Tunnel\n\n')
  process.stdout.write(`${await tunnelBench()}\n`)
}
if (which.has('wan')) {
  process.stdout.write('\n## WAN\n\n')
  process.stdout.write(`${await wanBench()}\n`)
}
if (which.has('udp')) {
  process.stdout.write('\n## UDP share (iperf3)\n\n')
  process.stdout.write(`${await udpBench()}\n`)
}
if (which.has('ha')) {
  process.stdout.write('\n## High availability (failover between instances)\n\n')
  process.stdout.write(`${await haBench()}\n`)
}
const failed = baselineFailures().length > 0 || failures.length > 0
if (failed) {
  const report = failureReport(baselineFailures(), failures)
  process.stdout.write(`\n${report}\n`)
  process.stderr.write(`${report}\n`)
}
process.exit(failed ? 1 : 0)
