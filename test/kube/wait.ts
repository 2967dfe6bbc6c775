/** `until` (test/until.ts) with the Kubernetes suites' argument order: what, then the probe. */
import { until } from '../until.ts'

export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<Exclude<T, undefined | null | false>> {
  return await until(fn, ms, what)
}
