/**
 * The UDP half of netcheck against STUN servers on loopback that report chosen reflexive
 * addresses: same address from two servers = endpoint-independent, different = dependent; the
 * RFC 5780 OTHER-ADDRESS is a second destination; hairpinning is seen when the request sent to
 * our own "public" address arrives; servers that answer only junk mean UDP blocked, junk counted.
 * The servers are the test's own on loopback, so the probes run with a policy allowing
 * 127.0.0.0/8 (agent/ice-policy.ts); with the default policy, an OTHER-ADDRESS or mapped address
 * on loopback (a hostile server naming an internal host) is never sent to.
 */
import { createSocket, type Socket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ATTR, encodeAddress, encodeStun, METHOD, parseStun } from './stun.ts'
import { probeUdp as probe } from './probe-udp.ts'
import { icePolicy } from '../ice-policy.ts'

const loopback = icePolicy({ allow: ['127.0.0.0/8'] })
const probeUdp = async (servers: RTCIceServer[], ms: number): ReturnType<typeof probe> => await probe(servers, ms, undefined, undefined, loopback)

const sockets: Socket[] = []
afterEach(() => { for (const s of sockets.splice(0)) s.close() })

/** A STUN server on 127.0.0.1: answers bindings with the sender's address (port shifted by `shift`), or junk only. */
async function server (opts: { shift?: number, junk?: boolean, other?: () => number, onRequest?: () => void } = {}): Promise<number> {
  const s = createSocket('udp4')
  sockets.push(s)
  s.on('message', (msg, from) => {
    const req = parseStun(msg)
    if (req === null || req.cls !== 'request') return
    opts.onRequest?.()
    if (opts.junk === true) { s.send(Buffer.from('not stun at all'), from.port, from.address); return }
    const attrs: Array<[number, Buffer]> = [[ATTR.XOR_MAPPED_ADDRESS, encodeAddress(from.address, from.port + (opts.shift ?? 0), true)]]
    if (opts.other !== undefined) attrs.push([ATTR.OTHER_ADDRESS, encodeAddress('127.0.0.1', opts.other(), false)])
    s.send(encodeStun({ method: METHOD.binding, cls: 'success', tid: req.tid, attrs }), from.port, from.address)
  })
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
  return (s.address() as AddressInfo).port
}
const stun = (...ports: number[]): RTCIceServer[] => [{ urls: ports.map(p => `stun:127.0.0.1:${p}`) }]

describe('probeUdp', () => {
  it('two servers, one reflexive address: endpoint-independent, stable, hairpinning (loopback delivers to our own address)', async () => {
    const r = await probeUdp(stun(await server(), await server()), 3000)
    expect(r.udp.reachable).toBe(true)
    expect(r.nat).toMatchObject({ mapping: 'endpoint-independent', stable: true, hairpinning: true })
    expect(r.nat.publicAddress).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(r.udp.servers.every(s => s.mapped === r.nat.publicAddress)).toBe(true)
  })

  it('a second server that sees another port: endpoint-dependent; the address no longer delivers: no hairpinning', async () => {
    const r = await probeUdp(stun(await server({ shift: 1 }), await server({ shift: 2 })), 3000)
    expect(r.nat.mapping).toBe('endpoint-dependent')
    expect(r.nat.hairpinning).toBe(false)
  })

  it('one server announcing an OTHER-ADDRESS: the other address is the second destination', async () => {
    const other = await server({ shift: 7 })
    const r = await probeUdp(stun(await server({ other: () => other })), 3000)
    expect(r.udp.servers).toHaveLength(1)
    expect(r.nat.mapping).toBe('endpoint-dependent')
    const same = await server()
    expect((await probeUdp(stun(await server({ other: () => same })), 3000)).nat.mapping).toBe('endpoint-independent')
  })

  it('a STUN server on ::1: IPv6 reachable (where IPv6 is off, as in scripts/netns-run.sh: not reachable); an IPv4-only list: not tested', async () => {
    const s6 = createSocket({ type: 'udp6', ipv6Only: true })
    s6.on('message', (msg, from) => {
      const req = parseStun(msg)
      if (req !== null) s6.send(encodeStun({ method: METHOD.binding, cls: 'success', tid: req.tid }), from.port, from.address)
    })
    const bound = await new Promise<boolean>(resolve => { s6.once('error', () => resolve(false)); s6.bind(0, '::1', () => resolve(true)) })
    if (bound) sockets.push(s6)
    const r = await probeUdp([{ urls: [`stun:[::1]:${bound ? (s6.address() as AddressInfo).port : 3478}`] }], 2000)
    expect(r.v6Reachable).toBe(bound)
    expect(r.udp.reachable).toBe(bound)
    expect((await probeUdp(stun(await server()), 2000)).v6Reachable).toBeNull()
  })

  it('one server, no other address: mapping unknown', async () => {
    expect((await probeUdp(stun(await server()), 3000)).nat.mapping).toBe('unknown')
  })

  it('only junk comes back: UDP blocked, the junk counted; no server listed: not tested', async () => {
    const started = Date.now()
    const r = await probeUdp(stun(await server({ junk: true })), 2000)
    expect(Date.now() - started).toBeLessThan(2500)
    expect(r.udp.reachable).toBe(false)
    expect(r.udp.ignored).toBeGreaterThan(0)
    expect(r.nat).toEqual({ mapping: 'unknown', publicAddress: null, stable: null, hairpinning: null })
    expect((await probeUdp([{ urls: 'turn:127.0.0.1:1?transport=tcp' }], 2000)).udp.reachable).toBeNull()
  })

  it('with the default policy, a server naming an internal other address or mapped address gets neither probed', async () => {
    let asked = 0
    const other = await server({ shift: 7, onRequest: () => { asked++ } })
    const r = await probe(stun(await server({ other: () => other })), 2000, undefined, undefined, icePolicy())
    expect(r.udp.reachable).toBe(true)
    expect(r.nat.mapping).toBe('unknown') // the other address was not asked
    expect(r.nat.hairpinning).toBeNull() // nor our "public" 127.0.0.1 address
    expect(r.probed).toHaveLength(1)
    expect(asked).toBe(0)
    asked = 0
    const allowed = await probeUdp(stun(await server({ other: () => other })), 2000)
    expect(allowed.probed.some(p => p.includes('other address'))).toBe(true)
    expect(allowed.probed.some(p => p.includes('hairpinning'))).toBe(true)
    expect(asked).toBe(1)
  })
})
