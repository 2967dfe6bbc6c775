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
import { SHARE_NAME, type ShareInfo } from '../../protocol/peer.ts'
import type { PairEnd } from './socket-pair.ts'

export interface ShareSpec {
  name: string
  host: string
  port: number
  /** Agent names allowed to use it; undefined = every agent of the network. */
  peers?: string[]
  protocol?: 'tcp' | 'http'
  description?: string
  /** Port advertised in the catalog (default `port`), e.g. the exporting Service's port. */
  advertisePort?: number
  /** Namespace advertised in the catalog (Kubernetes exports). */
  namespace?: string
  /**
   * Served inside the agent: each accepted stream is handed to this function as one end of an
   * in-memory pair, and `host:port` is never dialed (the API-server share: no listener exists).
   */
  serve?: (end: PairEnd) => void
}

export interface Asker {
  name: string
  role: 'agent' | 'viewer'
  grants?: string[]
  /** Whether the agent's name is proven by a verified credential. */
  proven?: boolean
}

/** The asker view of a mesh peer. */
export function askerOf (peer: { name: string, role: 'agent' | 'viewer', grants?: string[], proven?: unknown }): Asker {
  return { name: peer.name, role: peer.role, proven: peer.proven !== undefined, ...(peer.grants !== undefined ? { grants: peer.grants } : {}) }
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

  /** The catalog a given peer may see: only shares it may use. */
  catalogFor (asker: Asker): ShareInfo[] {
    return this.list().filter(s => this.allowed(s, asker)).map(s => ({ name: s.name, protocol: s.protocol ?? 'tcp', ...(s.description !== undefined ? { description: s.description } : {}), port: s.advertisePort ?? s.port, ...(s.namespace !== undefined ? { namespace: s.namespace } : {}) }))
  }

  onChange (fn: () => void): void {
    this.listeners.push(fn)
  }
}

/** Parses `NAME=HOST:PORT[,peers=a|b][,protocol=http]` (the --share flag). */
export function parseShareFlag (text: string): ShareSpec {
  const m = /^([^=]+)=([^,]+)(,.*)?$/.exec(text.trim())
  if (m?.[1] === undefined || m[2] === undefined) throw new Error(`--share expects NAME=HOST:PORT[,peers=a|b], got "${text}"`)
  const hp = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(m[2])
  if (hp === null) throw new Error(`--share target must be HOST:PORT, got "${m[2]}"`)
  const spec: ShareSpec = { name: m[1], host: hp[1] ?? hp[2] ?? '', port: Number(hp[3]) }
  for (const opt of (m[3] ?? '').split(',').filter(Boolean)) {
    const [k, v] = opt.split('=')
    if (k === 'peers' && v !== undefined) spec.peers = v.split('|').filter(Boolean)
    else if (k === 'protocol' && (v === 'tcp' || v === 'http')) spec.protocol = v
    else throw new Error(`unknown --share option "${opt}"`)
  }
  if (!SHARE_NAME.test(spec.name)) throw new Error(`invalid share name "${spec.name}": lowercase DNS label expected`)
  return spec
}

/** Parses `SHARE@PEER=LISTEN_HOST:PORT` (the --connect flag). */
export function parseConnectFlag (text: string): { share: string, peer: string, host: string, port: number } {
  const m = /^([^@]+)@([^=]+)=(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim())
  if (m?.[1] === undefined || m[2] === undefined) throw new Error(`--connect expects SHARE@PEER=LISTEN_HOST:PORT, got "${text}"`)
  return { share: m[1], peer: m[2], host: m[3] ?? m[4] ?? '127.0.0.1', port: Number(m[5]) }
}
