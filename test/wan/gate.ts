/**
 * The WAN suites' gate: the emulator (scripts/wan/link.ts) needs root, gcc and /dev/net/tun.
 * Without them a suite is skipped with the reason on a developer's machine; under CI=true the
 * run fails (test/prereq.ts), since CI installs everything. `cleanup` removes links a killed
 * earlier run left behind.
 */
import { describe, it } from 'vitest'
import { cleanupStaleLinks, wanAvailability } from '../../scripts/wan/link.ts'
import { prerequisite } from '../prereq.ts'

/** The suite function the WAN tests use: `describe`, or `describe.skip` (the same API). */
export type WanDescribe = typeof describe | typeof describe.skip

export async function wanSuite (what: string, cleanup = true): Promise<WanDescribe> {
  const availability = await wanAvailability()
  if (availability.ok) {
    if (cleanup) await cleanupStaleLinks()
    return describe
  }
  prerequisite(`WAN emulator: ${availability.reason}`, false)
  console.warn(`\n!!!!!!!! ${what} NOT RUN: ${availability.reason} !!!!!!!!\n`)
  it.skip(`${what} SKIPPED — ${availability.reason}`, () => {})
  return describe.skip
}
