/** netcheck as text: the one-line verdict and the report `causeway netcheck` prints. */
import { SITE_KINDS, type ExpectedPath, type SiteClass, type SiteKind } from './expect.ts'
import type { NetcheckReport } from './index.ts'

const SITE_TEXT: Record<SiteClass, string> = {
  eim: 'UDP works, endpoint-independent NAT mapping (hole punching works)',
  symmetric: 'UDP works, endpoint-dependent (symmetric) NAT mapping: no hole punching',
  udp: 'UDP works, NAT mapping not measurable (one STUN destination)',
  unknown: 'no STUN server offered: UDP not tested',
  udpblock: 'UDP blocked, TCP works',
  tcp443: 'UDP blocked, TCP only to port 443',
  offline: 'nothing reachable',
}

/** `direct to eim; turn to symmetric, udpblock, tcp443`. */
export function pathsText (expect: Record<SiteKind, ExpectedPath>): string {
  const by = new Map<ExpectedPath, SiteKind[]>()
  for (const k of SITE_KINDS) by.set(expect[k], [...(by.get(expect[k]) ?? []), k])
  return (['direct', 'turn', 'relay', 'none'] as const).filter(p => by.has(p)).map(p => `${p} to ${by.get(p)!.join(', ')}`).join('; ')
}

export function verdictOf (r: NetcheckReport, nothingOffered: boolean): string {
  if (!r.signaling.reachable) return `NO PATH: signaling service unreachable (${r.signaling.url}: ${r.signaling.error ?? 'no answer'})`
  if (!r.signaling.ice) return `NO PATH: the signaling service answers, but /v1/ice failed (${r.signaling.error ?? 'no answer'})`
  if (nothingOffered) return 'signaling ok; no STUN/TURN servers or relays offered: only direct connections between hosts that reach each other\'s addresses'
  const head = `${r.site}: ${SITE_TEXT[r.site]}`
  return r.ok ? `${head}; expect ${pathsText(r.expect)}` : `NO PATH: ${head}; no TURN allocation or relay reservation works from here`
}

const yn = (v: boolean | null, yes = 'yes', no = 'no'): string => v === null ? 'unknown' : v ? yes : no
const ms = (v: number | null): string => v === null ? '-' : `${v.toFixed(1)} ms`

export function renderReport (r: NetcheckReport, table: (rows: string[][]) => string): string {
  const out = [r.verdict, '']
  out.push(table([
    ['signaling', `${r.signaling.reachable ? 'reachable' : 'UNREACHABLE'} ${r.signaling.url}${r.signaling.latencyMs !== null ? ` (${ms(r.signaling.latencyMs)})` : ''}${r.signaling.error !== undefined ? ` — ${r.signaling.error}` : ''}`],
    ['UDP', r.udp.reachable === null ? 'not tested (no STUN server offered)' : r.udp.reachable ? 'works' : 'BLOCKED (no STUN answer)'],
    ['NAT mapping', r.nat.mapping],
    ['public address', `${r.nat.publicAddress ?? '-'}${r.nat.stable !== null ? (r.nat.stable ? ' (stable)' : ' (NOT stable)') : ''}`],
    ['hairpinning', yn(r.nat.hairpinning)],
    ['IPv6', `${r.ipv6.address ? 'address present' : 'no address'}${r.ipv6.reachable !== null ? `, STUN over IPv6 ${r.ipv6.reachable ? 'works' : 'fails'}` : ''}`],
  ]))
  if (r.udp.servers.length > 0) {
    out.push('', table([['STUN SERVER', 'MAPPED', 'RTT'], ...r.udp.servers.map(s => [s.server, s.mapped ?? 'no answer', ms(s.rttMs)])]))
  }
  if (r.turn.length > 0) {
    out.push('', table([['TURN', 'TRANSPORT', 'REACHABLE', 'ALLOCATION', 'RTT'],
      ...r.turn.map(t => [t.url, t.transport, yn(t.reachable), t.allocated ? `ok ${t.relayed ?? ''}`.trim() : `no${t.error !== undefined ? ` (${t.error})` : ''}`, ms(t.rttMs)])]))
  }
  if (r.relays.length > 0) {
    out.push('', table([['RELAY', 'REACHABLE', 'RESERVATION', 'CONNECT'],
      ...r.relays.map(x => [x.addr, yn(x.reachable), x.reserved ? 'ok' : `no${x.error !== undefined ? ` (${x.error.slice(0, 120)})` : ''}`, ms(x.connectMs)])]))
  }
  if (r.refused.length > 0) out.push('', table([['REFUSED BY ICE POLICY', 'WHY'], ...r.refused.map(x => [x.entry.slice(0, 200), x.reason])]))
  const list = (xs: string[]): string => xs.length === 0 ? 'none' : xs.join(', ')
  out.push('', table([['probed', `STUN ${list(r.probed.stun)}; TURN ${list(r.probed.turn)}; relays ${list(r.probed.relays)}`]]))
  out.push('', table([['TO A SITE OF KIND', 'EXPECT'], ...SITE_KINDS.map(k => [k, r.expect[k]])]))
  out.push('', `took ${r.tookMs} ms`)
  return out.join('\n')
}
