import { describe, expect, it } from 'vitest'
import { AssocQueue } from './assoc-queue.ts'
import { until } from '../../test/until.ts'

/** The part of RTCDataChannel the queue reads. */
class FakeChannel extends EventTarget {
  bufferedAmount = 0
  readyState: RTCDataChannelState = 'open'
  close (): void { this.readyState = 'closed'; this.dispatchEvent(new Event('close')) }
}
const fake = (n = 0): FakeChannel & RTCDataChannel => Object.assign(new FakeChannel(), { bufferedAmount: n }) as FakeChannel & RTCDataChannel

describe('AssocQueue', () => {
  it('sums what its open channels hold and forgets closed ones', async () => {
    const q = new AssocQueue()
    const a = fake(1000)
    const b = fake(500)
    q.add(a)
    q.add(b)
    q.add(a)
    expect(q.size).toBe(2)
    expect(q.queued()).toBe(1500)
    b.close()
    await new Promise(resolve => setTimeout(resolve, 2))
    expect(q.queued()).toBe(1000)
    expect(q.has(b)).toBe(false)
  })

  it('wakes a waiter once the sum drops to its mark, and a cancelled one never', async () => {
    const q = new AssocQueue()
    const a = fake(300_000)
    q.add(a)
    let woke = 0
    let cancelledWoke = 0
    q.whenBelow(100_000, () => { woke++ })
    const cancel = q.whenBelow(100_000, () => { cancelledWoke++ })
    cancel()
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(woke).toBe(0)
    a.bufferedAmount = 50_000
    await until(() => woke === 1, 2000, 'the waiter to wake')
    expect(cancelledWoke).toBe(0)
    // below already: at once
    q.whenBelow(100_000, () => { woke++ })
    expect(woke).toBe(2)
  })

  it('close wakes every waiter', () => {
    const q = new AssocQueue()
    q.add(fake(1 << 20))
    let woke = 0
    q.whenBelow(0, () => { woke++ })
    q.whenBelow(0, () => { woke++ })
    q.close()
    expect(woke).toBe(2)
  })
})
