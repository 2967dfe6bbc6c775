/** `causeway netcheck`: what this machine's network allows, and the path to expect to each kind of site. */
import { parseArgs } from 'node:util'
import type { CommandContext } from './commands.ts'
import { decodeToken } from '../protocol/token.ts'
import { parseIceFlag } from '../agent/ice.ts'
import { runNetcheck } from '../agent/netcheck/index.ts'
import { renderReport } from '../agent/netcheck/render.ts'
import { table } from './status.ts'
import { readTokenText } from './token-input.ts'
import { ICE_POLICY_HELP, ICE_POLICY_OPTIONS, icePolicyFromFlags } from './ice-flags.ts'

export const NETCHECK_HELP = `causeway netcheck (--token-file F | env CAUSEWAY_TOKEN) [--json] [--timeout MS] [--ice URL…]

Measures, against the servers the network's signaling service hands out (/v1/ice): signaling
reachability and latency, UDP, the NAT's mapping behaviour (endpoint-independent or not), the
public address and whether it is stable, hairpinning, IPv6, each TURN URL (a real allocation
over UDP, TCP or TLS) and each relay (a real reservation); then prints a one-line verdict and
the path to expect to each kind of site (eim, symmetric, udpblock, tcp443).

  --json          the whole report as JSON (fields: README, "causeway netcheck")
  --timeout MS    limit for the whole run (default 5000)
  --ice URL[,username=U,credential=C]   probe this STUN/TURN server too (repeatable)
${ICE_POLICY_HELP}

Only /v1/ice entries within the ICE policy are probed (the agent uses the same policy); the
report lists every destination probed and the entries refused, and why.

Exit code: 0 when some path is possible; 1 when none is (signaling unreachable or refusing
/v1/ice, or neither hole punching, TURN nor a relay works from here); 2 on bad usage or a bad
token.`

export async function netcheckCommand (argv: string[], ctx: CommandContext): Promise<number> {
  let values
  try {
    values = parseArgs({
      args: argv,
      options: {
        token: { type: 'string' },
        'token-file': { type: 'string' },
        json: { type: 'boolean', default: false },
        timeout: { type: 'string', default: '5000' },
        ice: { type: 'string', multiple: true, default: [] },
        ...ICE_POLICY_OPTIONS,
      },
      strict: true,
    }).values
  } catch (err) {
    process.stderr.write(`causeway netcheck: ${err instanceof Error ? err.message : String(err)}\n${NETCHECK_HELP}\n`)
    return 2
  }
  const timeoutMs = Number(values.timeout)
  if (!Number.isInteger(timeoutMs) || timeoutMs < 500 || timeoutMs > 60_000) return usage('--timeout must be an integer between 500 and 60000 (ms)')
  let token
  try {
    const text = readTokenText(values)
    if (text === undefined) return usage('a network token is required: --token-file or CAUSEWAY_TOKEN')
    token = decodeToken(text.trim())
  } catch (err) {
    return usage(`bad token: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (token.kind !== 'member') return usage('netcheck needs a member (agent or shared) token, not a viewer token')
  const override = process.env.CAUSEWAY_SIGNALING_URL
  if (override !== undefined && override !== '') token = { ...token, signaling: override.replace(/\/$/, '') }
  let extraIce
  try { extraIce = values.ice.map(parseIceFlag) } catch (err) { return usage(err instanceof Error ? err.message : String(err)) }
  let policy
  try { policy = icePolicyFromFlags(values) } catch (err) { return usage(err instanceof Error ? err.message : String(err)) }
  // Every probe is bounded by the timeout; loading and closing the relay client are not: bound the whole run.
  ctx.watchdog(timeoutMs + 10_000, `netcheck did not finish within --timeout + 10 s`)
  const report = await runNetcheck({ token, timeoutMs, extraIce, policy })
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderReport(report, table)}\n`)
  return report.ok ? 0 : 1
}

function usage (message: string): number {
  process.stderr.write(`causeway netcheck: ${message}\n`)
  return 2
}
