/** A small in-test AgentPort (no peers, no tunnels): records shares and listeners; the test emits remote catalogs. */
import type { AgentPort, ImportListener, LocalShare, RemoteShare } from '../../agent/kube/ports.ts'

export class FakeAgent implements AgentPort {
  readonly sources = new Map<string, LocalShare[]>()
  readonly paths = new Map<string, string>()
  readonly opened: string[] = []
  readonly closed: string[] = []
  private readonly cbs = new Set<(peer: string, shares: RemoteShare[] | null) => void>()
  private readonly catalogs = new Map<string, RemoteShare[]>()
  private nextPort = 41000

  setShares(source: string, shares: LocalShare[]): void {
    this.sources.set(source, shares)
  }
  onCatalog(cb: (peer: string, shares: RemoteShare[] | null) => void): () => void {
    this.cbs.add(cb)
    for (const [peer, shares] of this.catalogs) cb(peer, shares)
    return () => this.cbs.delete(cb)
  }
  async openImport(peer: string, share: string): Promise<ImportListener> {
    const port = this.nextPort++
    this.opened.push(`${peer}/${share}:${port}`)
    return { host: '0.0.0.0', port, close: async () => void this.closed.push(`${peer}/${share}:${port}`) }
  }
  peerPath(peer: string): string | undefined {
    return this.paths.get(peer)
  }
  peerOffers(): boolean {
    return false // no peers here: RemoteManifests are tested in remote-manifests.test.ts
  }
  openStream(peer: string): Promise<never> {
    return Promise.reject(new Error(`no connection to ${peer} in this test`))
  }
  /** Test side: a peer's catalog changes (null: the peer is gone). */
  emit(peer: string, shares: RemoteShare[] | null): void {
    if (shares === null) this.catalogs.delete(peer)
    else this.catalogs.set(peer, shares)
    for (const cb of this.cbs) cb(peer, shares)
  }
}
