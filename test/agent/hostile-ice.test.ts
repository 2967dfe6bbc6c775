/**
 * A hostile signaling operator uses `/v1/ice` to make agents probe internal hosts (issue 22):
 * it lists a STUN server and a TURN-over-TCP server on internal services (a UDP and a TCP
 * listener on 127.0.0.1 standing in for, say, a cache and an SSH daemon inside the agent's
 * network), a relay on the TCP one, a public address on a non-ICE port, and URLs of other
 * schemes. The agent (and `causeway netcheck`) refuse every one of them with a warning and
 * never send them a packet; the one server the agent's operator allows (`--ice-allow
 * 127.0.0.2/32`: a STUN server on 127.0.0.2) is used and probed, and netcheck lists what it
 * probed and what it refused.
 */
import { createSocket, type Socket } from 'node:dgram'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeToken } from '../../protocol/token.ts'
import { fromBase64Url } from '../../protocol/encoding.ts'
import { ATTR, encodeAddress, encodeStun, METHOD, parseStun } from '../../agent/netcheck/stun.ts'
import { icePolicy } from '../../agent/ice-policy.ts'
import type { NetcheckReport } from '../../agent/netcheck/index.ts'
import { run } from '../smoke/causeway.ts'
import { startHostileSignaling, type HostileSignaling } from './hostile-signaling.ts'
import { startNet, until, type Net } from './harness.ts'

const RELAY_ID = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('a hostile signaling operator listing internal hosts in /v1/ice', () => {
  let net: Net
  let evil: HostileSignaling
  let internalUdp: Socket
  let internalTcp: Server
  let stun: Socket
  const hits = { udp: 0, tcp: 0, stun: 0 }
  let udpPort = 0
  let tcpPort = 0
  let stunPort = 0

  beforeAll(async () => {
    internalUdp = createSocket('udp4').on('message', () => { hits.udp++ })
    await new Promise<void>(resolve => internalUdp.bind(0, '127.0.0.1', resolve))
    udpPort = (internalUdp.address() as AddressInfo).port
    internalTcp = createServer(s => { hits.tcp++; s.destroy() })
    await new Promise<void>(resolve => internalTcp.listen(0, '127.0.0.1', resolve))
    tcpPort = (internalTcp.address() as AddressInfo).port
    // the one STUN server this agent's operator allows
    stun = createSocket('udp4').on('message', (msg, from) => {
      const req = parseStun(msg)
      if (req === null || req.cls !== 'request') return
      hits.stun++
      stun.send(encodeStun({ method: METHOD.binding, cls: 'success', tid: req.tid, attrs: [[ATTR.XOR_MAPPED_ADDRESS, encodeAddress(from.address, from.port, true)]] }), from.port, from.address)
    })
    await new Promise<void>(resolve => stun.bind(0, '127.0.0.2', resolve))
    stunPort = (stun.address() as AddressInfo).port
    net = await startNet()
    evil = await startHostileSignaling(net.signaling.url, fromBase64Url(net.owner.secret), (await net.issue('operator')).identity!.key)
    evil.ice = {
      iceServers: [
        { urls: [`stun:127.0.0.1:${udpPort}`, `turn:127.0.0.1:${tcpPort}?transport=tcp`, `stun:[::ffff:127.0.0.1]:${udpPort}`, 'stun:198.51.100.1:6379', `http://127.0.0.1:${tcpPort}/`], username: 'u', credential: 'c' },
        { urls: `stun:127.0.0.2:${stunPort}` },
      ],
      relays: [`/ip4/127.0.0.1/tcp/${tcpPort}/p2p/${RELAY_ID}`, `/dns4/localhost/tcp/${tcpPort}/p2p/${RELAY_ID}`],
    }
  }, 30_000)

  afterAll(async () => {
    await net?.close()
    await evil?.close()
    internalUdp?.close()
    internalTcp?.close()
    stun?.close()
  })

  const refusedEntries = 7

  it('the agent uses only the allowed server: the internal ones get no packet and are named in a warning', async () => {
    const token = { ...await net.issue('site-a'), signaling: evil.url }
    const warnings: Array<{ obj: object, msg?: string }> = []
    const log = { debug () {}, info () {}, warn (obj: object, msg?: string) { warnings.push({ obj, ...(msg !== undefined ? { msg } : {}) }) } }
    const a = await net.agent('site-a', { token, icePolicy: icePolicy({ allow: ['127.0.0.2/32'] }), netcheckMs: 3000, log })
    await until(() => a.netcheck !== null, 15_000, 'the agent\'s netcheck at start')
    expect(evil.iceRequests).toBeGreaterThan(0)
    expect(a.netcheck?.udp).toBe(true) // the allowed STUN server answered
    expect(hits.stun).toBeGreaterThan(0)
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(hits).toMatchObject({ udp: 0, tcp: 0 })
    const status = a.status()
    expect(status.netcheck?.turn).toEqual([])
    expect(status.netcheck?.relays).toEqual([])
    const warned = warnings.find(w => w.msg?.includes('ICE policy') === true)
    expect(JSON.stringify(warned?.obj)).toContain(`turn:127.0.0.1:${tcpPort}?transport=tcp`)
    expect((warned?.obj as { refused: unknown[] }).refused).toHaveLength(refusedEntries)
  }, 30_000)

  it('causeway netcheck says which servers it probed and which /v1/ice entries it refused, and why', async () => {
    const token = encodeToken({ ...await net.issue('probe'), signaling: evil.url })
    const r = await run(['netcheck', '--json', '--timeout', '3000', '--ice-allow', '127.0.0.2/32'], { env: { CAUSEWAY_TOKEN: token } })
    // one STUN server and nothing else: the NAT's mapping cannot be measured, so no path is predicted (exit 1)
    expect(r.code, r.stderr).toBe(1)
    const report = JSON.parse(r.stdout) as NetcheckReport
    expect(report.probed.stun).toEqual([`127.0.0.2:${stunPort}`])
    expect(report.probed.turn).toEqual([])
    expect(report.probed.relays).toEqual([])
    expect(report.refused).toHaveLength(refusedEntries)
    const why = new Map(report.refused.map(x => [x.entry, x.reason]))
    expect(why.get(`turn:127.0.0.1:${tcpPort}?transport=tcp`)).toMatch(/internal address/)
    expect(why.get('stun:198.51.100.1:6379')).toMatch(/port 6379/)
    expect(why.get(`/dns4/localhost/tcp/${tcpPort}/p2p/${RELAY_ID}`)).toMatch(/localhost resolves to .*internal address/)
    expect(hits).toMatchObject({ udp: 0, tcp: 0 })
    const text = await run(['netcheck', '--timeout', '3000', '--ice-allow', '127.0.0.2/32'], { env: { CAUSEWAY_TOKEN: token } })
    expect(text.stdout).toMatch(new RegExp(`probed +STUN 127\\.0\\.0\\.2:${stunPort}; TURN none; relays none`))
    expect(text.stdout).toMatch(/REFUSED BY ICE POLICY/)
    // without --ice-allow nothing of it is probed at all
    const strict = JSON.parse((await run(['netcheck', '--json', '--timeout', '2000'], { env: { CAUSEWAY_TOKEN: token } })).stdout) as NetcheckReport
    expect(strict.probed).toEqual({ stun: [], turn: [], relays: [] })
    expect(strict.refused).toHaveLength(refusedEntries + 1)
    expect(hits).toMatchObject({ udp: 0, tcp: 0 })
  }, 60_000)
})
