/**
 * What this agent shares. Shares come from several sources (CLI flags, the Kubernetes
 * controller, the API-server share), each replacing only its own entries. Only declared
 * targets are ever dialed: the remote side names a share, never an address.
 *
 * Who may use a share:
 * - no `peers`: every agent of the network, and viewers whose grant names it (or `*`);
 * - `peers=a|b`: only the agents a and b, by proven name (their credential verified, see
 *   peer/mesh.ts). Viewers never reach such a share, whatever their grant says, `*` included:
 *   a viewer has no proven name, and any member can sign viewer grants. With a shared token
 *   (no per-agent identity) names are mere claims, so a `peers=` share is refused outright
 *   (SHARED_TOKEN) instead of silently protecting nothing.
 */
import { CausewayError } from '../../protocol/errors.ts'
import { parseHostPort } from '../../protocol/host-port.ts'
import { SHARE_NAME, type ShareInfo } from '../../protocol/peer.ts'
import { UDP_CAP } from '../../protocol/udp.ts'
import type { PairEnd } from './socket-pair.ts'
import { ANY_SITE, type ConnectSpec } from './connects.ts'
import { BALANCES, type Balance, type SitePolicy } from '../instances.ts'

export interface ShareSpec {
  name: string
  host: string
  port: number
  /** Agent names allowed to use it; undefined = every agent of the network. */
  peers?: string[]
  /** `udp`: datagrams (agent/tunnel/udp-*.ts); `tcp` and `http` are streams. */
  protocol?: 'tcp' | 'http' | 'udp'
  description?: string
  /** Port advertised in the catalog (default `port`), e.g. the exporting Service's port. */
  advertisePort?: number
  /** Namespace advertised in the catalog (Kubernetes exports). */
  namespace?: string
  /** Announced to importers choosing between the sites that export this name (protocol/peer.ts ShareInfo). */
  balance?: Balance
  weight?: number
  priority?: number
  /** Announced as ShareInfo `service`, `since`, `available`, `failover`, `pod`, `parent` (protocol/peer.ts): Kubernetes exports. */
  announce?: ShareAnnouncement
  /**
   * Served inside the agent: each accepted stream is handed to this function as one end of an
   * in-memory pair, with the peer that opened it, and `host:port` is never dialed (the
   * API-server share: no listener exists).
   */
  serve?: (end: PairEnd, from: Asker) => void
}

/** What a Kubernetes export announces beyond the share itself (protocol/peer.ts ShareInfo). */
export type ShareAnnouncement = Pick<ShareInfo, 'service' | 'since' | 'available' | 'failover' | 'pod' | 'parent' | 'pods'>

export interface Asker {
  name: string
  role: 'agent' | 'viewer'
  grants?: string[]
  /** Whether the agent's name is proven by a verified credential. */
  proven?: boolean
  /** Capabilities from its hello (`udp/1`: it understands UDP shares). */
  caps?: string[]
}

/** The asker view of a mesh peer. */
export function askerOf (peer: { name: string, role: 'agent' | 'viewer', grants?: string[], proven?: unknown, caps?: string[] }): Asker {
  return { name: peer.name, role: peer.role, proven: peer.proven !== undefined, ...(peer.grants !== undefined ? { grants: peer.grants } : {}), ...(peer.caps !== undefined ? { caps: peer.caps } : {}) }
}

export interface ShareRegistryInit {
  /** Whether peers' names are proven (agent tokens). False with a shared token: `peers=` is refused. Default true. */
  provenNames?: boolean
}

export class ShareRegistry {
  private readonly bySource = new Map<string, ShareSpec[]>()
  private readonly listeners: Array<() => void> = []
  private readonly provenNames: boolean

  constructor (init: ShareRegistryInit = {}) {
    this.provenNames = init.provenNames ?? true
  }

  /** Replaces the shares of one source. Throws on invalid or duplicate names, and on `peers` with a shared token. */
  set (source: string, shares: ShareSpec[]): void {
    for (const s of shares) {
      if (s.peers !== undefined && !this.provenNames) {
        throw new CausewayError('SHARED_TOKEN', `share "${s.name}" limits peers, but this agent runs with a shared token where any member can claim any name: issue per-agent tokens (causeway token --name NAME)`)
      }
      if (!SHARE_NAME.test(s.name)) throw new Error(`invalid share name "${s.name}": lowercase DNS label expected`)
      if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) throw new Error(`invalid port for share "${s.name}"`)
      const clash = this.get(s.name)
      if (clash !== undefined && !(this.bySource.get(source) ?? []).some(x => x.name === s.name)) throw new Error(`share "${s.name}" is already declared by another source`)
    }
    const names = new Set(shares.map(s => s.name))
    if (names.size !== shares.length) throw new Error('duplicate share names')
    this.bySource.set(source, shares.map(s => ({ ...s })))
    for (const l of this.listeners) l()
  }

  get (name: string): ShareSpec | undefined {
    for (const list of this.bySource.values()) {
      const s = list.find(x => x.name === name)
      if (s !== undefined) return s
    }
    return undefined
  }

  list (): ShareSpec[] {
    return [...this.bySource.values()].flat()
  }

  allowed (share: ShareSpec, asker: Asker): boolean {
    if (asker.role === 'viewer') return share.peers === undefined && (asker.grants ?? []).some(g => g === '*' || g === share.name)
    if (share.peers === undefined) return true
    return asker.proven === true && share.peers.includes(asker.name)
  }

  /**
   * The catalog a given peer may see: only shares it may use. UDP shares only to agents that
   * announce `udp/1` (an older agent's catalog schema refuses the whole catalog otherwise).
   */
  catalogFor (asker: Asker): ShareInfo[] {
    const udp = asker.role === 'viewer' || (asker.caps ?? []).includes(UDP_CAP)
    return this.list().filter(s => this.allowed(s, asker) && (udp || s.protocol !== 'udp')).map(s => ({ name: s.name, protocol: s.protocol ?? 'tcp', ...(s.description !== undefined ? { description: s.description } : {}), port: s.advertisePort ?? s.port, ...(s.namespace !== undefined ? { namespace: s.namespace } : {}), ...(s.balance !== undefined ? { balance: s.balance } : {}), ...(s.weight !== undefined ? { weight: s.weight } : {}), ...(s.priority !== undefined ? { priority: s.priority } : {}), ...s.announce }))
  }

  onChange (fn: () => void): void {
    this.listeners.push(fn)
  }
}

