import { describe, expect, it } from 'vitest'
import { LeaderElector, LeaseConflictError, type LeaseRecord, type LeaseStore, type LeaseWrite } from './lease.ts'

/** One Lease in memory with the API server's optimistic concurrency (resourceVersion). */
class MemoryLease implements LeaseStore {
  rec: LeaseRecord | undefined
  private rv = 0
  writes = 0
  /** Makes the next calls fail (the API server unreachable). */
  down = false
  /** Runs before a write lands (another instance's write in between). */
  beforeWrite: (() => void) | undefined

  async get(): Promise<LeaseRecord | undefined> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    return this.rec === undefined ? undefined : { ...this.rec }
  }
  async create(r: LeaseWrite): Promise<LeaseRecord> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    this.hook()
    if (this.rec !== undefined) throw new LeaseConflictError('exists')
    return this.land(r)
  }
  async replace(r: LeaseWrite, resourceVersion: string): Promise<LeaseRecord> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    this.hook()
    if (this.rec?.resourceVersion !== resourceVersion) throw new LeaseConflictError('modified')
    return this.land(r)
  }
  /** Another writer (an instance not under test) writes `r` directly. */
  land(r: LeaseWrite): LeaseRecord {
    this.writes++
    this.rec = { ...r, resourceVersion: String(++this.rv) }
    return { ...this.rec }
  }
  private hook(): void {
    const h = this.beforeWrite
    this.beforeWrite = undefined
    h?.()
  }
}

const clock = () => {
  let t = 1_000_000
  return { now: () => t, advance: (ms: number) => void (t += ms) }
}

const elector = (store: LeaseStore, identity: string, now: () => number, changes?: boolean[]) =>
  new LeaderElector({ store, identity, now, leaseDurationMs: 15_000, ...(changes ? { onChange: (l: boolean) => void changes.push(l) } : {}) })

describe('LeaderElector', () => {
  it('defaults: renew every third of the lease, step down after two thirds', () => {
    const e = elector(new MemoryLease(), 'a', Date.now)
    expect([e.leaseDurationMs, e.renewPeriodMs, e.renewDeadlineMs]).toEqual([15_000, 5_000, 10_000])
    expect(() => new LeaderElector({ store: new MemoryLease(), identity: 'a', leaseDurationMs: 3000, renewPeriodMs: 2500 })).toThrow(RangeError)
  })

  it('the first instance creates the Lease and leads; the second follows while it renews', async () => {
    const c = clock()
    const store = new MemoryLease()
    const changesA: boolean[] = []
    const a = elector(store, 'a', c.now, changesA)
    const b = elector(store, 'b', c.now)
    await a.tick()
    await b.tick()
    expect(store.rec).toMatchObject({ holder: 'a', leaseDurationSeconds: 15, transitions: 0 })
    expect([a.isLeader(), b.isLeader(), b.holder()]).toEqual([true, false, 'a'])
    for (let i = 0; i < 10; i++) {
      c.advance(5000)
      await a.tick()
      await b.tick()
    }
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false])
    expect(store.rec?.holder).toBe('a')
    expect(store.rec?.renewTime).toBe(new Date(c.now()).toISOString())
    expect(changesA).toEqual([true])
  })

  it('a dead holder is replaced once its record stood still for the lease duration (observed on the follower\'s clock)', async () => {
    const c = clock()
    const store = new MemoryLease()
    const a = elector(store, 'a', c.now)
    const changesB: boolean[] = []
    const b = elector(store, 'b', c.now, changesB)
    await a.tick()
    await b.tick() // b observes a's record now
    // a dies (no more ticks). The record's renewTime is in b's future: clocks are never compared.
    store.rec = { ...store.rec!, renewTime: new Date(c.now() + 3_600_000).toISOString() }
    await b.tick() // changed record: observed again from now
    c.advance(14_999)
    await b.tick()
    expect(b.isLeader()).toBe(false)
    c.advance(1)
    await b.tick()
    expect(b.isLeader()).toBe(true)
    expect(store.rec).toMatchObject({ holder: 'b', transitions: 1 })
    expect(changesB).toEqual([true])
  })

  it('a released Lease (holder cleared) is taken at the next round', async () => {
    const c = clock()
    const store = new MemoryLease()
    const changesA: boolean[] = []
    const a = elector(store, 'a', c.now, changesA)
    const b = elector(store, 'b', c.now)
    await a.tick()
    await b.tick()
    await a.release()
    expect(a.isLeader()).toBe(false)
    expect(changesA).toEqual([true, false])
    expect(store.rec?.holder).toBeUndefined()
    expect(store.rec?.leaseDurationSeconds).toBe(1)
    await b.tick()
    expect(b.isLeader()).toBe(true)
    // released for good: a does not come back
    c.advance(60_000)
    await a.tick()
    expect([a.isLeader(), store.rec?.holder]).toEqual([false, 'b'])
  })

  it('of two instances taking over at once, the stale write gets a conflict and stays a follower', async () => {
    const c = clock()
    const store = new MemoryLease()
    store.land({ holder: 'dead', leaseDurationSeconds: 15, renewTime: new Date(c.now()).toISOString(), transitions: 4 })
    const b = elector(store, 'b', c.now)
    await b.tick()
    c.advance(15_000)
    // between b's read and its write, c takes the Lease over
    store.beforeWrite = () => void store.land({ holder: 'c', leaseDurationSeconds: 15, renewTime: new Date(c.now()).toISOString(), transitions: 5 })
    await b.tick()
    expect(b.isLeader()).toBe(false)
    expect(store.rec).toMatchObject({ holder: 'c', transitions: 5 })
  })

  it('a leader that cannot renew steps down after the renew deadline, before anybody may take over', async () => {
    const c = clock()
    const store = new MemoryLease()
    const changesA: boolean[] = []
    const a = elector(store, 'a', c.now, changesA)
    await a.tick()
    store.down = true
    c.advance(5000)
    await a.tick()
    expect(a.isLeader()).toBe(true)
    c.advance(4999)
    expect(a.isLeader()).toBe(true)
    c.advance(1)
    // isLeader() answers on its own, even with no round running (a hanging renew)
    expect(a.isLeader()).toBe(false)
    await a.tick()
    expect(changesA).toEqual([true, false])
    // the API server comes back: a renews its own Lease and leads again
    store.down = false
    await a.tick()
    expect(a.isLeader()).toBe(true)
    expect(changesA).toEqual([true, false, true])
  })
})

describe('LeaderElector.nextRoundInMs', () => {
  it('a follower tries again exactly when the record it watches expires, not a whole period later', async () => {
    const c = clock()
    const store = new MemoryLease()
    const a = elector(store, 'a', c.now)
    const b = elector(store, 'b', c.now)
    await a.tick()
    expect(a.nextRoundInMs()).toBe(5000) // a leader renews every period
    await b.tick()
    expect(b.nextRoundInMs()).toBe(5000)
    c.advance(12_000) // a is dead: its record, seen 12 s ago, expires in 3 s
    expect(b.nextRoundInMs()).toBe(3000)
    c.advance(3000)
    expect(b.nextRoundInMs()).toBe(0)
    await b.tick()
    expect(b.isLeader()).toBe(true)
  })
})
