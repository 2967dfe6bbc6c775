/**
 * AgentPort over the real Agent (public API only): the controller's shares go into the agent's
 * ShareRegistry, remote catalogs come from `agent.onCatalog`, imports are connect listeners on
 * 0.0.0.0 (port 0) that also show in `agent.imports` (so `causeway status` lists them).
 *
 * Export targets: the controller names `<service>.<namespace>.svc:<port>` (cluster DNS). The
 * `resolve` option maps a share to the address actually dialed (tests map it to a local server);
 * the catalog still advertises the Service's port and namespace.
 *
 * The `kube-apiserver` share is never imported as a Service: that would hand the remote API
 * identity to every pod of this cluster. It is reached with `causeway kubeconfig` instead.
 */
import type { Agent } from '../agent.ts'
import type { ShareInfo } from '../../protocol/peer.ts'
import type { ShareSpec } from '../tunnel/shares.ts'
import { socketPair } from '../tunnel/socket-pair.ts'
import type { AgentPort, ImportListener, LocalShare, RemoteShare } from './ports.ts'

export const APISERVER_SHARE = 'kube-apiserver'

export interface AgentPortInit {
  /** Where to dial for an exported share. Default: the share's own host:port (cluster DNS). */
  resolve?: (share: LocalShare) => { host: string; port: number }
  /** Which remote shares become imports. Default: every share but `kube-apiserver`. */
  importable?: (peer: string, share: RemoteShare) => boolean
  /** Listen address of import listeners. Default `0.0.0.0` (reachable at the pod IP). */
  listenHost?: string
  /** The `service` column of `agent.imports` entries. Default `<share>-<peer>`. */
  describe?: (peer: string, share: string) => string
}

/** The controller's view of one catalog entry: only the fields it uses, absent ones left out. */
export function remoteShare(s: ShareInfo): RemoteShare {
  const out: RemoteShare = { name: s.name }
  if (s.protocol === 'udp') out.protocol = 'udp'
  for (const k of ['port', 'namespace', 'service', 'since', 'available', 'failover', 'pod', 'parent', 'pods', 'balance', 'weight', 'priority'] as const) {
    if (s[k] !== undefined) Object.assign(out, { [k]: s[k] })
  }
  return out
}

export function agentPort(agent: Agent, init: AgentPortInit = {}): AgentPort {
  const resolve = init.resolve ?? ((s: LocalShare) => ({ host: s.host, port: s.targetPort ?? s.port }))
  const importable = init.importable ?? ((_peer: string, s: RemoteShare) => s.name !== APISERVER_SHARE)
  const open = new Map<string, { listener: ImportListener; refs: number }>()
  return {
    setShares(source: string, shares: LocalShare[]): void {
      const specs: ShareSpec[] = shares.map((s) => {
        const target = resolve(s)
        return {
          name: s.name,
          host: target.host,
          port: target.port,
          advertisePort: s.port,
          ...(s.namespace !== undefined ? { namespace: s.namespace } : {}),
          ...(s.peers !== undefined ? { peers: [...s.peers] } : {}),
          ...(s.protocol !== undefined ? { protocol: s.protocol } : {}),
          ...(s.balance !== undefined ? { balance: s.balance } : {}),
          ...(s.weight !== undefined ? { weight: s.weight } : {}),
          ...(s.priority !== undefined ? { priority: s.priority } : {}),
          ...(s.announce !== undefined ? { announce: { ...s.announce } } : {}),
        }
      })
      agent.shares.set(source, specs)
    },
    onCatalog(cb: (peer: string, shares: RemoteShare[] | null) => void): () => void {
      return agent.onCatalog((peer, shares) => {
        if (shares === null) return cb(peer, null)
        cb(peer, shares.map(remoteShare).filter((s) => importable(peer, s)))
      })
    },
    async openImport(peer: string, share: string, protocol?: 'udp', service?: string): Promise<ImportListener> {
      const key = `${share}@${peer}/${protocol ?? 'tcp'}`
      const cur = open.get(key)
      if (cur !== undefined) {
        cur.refs++
        return cur.listener
      }
      const l = await agent.addConnect({ share, peer, host: init.listenHost ?? '0.0.0.0', port: 0, ...(protocol !== undefined ? { protocol } : {}) })
      const entry = { share, peer, service: service ?? init.describe?.(peer, share) ?? `${share}-${peer}` }
      const removeImport = agent.addImport(entry)
      const listener: ImportListener = {
        host: l.host,
        port: l.port,
        close: async () => {
          const e = open.get(key)
          if (e === undefined) return
          if (--e.refs > 0) return
          open.delete(key)
          removeImport()
          await l.close()
        },
      }
      open.set(key, { listener, refs: 1 })
      return listener
    },
    siteSplit(share: string) {
      return agent.siteSplit(share)
    },
    peerOffers(peer: string, share: string): boolean {
      return agent.status().peers.some((p) => p.name === peer && p.shares.some((s) => s.name === share))
    },
    async openStream(peer: string, share: string) {
      const [tunnelSide, clientSide] = socketPair()
      await agent.openStream(peer, share, tunnelSide)
      return clientSide
    },
    peerPath(peer: string): string | undefined {
      const p = agent.peerNamed(peer)
      if (p === undefined) return undefined
      // The agent's own answer (WebRTC or relay), as in `causeway status`.
      const path = agent.pathOf(p)
      if (path.route === 'none') return undefined
      return path.path === 'none' ? 'connecting' : path.path
    },
  }
}