const isBalance = (v: string): v is Balance => (BALANCES as readonly string[]).includes(v)

/** Flag errors carry BAD_CONFIG (the CLI prints `causeway: BAD_CONFIG: …` and exits 1). */
function badFlag (message: string): CausewayError { return new CausewayError('BAD_CONFIG', message) }

function hostPort (text: string, flag: string): { host: string, port: number } {
  try { return parseHostPort(text, null) } catch (err) { throw badFlag(`${flag}: ${err instanceof Error ? err.message : String(err)}`) }
}

/** Splits `HEAD,k=v,k=v` into the head and its options (the flags' common shape). */
function flagOptions (text: string, flag: string, usage: string): { head: string, opts: Array<[string, string]> } {
  const [head = '', ...rest] = text.trim().split(',')
  const opts: Array<[string, string]> = []
  for (const opt of rest.filter(Boolean)) {
    const eq = opt.indexOf('=')
    if (eq <= 0) throw badFlag(`${flag}: option "${opt}" is not KEY=VALUE (${usage})`)
    opts.push([opt.slice(0, eq), opt.slice(eq + 1)])
  }
  return { head, opts }
}

const SHARE_USAGE = 'NAME=HOST:PORT[,peers=a|b][,protocol=tcp|http|udp][,balance=round-robin|least-loaded|nearest][,weight=N][,priority=N]'
const CONNECT_USAGE = 'SHARE@PEER=LISTEN_HOST:PORT[,protocol=tcp|udp] (PEER * = any site exporting SHARE, then [,balance=round-robin|least-loaded|nearest][,weight=SITE:N|...][,priority=SITE:N|...])'

/** `a:3|b:1` → {a: 3, b: 1}: non-negative integers per peer name. */
function perSite (text: string, key: string, max: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (const part of text.split('|').filter(Boolean)) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63}):(\d{1,4})$/.exec(part)
    const n = Number(m?.[2])
    if (m?.[1] === undefined || !Number.isInteger(n) || n > max) throw badFlag(`--connect ${key}= expects SITE:N|SITE:N with N from 0 to ${max}, got "${part}"`)
    out[m[1]] = n
  }
  return out
}

/** Parses `NAME=HOST:PORT[,peers=a|b][,protocol=tcp|http|udp]` (the --share flag). */
export function parseShareFlag (text: string): ShareSpec {
  const { head, opts } = flagOptions(text, '--share', SHARE_USAGE)
  const eq = head.indexOf('=')
  if (eq <= 0) throw badFlag(`--share expects ${SHARE_USAGE}, got "${text}"`)
  const target = hostPort(head.slice(eq + 1), '--share')
  const spec: ShareSpec = { name: head.slice(0, eq), host: target.host, port: target.port }
  for (const [k, v] of opts) {
    if (k === 'peers') spec.peers = v.split('|').filter(Boolean)
    else if (k === 'protocol' && (v === 'tcp' || v === 'http' || v === 'udp')) spec.protocol = v
    else if (k === 'balance' && isBalance(v)) spec.balance = v
    else if ((k === 'weight' || k === 'priority') && /^\d{1,4}$/.test(v) && Number(v) <= (k === 'weight' ? 1000 : 100)) spec[k] = Number(v)
    else throw badFlag(`unknown --share option "${k}=${v}" (${SHARE_USAGE})`)
  }
  if (!SHARE_NAME.test(spec.name)) throw badFlag(`invalid share name "${spec.name}": lowercase DNS label expected`)
  if (spec.port === 0) throw badFlag(`--share target port must be 1-65535, got "${text}"`)
  return spec
}

/** Parses `SHARE@PEER=LISTEN_HOST:PORT[,protocol=tcp|udp]` (the --connect flag). */
export function parseConnectFlag (text: string): ConnectSpec {
  const { head, opts } = flagOptions(text, '--connect', CONNECT_USAGE)
  const m = /^([^@=]+)@([^=]+)=(.+)$/.exec(head)
  if (m?.[1] === undefined || m[2] === undefined || m[3] === undefined) throw badFlag(`--connect expects ${CONNECT_USAGE}, got "${text}"`)
  const listen = hostPort(m[3], '--connect')
  const spec: ConnectSpec = { share: m[1], peer: m[2], host: listen.host, port: listen.port }
  const policy: Partial<SitePolicy> = {}
  for (const [k, v] of opts) {
    if (k === 'protocol' && (v === 'tcp' || v === 'udp')) spec.protocol = v
    else if (k === 'balance' && isBalance(v)) policy.balance = v
    else if (k === 'weight') policy.weights = perSite(v, k, 1000)
    else if (k === 'priority') policy.priorities = perSite(v, k, 100)
    else throw badFlag(`unknown --connect option "${k}=${v}" (${CONNECT_USAGE})`)
  }
  if (Object.keys(policy).length > 0) {
    if (spec.peer !== ANY_SITE) throw badFlag('--connect: balance=, weight= and priority= choose between sites: use SHARE@*')
    spec.policy = policy
  }
  return spec
}
