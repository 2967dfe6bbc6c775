/**
 * The one wait-for-condition helper of the test suites (and benchmarks): instead of a sleep,
 * wait for the thing the test needs.
 */

/**
 * Calls `cond` (sync or async) until it returns something other than `undefined`, `null` or
 * `false`, and resolves with that value. A throw from `cond` counts as "not yet" and is kept
 * for the error message. After `ms` it throws "timed out after <ms> ms waiting for <what>";
 * `what` may be a function, called only then (to add a log tail, the last state seen, …).
 * Polls every `everyMs` (default 50 ms); the number of polls is bounded too.
 */
export async function until<T> (
  cond: () => T | Promise<T>,
  ms: number,
  what: string | (() => string),
  everyMs = 50,
): Promise<Exclude<T, undefined | null | false>> {
  const start = Date.now()
  let last: unknown
  for (let i = 0; i <= Math.ceil(ms / everyMs) + 1; i++) {
    try {
      const v = await cond()
      if (v !== undefined && v !== null && v !== false) return v as Exclude<T, undefined | null | false>
    } catch (err) {
      last = err
    }
    if (Date.now() - start >= ms) break
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  const detail = last === undefined ? '' : ` (last error: ${last instanceof Error ? last.message : String(last)})`
  throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}${detail}`)
}
