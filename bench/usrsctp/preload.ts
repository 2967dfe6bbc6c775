/**
 * `NODE_OPTIONS="--import=$PWD/bench/usrsctp/preload.ts"` for a bench run (the agents, the raw
 * data-channel peers): once node-datachannel is loaded in the process,
 * - CAUSEWAY_BENCH_USRSCTP_SYSCTL='{"sctp_rto_min_default":1000}' is applied every 50 ms (libdatachannel
 *   re-applies its own settings whenever it re-initialises; the values take effect for
 *   associations created afterwards), and
 * - CAUSEWAY_BENCH_USRSCTP_LOG=DIR gets one JSON line per second of the counters in
 *   bench/usrsctp/index.ts STAT_WORDS, in DIR/usrsctp-<pid>.log (cumulative, per process).
 * Processes without node-datachannel loaded are left alone. A bench diagnostic only.
 */
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadUsrsctpDiag, usrsctpCounters, type UsrsctpDiag } from './index.ts'

const sysctl = JSON.parse(process.env.CAUSEWAY_BENCH_USRSCTP_SYSCTL ?? '{}') as Record<string, number>
const logDir = process.env.CAUSEWAY_BENCH_USRSCTP_LOG
const t0 = Date.now()
// compiled (first use) and loaded once; its calls throw until node-datachannel's binary is mapped
const lib: UsrsctpDiag = loadUsrsctpDiag()
let diag: UsrsctpDiag | undefined
let ticks = 0
const timer = setInterval(() => {
  try {
    if (diag === undefined) {
      try { lib.stats(); diag = lib } catch { return }
    }
    for (const [k, v] of Object.entries(sysctl)) {
      if (diag.set(k, v) !== 0) throw new Error(`usrsctp sysctl ${k}=${v} refused`)
    }
    if (logDir !== undefined && ++ticks % 20 === 0) {
      appendFileSync(join(logDir, `usrsctp-${process.pid}.log`), JSON.stringify({ t: (Date.now() - t0) / 1000, ...usrsctpCounters(diag) }) + '\n')
    }
  } catch (err) {
    process.stderr.write(`usrsctp preload: ${String(err)}\n`)
    clearInterval(timer)
  }
}, 50)
timer.unref()
