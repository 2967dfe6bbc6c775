/** Polls `fn` until it returns something (errors count as "not yet"), bounded by `ms`. */
import { until } from '../agent/harness.ts'

export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  let got: T | undefined
  await until(async () => {
    got = await fn().catch(() => undefined)
    return got !== undefined
  }, ms, what)
  return got as T
}
