import { describe, expect, it } from 'vitest'
import { rankInstances, rankSites, RoundRobin, SiteHealth, siteCatalog, type InstanceView, type SiteView } from './instances.ts'

const inst = (peer: string, o: Partial<InstanceView<string>> = {}): InstanceView<string> => ({ peer, routable: true, responsive: true, draining: false, offers: true, streams: 0, rttMs: 10, ...o })
const site = (name: string, o: Partial<SiteView> = {}): SiteView => ({ site: name, usable: true, responsive: true, ejected: false, streams: 0, rttMs: 10, ...o })

describe('rankInstances', () => {
  it('answering, non-draining instances first (least loaded, then nearest); silent ones next; draining last; unroutable or not offering never', () => {
    const order = rankInstances([
      inst('draining', { draining: true }),
      inst('busy', { streams: 5 }),
      inst('silent', { responsive: false }),
      inst('idle-far', { rttMs: 80 }),
      inst('idle-near', { rttMs: 5 }),
      inst('down', { routable: false }),
      inst('no-share', { offers: false }),
      inst('no-catalog-yet', { offers: undefined, streams: 9 }),
    ])
    expect(order).toEqual(['idle-near', 'idle-far', 'busy', 'no-catalog-yet', 'silent', 'draining'])
  })

  it('nearest puts RTT before load; round-robin rotates within a tier', () => {
    expect(rankInstances([inst('a', { streams: 0, rttMs: 50 }), inst('b', { streams: 3, rttMs: 5 })], 'nearest')).toEqual(['b', 'a'])
    const views = [inst('a'), inst('b'), inst('c')]
    expect([0, 1, 2, 3].map(t => rankInstances(views, 'round-robin', t)[0])).toEqual(['a', 'b', 'c', 'a'])
  })
})

describe('rankSites', () => {
  const policy = { balance: 'round-robin' as const, weights: {}, priorities: {} }

  it('smooth weighted round robin spreads by weight and interleaves', () => {
    const rr = new RoundRobin()
    const picks = Array.from({ length: 8 }, () => rankSites([site('east'), site('west')], { ...policy, weights: { east: 3 } }, rr)[0])
    expect(picks.filter(p => p === 'east')).toHaveLength(6)
    expect(picks.slice(0, 4)).toEqual(['east', 'east', 'west', 'east'])
  })

  it('priorities fail over in order; silent, ejected and zero-weight sites only as last resorts', () => {
    const rr = new RoundRobin()
    expect(rankSites([site('b'), site('a')], { ...policy, priorities: { a: 0, b: 1 } }, rr)).toEqual(['a', 'b'])
    expect(rankSites([site('a', { usable: false }), site('b')], { ...policy, priorities: { a: 0, b: 1 } }, rr)).toEqual(['b'])
    expect(rankSites([site('a', { responsive: false }), site('b', { ejected: true }), site('c', {}), site('d')], { ...policy, weights: { d: 0 }, priorities: { c: 5 } }, rr)).toEqual(['c', 'a', 'b', 'd'])
  })

  it('least-loaded counts streams per unit of weight; nearest the lowest RTT', () => {
    const rr = new RoundRobin()
    expect(rankSites([site('a', { streams: 4 }), site('b', { streams: 3 })], { ...policy, balance: 'least-loaded', weights: { a: 2 } }, rr)).toEqual(['a', 'b'])
    expect(rankSites([site('a', { rttMs: 40 }), site('b', { rttMs: 20, streams: 9 })], { ...policy, balance: 'nearest' }, rr)).toEqual(['b', 'a'])
  })
})

describe('SiteHealth', () => {
  it('ejects after three failures in a row, for ejectMs; a success resets the count', () => {
    const h = new SiteHealth(3, 1000)
    expect(h.failed('a', 0)).toBe(false)
    expect(h.failed('a', 0)).toBe(false)
    h.ok('a')
    expect(h.failed('a', 0)).toBe(false)
    expect(h.failed('a', 0)).toBe(false)
    expect(h.failed('a', 0)).toBe(true)
    expect(h.ejected('a', 999)).toBe(true)
    expect(h.ejected('a', 1000)).toBe(false)
  })
})

describe('siteCatalog', () => {
  it('is the union of the instances\' catalogs, a non-draining instance\'s entry first', () => {
    expect(siteCatalog([])).toBeNull()
    const got = siteCatalog([
      { shares: [{ name: 'web', protocol: 'tcp', port: 1 }], draining: true },
      { shares: [{ name: 'web', protocol: 'tcp', port: 2 }, { name: 'db', protocol: 'tcp' }], draining: false },
    ])
    expect(got).toEqual([{ name: 'web', protocol: 'tcp', port: 2 }, { name: 'db', protocol: 'tcp' }])
  })
})
