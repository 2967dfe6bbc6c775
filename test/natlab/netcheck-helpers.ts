/**
 * Runs `./bin/causeway netcheck --json` inside a lab namespace (the way users run it) and parses
 * its report. `--timeout 8000` (default 5000): the suite runs beside other CPU-heavy tests, and
 * every probe step waits a share of the limit. It trusts the lab's TURN certificate (TURN over TLS).
 */
import type { NetcheckReport } from '../../agent/netcheck/index.ts'
import type { Lab, LabNs } from './lab.ts'
import { ROOT } from './relay-helpers.ts'

export async function netcheck (lab: Lab, ns: LabNs, token: string, extra: string[] = []): Promise<{ code: number, report: NetcheckReport, ms: number }> {
  const started = Date.now()
  const r = await lab.exec(ns, ['env', `CAUSEWAY_TOKEN=${token}`, `NODE_EXTRA_CA_CERTS=${lab.turnCert}`, `${ROOT}bin/causeway`, 'netcheck', '--json', '--timeout', '8000', ...extra], 30_000)
  try {
    return { code: r.code, report: JSON.parse(r.stdout) as NetcheckReport, ms: Date.now() - started }
  } catch {
    throw new Error(`netcheck printed no JSON (exit ${r.code}): ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`)
  }
}
