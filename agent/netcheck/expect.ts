/**
 * What path to expect between two sites, from what each side can do: pure functions, the
 * rules the NAT lab measured (/work/shared/natlab-notes.md, test/natlab/agents.test.ts):
 * - direct (host / server-reflexive hole punching) needs UDP on both sides and
 *   endpoint-independent mapping on both: a symmetric NAT on either side never connects with
 *   STUN alone (the other side's address-and-port-dependent filtering drops its new port);
 * - turn needs one side with a TURN allocation (any transport) and the other with an
 *   allocation too or plain UDP (its reflexive address reaches the relayed address);
 * - relay (libp2p circuit relay) needs a reservation-capable relay reachable by both.
 * Better paths win: direct, then turn, then relay; `none` when nothing is possible.
 */
import type { IceTransport } from './turn.ts'

/** The kinds of site the NAT lab builds, which netcheck predicts a path to. */
export const SITE_KINDS = ['eim', 'symmetric', 'udpblock', 'tcp443'] as const
export type SiteKind = typeof SITE_KINDS[number]
/**
 * How netcheck classifies this machine: a lab kind, `udp` (UDP works, mapping not measurable),
 * `unknown` (no STUN server offered: UDP not tested) or `offline`.
 */
export type SiteClass = SiteKind | 'udp' | 'unknown' | 'offline'
export type ExpectedPath = 'direct' | 'turn' | 'relay' | 'none'
export type Mapping = 'endpoint-independent' | 'endpoint-dependent' | 'unknown'

/** What one side brings to a connection. */
export interface SideFacts {
  udp: boolean
  /** Endpoint-independent mapping (hole punching possible). */
  eim: boolean
  /** A TURN allocation is possible (any transport). */
  turn: boolean
  /** A relay reservation is possible. */
  relay: boolean
}

export function expectPath (a: SideFacts, b: SideFacts): ExpectedPath {
  if (a.udp && b.udp && a.eim && b.eim) return 'direct'
  if ((a.turn && (b.turn || b.udp)) || (b.turn && a.udp)) return 'turn'
  if (a.relay && b.relay) return 'relay'
  return 'none'
}

/**
 * What the network offers (the servers `/v1/ice` lists), each marked alive when this machine
 * saw it work (a TURN allocation, a relay reservation) over any transport. A server this
 * machine could not reach at all counts as dead for every kind of site.
 */
export interface Offer {
  turn: Array<{ transport: IceTransport, port: number, alive: boolean }>
  /** Every relay transport runs over TCP (tcp, ws, wss). */
  relays: Array<{ port: number, alive: boolean }>
}

/** The facts of a typical site of `kind` in this network. */
export function siteFacts (kind: SiteKind, offer: Offer): SideFacts {
  const turnVia = (ok: (t: Offer['turn'][number]) => boolean): boolean => offer.turn.some(t => t.alive && ok(t))
  const relayVia = (ok: (r: Offer['relays'][number]) => boolean): boolean => offer.relays.some(r => r.alive && ok(r))
  switch (kind) {
    case 'eim':
    case 'symmetric':
      return { udp: true, eim: kind === 'eim', turn: turnVia(() => true), relay: relayVia(() => true) }
    case 'udpblock':
      return { udp: false, eim: false, turn: turnVia(t => t.transport !== 'udp'), relay: relayVia(() => true) }
    case 'tcp443':
      return { udp: false, eim: false, turn: turnVia(t => t.transport !== 'udp' && t.port === 443), relay: relayVia(r => r.port === 443) }
  }
}

/** The path this machine should expect to each kind of site. */
export function expectations (me: SideFacts, offer: Offer): Record<SiteKind, ExpectedPath> {
  const out = {} as Record<SiteKind, ExpectedPath>
  for (const kind of SITE_KINDS) out[kind] = expectPath(me, siteFacts(kind, offer))
  return out
}

/**
 * Classifies this machine. `tcpOther` / `tcp443`: whether a TCP connection to a port other than
 * 443 / to port 443 worked (null: none was tried). Without UDP, TCP that reached only 443 while
 * another port failed is `tcp443`; any other working TCP is `udpblock`.
 */
export function classify (m: { udp: boolean | null, mapping: Mapping, tcpOther: boolean | null, tcp443: boolean | null }): SiteClass {
  if (m.udp === null) return m.tcpOther === true || m.tcp443 === true ? 'unknown' : 'offline'
  if (m.udp) return m.mapping === 'endpoint-independent' ? 'eim' : m.mapping === 'endpoint-dependent' ? 'symmetric' : 'udp'
  if (m.tcpOther === true) return 'udpblock'
  if (m.tcp443 === true) return m.tcpOther === false ? 'tcp443' : 'udpblock'
  return 'offline'
}
