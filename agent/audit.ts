/**
 * Who did what with this agent's shares: one info-level audit line per stream a peer opened to
 * a share (accepted, when it ends; or refused), and per-share counters for the metrics
 * `causeway_agent_share_*{share,peer}` (agent/status/metrics.ts).
 *
 * Audit line (JSON on stderr, `msg: "share stream"`): `audit: "stream"`, `peer` (its proven agent
 * name, or the viewer's display name), `role`, `peerId` (its signaling peer id: tells the
 * instances of one agent apart), `instance` (once peers announce one), `share`, `protocol`,
 * `result` (`accepted` or `refused`), `code` (the refusal's or reset's), `bytesIn` (from the
 * peer to the share), `bytesOut` (back), `durationMs`, `reason` (how it ended: `done`, a
 * reset, or the refusal's message). UDP channels get a line when they close, without bytes
 * (datagrams are counted by the `causeway_agent_udp_*` metrics).
 *
 * Label cardinality is bounded: `share` is one of this agent's shares (at most MAX_SHARE_LABELS
 * distinct ones over the process's life, shares come and go), or `_other` for a refused name
 * that is none of them (a peer chooses what it asks for); `peer` is the agent's
 * name, `viewer` for every viewer (viewers choose their display names), and at most
 * MAX_PEER_LABELS distinct names: later ones count as `_other` (with a shared token names are
 * claims).
 */
import type { LogLike } from '../peer/log.ts'
import type { StreamRecord } from './tunnel/tunnels.ts'

export const MAX_PEER_LABELS = 64
export const MAX_SHARE_LABELS = 256

export interface ShareSeries {
  share: string
  peer: string
  accepted: number
  refused: number
  bytesIn: number
  bytesOut: number
  seconds: number
}

export class ShareAudit {
  private readonly series = new Map<string, ShareSeries>()
  private readonly peers = new Set<string>()
  private readonly shares = new Set<string>()
  private readonly log: LogLike
  private readonly isShare: (name: string) => boolean

  constructor (log: LogLike, isShare: (name: string) => boolean) {
    this.log = log
    this.isShare = isShare
  }

  record (r: StreamRecord): void {
    const p = r.peer
    this.log.info({
      audit: 'stream',
      peer: p.name,
      role: p.role,
      peerId: p.id,
      ...(p.instance !== undefined ? { instance: p.instance } : {}),
      share: r.share,
      protocol: r.protocol,
      result: r.result,
      ...(r.code !== undefined ? { code: r.code } : {}),
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      durationMs: Math.round(r.durationMs),
      reason: r.reason.slice(0, 200),
    }, 'share stream')
    const s = this.seriesOf(this.isShare(r.share) ? bounded(this.shares, r.share, MAX_SHARE_LABELS) : '_other', bounded(this.peers, p.role === 'viewer' ? 'viewer' : p.name, MAX_PEER_LABELS))
    if (r.result === 'accepted') s.accepted++; else s.refused++
    s.bytesIn += r.bytesIn
    s.bytesOut += r.bytesOut
    s.seconds += r.durationMs / 1000
  }

  /** Every series, for a metrics scrape. */
  all (): ShareSeries[] { return [...this.series.values()] }

  private seriesOf (share: string, peer: string): ShareSeries {
    const key = `${share}\n${peer}`
    let s = this.series.get(key)
    if (s === undefined) {
      s = { share, peer, accepted: 0, refused: 0, bytesIn: 0, bytesOut: 0, seconds: 0 }
      this.series.set(key, s)
    }
    return s
  }
}

/** `value` as a label while fewer than `max` distinct ones were seen, else `_other`. */
function bounded (seen: Set<string>, value: string, max: number): string {
  if (seen.has(value)) return value
  if (seen.size >= max) return '_other'
  seen.add(value)
  return value
}
