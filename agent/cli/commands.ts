/** Subcommands beyond token and signaling, loaded by main.ts. */
import { DEMO_HELP, demoCommand } from './demo.ts'

export const COMMANDS = {
  demo: { help: DEMO_HELP, run: async (argv: string[], ctx: { log: import('pino').Logger }) => await demoCommand(argv, ctx.log) },
}
