/**
 * What an agent accepts from the signaling service's `/v1/ice`: ICE servers and relays are used
 * as ICE servers and relays only, never as a way for the service's operator to make agents send
 * packets or open connections to hosts and ports of its choosing (an operator listing
 * `turn:10.0.0.5:22?transport=tcp` or `stun:169.254.169.254:80` would otherwise have every agent
 * probe an internal host: ICE gathering, the engine's UDP probe and netcheck all contact every
 * server listed).
 *
 * The policy (flags `--ice-ports`, `--ice-allow`; the agent chart's `icePolicy`):
 * - an ICE server URL must be `stun:`, `turn:` or `turns:` (RFC 7064/7065: host, optional port,
 *   optional `?transport=udp|tcp`; nothing else), a relay a TCP or WebSocket multiaddr
 *   (`/ip4|ip6|dns4|dns6|dns/<host>/tcp/<port>[/ws|/wss|/tls/ws]/p2p/<id>`);
 * - its host must be a public address, or a name whose every address is public, on one of the
 *   allowed ports (`--ice-ports`, default 3478, 3479, 5349, 5350: STUN/TURN and coturn's
 *   alternate port; 443: TURN over TCP/TLS and relays on 443; 4001, 4002: the relay's defaults);
 * - internal addresses (loopback, private RFC 1918, carrier-grade NAT 100.64/10, link-local,
 *   unique-local fc00::/7, multicast, unspecified, and IPv4 inside IPv6 of those) are refused
 *   unless the agent's operator allows their network (`--ice-allow CIDR`, repeatable: e.g. an
 *   in-cluster coturn); inside an allowed network every port is allowed;
 * - at most 16 ICE server URLs and 8 relays are taken.
 * Names are resolved (DNS, 2 s) and checked; for `stun:`/`turn:` and plain TCP/WebSocket relays
 * the checked address replaces the name, so a name cannot resolve to another address when the
 * engine connects (DNS rebinding). `turns:` and `/wss` keep the name (TLS checks the certificate
 * against it) after the same check.
 * Entries outside the policy are dropped with a warning in the agent's log and listed by
 * `causeway netcheck`. ICE servers and relays given by the agent's own flags (`--ice`,
 * `--relay`) are the operator's choice and not filtered.
 */
import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'
import { parseIceUrl } from '../protocol/ice-url.ts'

export const DEFAULT_ICE_PORTS: readonly number[] = [3478, 3479, 5349, 5350, 443, 4001, 4002]
export const MAX_ICE_URLS = 16
export const MAX_RELAYS = 8

export interface IcePolicy {
  /** Ports a server on a public address may use. */
  ports: ReadonlySet<number>
  /** Networks the agent's operator allows on any port (CIDR text, for display). */
  allow: readonly string[]
  /** The same, for checks. */
  allowed: BlockList
}

export interface Refused { entry: string, reason: string }

export interface PolicyResult { iceServers: RTCIceServer[], relays: string[], refused: Refused[] }

const INTERNAL = new BlockList()
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) INTERNAL.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8]] as const) INTERNAL.addSubnet(net, bits, 'ipv6')

/** Parses `--ice-ports` and `--ice-allow`; throws Error with the flag's name on bad input. */
export function icePolicy (opts: { ports?: readonly number[], allow?: readonly string[] } = {}): IcePolicy {
  const allowed = new BlockList()
  for (const cidr of opts.allow ?? []) {
    const [addr = '', bits] = cidr.split('/')
    const family = isIP(addr)
    const max = family === 6 ? 128 : 32
    const n = bits === undefined ? max : Number(bits)
    if (family === 0 || !Number.isInteger(n) || n < 0 || n > max) throw new Error(`--ice-allow expects an address or CIDR (10.0.0.0/8, fd00::/8), got "${cidr}"`)
    allowed.addSubnet(addr, n, family === 6 ? 'ipv6' : 'ipv4')
  }
  const ports = opts.ports ?? DEFAULT_ICE_PORTS
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`--ice-ports expects ports 1-65535, got ${p}`)
  return { ports: new Set(ports), allow: [...(opts.allow ?? [])], allowed }
}

