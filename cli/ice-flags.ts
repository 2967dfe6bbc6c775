/** The ICE policy flags `causeway agent` and `causeway netcheck` share (agent/ice-policy.ts). */
import { CausewayError } from '../protocol/errors.ts'
import { DEFAULT_ICE_PORTS, icePolicy, type IcePolicy } from '../agent/ice-policy.ts'

export const ICE_POLICY_HELP = `  --ice-ports LIST               ports a /v1/ice STUN/TURN server or relay on a public address
                                 may use (default ${DEFAULT_ICE_PORTS.join(',')}); env CAUSEWAY_ICE_PORTS
  --ice-allow CIDR               a network /v1/ice entries may name, on any port (repeatable;
                                 default none: internal addresses - loopback, private, link-local,
                                 CGNAT, ULA - are refused); env CAUSEWAY_ICE_ALLOW (comma separated)`

export const ICE_POLICY_OPTIONS = {
  'ice-ports': { type: 'string' },
  'ice-allow': { type: 'string', multiple: true },
} as const

/** The policy from the flags (or their environment variables); throws CausewayError BAD_CONFIG. */
export function icePolicyFromFlags (values: { 'ice-ports'?: string, 'ice-allow'?: string[] }): IcePolicy {
  const portsText = values['ice-ports'] ?? process.env.CAUSEWAY_ICE_PORTS
  const allow = values['ice-allow'] ?? (process.env.CAUSEWAY_ICE_ALLOW ?? '').split(',').map(s => s.trim()).filter(Boolean)
  try {
    return icePolicy({ ...(portsText !== undefined && portsText !== '' ? { ports: portsText.split(',').map(p => Number(p.trim())) } : {}), allow })
  } catch (err) {
    throw new CausewayError('BAD_CONFIG', err instanceof Error ? err.message : String(err))
  }
}
