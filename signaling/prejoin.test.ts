import { describe, expect, it } from 'vitest'
import { CausewayError } from '../protocol/errors.ts'
import { addressKey, PrejoinLimiter } from './prejoin.ts'

describe('addressKey', () => {
  it('counts IPv4 as is, IPv4-mapped as IPv4, IPv6 by /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7')
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(addressKey('2001:db8:1:2::5')).toBe('2001:db8:1:2::/64')
    expect(addressKey('2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64')
    expect(addressKey('[2001:db8::1]')).toBe('2001:db8:0:0::/64')
    expect(addressKey('::1')).toBe('0:0:0:0::/64')
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64')
  })
})

describe('PrejoinLimiter', () => {
  it('caps per address and in total, and gives slots back once', () => {
    const l = new PrejoinLimiter({ maxPrejoin: 3, maxPrejoinPerAddress: 2 })
    const a1 = l.acquire('192.0.2.1')
    l.acquire('192.0.2.1')
    expect(() => l.acquire('::ffff:192.0.2.1')).toThrow(CausewayError)
    l.acquire('2001:db8::1')
    expect(() => l.acquire('198.51.100.1')).toThrow(/3 sockets/)
    a1()
    a1()
    expect(l.size).toBe(2)
    l.acquire('198.51.100.1')
    try { l.acquire('198.51.100.2'); expect.fail('no cap') } catch (err) { expect((err as CausewayError).code).toBe('TOO_MANY_CONNECTIONS') }
  })
})
