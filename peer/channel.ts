/**
 * Data-channel helpers that paper over engine differences (portable). @roamhq/wrtc has no
 * `bufferedamountlow` event and opens channels created on a live association synchronously
 * (no `open` event fires), so both waits here fall back to polling with a bounded interval.
 */

/** Resolves when the channel is open; rejects when it closes first or the signal aborts. */
export async function whenOpen (dc: RTCDataChannel, signal?: AbortSignal, timeoutMs = 15_000): Promise<void> {
  if (dc.readyState === 'open') return
  await new Promise<void>((resolve, reject) => {
    let poll: ReturnType<typeof setInterval> | undefined
    const done = (err?: Error): void => {
      clearInterval(poll)
      clearTimeout(timer)
      dc.removeEventListener('open', onOpen)
      dc.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err !== undefined) reject(err); else resolve()
    }
    const onOpen = (): void => done()
    const onClose = (): void => done(new Error('data channel closed before it opened'))
    const onAbort = (): void => done(new Error('aborted'))
    const timer = setTimeout(() => done(new Error('data channel did not open in time')), timeoutMs)
    dc.addEventListener('open', onOpen)
    dc.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
    poll = setInterval(() => {
      if (dc.readyState === 'open') done()
      else if (dc.readyState === 'closed') done(new Error('data channel closed before it opened'))
    }, 20)
  })
}

/** Whether this engine fires `bufferedamountlow`. */
export function hasLowEvent (dc: RTCDataChannel): boolean {
  return 'bufferedAmountLowThreshold' in dc
}

/**
 * Calls `fn` once the channel's bufferedAmount is at or below `low` (or it closed).
 * Returns a cancel function.
 */
export function onDrain (dc: RTCDataChannel, low: number, fn: () => void): () => void {
  if (dc.bufferedAmount <= low || dc.readyState !== 'open') { fn(); return () => {} }
  if (hasLowEvent(dc)) {
    dc.bufferedAmountLowThreshold = low
    const h = (): void => { cancel(); fn() }
    const closed = (): void => { cancel(); fn() }
    const cancel = (): void => { dc.removeEventListener('bufferedamountlow', h); dc.removeEventListener('close', closed) }
    dc.addEventListener('bufferedamountlow', h)
    dc.addEventListener('close', closed)
    return cancel
  }
  const t = setInterval(() => {
    if (dc.bufferedAmount <= low || dc.readyState !== 'open') { clearInterval(t); fn() }
  }, 2)
  return () => clearInterval(t)
}
