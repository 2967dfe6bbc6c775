/**
 * What both ends of a UDP share keep per flow (one client address), and the counters behind
 * the UDP metrics. A flow table has an explicit cap and an idle timeout: a flow silent for
 * `idleMs` is closed; at the cap, the least recently active flow is evicted only when it has
 * been silent for at least `evictIdleMs`, else the new flow's datagram is dropped
 * (`flow_limit`). So flows in use keep working under a flood of new source addresses, and
 * short flows (a DNS client uses a new source port per query) do not pin the table for the
 * whole idle timeout.
 */

/** Why a datagram was not delivered (the `reason` label of causeway_agent_udp_drops_total). */
export const UDP_DROP_REASONS = ['oversize', 'flow_limit', 'congestion', 'no_path', 'unknown_flow', 'bad_frame', 'target_error'] as const
export type UdpDropReason = typeof UDP_DROP_REASONS[number]

export interface UdpOptions {
  /** Flows per table: per peer on the share side (UDP sockets to targets), per listener on the connect side (client addresses). Default 256. */
  maxFlowsPerPeer?: number
  /** A flow with no datagram either way for this long is closed, ms. Default 30000. */
  idleMs?: number
  /** At the cap, a flow silent this long may be evicted for a new one, ms. Default 2000. */
  evictIdleMs?: number
  /** Datagrams are dropped (`congestion`) while the channel holds this many unsent bytes. Default 256 KiB. */
  sendBufferBytes?: number
}

/** SO_RCVBUF asked for the connect side's listener socket, bytes (Linux caps it at net.core.rmem_max). */
export const UDP_SOCKET_BUFFER = 4 << 20

export const UDP_DEFAULTS: Required<UdpOptions> = { maxFlowsPerPeer: 256, idleMs: 30_000, evictIdleMs: 2000, sendBufferBytes: 256 << 10 }

/** Agent-wide UDP counters (read by agent/status/metrics.ts). `in`: received from a peer through a tunnel; `out`: sent to a peer. */
export class UdpStats {
  datagramsIn = 0
  datagramsOut = 0
  bytesIn = 0
  bytesOut = 0
  evicted = 0
  readonly drops: Record<UdpDropReason, number> = Object.fromEntries(UDP_DROP_REASONS.map(r => [r, 0])) as Record<UdpDropReason, number>
  /** Live flows by side. */
  readonly flows = { connect: 0, share: 0 }

  drop (reason: UdpDropReason): void { this.drops[reason]++ }
  sent (bytes: number): void { this.datagramsOut++; this.bytesOut += bytes }
  received (bytes: number): void { this.datagramsIn++; this.bytesIn += bytes }
}

interface Entry<T> { value: T, last: number }

/** Flows by key, least recently active first (a Map keeps insertion order; activity re-inserts). */
export class FlowTable<T> {
  private readonly entries = new Map<string, Entry<T>>()
  private readonly opts: Required<UdpOptions>
  private readonly onClose: (value: T, why: 'idle' | 'evicted' | 'closed') => void
  private readonly timer: ReturnType<typeof setInterval>

  constructor (opts: Required<UdpOptions>, onClose: (value: T, why: 'idle' | 'evicted' | 'closed') => void) {
    this.opts = opts
    this.onClose = onClose
    this.timer = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, opts.idleMs / 4)))
    this.timer.unref?.()
  }

  get size (): number { return this.entries.size }

  /** The flow under `key`, marked active. */
  touch (key: string): T | undefined {
    const e = this.entries.get(key)
    if (e === undefined) return undefined
    this.entries.delete(key)
    e.last = performance.now()
    this.entries.set(key, e)
    return e.value
  }

  /** Room for one more flow: true, evicting the least recently active one if it is silent long enough; false at the cap. */
  admit (): boolean {
    if (this.entries.size < this.opts.maxFlowsPerPeer) return true
    const [key, oldest] = this.entries.entries().next().value ?? []
    if (key === undefined || oldest === undefined || performance.now() - oldest.last < this.opts.evictIdleMs) return false
    this.entries.delete(key)
    this.onClose(oldest.value, 'evicted')
    return true
  }

  /** Adds a flow (call admit() first). */
  add (key: string, value: T): void {
    this.entries.set(key, { value, last: performance.now() })
  }

  delete (key: string): void {
    const e = this.entries.get(key)
    if (e === undefined) return
    this.entries.delete(key)
    this.onClose(e.value, 'closed')
  }

  /** Closes the flows `pred` selects (e.g. those of a closed channel). */
  deleteWhere (pred: (value: T) => boolean): void {
    for (const [key, e] of [...this.entries]) if (pred(e.value)) { this.entries.delete(key); this.onClose(e.value, 'closed') }
  }

  private sweep (): void {
    const cutoff = performance.now() - this.opts.idleMs
    for (const [key, e] of this.entries) {
      if (e.last > cutoff) break // the rest are more recent
      this.entries.delete(key)
      this.onClose(e.value, 'idle')
    }
  }

  close (): void {
    clearInterval(this.timer)
    for (const [key, e] of [...this.entries]) { this.entries.delete(key); this.onClose(e.value, 'closed') }
  }
}
