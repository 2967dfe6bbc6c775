/**
 * Forwarders to compare against: socat and `ssh -L` (Debian's openssh-server on loopback); and
 * the record of baseline cells that have no number. The benches' ratios are to these anchors, so
 * a baseline that failed (or whose tool is missing) fails the whole run: `bench/run.ts` prints
 * every failed cell with its reason after the tables and exits 1.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { child, waitFor } from './lib.ts'

export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

async function accepting (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = connect({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

export async function socatForward (target: number): Promise<number | undefined> {
  if (!existsSync('/usr/bin/socat')) return undefined
  const port = await freePort()
  child('/usr/bin/socat', [`TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr,backlog=128`, `TCP:127.0.0.1:${target}`])
  await waitFor(async () => await accepting(port), 10_000, 'socat')
  return port
}

/** A throwaway sshd setup in a fresh directory: host key, user key, config for `listen`:`port`. */
export function sshdFiles (listen: string, port: number): { dir: string, config: string, userKey: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cw-ssh-'))
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'hostkey')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'userkey')])
  execFileSync('cp', [join(dir, 'userkey.pub'), join(dir, 'authorized_keys')])
  mkdirSync('/run/sshd', { recursive: true })
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, `ListenAddress ${listen}`, `HostKey ${join(dir, 'hostkey')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password', 'StrictModes no', 'UsePAM no', 'AllowTcpForwarding yes', '',
  ].join('\n'))
  return { dir, config: join(dir, 'sshd_config'), userKey: join(dir, 'userkey') }
}

/** `ssh -N -L` arguments forwarding local `port` to `target` on the far side of sshd at host:sshdPort. */
export function sshForwardArgs (userKey: string, host: string, sshdPort: number, port: number, target: number): string[] {
  return ['-N', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes',
    '-i', userKey, '-p', String(sshdPort), '-L', `127.0.0.1:${port}:127.0.0.1:${target}`, `root@${host}`]
}

/** Starts a private sshd on loopback and an `ssh -N -L` forward to `target`; undefined when unavailable. */
export async function sshForward (target: number): Promise<number | undefined> {
  if (!existsSync('/usr/sbin/sshd') || !existsSync('/usr/bin/ssh') || process.getuid?.() !== 0) return undefined
  const sshdPort = await freePort()
  const files = sshdFiles('127.0.0.1', sshdPort)
  child('/usr/sbin/sshd', ['-D', '-e', '-f', files.config])
  await waitFor(async () => await accepting(sshdPort), 10_000, 'sshd')
  const port = await freePort()
  child('/usr/bin/ssh', sshForwardArgs(files.userKey, '127.0.0.1', sshdPort, port, target))
  await waitFor(async () => await accepting(port), 15_000, 'ssh -L')
  return port
}

/** A baseline cell of a bench table that holds no number. */
export interface BaselineFailure { bench: string, row: string, column: string, reason: string }

const failures: BaselineFailure[] = []

/** Whether a table cell is a failed baseline measurement ("failed: ...", "n/a (...)"), not a number or a skip. */
export function isFailedCell (cell: string): boolean {
  return /^(failed\b|n\/a\b)/i.test(cell.trim())
}

/** Records a failed baseline cell (and says so on stderr at once). */
export function reportBaselineFailure (f: BaselineFailure): void {
  failures.push(f)
  process.stderr.write(`bench ${f.bench}: BASELINE FAILED: ${f.row} @ ${f.column}: ${f.reason}\n`)
}

/** The failed baseline cells recorded in this process, in order. */
export function baselineFailures (): readonly BaselineFailure[] { return failures }

/** The message printed after the tables: every failed baseline cell with its reason, plus other failures (e.g. a bench that exited non-zero). */
export function failureReport (baseline: readonly BaselineFailure[], other: readonly string[] = []): string {
  const lines = [
    `**BENCH FAILED**: ${baseline.length} baseline cell(s) without a number${other.length > 0 ? `, ${other.length} other failure(s)` : ''}; ratios to these anchors are not valid.`,
    ...baseline.map(f => `- ${f.bench}: ${f.row} @ ${f.column}: ${f.reason}`),
    ...other.map(o => `- ${o}`),
  ]
  return lines.join('\n')
}
