import { describe, expect, it } from 'vitest'
import { instanceCaps, instanceLabel, instanceOf, PeerSignal } from './peer.ts'

describe('instances in hello caps', () => {
  it('round-trips a short name; long names get a bounded, distinct label', () => {
    expect(instanceOf(instanceCaps('east-1'))).toEqual({ label: 'east-1', draining: false })
    expect(instanceOf(instanceCaps('east-1', true))).toEqual({ label: 'east-1', draining: true })
    const a = instanceLabel('causeway-agent-7d9f8c6b5d-x2x4k-and-more-aaaa')
    const b = instanceLabel('causeway-agent-7d9f8c6b5d-x2x4k-and-more-bbbb')
    expect(a.length).toBeLessThanOrEqual(30)
    expect(a).not.toBe(b)
    for (const c of instanceCaps('x'.repeat(64))) expect(c.length).toBeLessThanOrEqual(32)
  })

  it('is absent for agents before instances, and ignores a malformed label', () => {
    expect(instanceOf(['tcp/1', 'udp/1'])).toBeUndefined()
    expect(instanceOf(['instances/1', 'i=bad label!'])).toBeUndefined()
  })

  it('a hello that announces an instance has only the fields the previous release\'s strict schema knows', () => {
    const hello = { type: 'hello', name: 'east', role: 'agent', caps: ['tcp/1', 'udp/1', ...instanceCaps('east-1', true)] }
    expect(PeerSignal.safeParse(hello).success).toBe(true)
    // protocol/peer.ts Hello before instances: type, name, role, caps, grants, grantSig, relay, cred, proof, crl
    expect(Object.keys(hello).every(k => ['type', 'name', 'role', 'caps', 'grants', 'grantSig', 'relay', 'cred', 'proof', 'crl'].includes(k))).toBe(true)
  })
})
