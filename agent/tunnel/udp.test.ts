/** UDP share flags, datagram framing and the flow table's cap, eviction and idle timeout. */
import { createSocket } from 'node:dgram'
import { describe, expect, it } from 'vitest'
import { silentLog } from '../../peer/peer-session.ts'
import { CausewayError } from '../../protocol/errors.ts'
import { decodeDatagram, encodeDatagram, UDP_MAX_PAYLOAD } from '../../protocol/udp.ts'
import { parseConnectFlag, parseShareFlag, ShareRegistry } from './shares.ts'
import { FlowTable, UDP_DEFAULTS, UdpStats } from './udp-flows.ts'
import { UdpShares } from './udp-share.ts'

const code = (fn: () => unknown): string | undefined => { try { fn(); return undefined } catch (err) { return err instanceof CausewayError ? err.code : 'not a CausewayError' } }

describe('flags', () => {
  it('parses UDP shares and connects with the one HOST:PORT parser (IPv6 in brackets)', () => {
    expect(parseShareFlag('dns=127.0.0.1:53,protocol=udp')).toEqual({ name: 'dns', host: '127.0.0.1', port: 53, protocol: 'udp' })
    expect(parseShareFlag('dns=[::1]:53,peers=a|b,protocol=udp')).toEqual({ name: 'dns', host: '::1', port: 53, peers: ['a', 'b'], protocol: 'udp' })
    expect(parseShareFlag('web=localhost:80')).toEqual({ name: 'web', host: 'localhost', port: 80 })
    expect(parseConnectFlag('dns@site-a=127.0.0.1:5353,protocol=udp')).toEqual({ share: 'dns', peer: 'site-a', host: '127.0.0.1', port: 5353, protocol: 'udp' })
    expect(parseConnectFlag('db@site-a=[::1]:15432')).toEqual({ share: 'db', peer: 'site-a', host: '::1', port: 15432 })
  })

  it('refuses bad input with BAD_CONFIG', () => {
    for (const bad of ['dns=127.0.0.1:53,protocol=sctp', 'dns=127.0.0.1', 'dns=:53', 'dns=127.0.0.1:0', 'dns=127.0.0.1:70000', 'DNS=127.0.0.1:53', 'dns=127.0.0.1:53,peers', '=127.0.0.1:53', 'dns']) {
      expect(code(() => parseShareFlag(bad)), bad).toBe('BAD_CONFIG')
    }
    for (const bad of ['dns@site-a=5353,protocol=udp', 'dns@site-a=127.0.0.1:5353,protocol=http', 'dns=127.0.0.1:53', 'dns@=1.2.3.4:5', 'dns@a=h:99999']) {
      expect(code(() => parseConnectFlag(bad)), bad).toBe('BAD_CONFIG')
    }
  })
})

describe('catalogs', () => {
  it('list UDP shares only to agents announcing udp/1 (an older agent refuses a catalog with an unknown protocol), and to viewers', () => {
    const r = new ShareRegistry()
    r.set('flags', [{ name: 'web', host: '127.0.0.1', port: 80 }, { name: 'dns', host: '127.0.0.1', port: 53, protocol: 'udp' }])
    expect(r.catalogFor({ name: 'old', role: 'agent', caps: ['tcp/1'] }).map(s => s.name)).toEqual(['web'])
    expect(r.catalogFor({ name: 'new', role: 'agent', caps: ['tcp/1', 'udp/1'] }).map(s => `${s.name}/${s.protocol}`)).toEqual(['web/tcp', 'dns/udp'])
    expect(r.catalogFor({ name: 'page', role: 'viewer', grants: ['*'] }).map(s => s.name)).toEqual(['web', 'dns'])
  })
})

