import { describe, expect, it } from 'vitest'
import { decodeLane, encodeLane, encodeLaneCredit, FROM_ACCEPTOR, FROM_OPENER, LANE_HEADER, LaneMeter, pickLane, Reassembly, type LaneView } from './stripe.ts'

const bytes = (n: number, fill = n & 0xff): Uint8Array => new Uint8Array(n).fill(fill)

describe('lane messages', () => {
  it('round-trip flags, id, a 48-bit offset and the payload', () => {
    const payload = Uint8Array.from([1, 2, 3, 4, 5])
    for (const offset of [0, 1, 0xffff_ffff, 2 ** 32 + 7, 2 ** 48 - 6]) {
      const m = decodeLane(encodeLane(FROM_ACCEPTOR, 0xdead_beef, offset, payload).buffer)
      expect(m).toEqual({ from: FROM_ACCEPTOR, id: 0xdead_beef, offset, bytes: payload, credit: false })
      expect(decodeLane(encodeLaneCredit(FROM_OPENER, 7, offset))).toMatchObject({ from: FROM_OPENER, id: 7, offset, credit: true })
    }
    // from a view with an offset into a larger buffer
    const framed = encodeLane(FROM_OPENER, 3, 9, payload)
    const big = new Uint8Array(framed.length + 10)
    big.set(framed, 4)
    expect(decodeLane(big.subarray(4, 4 + framed.length))?.offset).toBe(9)
  })

  it('refuses what is not one', () => {
    expect(decodeLane('text')).toBeNull()
    expect(decodeLane(new Uint8Array(LANE_HEADER).buffer)).toBeNull() // bytes without payload
    const creditWithBytes = encodeLane(FROM_OPENER, 1, 0, bytes(4))
    creditWithBytes[0] = FROM_OPENER | 4
    expect(decodeLane(creditWithBytes)).toBeNull()
    const bad = encodeLane(FROM_OPENER, 1, 0, bytes(4))
    bad[0] = 9
    expect(decodeLane(bad)).toBeNull()
    expect(() => encodeLane(FROM_OPENER, 1, 2 ** 48 - 2, bytes(4))).toThrow(RangeError)
  })
})

describe('Reassembly', () => {
  const collect = (): { out: number[], deliver: (b: Uint8Array) => void } => {
    const out: number[] = []
    return { out, deliver: (b) => { out.push(...b) } }
  }

  it('delivers in stream order whatever the arrival order, each byte once', () => {
    const r = new Reassembly()
    const { out, deliver } = collect()
    // offsets 0..11 in chunks of 3, arriving 9, 3, 6, 0
    const chunk = (o: number): Uint8Array => Uint8Array.from([o, o + 1, o + 2])
    expect(r.push(9, chunk(9), 100, deliver)).toBe('ok')
    expect(r.push(3, chunk(3), 100, deliver)).toBe('ok')
    expect(r.push(6, chunk(6), 100, deliver)).toBe('ok')
    expect(out).toEqual([])
    expect(r.held).toBe(9)
    expect(r.pending).toBe(3)
    expect(r.push(0, chunk(0), 100, deliver)).toBe('ok')
    expect(out).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    expect(r.held).toBe(0)
    expect(r.delivered).toBe(12)
  })

  it('a chunk past the credit is a flow-control violation, before anything is held', () => {
    const r = new Reassembly()
    const { deliver } = collect()
    expect(r.push(90, bytes(11), 100, deliver)).toBe('FLOW_CONTROL_VIOLATION')
    expect(r.held).toBe(0)
    expect(r.push(0, bytes(100), 100, deliver)).toBe('ok')
  })

  it('never holds more than the window, even from overlapping chunks', () => {
    const r = new Reassembly()
    const { deliver } = collect()
    // window 10 bytes ahead of delivered 0: chunks at 1..5 of 5 bytes each overlap
    expect(r.push(1, bytes(5), 10, deliver)).toBe('ok')
    expect(r.push(2, bytes(5), 10, deliver)).toBe('ok')
    expect(r.push(3, bytes(5), 10, deliver)).toBe('FLOW_CONTROL_VIOLATION')
    expect(r.held).toBe(10)
  })

  it('refuses duplicates, bytes before what was delivered, empty chunks', () => {
    const r = new Reassembly()
    const { deliver } = collect()
    expect(r.push(4, bytes(4), 100, deliver)).toBe('ok')
    expect(r.push(4, bytes(4), 100, deliver)).toBe('BAD_MESSAGE')
    expect(r.push(0, bytes(4), 100, deliver)).toBe('ok')
    expect(r.push(2, bytes(4), 100, deliver)).toBe('BAD_MESSAGE')
    expect(r.push(8, new Uint8Array(0), 100, deliver)).toBe('BAD_MESSAGE')
  })

  it('a fin that overtakes bytes completes once they arrive; bytes past it are refused', () => {
    const r = new Reassembly()
    const { out, deliver } = collect()
    expect(r.push(0, bytes(4), 100, deliver)).toBe('ok')
    expect(r.fin(8)).toBe('ok')
    expect(r.finKnown).toBe(true)
    expect(r.complete).toBe(false)
    expect(r.push(8, bytes(1), 100, deliver)).toBe('BAD_MESSAGE')
    expect(r.push(4, bytes(4), 100, deliver)).toBe('ok')
    expect(r.complete).toBe(true)
    expect(out.length).toBe(8)
  })

  it('a fin below bytes already seen, or a second fin, is refused', () => {
    const r = new Reassembly()
    const { deliver } = collect()
    expect(r.push(10, bytes(5), 100, deliver)).toBe('ok')
    expect(r.fin(12)).toBe('BAD_MESSAGE')
    expect(r.fin(15)).toBe('ok')
    expect(r.fin(15)).toBe('BAD_MESSAGE')
  })
})

