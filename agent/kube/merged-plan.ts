/**
 * Merged imports, the pure part: which share names the connected sites export, grouped by name
 * (one merged import per name, whatever the number of exporting sites), with KEP-1645's
 * conflict resolution (the oldest export wins: its port, protocol and type are the import's;
 * the others are named in a condition), and the names the import's objects take.
 *
 * Ordering of the exports of one name: `since` (the export's creation, announced by the
 * exporter), oldest first; an export that announces none comes after those that do; ties by
 * site name. A site whose export has another protocol than the oldest's is left out of the
 * group (one listener is either TCP or UDP); another port or type (per-pod or not) is only
 * reported. Per-pod sub-shares (`parent` = the group's name) are grouped by pod name; two sites
 * exporting the same pod name: the older export keeps it.
 */
import { dnsLabel } from './kubeutil.ts'
import type { RemoteShare } from './ports.ts'

/** A site's catalog as the imports reconciler keeps it. */
export interface SiteShares {
  site: string
  shares: readonly RemoteShare[]
  /** The site is connected now (a gone site's imports stay, not ready, during the grace period). */
  connected: boolean
}

export interface MergedSite {
  site: string
  share: RemoteShare
  /** Connected and not withdrawn: it can take streams. */
  live: boolean
}

export interface MergedPod {
  pod: string
  site: string
  /** The sub-share (its name is what the per-pod listener opens). */
  share: RemoteShare
  live: boolean
}

export type ConflictReason = 'PortConflict' | 'ProtocolConflict' | 'TypeConflict' | 'PodConflict'

export interface MergedGroup {
  share: string
  /** The exporting sites, oldest export first. */
  sites: MergedSite[]
  oldest: MergedSite
  /** The oldest export's Service port, protocol, Service name and namespace. */
  port?: number
  protocol?: 'udp'
  service?: string
  namespace?: string
  /** The oldest export asks for `causeway.dev/failover: local-first`. */
  localFirst: boolean
  /** Per-pod addressing (the oldest export's `causeway.dev/pods`): a headless import with one Service per pod. */
  headless: boolean
  pods: MergedPod[]
  conflicts: Array<{ reason: ConflictReason; message: string }>
}

const proto = (s: RemoteShare): string => (s.protocol === 'udp' ? 'UDP' : 'TCP')
const older = (a: { since?: number; site: string }, b: { since?: number; site: string }): number =>
  (a.since ?? Number.MAX_SAFE_INTEGER) - (b.since ?? Number.MAX_SAFE_INTEGER) || a.site.localeCompare(b.site)

/** The merged groups of every share name the sites export (pure; sorted by share name). */
export function planMerged(sites: readonly SiteShares[]): MergedGroup[] {
  const byName = new Map<string, MergedSite[]>()
  const subs = new Map<string, Array<{ site: string; share: RemoteShare; connected: boolean }>>()
  for (const st of sites) {
    for (const share of st.shares) {
      if (share.parent !== undefined) {
        if (share.pod === undefined) continue
        const list = subs.get(share.parent) ?? []
        list.push({ site: st.site, share, connected: st.connected })
        subs.set(share.parent, list)
        continue
      }
      const list = byName.get(share.name) ?? []
      list.push({ site: st.site, share, live: st.connected && share.available !== false })
      byName.set(share.name, list)
    }
  }
  const out: MergedGroup[] = []
  for (const [name, all] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    const sorted = [...all].sort((a, b) => older({ since: a.share.since, site: a.site }, { since: b.share.since, site: b.site }))
    const oldest = sorted[0]
    if (oldest === undefined) continue
    const conflicts: MergedGroup['conflicts'] = []
    const kept: MergedSite[] = []
    const o = `cluster ${oldest.site} (oldest export)`
    for (const s of sorted) {
      if (proto(s.share) !== proto(oldest.share)) {
        conflicts.push({ reason: 'ProtocolConflict', message: `cluster ${s.site} exports ${name} over ${proto(s.share)}, ${o} over ${proto(oldest.share)}: ${s.site} is left out` })
        continue
      }
      kept.push(s)
      if (s.share.port !== oldest.share.port) conflicts.push({ reason: 'PortConflict', message: `cluster ${s.site} exports port ${s.share.port ?? '?'}, ${o} ${oldest.share.port ?? '?'}: the import uses ${oldest.share.port ?? '?'}` })
      if ((s.share.pods === true) !== (oldest.share.pods === true)) conflicts.push({ reason: 'TypeConflict', message: `cluster ${s.site} exports ${name} ${s.share.pods === true ? 'with' : 'without'} per-pod addressing, ${o} ${oldest.share.pods === true ? 'with' : 'without'}: the import follows ${oldest.site}` })
    }
    const headless = oldest.share.pods === true
    const pods: MergedPod[] = []
    if (headless) {
      const keptSites = new Set(kept.map((s) => s.site))
      const bySince = new Map(kept.map((s) => [s.site, s.share.since]))
      const candidates = (subs.get(name) ?? []).filter((x) => keptSites.has(x.site)).sort((a, b) => older({ since: bySince.get(a.site), site: a.site }, { since: bySince.get(b.site), site: b.site }))
      const taken = new Map<string, string>()
      for (const c of candidates) {
        const pod = c.share.pod ?? ''
        const owner = taken.get(pod)
        if (owner !== undefined) {
          conflicts.push({ reason: 'PodConflict', message: `pod ${pod} is exported by cluster ${owner} and cluster ${c.site}: ${owner} (older export) keeps the name` })
          continue
        }
        taken.set(pod, c.site)
        pods.push({ pod, site: c.site, share: c.share, live: c.connected && c.share.available !== false })
      }
      pods.sort((a, b) => a.pod.localeCompare(b.pod))
    }
    out.push({
      share: name,
      sites: kept,
      oldest,
      ...(oldest.share.port !== undefined ? { port: oldest.share.port } : {}),
      ...(oldest.share.protocol === 'udp' ? { protocol: 'udp' as const } : {}),
      ...(oldest.share.service !== undefined ? { service: oldest.share.service } : {}),
      ...(oldest.share.namespace !== undefined ? { namespace: oldest.share.namespace } : {}),
      localFirst: oldest.share.failover === 'local-first',
      headless,
      pods,
      conflicts,
    })
  }
  return out
}

/** The fallback name of a merged import: `<share>-clusterset` (the per-site scheme `<share>-<peer>` with the word `clusterset` for the peer). */
export const clustersetName = (share: string): string => dnsLabel(`${share}-clusterset`)

/** The Service of pod `pod` of merged import `service`: `<pod>-<service>`. */
export const podServiceName = (pod: string, service: string): string => dnsLabel(`${pod}-${service}`)
