/** Subcommands beyond token and signaling, loaded by main.ts. One line per command. */
import type { Logger } from 'pino'
import { AGENT_HELP, agentCommand } from './agent.ts'
import { DEMO_HELP, demoCommand } from './demo.ts'
import { KUBECONFIG_HELP, kubeconfigCommand } from './kubeconfig.ts'
import { RELAY_HELP, relayCommand } from './relay.ts'
import { STATUS_HELP, statusCommand } from './status.ts'

interface Ctx { log: Logger, signal: AbortSignal }

export const COMMANDS = {
  agent: { help: AGENT_HELP, run: async (argv: string[], ctx: Ctx) => await agentCommand(argv, ctx.log, ctx.signal) },
  status: { help: STATUS_HELP, run: async (argv: string[]) => await statusCommand(argv) },
  kubeconfig: { help: KUBECONFIG_HELP, run: async (argv: string[]) => await kubeconfigCommand(argv) },
  demo: { help: DEMO_HELP, run: async (argv: string[], ctx: Ctx) => await demoCommand(argv, ctx.log) },
  relay: { help: RELAY_HELP, run: async (argv: string[], ctx: { log: import('pino').Logger, signal: AbortSignal }) => await relayCommand(argv, ctx.log, ctx.signal) },
}
