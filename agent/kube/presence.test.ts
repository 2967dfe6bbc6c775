import type * as k8s from '@kubernetes/client-node'
import { describe, expect, it } from 'vitest'
import { InstancePresence, objectName, type LeaseApi } from './presence.ts'

/** Leases in memory: each write bumps the resourceVersion, as the API server does. */
class Leases implements LeaseApi {
  readonly items = new Map<string, k8s.V1Lease>()
  private rv = 0
  private put(l: k8s.V1Lease): k8s.V1Lease {
    const stored = { ...l, metadata: { ...l.metadata, resourceVersion: String(++this.rv) } }
    this.items.set(l.metadata?.name ?? '', stored)
    return stored
  }
  async readNamespacedLease(p: { name: string }): Promise<k8s.V1Lease> {
    const l = this.items.get(p.name)
    if (l === undefined) throw Object.assign(new Error('not found'), { code: 404 })
    return l
  }
  async replaceNamespacedLease(p: { body: k8s.V1Lease }): Promise<k8s.V1Lease> { return this.put(p.body) }
  async createNamespacedLease(p: { body: k8s.V1Lease }): Promise<k8s.V1Lease> { return this.put(p.body) }
  async listNamespacedLease(): Promise<k8s.V1LeaseList> { return { items: [...this.items.values()] } }
  async deleteNamespacedLease(p: { name: string }): Promise<k8s.V1Status> { this.items.delete(p.name); return {} }
}

const clock = () => {
  let t = 5_000_000
  return { now: () => t, advance: (ms: number) => void (t += ms) }
}

describe('objectName', () => {
  it('keeps a clean DNS label; adds a hash when the text had to change, so distinct instances differ', () => {
    expect(objectName('db-east', 'east-1')).toBe('db-east-east-1')
    const a = objectName('db-east', 'Pod_A')
    const b = objectName('db-east', 'pod-a')
    expect(a).toMatch(/^db-east-pod-a-[0-9a-f]{8}$/)
    expect(b).toBe('db-east-pod-a')
    const long = objectName('s'.repeat(63), 'east-1')
    expect(long.length).toBeLessThanOrEqual(63)
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  })
})

describe('InstancePresence', () => {
  it('another instance is alive while its presence Lease changes, gone once it stood still for the lease duration', async () => {
    const c = clock()
    const api = new Leases()
    const mk = (instance: string) => new InstancePresence({ api, namespace: 'ns', site: 'east', instance, leaseDurationMs: 3000, now: c.now })
    const a = mk('a')
    const b = mk('b')
    await a.renew()
    await b.renew()
    expect([...api.items.keys()].sort()).toEqual(['causeway-east-a', 'causeway-east-b'])
    await a.refresh()
    // before watching for a lease duration a new observer cannot tell: everyone counts as alive
    expect(a.alive('ghost')).toBe(true)
    for (let i = 0; i < 4; i++) {
      c.advance(1000)
      await b.renew()
      await a.refresh()
    }
    expect([a.alive('b'), a.alive('ghost'), a.alive('a')]).toEqual([true, false, true])
    // b dies: its Lease stands still
    c.advance(2999)
    await a.refresh()
    expect(a.alive('b')).toBe(true)
    c.advance(1)
    await a.refresh()
    expect(a.alive('b')).toBe(false)
    await a.collect()
    expect([...api.items.keys()]).toEqual(['causeway-east-a'])
    await a.remove()
    expect(api.items.size).toBe(0)
  })
})
