/**
 * The causeway command line. Subcommands live in their own files; this one dispatches,
 * sets up logging (pino, JSON to stderr; CAUSEWAY_LOG_LEVEL) and one AbortController for
 * shutdown on SIGINT/SIGTERM.
 */
import { pino } from 'pino'
import { CausewayError } from '../protocol/errors.ts'
import { SIGNALING_HELP, signalingCommand } from './signaling.ts'
import { TOKEN_HELP, tokenCommand } from './token.ts'
import { COMMANDS } from './commands.ts'

type Command = { help: string, run: (argv: string[], ctx: Ctx) => Promise<number | undefined> }
interface Ctx { log: pino.Logger, signal: AbortSignal }

const commands: Record<string, { load: () => Promise<Command> }> = {
  token: { load: async () => ({ help: TOKEN_HELP, run: async argv => { const out = await tokenCommand(argv); if (out !== undefined) process.stdout.write(`${out}\n`); return 0 } }) },
  signaling: { load: async () => ({ help: SIGNALING_HELP, run: async (argv, ctx) => { await signalingCommand(argv, ctx.log, ctx.signal); return 0 } }) },
  ...COMMANDS,
}

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

main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
  const message = err instanceof CausewayError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)
  process.stderr.write(`causeway: ${message}\n`)
  process.exitCode = 1
})