/** `::ffff:a.b.c.d` (and the deprecated `::a.b.c.d`) as IPv4; other addresses unchanged. */
function unwrap (addr: string): { addr: string, family: 'ipv4' | 'ipv6' } {
  const m = /^::(?:ffff:)?(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  if (m?.[1] !== undefined) return { addr: m[1], family: 'ipv4' }
  return { addr, family: isIP(addr) === 6 ? 'ipv6' : 'ipv4' }
}

/** Why `addr:port` is outside the policy, or null when it is inside. `anyPort`: the port is not the server's choice (our own mapped address). */
export function addressRefusal (policy: IcePolicy, addr: string, port: number, anyPort = false): string | null {
  const a = unwrap(addr)
  if (policy.allowed.check(a.addr, a.family)) return null
  if (INTERNAL.check(a.addr, a.family)) return `${addr} is an internal address (allow its network with --ice-allow)`
  if (!anyPort && !policy.ports.has(port)) return `port ${port} is not an ICE port this agent allows (--ice-ports: ${[...policy.ports].join(', ')})`
  return null
}

type Resolve = (host: string) => Promise<string[]>

const dnsResolve: Resolve = async (host) => (await lookup(host, { all: true, verbatim: true })).map(r => r.address)

/** The addresses of `host` (itself when it is an IP), each checked; the first one, or the refusal. */
async function checkHost (policy: IcePolicy, host: string, port: number, resolve: Resolve): Promise<{ addr: string } | { reason: string }> {
  let addrs: string[]
  if (isIP(host) !== 0) addrs = [host]
  else {
    try {
      addrs = await Promise.race([resolve(host), new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('timed out')), 2000).unref())])
    } catch (err) {
      return { reason: `${host} does not resolve (${err instanceof Error ? err.message : String(err)})` }
    }
    if (addrs.length === 0) return { reason: `${host} does not resolve` }
  }
  for (const a of addrs) {
    const why = addressRefusal(policy, a, port)
    if (why !== null) return { reason: isIP(host) !== 0 ? why : `${host} resolves to ${why}` }
  }
  return { addr: addrs[0]! }
}

const bracket = (addr: string): string => isIP(addr) === 6 ? `[${addr}]` : addr

async function checkUrl (policy: IcePolicy, url: string, resolve: Resolve): Promise<{ url: string } | { reason: string }> {
  const u = parseIceUrl(url)
  if (u === null) return { reason: 'not a stun:, turn: or turns: URL (host, port and ?transport=udp|tcp only)' }
  const host = await checkHost(policy, u.host, u.port, resolve)
  if ('reason' in host) return host
  if (u.scheme === 'turns' || isIP(u.host) !== 0) return { url }
  // pinned to the checked address (no second resolution when the engine connects)
  const query = url.includes('?') ? url.slice(url.indexOf('?')) : ''
  return { url: `${u.scheme}:${bracket(host.addr)}:${u.port}${query}` }
}

const RELAY = /^\/(ip4|ip6|dns4|dns6|dns)\/([^/]+)\/tcp\/(\d{1,5})((?:\/tls)?\/wss?)?\/p2p\/([1-9A-HJ-NP-Za-km-z]{32,128})$/

async function checkRelay (policy: IcePolicy, addr: string, resolve: Resolve): Promise<{ addr: string } | { reason: string }> {
  const m = RELAY.exec(addr.trim())
  if (m === null) return { reason: 'not a TCP or WebSocket relay multiaddr ending in /p2p/<PeerId>' }
  const [, proto = '', host = '', portText = '', ws = '', peer = ''] = m
  const port = Number(portText)
  if (port < 1 || port > 65535) return { reason: `bad port ${portText}` }
  if ((proto === 'ip4' && isIP(host) !== 4) || (proto === 'ip6' && isIP(host) !== 6)) return { reason: `${host} is not an /${proto} address` }
  const checked = await checkHost(policy, host, port, resolve)
  if ('reason' in checked) return checked
  if (proto.startsWith('ip') || ws.endsWith('wss') || ws.startsWith('/tls')) return { addr }
  return { addr: `/${isIP(checked.addr) === 6 ? 'ip6' : 'ip4'}/${checked.addr}/tcp/${port}${ws}/p2p/${peer}` }
}

/** Applies the policy to a `/v1/ice` answer: what may be used, and what was refused and why. */
export async function applyIcePolicy (cfg: { iceServers: RTCIceServer[], relays: string[] }, policy: IcePolicy, resolve: Resolve = dnsResolve): Promise<PolicyResult> {
  const refused: Refused[] = []
  const iceServers: RTCIceServer[] = []
  let urls = 0
  for (const s of cfg.iceServers) {
    const kept: string[] = []
    for (const url of Array.isArray(s.urls) ? s.urls : [s.urls]) {
      if (urls >= MAX_ICE_URLS) { refused.push({ entry: url, reason: `more than ${MAX_ICE_URLS} ICE server URLs` }); continue }
      const r = await checkUrl(policy, url, resolve)
      if ('reason' in r) refused.push({ entry: url, reason: r.reason })
      else { kept.push(r.url); urls++ }
    }
    if (kept.length > 0) iceServers.push({ ...s, urls: kept.length === 1 ? kept[0]! : kept })
  }
  const relays: string[] = []
  for (const addr of cfg.relays) {
    if (relays.length >= MAX_RELAYS) { refused.push({ entry: addr, reason: `more than ${MAX_RELAYS} relays` }); continue }
    const r = await checkRelay(policy, addr, resolve)
    if ('reason' in r) refused.push({ entry: addr, reason: r.reason })
    else relays.push(r.addr)
  }
  return { iceServers, relays, refused }
}
