/**
 * The one table of causeway commands. Each command's module is imported only when that
 * command runs: `causeway status` loads no Hono, ws, prom-client or libp2p, and an agent
 * carries libp2p or the Kubernetes client only when it uses them (test: cli/commands.test.ts).
 */
import type { Logger } from 'pino'

export interface CommandContext {
  log: Logger
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal
  /** A long-running command sets `drainMs` (its --drain): after a signal, it must exit within drainMs + 2 s or the watchdog ends it. */
  shutdownBound: { drainMs: number }
  /** Arms a watchdog: the process exits (`code`, default 1, with `why` logged) in `ms` unless it has exited by then. */
  watchdog: (ms: number, why: string, code?: number) => void
}
export interface Command { help: string, run: (argv: string[], ctx: CommandContext) => Promise<number> }
export interface LazyCommand { load: () => Promise<Command> }

export const COMMANDS: Record<string, LazyCommand> = {
  token: {
    load: async () => {
      const m = await import('./token.ts')
      return { help: m.TOKEN_HELP, run: async argv => { const out = await m.tokenCommand(argv); if (out !== undefined) process.stdout.write(`${out}\n`); return 0 } }
    },
  },
  signaling: { load: async () => { const m = await import('./signaling.ts'); return { help: m.SIGNALING_HELP, run: async (argv, ctx) => { await m.signalingCommand(argv, ctx); return 0 } } } },
  agent: { load: async () => { const m = await import('./agent.ts'); return { help: m.AGENT_HELP, run: async (argv, ctx) => await m.agentCommand(argv, ctx) } } },
  status: { load: async () => { const m = await import('./status.ts'); return { help: m.STATUS_HELP, run: async (argv) => await m.statusCommand(argv) } } },
  kubeconfig: { load: async () => { const m = await import('./kubeconfig.ts'); return { help: m.KUBECONFIG_HELP, run: async (argv) => await m.kubeconfigCommand(argv) } } },
  demo: { load: async () => { const m = await import('./demo.ts'); return { help: m.DEMO_HELP, run: async (argv, ctx) => await m.demoCommand(argv, ctx) } } },
  netcheck: { load: async () => { const m = await import('./netcheck.ts'); return { help: m.NETCHECK_HELP, run: async (argv, ctx) => await m.netcheckCommand(argv, ctx) } } },
  relay: { load: async () => { const m = await import('./relay.ts'); return { help: m.RELAY_HELP, run: async (argv, ctx) => await m.relayCommand(argv, ctx) } } },
}
