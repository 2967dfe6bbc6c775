/** Small helpers shared by the reconcilers. */
import * as k8s from '@kubernetes/client-node'
import type { LogLike } from '../../peer/log.ts'

/** The HTTP status of a failed client-node call, if it was an API error. */
export function apiCode(e: unknown): number | undefined {
  if (e instanceof k8s.ApiException) return e.code
  if (e !== null && typeof e === 'object' && 'code' in e && typeof e.code === 'number') return e.code
  return undefined
}

/** A DNS-1035 label (Service names): lower case, `[a-z0-9-]`, starts with a letter, ≤ 63. */
export function dnsLabel(s: string): string {
  let out = s.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '')
  if (out.length > 63) {
    const h = Array.from(s).reduce((a, c) => (a * 31 + c.charCodeAt(0)) >>> 0, 7).toString(36).slice(0, 6)
    out = `${out.slice(0, 56)}-${h}`
  }
  out = out.replace(/-+$/, '')
  return out === '' ? 'x' : out
}

/** A label value: `[A-Za-z0-9_.-]`, alphanumeric at both ends, at most 63 characters. */
export const labelValue = (s: string): string => {
  const v = s.replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
  return v === '' ? 'x' : v
}

export const mergePatchOptions = (): ReturnType<typeof k8s.setHeaderOptions> => k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)

/**
 * Runs an informer until `signal` aborts, restarting it after errors with capped exponential
 * backoff (client-node's ListWatch stops on any error other than 410 / a timeout).
 */
export function runInformer<T extends k8s.KubernetesObject>(informer: k8s.Informer<T>, signal: AbortSignal, log: LogLike, what: string): Promise<void> {
  let delay = 500
  let timer: NodeJS.Timeout | undefined
  informer.on('error', (err: unknown) => {
    if (signal.aborted) return
    log.warn({ err: String(err), retryMs: delay }, `${what}: watch failed, restarting`)
    timer = setTimeout(() => {
      if (!signal.aborted) informer.start().catch((e: unknown) => log.warn({ err: String(e) }, `${what}: watch restart failed`))
    }, delay)
    delay = Math.min(delay * 2, 30_000)
  })
  signal.addEventListener(
    'abort',
    () => {
      clearTimeout(timer)
      void informer.stop()
    },
    { once: true },
  )
  return informer.start()
}
