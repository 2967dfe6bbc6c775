/**
 * Subcommands beyond token and signaling, loaded by main.ts. Each is imported only when it
 * runs, so an agent does not carry libp2p or the Kubernetes client unless it uses them.
 */
import type { Logger } from 'pino'

interface Ctx { log: Logger, signal: AbortSignal }
export interface LazyCommand { load: () => Promise<{ help: string, run: (argv: string[], ctx: Ctx) => Promise<number> }> }

export const COMMANDS: Record<string, LazyCommand> = {
  agent: { load: async () => { const m = await import('./agent.ts'); return { help: m.AGENT_HELP, run: async (argv, ctx) => await m.agentCommand(argv, ctx.log, ctx.signal) } } },
  status: { load: async () => { const m = await import('./status.ts'); return { help: m.STATUS_HELP, run: async (argv) => await m.statusCommand(argv) } } },
  kubeconfig: { load: async () => { const m = await import('./kubeconfig.ts'); return { help: m.KUBECONFIG_HELP, run: async (argv) => await m.kubeconfigCommand(argv) } } },
  demo: { load: async () => { const m = await import('./demo.ts'); return { help: m.DEMO_HELP, run: async (argv, ctx) => await m.demoCommand(argv, ctx.log) } } },
  relay: { load: async () => { const m = await import('./relay.ts'); return { help: m.RELAY_HELP, run: async (argv, ctx) => await m.relayCommand(argv, ctx.log, ctx.signal) } } },
}
