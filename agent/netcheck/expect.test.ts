/** The path expectation rules (expect.ts) and the site classification, case by case. */
import { describe, expect, it } from 'vitest'
import { classify, expectations, expectPath, siteFacts, type Offer, type SideFacts } from './expect.ts'

const LAB_OFFER: Offer = { // what the NAT lab's signaling hands out: TURN udp/tcp 3478 + tcp 443, relay tcp 4001 + ws 443
  turn: [{ transport: 'udp', port: 3478, alive: true }, { transport: 'tcp', port: 3478, alive: true }, { transport: 'tcp', port: 443, alive: true }],
  relays: [{ port: 4001, alive: true }, { port: 443, alive: true }],
}
const side = (s: Partial<SideFacts>): SideFacts => ({ udp: false, eim: false, turn: false, relay: false, ...s })

describe('expectPath', () => {
  it('direct needs UDP and endpoint-independent mapping on both sides', () => {
    expect(expectPath(side({ udp: true, eim: true }), side({ udp: true, eim: true }))).toBe('direct')
    expect(expectPath(side({ udp: true, eim: true }), side({ udp: true, eim: false }))).toBe('none')
    expect(expectPath(side({ udp: true, eim: true, turn: true }), side({ udp: true }))).toBe('turn')
  })
  it('turn: one side allocates, the other allocates too or has UDP', () => {
    expect(expectPath(side({ turn: true }), side({ turn: true }))).toBe('turn')
    expect(expectPath(side({ turn: true }), side({ udp: true }))).toBe('turn')
    expect(expectPath(side({ udp: true }), side({ turn: true }))).toBe('turn')
    expect(expectPath(side({ turn: true }), side({ relay: true }))).toBe('none')
  })
  it('relay when both reserve; none otherwise', () => {
    expect(expectPath(side({ turn: true, relay: true }), side({ relay: true }))).toBe('relay')
    expect(expectPath(side({ relay: true }), side({}))).toBe('none')
    expect(expectPath(side({}), side({}))).toBe('none')
  })
})

describe('what each kind of site can do with an offer', () => {
  it('the lab offer: tcp443 sites reach only the 443 TURN URL and the relay on 443', () => {
    expect(siteFacts('eim', LAB_OFFER)).toEqual({ udp: true, eim: true, turn: true, relay: true })
    expect(siteFacts('symmetric', LAB_OFFER)).toEqual({ udp: true, eim: false, turn: true, relay: true })
    expect(siteFacts('udpblock', LAB_OFFER)).toEqual({ udp: false, eim: false, turn: true, relay: true })
    expect(siteFacts('tcp443', LAB_OFFER)).toEqual({ udp: false, eim: false, turn: true, relay: true })
    const no443: Offer = { turn: [{ transport: 'udp', port: 3478, alive: true }, { transport: 'tcp', port: 3478, alive: true }], relays: [{ port: 4001, alive: true }] }
    expect(siteFacts('tcp443', no443)).toEqual({ udp: false, eim: false, turn: false, relay: false })
    expect(siteFacts('udpblock', no443)).toEqual({ udp: false, eim: false, turn: true, relay: true })
    const dead: Offer = { turn: LAB_OFFER.turn.map(t => ({ ...t, alive: false })), relays: [] }
    expect(siteFacts('eim', dead)).toEqual({ udp: true, eim: true, turn: false, relay: false })
  })

  it('expectations from each lab site (the NAT lab checks the same through the CLI)', () => {
    const eim = siteFacts('eim', LAB_OFFER)
    expect(expectations(eim, LAB_OFFER)).toEqual({ eim: 'direct', symmetric: 'turn', udpblock: 'turn', tcp443: 'turn' })
    expect(expectations(siteFacts('tcp443', LAB_OFFER), LAB_OFFER)).toEqual({ eim: 'turn', symmetric: 'turn', udpblock: 'turn', tcp443: 'turn' })
    // STUN only (no TURN): eim/eim direct, symmetric pairs fall to the relay, and without relay nothing
    const stunOnly: Offer = { turn: [], relays: LAB_OFFER.relays }
    expect(expectations({ udp: true, eim: true, turn: false, relay: true }, stunOnly)).toEqual({ eim: 'direct', symmetric: 'relay', udpblock: 'relay', tcp443: 'relay' })
    expect(expectations({ udp: true, eim: false, turn: false, relay: false }, { turn: [], relays: [] })).toEqual({ eim: 'none', symmetric: 'none', udpblock: 'none', tcp443: 'none' })
  })
})

describe('classify', () => {
  it('names the lab kinds from the measurements', () => {
    expect(classify({ udp: true, mapping: 'endpoint-independent', tcpOther: true, tcp443: true })).toBe('eim')
    expect(classify({ udp: true, mapping: 'endpoint-dependent', tcpOther: true, tcp443: true })).toBe('symmetric')
    expect(classify({ udp: true, mapping: 'unknown', tcpOther: null, tcp443: null })).toBe('udp')
    expect(classify({ udp: false, mapping: 'unknown', tcpOther: true, tcp443: true })).toBe('udpblock')
    expect(classify({ udp: false, mapping: 'unknown', tcpOther: false, tcp443: true })).toBe('tcp443')
    expect(classify({ udp: false, mapping: 'unknown', tcpOther: null, tcp443: true })).toBe('udpblock')
    expect(classify({ udp: false, mapping: 'unknown', tcpOther: false, tcp443: false })).toBe('offline')
    expect(classify({ udp: null, mapping: 'unknown', tcpOther: true, tcp443: null })).toBe('unknown') // no STUN server offered
    expect(classify({ udp: null, mapping: 'unknown', tcpOther: false, tcp443: null })).toBe('offline')
  })
})
