/**
 * The export policy annotations of a Service (or its ServiceExport, whose annotations win):
 * `causeway.dev/balance`, `causeway.dev/failover`, `causeway.dev/weight`, `causeway.dev/priority`
 * and `causeway.dev/pods`. Pure: a bad value is reported (and that field left out), never thrown.
 */
import { BALANCE_ANNOTATION, FAILOVER_ANNOTATION, PODS_ANNOTATION, PRIORITY_ANNOTATION, WEIGHT_ANNOTATION } from '../../protocol/annotations.ts'
import { BALANCES, type Balance } from '../instances.ts'

export interface ExportPolicy {
  balance?: Balance
  weight?: number
  priority?: number
  failover?: 'local-first'
  /** Per-pod addressing: one sub-share per ready pod. */
  pods: boolean
}

const isBalance = (v: string): v is Balance => (BALANCES as readonly string[]).includes(v)

function intIn(v: string, max: number): number | undefined {
  if (!/^\d{1,4}$/.test(v)) return undefined
  const n = Number(v)
  return n <= max ? n : undefined
}

/** The policy of one export and the errors of the annotations that could not be used. */
export function exportPolicy(annotations: Readonly<Record<string, string>>): { policy: ExportPolicy; errors: string[] } {
  const errors: string[] = []
  const policy: ExportPolicy = { pods: false }
  const get = (k: string): string | undefined => annotations[k]?.trim()
  const balance = get(BALANCE_ANNOTATION)
  if (balance !== undefined) {
    if (isBalance(balance)) policy.balance = balance
    else errors.push(`${BALANCE_ANNOTATION}: ${JSON.stringify(balance)} is not one of ${BALANCES.join(', ')}`)
  }
  const failover = get(FAILOVER_ANNOTATION)
  if (failover !== undefined) {
    if (failover === 'local-first') policy.failover = failover
    else errors.push(`${FAILOVER_ANNOTATION}: ${JSON.stringify(failover)} is not local-first`)
  }
  for (const [key, field, max] of [[WEIGHT_ANNOTATION, 'weight', 1000], [PRIORITY_ANNOTATION, 'priority', 100]] as const) {
    const v = get(key)
    if (v === undefined) continue
    const n = intIn(v, max)
    if (n === undefined) errors.push(`${key}: ${JSON.stringify(v)} is not a whole number from 0 to ${max}`)
    else policy[field] = n
  }
  const pods = get(PODS_ANNOTATION)
  if (pods !== undefined) {
    if (pods === 'true' || pods === 'false') policy.pods = pods === 'true'
    else errors.push(`${PODS_ANNOTATION}: ${JSON.stringify(pods)} is not "true" or "false"`)
  }
  return { policy, errors }
}
