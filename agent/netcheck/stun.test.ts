/**
 * The STUN codec: RFC 5769's sample messages parse to the published values, encode/parse round
 * trips, and malformed input (random bytes, mutated and truncated messages, junk on a UDP
 * socket or a TCP stream) is ignored and counted, never a throw or a crash.
 */
import { createSocket } from 'node:dgram'
import { createServer, type AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ATTR, encodeStun, errorCode, mappedAddress, METHOD, newTransactionId, parseStun, StunFramer, textAttr, decodeAddress, attr } from './stun.ts'
import { StunSocket } from './udp.ts'
import { parseIceUrl, probeTurn } from './turn.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

// RFC 5769 §2.1-2.3
const SAMPLE_REQUEST = hex(`000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573742063
  6c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014
  9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf`)
const SAMPLE_V4 = hex(`0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220
  002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96`)
const SAMPLE_V6 = hex(`010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220
  002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275
  bfe3ed4180280004c8fb0b4c`)

describe('STUN codec', () => {
  it('parses the RFC 5769 samples', () => {
    const req = parseStun(SAMPLE_REQUEST)
    expect(req).toMatchObject({ method: METHOD.binding, cls: 'request' })
    expect(req?.attrs.map(a => a.type)).toEqual([ATTR.SOFTWARE, 0x0024, 0x8029, ATTR.USERNAME, ATTR.MESSAGE_INTEGRITY, 0x8028])
    expect(textAttr(req!, ATTR.USERNAME)).toBe('evtj:h6vY')
    const v4 = parseStun(SAMPLE_V4)
    expect(v4?.cls).toBe('success')
    expect(mappedAddress(v4!)).toEqual({ family: 4, address: '192.0.2.1', port: 32853 })
    const v6 = parseStun(SAMPLE_V6)
    expect(mappedAddress(v6!)).toEqual({ family: 6, address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 })
  })

  it('round-trips what it encodes (class, method, attributes, padding)', () => {
    const tid = newTransactionId()
    const err = Buffer.concat([Buffer.from([0, 0, 4, 1]), Buffer.from('Unauthorized')])
    const buf = encodeStun({ method: METHOD.allocate, cls: 'error', tid, attrs: [[ATTR.ERROR_CODE, err], [ATTR.REALM, Buffer.from('lab')], [ATTR.NONCE, Buffer.from('abcde')]] })
    const msg = parseStun(buf)
    expect(msg).toMatchObject({ method: METHOD.allocate, cls: 'error' })
    expect(msg?.tid.equals(tid)).toBe(true)
    expect(errorCode(msg!)).toEqual({ code: 401, reason: 'Unauthorized' })
    expect(textAttr(msg!, ATTR.NONCE)).toBe('abcde')
    const withMi = parseStun(encodeStun({ method: METHOD.refresh, cls: 'request', tid, attrs: [[ATTR.LIFETIME, Buffer.alloc(4)]], integrityKey: Buffer.alloc(16, 1) }))
    expect(withMi?.method).toBe(METHOD.refresh)
    expect(attr(withMi!, ATTR.MESSAGE_INTEGRITY)?.length).toBe(20)
  })

  it('rejects malformed messages and never throws (fuzzed)', () => {
    expect(parseStun(Buffer.alloc(0))).toBeNull()
    expect(parseStun(SAMPLE_V4.subarray(0, 19))).toBeNull()
    expect(parseStun(SAMPLE_V4.subarray(0, SAMPLE_V4.length - 4))).toBeNull() // length field says more
    const badCookie = Buffer.from(SAMPLE_V4); badCookie[4] = 0
    expect(parseStun(badCookie)).toBeNull()
    const overrun = Buffer.from(SAMPLE_V4); overrun.writeUInt16BE(0xfff0, 22) // first attribute runs past the end
    expect(parseStun(overrun)).toBeNull()
    expect(decodeAddress(Buffer.from([0, 1, 0]), true, Buffer.alloc(12))).toBeNull()
    expect(decodeAddress(Buffer.from([0, 9, 0, 0, 1, 2, 3, 4]), true, Buffer.alloc(12))).toBeNull()
    let parsed = 0
    for (let i = 0; i < 20_000; i++) {
      const base = [SAMPLE_REQUEST, SAMPLE_V4, SAMPLE_V6][i % 3]!
      let buf: Buffer
      if (i % 4 === 0) buf = randomBytes(i % 200)
      else {
        buf = Buffer.from(base.subarray(0, i % 7 === 0 ? (i * 13) % base.length : base.length))
        for (let k = 0; k < 1 + (i % 4); k++) { const at = (i * 31 + k * 17) % buf.length; buf[at] = (buf[at]! ^ (1 << (k + i) % 8)) & 255 }
      }
      const msg = parseStun(buf)
      if (msg === null) continue
      parsed++
      mappedAddress(msg); errorCode(msg); textAttr(msg, ATTR.REALM)
      decodeAddress(attr(msg, ATTR.OTHER_ADDRESS), false, msg.tid)
    }
    expect(parsed).toBeGreaterThan(100) // bit flips inside attribute values still parse
  })

  it('frames a TCP stream: split and joined messages; junk breaks the framer for good', () => {
    const f = new StunFramer()
    const two = Buffer.concat([SAMPLE_V4, SAMPLE_V6])
    const out = [...f.push(two.subarray(0, 7)), ...f.push(two.subarray(7, 90)), ...f.push(two.subarray(90))]
    expect(out.map(b => b.length)).toEqual([SAMPLE_V4.length, SAMPLE_V6.length])
    expect(f.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toEqual([])
    expect(f.broken).toBe(true)
    expect(f.push(SAMPLE_V4)).toEqual([])
  })

  it('parses ICE URLs (RFC 7064/7065)', () => {
    expect(parseIceUrl('stun:198.51.100.1')).toEqual({ scheme: 'stun', host: '198.51.100.1', port: 3478, transport: 'udp' })
    expect(parseIceUrl('turn:turn.example.com:443?transport=tcp')).toEqual({ scheme: 'turn', host: 'turn.example.com', port: 443, transport: 'tcp' })
    expect(parseIceUrl('turns:[2001:db8::1]')).toEqual({ scheme: 'turns', host: '2001:db8::1', port: 5349, transport: 'tls' })
    expect(parseIceUrl('turn:h:99999')).toBeNull()
    expect(parseIceUrl('http://x')).toBeNull()
  })
})

describe('STUN clients under junk', () => {
  it('a UDP socket counts junk and stray answers, then takes the real answer', async () => {
    const server = createSocket('udp4')
    server.on('message', (msg, from) => {
      const req = parseStun(msg)
      for (let i = 0; i < 5; i++) server.send(randomBytes(i * 30), from.port, from.address)
      server.send(encodeStun({ method: METHOD.binding, cls: 'success', tid: newTransactionId() }), from.port, from.address) // not our transaction
      if (req !== null) {
        const xor = Buffer.alloc(8) // XOR-MAPPED-ADDRESS 127.0.0.1:32512
        xor[1] = 1
        xor.writeUInt16BE(0x7f00 ^ 0x2112, 2)
        xor.writeUInt32BE((0x7f000001 ^ 0x2112a442) >>> 0, 4)
        server.send(encodeStun({ method: METHOD.binding, cls: 'success', tid: req.tid, attrs: [[ATTR.XOR_MAPPED_ADDRESS, xor]] }), from.port, from.address)
      }
    })
    await new Promise<void>(resolve => server.bind(0, '127.0.0.1', resolve))
    const sock = await StunSocket.open(4)
    try {
      const r = await sock.binding({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }, 2000)
      expect(r?.mapped).toEqual({ family: 4, address: '127.0.0.1', port: 0x7f00 })
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(sock.ignored).toBeGreaterThanOrEqual(5) // 4 random non-empty-or-empty datagrams + the stray answer
    } finally { sock.close(); server.close() }
  })

  it('a TURN probe over TCP to a server that answers junk: reported, no crash', async () => {
    const server = createServer(s => { s.on('error', () => {}); s.once('data', () => s.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const r = await probeTurn(`turn:127.0.0.1:${(server.address() as AddressInfo).port}?transport=tcp`, { username: 'u', credential: 'c' }, 1500)
      expect(r).toMatchObject({ reachable: false, allocated: false, transport: 'tcp' })
      expect(r.ignored).toBeGreaterThan(0)
    } finally { server.close() }
  })
})
