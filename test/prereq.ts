/**
 * A suite's prerequisite (root, a Debian package, helm): when it is missing the suite is
 * skipped with a notice on a developer's machine, but under CI=true the run fails, since CI
 * installs everything (scripts/setup-system.sh) and a skipped suite there would hide a gap.
 */
import { execFileSync } from 'node:child_process'

export function prerequisite (what: string, present: boolean): boolean {
  if (present) return true
  if (process.env.CI === 'true') throw new Error(`missing prerequisite under CI=true: ${what} (scripts/setup-system.sh installs the Debian packages, test/kube/install-helm.sh helm; run as root)`)
  process.stderr.write(`SKIPPED: missing prerequisite: ${what}\n`)
  return false
}

/** Whether `cmd` is found on PATH (or in /usr/sbin, /sbin, where root's tools live). */
export function onPath (cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `PATH="$PATH:/usr/sbin:/sbin" command -v "$1"`, 'sh', cmd], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
