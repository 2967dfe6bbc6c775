/**
 * The causeway command line. Subcommands live in their own files, listed in the one table
 * of cli/commands.ts (each loaded only when it runs); this one dispatches,
 * sets up logging (pino, JSON to stderr; CAUSEWAY_LOG_LEVEL) and one AbortController for
 * shutdown on SIGINT/SIGTERM.
 */
import { pino } from 'pino'
import { CausewayError } from '../protocol/errors.ts'
import { COMMANDS as commands } from './commands.ts'

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
  const stop = (sig: string): void => {
    if (shutdown.signal.aborted) { process.exit(130) }
    log.info({ signal: sig }, 'shutting down')
    shutdown.abort()
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  return (await cmd.run(rest, { log, signal: shutdown.signal })) ?? 0
}

/**
 * Exits once stdout and stderr have flushed: a command that returned has closed what it opened,
 * but a native engine may keep threads and handles up (node-datachannel), and the process must
 * not wait for the event loop to drain.
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
