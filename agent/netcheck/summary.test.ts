/** What agents publish of a netcheck report: the /status summary, the viewer's cut (no addresses without `*`), the status table lines. */
import { describe, expect, it } from 'vitest'
import { NetcheckView } from '../../protocol/peer.ts'
import { renderNetcheck, table } from '../../cli/status.ts'
import { summarize, viewerSummary, type NetcheckReport } from './index.ts'
import { renderReport } from './render.ts'

const report: NetcheckReport = {
  ok: true,
  verdict: 'eim: UDP works, endpoint-independent NAT mapping (hole punching works); expect direct to eim; turn to symmetric, udpblock, tcp443',
  site: 'eim',
  at: '2026-12-01T22:00:00.000Z',
  tookMs: 1200,
  signaling: { url: 'http://198.51.100.3:443', reachable: true, latencyMs: 1.5, ice: true },
  udp: { reachable: true, servers: [{ server: '198.51.100.1:3478', mapped: '203.0.113.2:40000', rttMs: 0.4 }], ignored: 0 },
  nat: { mapping: 'endpoint-independent', publicAddress: '203.0.113.2:40000', stable: true, hairpinning: false },
  ipv6: { address: false, reachable: null },
  turn: [{ url: 'turn:198.51.100.1:443?transport=tcp', transport: 'tcp', host: '198.51.100.1', port: 443, reachable: true, allocated: true, relayed: '198.51.100.1:50000', rttMs: 0.6, ignored: 0 }],
  relays: [{ addr: '/ip4/198.51.100.4/tcp/443/ws/p2p/12D3KooW', transport: 'ws', port: 443, reachable: true, reserved: true, connectMs: 1, reserveMs: 40 }],
  expect: { eim: 'direct', symmetric: 'turn', udpblock: 'turn', tcp443: 'turn' },
  probed: { stun: ['198.51.100.1:3478', '198.51.100.2:3479 (the server\'s other address)'], turn: ['turn:198.51.100.1:443?transport=tcp'], relays: ['/ip4/198.51.100.4/tcp/443/ws/p2p/12D3KooW'] },
  refused: [{ entry: 'turn:10.0.0.5:22?transport=tcp', reason: '10.0.0.5 is an internal address (allow its network with --ice-allow)' }],
}

describe('netcheck summary', () => {
  it('is a valid NetcheckView; a viewer without * gets no addresses', () => {
    const s = summarize(report)
    expect(NetcheckView.parse(s)).toEqual(s)
    expect(s).toMatchObject({ site: 'eim', udp: true, publicAddress: '203.0.113.2:40000', turn: [{ url: 'turn:198.51.100.1:443?transport=tcp', allocated: true }] })
    const cut = viewerSummary(s, false)
    expect(NetcheckView.parse(cut)).toEqual(cut)
    expect(JSON.stringify(cut)).not.toMatch(/198\.51\.100|203\.0\.113/)
    expect(viewerSummary(s, true)).toEqual(s)
  })

  it('prints the verdict first, in the report and in the status table', () => {
    const text = renderReport(report, table)
    expect(text.split('\n')[0]).toBe(report.verdict)
    // which servers it probed, and what it refused to probe
    expect(text).toMatch(/probed +STUN 198\.51\.100\.1:3478, 198\.51\.100\.2:3479 \(the server's other address\); TURN turn:198\.51\.100\.1:443\?transport=tcp; relays \/ip4\/198\.51\.100\.4/)
    expect(text).toMatch(/REFUSED BY ICE POLICY +WHY\s+turn:10\.0\.0\.5:22\?transport=tcp +10\.0\.0\.5 is an internal address/)
    const lines = renderNetcheck(summarize(report))
    expect(lines[0]).toBe(`network  ${report.verdict}`)
    expect(lines[1]).toMatch(/UDP ok · mapping endpoint-independent · public 203\.0\.113\.2:40000 · hairpin no · IPv6 no · TURN 1\/1 \(tcp\) · relays 1\/1 · signaling 1\.5 ms/)
    expect(renderNetcheck(null)).toEqual(['network  (netcheck running)'])
    expect(renderNetcheck(undefined)).toEqual([])
  })
})
