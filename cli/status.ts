/** `causeway status`: prints an agent's status API as a table (or JSON). */
import { parseArgs } from 'node:util'

export const STATUS_HELP = `causeway status [--status-addr HOST:PORT] [--json]

Reads the status API of a running agent (default 127.0.0.1:7777) and prints peers (state,
path, candidate pair, RTT, bytes), shares and connects.`

interface Status {
  name: string
  /** This agent's instance within its site (absent from agents before instances). */
  instance?: string
  draining?: boolean
  /** The other instances of its site. */
  siblings?: Array<{ peer: string, instance?: string, draining: boolean }>
  signaling: string
  peers: Array<{ name: string, instance?: string, draining?: boolean, responsive?: boolean, role: string, state: string, path: string, pair?: string, rttMs: number | null, bytesIn: number, bytesOut: number, streams: number, engine?: string, associations?: number, goodput?: { in: number, out: number } }>
  shares: Array<{ name: string, target: string, peers: string[] | 'all', protocol?: string }>
  connects: Array<{ share: string, peer: string, listen: string, protocol?: string }>
  /** agent/netcheck summary (NetcheckView); null while it runs; absent from older agents. */
  netcheck?: Netcheck | null
}

interface Netcheck {
  verdict: string
  udp: boolean | null
  mapping: string
  publicAddress?: string | null
  hairpinning: boolean | null
  ipv6: boolean
  signalingMs: number | null
  turn: Array<{ url?: string, transport: string, allocated: boolean, rttMs: number | null }>
  relays: Array<{ addr?: string, transport: string, reserved: boolean }>
  expect: Record<string, string>
}

/** Two lines: the verdict, then the findings (UDP, mapping, public address, hairpinning, IPv6, TURN, relays, signaling). */
export function renderNetcheck (n: Netcheck | null | undefined): string[] {
  if (n === undefined) return []
  if (n === null) return ['network  (netcheck running)']
  const tri = (v: boolean | null): string => v === null ? '?' : v ? 'yes' : 'no'
  const facts = [
    `UDP ${n.udp === null ? 'untested' : n.udp ? 'ok' : 'blocked'}`,
    `mapping ${n.mapping}`,
    `public ${n.publicAddress ?? '-'}`,
    `hairpin ${tri(n.hairpinning)}`,
    `IPv6 ${n.ipv6 ? 'yes' : 'no'}`,
    `TURN ${n.turn.filter(t => t.allocated).length}/${n.turn.length} (${n.turn.map(t => `${t.transport}${t.allocated ? '' : ' ✗'}`).join(', ') || '-'})`,
    `relays ${n.relays.filter(r => r.reserved).length}/${n.relays.length}`,
    `signaling ${n.signalingMs === null ? '-' : `${n.signalingMs.toFixed(1)} ms`}`,
  ]
  return [`network  ${n.verdict}`, `         ${facts.join(' · ')}`]
}

function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}

export function table (rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length))) ?? []
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}

/** A peer's state as shown: the session's, marked when the instance drains or stopped answering. */
function peerState (p: Status['peers'][number]): string {
  if (p.draining === true) return `${p.state} (draining)`
  if (p.state === 'connected' && p.responsive === false) return 'connected (silent)'
  return p.state
}

export function renderStatus (s: Status): string {
  const self = s.instance !== undefined ? `agent ${s.name} instance ${s.instance}${s.draining === true ? ' (draining)' : ''}` : `agent ${s.name}`
  const siblings = (s.siblings ?? []).map(x => `${x.instance ?? x.peer}${x.draining ? ' (draining)' : ''}`)
  const out: string[] = [`${self} — signaling ${s.signaling}`, ...(siblings.length > 0 ? [`site     other instances: ${siblings.join(', ')}`] : []), ...renderNetcheck(s.netcheck), '']
  // grouped by site: a site's instances one under the other
  const peers = [...s.peers].sort((a, b) => a.name.localeCompare(b.name) || (a.instance ?? '').localeCompare(b.instance ?? ''))
  out.push(table([['PEER', 'INSTANCE', 'ROLE', 'STATE', 'PATH', 'ENGINE', 'ASSOC', 'RTT', 'IN', 'OUT', 'GOODPUT IN/OUT', 'STREAMS', 'CANDIDATE PAIR'],
    ...peers.map(p => [p.name, p.instance ?? '-', p.role, peerState(p), p.path, p.engine ?? '-', String(p.associations ?? '-'), p.rttMs === null ? '-' : `${p.rttMs.toFixed(1)} ms`, bytes(p.bytesIn), bytes(p.bytesOut),
      p.goodput === undefined ? '-' : `${bytes(p.goodput.in)}/s ${bytes(p.goodput.out)}/s`, String(p.streams), p.pair ?? '-'])]))
  if (s.peers.length === 0) out.push('(no peers)')
  out.push('', table([['SHARE', 'PROTO', 'TARGET', 'PEERS'], ...s.shares.map(x => [x.name, x.protocol ?? 'tcp', x.target, x.peers === 'all' ? 'all' : x.peers.join(',')])]))
  out.push('', table([['CONNECT', 'PROTO', 'PEER', 'LISTEN'], ...s.connects.map(c => [c.share, c.protocol ?? 'tcp', c.peer, c.listen])]))
  return out.join('\n')
}

export async function statusCommand (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'status-addr': { type: 'string', default: '127.0.0.1:7777' }, json: { type: 'boolean', default: false } }, strict: true })
  const res = await fetch(`http://${values['status-addr']}/status`, { signal: AbortSignal.timeout(5000) })
  if (!res.ok) throw new Error(`status API answered HTTP ${res.status}`)
  const body = await res.json() as Status
  process.stdout.write(values.json ? `${JSON.stringify(body, null, 2)}\n` : `${renderStatus(body)}\n`)
  return 0
}
