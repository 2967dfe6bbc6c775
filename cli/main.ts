/**
 * The causeway command line. Subcommands live in their own files, listed in the one table
 * of cli/commands.ts (each loaded only when it runs); this one dispatches,
 * sets up logging (pino, JSON to stderr; CAUSEWAY_LOG_LEVEL) and one AbortController for
 * shutdown on SIGINT/SIGTERM.
 *
 * Every command exits explicitly once it has closed what it opened (`process.exit` with its
 * code: a native thread of a WebRTC engine, or a handle some library left open, never keeps the
 * process alive after its work is done). On SIGTERM/SIGINT a watchdog is armed: a command that
 * has not finished within its shutdown bound (`ctx.shutdownBound`: the agent's, signaling's and
 * relay's `--drain` + 2 s; 7 s for the others) is ended with exit code 1 and an error line. A
 * second signal ends it at once (130).
 */
import { pino } from 'pino'
import { CausewayError } from '../protocol/errors.ts'
import type { Logger } from 'pino'
import { COMMANDS as commands, type CommandContext } from './commands.ts'

function usage (): string {
  return `usage: causeway <command> [options]\n\ncommands: ${Object.keys(commands).join(', ')}\nrun "causeway <command> --help" for a command's options\n`
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') { process.stdout.write(usage()); return name === undefined ? 2 : 0 }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined
  if (entry === undefined) { process.stderr.write(`unknown command "${name}"\n${usage()}`); return 2 }
  const cmd = await entry.load()
  if (rest.includes('--help') || rest.includes('-h')) { process.stdout.write(`${cmd.help}\n`); return 0 }
  const log = pino({ level: process.env.CAUSEWAY_LOG_LEVEL ?? 'info', base: { cmd: name } }, pino.destination(2))
  const shutdown = new AbortController()
  const ctx: CommandContext = { log, signal: shutdown.signal, shutdownBound: { drainMs: 5000 }, watchdog: (ms, why, code) => { watchdog(ms, why, log, code) } }
  const stop = (sig: string): void => {
    if (shutdown.signal.aborted) { process.exit(130) }
    log.info({ signal: sig, exitWithinMs: ctx.shutdownBound.drainMs + SHUTDOWN_SLACK_MS }, 'shutting down')
    watchdog(ctx.shutdownBound.drainMs + SHUTDOWN_SLACK_MS, `${sig}: not stopped within --drain + ${SHUTDOWN_SLACK_MS} ms`, log)
    shutdown.abort()
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  return (await cmd.run(rest, ctx)) ?? 0
}

/** Time past `--drain` a stopping command has before the watchdog ends it, ms. */
const SHUTDOWN_SLACK_MS = 2000

/** Ends the process with `code` (default 1) in `ms` unless it has exited by then (last resort: a call that never returns). */
function watchdog (ms: number, why: string, log: Logger, code = 1): void {
  setTimeout(() => {
    log.error({ afterMs: ms }, `watchdog: ${why}; exiting`)
    process.exit(code)
  }, ms).unref()
}

/**
 * Exits once stdout and stderr have flushed: a command that returned has closed what it opened,
 * but a native engine may keep threads and handles up (node-datachannel), and the process must
 * not wait for the event loop to drain (nor lose what it printed to a pipe).
 */
function exit (code: number): void {
  let pending = 2
  const done = (): void => { if (--pending === 0) process.exit(code) }
  process.stdout.write('', done)
  process.stderr.write('', done)
}

main(process.argv.slice(2)).then(exit, (err: unknown) => {
  const message = err instanceof CausewayError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)
  process.stderr.write(`causeway: ${message}\n`)
  exit(1)
})