describe('datagram framing', () => {
  it('round-trips a flow id and payload up to UDP_MAX_PAYLOAD; refuses short frames and larger payloads', () => {
    const p = new Uint8Array(UDP_MAX_PAYLOAD).fill(7)
    const d = decodeDatagram(encodeDatagram(0xfffffffe, p))
    expect('flow' in d && d.flow).toBe(0xfffffffe)
    expect('payload' in d && d.payload.byteLength).toBe(UDP_MAX_PAYLOAD)
    expect(decodeDatagram(new Uint8Array(3))).toEqual({ error: 'bad_frame' })
    expect(decodeDatagram(encodeDatagram(1, new Uint8Array(UDP_MAX_PAYLOAD + 1)))).toEqual({ error: 'oversize' })
    expect(decodeDatagram(encodeDatagram(1, new Uint8Array(0)))).toMatchObject({ flow: 1 })
  })
})

describe('flow table', () => {
  it('admits up to the cap, evicts only a flow silent for evictIdleMs, and closes idle flows', async () => {
    const closed: Array<[number, string]> = []
    const t = new FlowTable<number>({ ...UDP_DEFAULTS, maxFlowsPerPeer: 2, evictIdleMs: 300, idleMs: 1200 }, (v, why) => closed.push([v, why]))
    try {
      for (const k of [1, 2]) { expect(t.admit()).toBe(true); t.add(String(k), k) }
      expect(t.admit()).toBe(false) // both active just now
      await new Promise(resolve => setTimeout(resolve, 400))
      expect(t.touch('1')).toBe(1) // 1 active again: 2 is the least recently active
      expect(t.admit()).toBe(true)
      expect(closed).toEqual([[2, 'evicted']])
      t.add('3', 3)
      expect(t.size).toBe(2)
      await new Promise(resolve => setTimeout(resolve, 2000))
      expect(t.size).toBe(0)
      expect(closed.slice(1).map(([, why]) => why)).toEqual(['idle', 'idle'])
    } finally {
      t.close()
    }
  })
})

describe('share side, fed by a hostile peer', () => {
  it('counts short frames, oversize payloads and stray text, never crashes, and still serves a good flow', async () => {
    const target = createSocket('udp4')
    target.on('message', (m, from) => target.send(m, from.port, from.address))
    await new Promise<void>(resolve => target.bind(0, '127.0.0.1', resolve))
    const sent: Uint8Array[] = []
    const dc = { label: 'udp:echo', readyState: 'open', bufferedAmount: 0, binaryType: 'arraybuffer', onmessage: null, onclose: null, send: (d: Uint8Array | string) => { if (typeof d !== 'string') sent.push(d) }, close: () => {}, addEventListener: () => {}, removeEventListener: () => {} } as unknown as RTCDataChannel
    const stats = new UdpStats()
    const shares = new UdpShares(stats, { maxFlowsPerPeer: 2 }, silentLog)
    try {
      shares.accept('p1', 'mallory', dc, { name: 'echo', host: '127.0.0.1', port: target.address().port, protocol: 'udp' })
      const feed = (data: unknown): void => { (dc.onmessage as unknown as (ev: { data: unknown }) => void)({ data }) }
      feed(new Uint8Array(3).buffer)
      feed(encodeDatagram(1, new Uint8Array(UDP_MAX_PAYLOAD + 1)).buffer)
      feed('{"t":"rst","code":"X"}')
      feed('not json at all')
      for (let id = 10; id < 20; id++) feed(encodeDatagram(id, new Uint8Array([id])).buffer) // 10 flows, cap 2
      expect(stats.drops).toMatchObject({ bad_frame: 1, oversize: 1, flow_limit: 8 })
      expect(stats.flows.share).toBe(2)
      for (let i = 0; i < 100 && sent.length < 2; i++) await new Promise(resolve => setTimeout(resolve, 20))
      expect(sent.map(f => decodeDatagram(f)).map(d => 'flow' in d ? d.flow : -1).sort()).toEqual([10, 11])
      ;(dc.onclose as unknown as () => void)()
      expect(stats.flows.share).toBe(0)
    } finally {
      shares.close()
      target.close()
    }
  })
})
