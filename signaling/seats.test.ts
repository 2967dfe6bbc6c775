import { describe, expect, it } from 'vitest'
import { decideSeat, seatAddress, seatRefusal, type HeldSeat } from './seats.ts'

describe('seatAddress', () => {
  it('counts IPv4 as is (also IPv4-mapped), IPv6 by its /64', () => {
    expect(seatAddress('192.0.2.7')).toBe('192.0.2.7')
    expect(seatAddress('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(seatAddress('2001:db8:1:2::1')).toBe(seatAddress('2001:0db8:0001:0002:ffff:eeee:dddd:cccc'))
    expect(seatAddress('2001:db8:1:2::1')).not.toBe(seatAddress('2001:db8:1:3::1'))
    expect(seatAddress('[2001:DB8:1:2::1%eth0]')).toBe('2001:db8:1:2::/64')
  })

  it('makes whatever a proxy header carries into a bounded key of [0-9a-z:._/-] (it goes into Redis key names)', () => {
    for (const junk of ['a b c', 'x"y{}\n\r\u0000', 'é'.repeat(500), '*'.repeat(100), 'room:1:m', '']) {
      const k = seatAddress(junk)
      expect(k).toMatch(/^[0-9a-z:._/-]{1,64}$/)
    }
    expect(seatAddress('')).toBe('unknown')
  })
})

describe('decideSeat', () => {
  const limits = { maxPeers: 4, maxSeatsPerAddress: 2, maxSeatsPerSubject: 2, maxViewers: 2, maxViewersPerAddress: 1 }
  const s = (peer: string, seq: number, address: string, role: 'agent' | 'viewer' = 'agent', subject?: string): HeldSeat => ({ peer, seq, address, role, ...(subject !== undefined ? { subject } : {}) })

  it('names the cap in each refusal', () => {
    expect(seatRefusal('address', limits).message).toMatch(/holds 2 seats/)
    expect(seatRefusal('address', limits).code).toBe('SEAT_LIMIT')
    expect(seatRefusal('viewers_full', limits).code).toBe('ROOM_FULL')
    expect(seatRefusal('subject', limits).reason).toBe('subject')
  })

  it('evicts only viewers and seats without a subject, and never for a join without one', () => {
    const full = [s('a', 1, 'A', 'agent', 'S'), s('b', 2, 'B', 'agent', 'T'), s('c', 3, 'C', 'agent', 'U'), s('d', 4, 'D', 'agent', 'V')]
    expect(decideSeat(full, { address: 'E', subject: 'W', role: 'agent' }, limits)).toEqual({ ok: false, reason: 'room_full' })
    const mixed = [s('a', 1, 'A'), s('b', 2, 'A'), s('v', 3, 'B', 'viewer'), s('c', 4, 'C', 'agent', 'S')]
    expect(decideSeat(mixed, { address: 'E', role: 'agent' }, limits)).toEqual({ ok: false, reason: 'room_full' })
    expect(decideSeat(mixed, { address: 'E', subject: 'W', role: 'viewer' }, limits)).toEqual({ ok: false, reason: 'room_full' })
    expect(decideSeat(mixed, { address: 'E', subject: 'W', role: 'agent' }, limits)).toEqual({ ok: true, evict: mixed[2] })
    expect(decideSeat(mixed.filter(x => x.peer !== 'v').concat(s('d', 5, 'D')), { address: 'E', subject: 'W', role: 'agent' }, limits)).toEqual({ ok: true, evict: mixed[1] })
  })
})
