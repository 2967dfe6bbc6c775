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

/**
 * Across sites (`--connect share@*`, merged Kubernetes imports): one share exported by several
 * sites. A stream goes to a site chosen by the policy, then to that site's best instance:
 * - `priority` (lower first, default 0): only the sites of the best priority that can take a
 *   stream are used; the next priority only when none of those can (failover order);
 * - within a priority, `balance`: `round-robin` (smooth weighted round robin over `weight`,
 *   default 1, as nginx does), `least-loaded` (fewest open streams per unit of weight), or
 *   `nearest` (the lowest RTT of its instances);
 * - a site none of whose instances answered its keepalives lately (all unresponsive: maybe
 *   dead, not detected as such yet) comes after every answering site, an ejected one (it kept
 *   failing: SiteHealth) after that: both are used only when nothing else is left.
 */
export interface SitePolicy {
  balance: Balance
  /** Relative share of streams per site (round-robin, least-loaded), default 1. */
  weights: Readonly<Record<string, number>>
  /** Failover order per site: lower first, default 0. */
  priorities: Readonly<Record<string, number>>
}

export const DEFAULT_SITE_POLICY: SitePolicy = { balance: 'round-robin', weights: {}, priorities: {} }

export interface SiteView {
  site: string
  /** It has an instance that can take a stream to the share now. */
  usable: boolean
  /** One of its usable instances answered its keepalives lately. */
  responsive: boolean
  ejected: boolean
  streams: number
  rttMs: number | null
}

/** Smooth weighted round robin state, per listener (nginx's algorithm: deterministic, interleaved). */
export class RoundRobin {
  private readonly current = new Map<string, number>()

  /** The next of `sites` by weight; updates the state. */
  next (sites: readonly string[], weight: (site: string) => number): string | undefined {
    let total = 0
    let best: string | undefined
    let bestValue = -Infinity
    for (const s of sites) {
      const w = weight(s)
      total += w
      const v = (this.current.get(s) ?? 0) + w
      this.current.set(s, v)
      if (v > bestValue) { bestValue = v; best = s }
    }
    if (best !== undefined) this.current.set(best, (this.current.get(best) ?? 0) - total)
    return best
  }
}

/** The sites to try for a new stream, best first (see SitePolicy); `rr` holds the round-robin state. */
export function rankSites (views: readonly SiteView[], policy: SitePolicy, rr: RoundRobin): string[] {
  const weight = (s: string): number => Math.max(0, policy.weights[s] ?? 1)
  const priority = (s: string): number => policy.priorities[s] ?? 0
  const usable = views.filter(v => v.usable && v.responsive && !v.ejected && weight(v.site) > 0)
  const byPriority = [...new Set(usable.map(v => priority(v.site)))].sort((a, b) => a - b)
  const order: string[] = []
  for (const p of byPriority) {
    const tier = usable.filter(v => priority(v.site) === p)
    let first: string | undefined
    if (policy.balance === 'round-robin') first = rr.next(tier.map(v => v.site), weight)
    const rest = [...tier].sort((a, b) => policy.balance === 'nearest'
      ? (a.rttMs ?? Number.MAX_SAFE_INTEGER) - (b.rttMs ?? Number.MAX_SAFE_INTEGER) || a.streams / weight(a.site) - b.streams / weight(b.site)
      : a.streams / weight(a.site) - b.streams / weight(b.site) || (a.rttMs ?? Number.MAX_SAFE_INTEGER) - (b.rttMs ?? Number.MAX_SAFE_INTEGER))
    if (first !== undefined) order.push(first)
    for (const v of rest) if (v.site !== first) order.push(v.site)
  }
  // last resorts: silent sites, then ejected ones, then sites weighted 0
  const rest = views.filter(v => v.usable && !order.includes(v.site))
  for (const v of [...rest.filter(v => !v.responsive && !v.ejected), ...rest.filter(v => v.ejected), ...rest.filter(v => v.responsive && !v.ejected)]) if (!order.includes(v.site)) order.push(v.site)
  return order
}

/**
 * Outlier ejection per site (as Envoy's consecutive-errors detection): a site whose streams
 * failed `failures` times in a row before any byte is ejected for `ejectMs`; a success resets
 * the count. Bounded: one entry per site name seen.
 */
export class SiteHealth {
  private readonly state = new Map<string, { failures: number, ejectedUntil: number }>()
  readonly failures: number
  readonly ejectMs: number
  constructor (failures = 3, ejectMs = 30_000) { this.failures = failures; this.ejectMs = ejectMs }

  ok (site: string): void { this.state.set(site, { failures: 0, ejectedUntil: 0 }) }

  failed (site: string, now = Date.now()): boolean {
    const s = this.state.get(site) ?? { failures: 0, ejectedUntil: 0 }
    s.failures++
    if (s.failures >= this.failures) { s.ejectedUntil = now + this.ejectMs; s.failures = 0 }
    this.state.set(site, s)
    return s.ejectedUntil > now
  }

  ejected (site: string, now = Date.now()): boolean { return (this.state.get(site)?.ejectedUntil ?? 0) > now }
}
