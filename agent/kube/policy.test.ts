/** Unit tests of the export policy annotations, withdrawal, per-pod sub-shares and cross-cluster conflicts (pure functions). */
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node'
import { describe, expect, it } from 'vitest'
import { endpointsOf } from './endpoints.ts'
import { crossClusterConflict, MAX_POD_SHARES, podShareName, sharesOfService } from './exports.ts'
import { exportPolicy } from './policy.ts'

const svc = (annotations: Record<string, string>, headless = false): V1Service => ({
  metadata: { name: 'db', namespace: 'data', annotations: { 'causeway.dev/share': 'true', ...annotations } },
  spec: { ...(headless ? { clusterIP: 'None' } : {}), selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432 }] },
})
const slice = (name: string, endpoints: Array<{ ip: string; pod: string; ready?: boolean }>, managedBy?: string): V1EndpointSlice => ({
  metadata: { name, namespace: 'data', labels: { 'kubernetes.io/service-name': 'db', ...(managedBy !== undefined ? { 'endpointslice.kubernetes.io/managed-by': managedBy } : {}) } },
  addressType: 'IPv4',
  endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true }, targetRef: { kind: 'Pod', name: e.pod, namespace: 'data' } })),
  ports: [{ name: 'pg', port: 15432, protocol: 'TCP' }],
})

describe('export policy annotations', () => {
  it('reads balance, failover, weight, priority and pods; reports bad values and leaves them out', () => {
    expect(exportPolicy({ 'causeway.dev/balance': 'nearest', 'causeway.dev/failover': 'local-first', 'causeway.dev/weight': '3', 'causeway.dev/priority': '1', 'causeway.dev/pods': 'true' })).toEqual({
      policy: { balance: 'nearest', failover: 'local-first', weight: 3, priority: 1, pods: true },
      errors: [],
    })
    const bad = exportPolicy({ 'causeway.dev/balance': 'random', 'causeway.dev/weight': '1001', 'causeway.dev/priority': '-1', 'causeway.dev/failover': 'remote', 'causeway.dev/pods': 'yes' })
    expect(bad.policy).toEqual({ pods: false })
    expect(bad.errors).toHaveLength(5)
    expect(bad.errors[0]).toContain('causeway.dev/balance')
  })

  it('the ServiceExport\'s annotations win over the Service\'s; they go into the shares and their announcement', () => {
    const r = sharesOfService(svc({ 'causeway.dev/balance': 'least-loaded', 'causeway.dev/weight': '2' }), true, { exportAnnotations: { 'causeway.dev/weight': '5', 'causeway.dev/failover': 'local-first' }, since: 1000 })
    expect(r.error).toBeUndefined()
    expect(r.shares).toEqual([{ name: 'data-db', host: 'db.data.svc', port: 5432, namespace: 'data', balance: 'least-loaded', weight: 5, announce: { service: 'db', since: 1000, failover: 'local-first' } }])
    expect(sharesOfService(svc({ 'causeway.dev/priority': 'x' })).error).toContain('causeway.dev/priority')
  })
})

describe('withdrawal while the Service has no ready endpoint', () => {
  it('available=false only when slices exist and none has a ready endpoint; a Service without slices is not judged', () => {
    const none = endpointsOf([slice('db-1', [{ ip: '10.0.0.1', pod: 'db-0', ready: false }])], 'data', 'db')
    expect(sharesOfService(svc({}), false, { endpoints: none }).shares[0]?.announce?.available).toBe(false)
    const some = endpointsOf([slice('db-1', [{ ip: '10.0.0.1', pod: 'db-0' }])], 'data', 'db')
    expect(sharesOfService(svc({}), false, { endpoints: some }).shares[0]?.announce?.available).toBeUndefined()
    expect(sharesOfService(svc({}), false, { endpoints: endpointsOf([], 'data', 'db') }).shares[0]?.announce?.available).toBeUndefined()
    // causeway's own import slices never count
    const own = endpointsOf([slice('db-causeway', [{ ip: '10.0.0.9', pod: 'x' }], 'causeway.dev/agent')], 'data', 'db')
    expect(own).toEqual({ slices: 0, ready: [] })
  })
})