describe('pickLane', () => {
  const lane = (o: Partial<LaneView>): LaneView => ({ queued: 0, buffered: 0, highWater: 64 << 10, budget: 256 << 10, rate: 0, ...o })

  it('picks the lane that delivers first: queued over drain rate', () => {
    // 100 KiB at 10 B/ms = 10 s; 200 KiB at 100 B/ms = 2 s
    expect(pickLane([lane({ queued: 100 << 10, rate: 10 }), lane({ queued: 200 << 10, rate: 100 })], 1000)).toBe(1)
    // same rate: least queued
    expect(pickLane([lane({ queued: 5000, rate: 50 }), lane({ queued: 10, rate: 50 }), lane({ queued: 500, rate: 50 })], 1000)).toBe(1)
  })

  it('skips lanes without room: own channel at high water, association at its budget', () => {
    expect(pickLane([lane({ buffered: 64 << 10 }), lane({ queued: 256 << 10 }), lane({ queued: 1000 })], 1000)).toBe(2)
    expect(pickLane([lane({ buffered: 64 << 10 }), lane({ queued: 256 << 10 })], 1000)).toBe(-1)
    expect(pickLane([], 1000)).toBe(-1)
  })

  it('a stalled lane (drain rate ~0) gets nothing while another drains', () => {
    expect(pickLane([lane({ queued: 1000, rate: 0.001 }), lane({ queued: 60_000, rate: 30 })], 1000)).toBe(1)
  })

  it('a lane not measured yet counts as the best rate seen', () => {
    expect(pickLane([lane({ queued: 50_000, rate: 40 }), lane({ queued: 1000, rate: 0 })], 1000)).toBe(1)
  })
})

describe('LaneMeter', () => {
  it('measures what drained between samples, smoothed', () => {
    const m = new LaneMeter(0, 20)
    m.sent(10_000)
    m.sample(10, 0) // too soon: ignored
    expect(m.rate).toBe(0)
    m.sample(20, 2000) // 10 000 sent, 2000 still queued: 8000 in 20 ms
    expect(m.rate).toBe(400)
    m.sample(40, 2000) // nothing drained: the rate decays
    expect(m.rate).toBeCloseTo(280)
    m.sample(60, 0) // 2000 in 20 ms
    expect(m.rate).toBeCloseTo(0.7 * 280 + 0.3 * 100)
  })

  it('an idle lane keeps its rate', () => {
    const m = new LaneMeter(0, 20)
    m.sent(4000)
    m.sample(20, 0)
    m.sample(100, 0)
    expect(m.rate).toBe(200)
  })
})
