/**
 * `npm run bench`: every benchmark in one run, printed as markdown tables.
 *   npm run bench                 signaling (Node and workerd) + tunnel
 *   npm run bench -- tunnel       only the tunnel benchmark
 *   npm run bench -- signaling    only the signaling benchmark
 *   npm run bench -- wan          the WAN benchmark (root: emulated links between namespaces; < 10 min)
 *   npm run bench -- udp          iperf3 UDP through a UDP share and without it (loss, jitter; ~1 min)
 *   npm run bench -- ha           failover between two instances of a site (20 kills, 20 drains) and between two sites of web@* (20 kills); ~8 min
 * The NAT-lab benchmark needs root and runs separately: `node bench/natlab.ts`.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { haBench } from './ha.ts'
import { tunnelBench } from './tunnel.ts'
import { udpBench } from './udp.ts'
import { wanBench } from './wan.ts'

const which = new Set(process.argv.slice(2))
const all = which.size === 0

if (all || which.has('signaling')) {
  process.stdout.write('## Signaling\n\n')
  const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', fileURLToPath(new URL('./signaling.ts', import.meta.url))], { stdio: 'inherit', timeout: 10 * 60_000 })
  if (r.status !== 0) process.stderr.write(`signaling bench exited ${String(r.status)}\n`)
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
if (which.has('merged')) process.stdout.write(`\n## Merged import failover (two clusters, one killed)\n\n${await (await import('./merged-failover.ts')).mergedFailoverBench()}\n`)
process.exit(0)