describe('per-pod sub-shares', () => {
  it('one sub-share per ready pod, dialing its address and slice port, announced with pod and parent', () => {
    const eps = endpointsOf([slice('db-a', [{ ip: '10.0.0.2', pod: 'db-1' }, { ip: '10.0.0.1', pod: 'db-0' }, { ip: '10.0.0.3', pod: 'db-2', ready: false }])], 'data', 'db')
    const r = sharesOfService(svc({ 'causeway.dev/pods': 'true' }, true), false, { endpoints: eps, since: 5 })
    expect(r.shares.map((s) => [s.name, s.host, s.targetPort, s.port, s.announce?.pod, s.announce?.parent])).toEqual([
      ['data-db', 'db.data.svc', undefined, 5432, undefined, undefined],
      ['data-db.db-0', '10.0.0.1', 15432, 5432, 'db-0', 'data-db'],
      ['data-db.db-1', '10.0.0.2', 15432, 5432, 'db-1', 'data-db'],
    ])
    expect(r.shares[0]?.announce?.pods).toBe(true)
    // never the agent's own loopback or the node's metadata address, whatever a slice says
    const hostile = endpointsOf([slice('db-b', [{ ip: '127.0.0.1', pod: 'db-0' }, { ip: '169.254.169.254', pod: 'db-1' }, { ip: '10.0.0.3', pod: 'db-2' }])], 'data', 'db')
    const h = sharesOfService(svc({ 'causeway.dev/pods': 'true' }, true), false, { endpoints: hostile })
    expect(h.shares.map((s) => s.name)).toEqual(['data-db', 'data-db.db-2'])
    expect(h.error).toContain('pod db-0: address 127.0.0.1 is loopback')
    expect(h.error).toContain('pod db-1: address 169.254.169.254')
    // at most MAX_POD_SHARES per Service; pod names that cannot be hostnames are left out
    const many = endpointsOf([slice('db-c', [...Array.from({ length: MAX_POD_SHARES + 5 }, (_, i) => ({ ip: `10.1.${Math.floor(i / 200)}.${(i % 200) + 1}`, pod: `db-${i}` })), { ip: '10.2.0.1', pod: 'a.b' }])], 'data', 'db')
    const m = sharesOfService(svc({ 'causeway.dev/pods': 'true' }, true), false, { endpoints: many })
    expect(m.shares.filter((s) => s.announce?.pod !== undefined)).toHaveLength(MAX_POD_SHARES)
    expect(m.error).toContain(`more than ${MAX_POD_SHARES} ready pods`)
    expect(m.error).toContain('pod a.b: not a DNS label')
    const long = podShareName('a'.repeat(40), 'b'.repeat(40))
    expect(long.length).toBeLessThanOrEqual(63)
    expect(long).toMatch(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/)
  })
})

describe('cross-cluster conflicts (KEP-1645: the oldest export wins)', () => {
  it('names an older export elsewhere with another port; a younger one or the same port is no conflict', () => {
    const mine = sharesOfService(svc({}), false, { since: 2000 }).shares
    expect(crossClusterConflict(mine, new Map([['east', [{ name: 'data-db', port: 5433, since: 1000 }]]]))).toEqual({ reason: 'PortConflict', message: expect.stringContaining('cluster east exported it first with port 5433/TCP') })
    expect(crossClusterConflict(mine, new Map([['east', [{ name: 'data-db', port: 5433, since: 3000 }]]]))).toBeUndefined()
    expect(crossClusterConflict(mine, new Map([['east', [{ name: 'data-db', port: 5432, since: 1000 }]]]))).toBeUndefined()
  })
})
