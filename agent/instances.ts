/**
 * Instances of a site: several agent processes may run under one agent credential (the
 * replicas of the agent chart); each is a peer of its own in the mesh, and they serve the same
 * shares. This module decides which instance a new stream goes to and what the site as a whole
 * offers (portable: no Node imports).
 *
 * Order of preference for a new stream to `share@site`:
 * 1. instances that can carry a stream now (WebRTC connected, or the relay), are not draining,
 *    were heard from within the keepalive bound (PeerSession `responsive`) and list the share
 *    in their catalog (or have sent none yet);
 * 2. then the same but unresponsive ones (a busy or stalled instance is still better than none);
 * 3. draining instances last (they still accept streams until they exit).
 * Within a tier: `least-loaded` (fewest open streams, then lowest RTT; the default between the
 * instances of one site), `nearest` (lowest RTT, then fewest streams), or `round-robin`.
 */
import type { ShareInfo } from '../protocol/peer.ts'

export type Balance = 'least-loaded' | 'nearest' | 'round-robin'
export const BALANCES: readonly Balance[] = ['least-loaded', 'nearest', 'round-robin']

/** One instance as the ranking sees it. */
export interface InstanceView<P> {
  peer: P
  /** The instance can carry a new stream now (its route is not `none`). */
  routable: boolean
  responsive: boolean
  draining: boolean
  /** Its catalog lists the share: true / false; undefined while no catalog arrived. */
  offers: boolean | undefined
  streams: number
  rttMs: number | null
}

function tier (v: InstanceView<unknown>): number {
  if (v.draining) return 2
  return v.responsive ? 0 : 1
}

/**
 * The instances that may take a new stream, best first (see the module comment). Instances
 * that cannot carry a stream now, or whose catalog does not list the share, are left out.
 * `turn` rotates round-robin (the caller's counter).
 */
export function rankInstances<P> (views: ReadonlyArray<InstanceView<P>>, balance: Balance = 'least-loaded', turn = 0): P[] {
  const usable = views.filter(v => v.routable && v.offers !== false)
  const rtt = (v: InstanceView<P>): number => v.rttMs ?? Number.MAX_SAFE_INTEGER
  const within = (a: InstanceView<P>, b: InstanceView<P>): number => {
    if (balance === 'nearest') return rtt(a) - rtt(b) || a.streams - b.streams
    return a.streams - b.streams || rtt(a) - rtt(b)
  }
  const tiers = [0, 1, 2].map(t => usable.filter(v => tier(v) === t).sort(within))
  if (balance === 'round-robin') {
    for (const [i, list] of tiers.entries()) {
      if (list.length === 0) continue
      const k = turn % list.length
      tiers[i] = [...list.slice(k), ...list.slice(0, k)]
    }
  }
  return tiers.flat().map(v => v.peer)
}

/**
 * What a site offers: the union of its instances' catalogs, by share name (during a rolling
 * upgrade an instance may export a share the other does not have yet; streams go to those that
 * list it). An entry from a non-draining instance wins over a draining one's. Null when no
 * instance has sent a catalog.
 */
export function siteCatalog (catalogs: ReadonlyArray<{ shares: readonly ShareInfo[], draining: boolean }>): ShareInfo[] | null {
  if (catalogs.length === 0) return null
  const byName = new Map<string, ShareInfo>()
  for (const c of [...catalogs].sort((a, b) => Number(a.draining) - Number(b.draining))) {
    for (const s of c.shares) if (!byName.has(s.name)) byName.set(s.name, s)
  }
  return [...byName.values()]
}
