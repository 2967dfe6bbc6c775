/** Unit tests of the merged-import plan: grouping across sites, KEP-1645 conflict resolution, per-pod grouping, names. */
import { describe, expect, it } from 'vitest'
import { conditionsOf } from './merged.ts'
import { clustersetName, planMerged, podServiceName } from './merged-plan.ts'

describe('planMerged', () => {
  it('one group per share name, oldest export first; withdrawn or gone sites are not live', () => {
    const groups = planMerged([
      { site: 'west', connected: true, shares: [{ name: 'web', port: 8080, since: 2000, service: 'web', namespace: 'default' }] },
      { site: 'east', connected: true, shares: [{ name: 'web', port: 8080, since: 1000, service: 'web', namespace: 'default', failover: 'local-first' }, { name: 'db', port: 5432, available: false }] },
      { site: 'north', connected: false, shares: [{ name: 'web', port: 8080, since: 3000 }] },
    ])
    expect(groups.map((g) => g.share)).toEqual(['db', 'web'])
    const web = groups[1]
    expect(web?.sites.map((s) => [s.site, s.live])).toEqual([['east', true], ['west', true], ['north', false]])
    expect(web).toMatchObject({ port: 8080, service: 'web', namespace: 'default', localFirst: true, headless: false, conflicts: [] })
    expect(groups[0]?.sites.map((s) => s.live)).toEqual([false])
  })

  it('port conflict: the oldest export\'s port wins and a conflict says why; another protocol is left out', () => {
    const [g] = planMerged([
      { site: 'a', connected: true, shares: [{ name: 'web', port: 81, since: 20 }] },
      { site: 'b', connected: true, shares: [{ name: 'web', port: 80, since: 10 }] },
      { site: 'c', connected: true, shares: [{ name: 'web', port: 80, since: 30, protocol: 'udp' }] },
    ])
    expect(g?.port).toBe(80)
    expect(g?.sites.map((s) => s.site)).toEqual(['b', 'a'])
    expect(g?.conflicts.map((c) => c.reason)).toEqual(['PortConflict', 'ProtocolConflict'])
    expect(g?.conflicts[0]?.message).toContain('cluster a exports port 81, cluster b (oldest export) 80')
  })

  it('per-pod: sub-shares grouped by pod name under their parent; a pod name from two sites stays with the older export', () => {
    const [g] = planMerged([
      { site: 'east', connected: true, shares: [{ name: 'db', port: 5432, since: 1, pods: true }, { name: 'db.db-0', parent: 'db', pod: 'db-0' }, { name: 'db.db-1', parent: 'db', pod: 'db-1' }] },
      { site: 'west', connected: true, shares: [{ name: 'db', port: 5432, since: 2, pods: true }, { name: 'db.db-1', parent: 'db', pod: 'db-1' }, { name: 'db.db-2', parent: 'db', pod: 'db-2' }] },
    ])
    expect(g?.headless).toBe(true)
    expect(g?.pods.map((p) => `${p.pod}@${p.site}`)).toEqual(['db-0@east', 'db-1@east', 'db-2@west'])
    expect(g?.conflicts).toEqual([{ reason: 'PodConflict', message: expect.stringContaining('pod db-1 is exported by cluster east and cluster west') }])
  })

  it('names: <share>-clusterset, <pod>-<service>', () => {
    expect(clustersetName('web')).toBe('web-clusterset')
    expect(podServiceName('db-0', 'db')).toBe('db-0-db')
  })

  it('ServiceImport conditions: Ready while a cluster is live, Conflict with every reason\'s message', () => {
    const [g] = planMerged([
      { site: 'a', connected: true, shares: [{ name: 'web', port: 81, since: 20 }] },
      { site: 'b', connected: false, shares: [{ name: 'web', port: 80, since: 10 }] },
    ])
    if (g === undefined) throw new Error('no group')
    expect(conditionsOf(g, ['a'])).toEqual([
      { type: 'Ready', status: 'True', reason: 'ClustersLive', message: 'live: a' },
      { type: 'Conflict', status: 'True', reason: 'PortConflict', message: expect.stringContaining('cluster a exports port 81') },
    ])
    expect(conditionsOf({ ...g, conflicts: [] }, [])).toEqual([
      { type: 'Ready', status: 'False', reason: 'NoLiveCluster', message: expect.any(String) },
      { type: 'Conflict', status: 'False', reason: 'NoConflicts', message: 'no conflicts' },
    ])
  })
})
