/**
 * A typed event emitter with any number of subscribers, portable (Node and the browser): the
 * one event mechanism of Mesh and Agent. `on` returns the unsubscribe function; `once` and
 * `until` turn an event into a promise. A throwing listener does not stop the others: the error
 * is reported to `onListenerError` (default: rethrown on a microtask, like an uncaught error).
 *
 * ```ts
 * interface Events { peer: (p: RemotePeer) => void }
 * const events = new Emitter<Events>()
 * const off = events.on('peer', p => { … })
 * events.emit('peer', p)
 * await events.until('peer', p => p.name === 'b', AbortSignal.timeout(5000))
 * ```
 */
export class Emitter<E extends { [K in keyof E]: (...args: never[]) => void }> {
  private readonly listeners = new Map<keyof E, Set<E[keyof E]>>()
  private readonly onListenerError: (err: unknown) => void

  constructor (onListenerError: (err: unknown) => void = err => { queueMicrotask(() => { throw err }) }) {
    this.onListenerError = onListenerError
  }

  on<K extends keyof E> (event: K, fn: E[K]): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) { set = new Set(); this.listeners.set(event, set) }
    // A function subscribed twice is two subscriptions: wrap it so each `off` removes its own.
    const entry = ((...args: Parameters<E[K]>) => { (fn as (...a: Parameters<E[K]>) => void)(...args) }) as unknown as E[K]
    set.add(entry)
    return () => { set.delete(entry) }
  }

  emit<K extends keyof E> (event: K, ...args: Parameters<E[K]>): void {
    const set = this.listeners.get(event)
    if (set === undefined) return
    for (const fn of [...set]) {
      try { (fn as (...a: Parameters<E[K]>) => void)(...args) } catch (err) { this.onListenerError(err) }
    }
  }

  /** Number of subscribers of `event` (for tests and leak checks). */
  count (event: keyof E): number { return this.listeners.get(event)?.size ?? 0 }

  /**
   * Resolves with the arguments of the first `event` for which `test` holds; rejects with the
   * signal's reason when it aborts first. `test` is not called for events before the call.
   */
  async until<K extends keyof E> (event: K, test: (...args: Parameters<E[K]>) => boolean, signal?: AbortSignal): Promise<Parameters<E[K]>> {
    signal?.throwIfAborted()
    return await new Promise((resolve, reject) => {
      const off = this.on(event, ((...args: Parameters<E[K]>) => {
        if (!test(...args)) return
        done()
        resolve(args)
      }) as unknown as E[K])
      const abort = (): void => { done(); reject(signal?.reason) }
      const done = (): void => { off(); signal?.removeEventListener('abort', abort) }
      signal?.addEventListener('abort', abort, { once: true })
    })
  }
}
