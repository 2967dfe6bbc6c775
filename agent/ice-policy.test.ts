import { describe, expect, it } from 'vitest'
import { addressRefusal, applyIcePolicy, icePolicy } from './ice-policy.ts'

const dns: Record<string, string[]> = {
  'turn.example.org': ['198.51.100.7'],
  'evil.example.org': ['198.51.100.8', '10.0.0.5'],
  'v6.example.org': ['2001:db8::7'],
}
const resolve = async (host: string): Promise<string[]> => { const a = dns[host]; if (a === undefined) throw new Error('ENOTFOUND'); return a }

describe('ICE policy for /v1/ice', () => {
  it('keeps public STUN/TURN servers on ICE ports, pinning names to their checked address', async () => {
    const r = await applyIcePolicy({
      iceServers: [
        { urls: ['stun:198.51.100.1:3478', 'turn:turn.example.org:443?transport=tcp', 'turns:turn.example.org:5349?transport=tcp'], username: 'u', credential: 'c' },
        { urls: 'stun:[2001:db8::1]' },
      ],
      relays: ['/ip4/198.51.100.4/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '/dns4/turn.example.org/tcp/443/wss/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'],
    }, icePolicy(), resolve)
    expect(r.refused).toEqual([])
    expect(r.iceServers).toEqual([
      { urls: ['stun:198.51.100.1:3478', 'turn:198.51.100.7:443?transport=tcp', 'turns:turn.example.org:5349?transport=tcp'], username: 'u', credential: 'c' },
      { urls: 'stun:[2001:db8::1]' },
    ])
    expect(r.relays[1]).toBe('/dns4/turn.example.org/tcp/443/wss/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')
  })

  it('refuses internal hosts, other ports, names resolving inside, other schemes and extras, saying why', async () => {
    const urls = [
      'turn:10.0.0.5:22?transport=tcp', 'stun:169.254.169.254:80', 'stun:127.0.0.1:6379', 'stun:[::1]:3478', 'stun:[::ffff:10.1.2.3]:3478',
      'stun:100.64.0.1', 'stun:[fd00::1]', 'stun:198.51.100.1:6379', 'turn:evil.example.org', 'stun:nowhere.example.org', 'http://198.51.100.1/', 'turn:198.51.100.1:3478?transport=sctp',
    ]
    const r = await applyIcePolicy({ iceServers: [{ urls }], relays: ['/ip4/10.0.0.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '/ip4/198.51.100.4/tcp/22/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '/ip4/198.51.100.4/udp/4001/quic'] }, icePolicy(), resolve)
    expect(r.iceServers).toEqual([])
    expect(r.relays).toEqual([])
    expect(r.refused.map(x => x.entry)).toEqual([...urls, '/ip4/10.0.0.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '/ip4/198.51.100.4/tcp/22/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '/ip4/198.51.100.4/udp/4001/quic'])
    const why = new Map(r.refused.map(x => [x.entry, x.reason]))
    expect(why.get('turn:10.0.0.5:22?transport=tcp')).toMatch(/internal address/)
    expect(why.get('stun:198.51.100.1:6379')).toMatch(/port 6379 is not an ICE port/)
    expect(why.get('turn:evil.example.org')).toMatch(/evil.example.org resolves to 10.0.0.5 is an internal address/)
    expect(why.get('stun:nowhere.example.org')).toMatch(/does not resolve/)
    expect(why.get('http://198.51.100.1/')).toMatch(/not a stun:, turn: or turns: URL/)
    // a flood of entries: only the first 16 URLs are even looked at
    const many = await applyIcePolicy({ iceServers: [{ urls: Array.from({ length: 20 }, (_, i) => `stun:198.51.100.${i + 1}`) }], relays: [] }, icePolicy(), resolve)
    expect(many.refused.map(x => x.reason)).toEqual(Array(4).fill('more than 16 ICE server URLs'))
  })

  it('the agent operator allows its own networks on any port, and chooses the ports', async () => {
    const policy = icePolicy({ allow: ['10.0.0.0/8', '127.0.0.1'], ports: [3478] })
    expect(addressRefusal(policy, '10.9.9.9', 22)).toBeNull()
    expect(addressRefusal(policy, '127.0.0.1', 40000)).toBeNull()
    expect(addressRefusal(policy, '127.0.0.2', 3478)).toMatch(/internal/)
    expect(addressRefusal(policy, '198.51.100.1', 443)).toMatch(/port 443/)
    expect(addressRefusal(policy, '198.51.100.1', 40000, true)).toBeNull()
    expect(() => icePolicy({ allow: ['10.0.0.0/33'] })).toThrow(/--ice-allow/)
    expect(() => icePolicy({ allow: ['not-an-ip'] })).toThrow(/--ice-allow/)
    expect(() => icePolicy({ ports: [0] })).toThrow(/--ice-ports/)
  })
})
