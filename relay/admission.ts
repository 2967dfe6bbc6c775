/**
 * Who the relay admitted (protocol/relay-admission.ts), and the per-credential bound on
 * reservations.
 *
 * Every admitted peer belongs to one network (the admit key its proof verified with) and one
 * *account*: its credential's serial for networks whose admit key carries the issuer key
 * (`cwak2`: agents are told apart by their credentials), else its client address (`cwak1`:
 * members of a shared-token network cannot be told apart; IPv6 per /64). A credential holds at
 * most `maxReservationsPerCredential` reservations at once (one per agent process and relay: the
 * default 8 leaves room for several instances of one agent), an address
 * `maxReservationsPerAddress` (default 32: a NAT'd site's agents share one), so one member
 * creating PeerIds cannot take the relay's reservations from the others.
 *
 * Revocation: the relay keeps, per network, the newest signed revocation list it has seen (from
 * `--revocations-file` or passed by agents in their admission messages; only a higher `seq`
 * replaces it). A revoked credential is refused at admission, and when a list revoking an
 * admitted peer arrives, that peer is dropped: its reservation released, its connections
 * closed. A peer's reservation is also released when its last connection closes (libp2p keeps
 * it for the reservation's whole lifetime otherwise, a slot nobody can use).
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { verifyRevocationList } from '../protocol/identity.ts'
import type { AdmitVerifier } from '../protocol/relay-admission.ts'

export interface Admitted {
  /** Index of the admit key (network) the proof verified with. */
  keyIndex: number
  /** Who the reservation cap counts against: `<keyIndex>/cred/<serial>` or `<keyIndex>/addr/<address>`. */
  account: string
  /** The credential, for `cwak2` networks. */
  credential?: { name: string, serial: string }
}

interface Crl { seq: number, serials: Set<string> }

const NONE: ReadonlySet<string> = new Set()

/** The account of a peer admitted without a credential: its address (IPv6: the /64). */
export function addressAccount (keyIndex: number, remote: Multiaddr): string {
  const c = remote.getComponents()
  const ip4 = c.find(x => x.name === 'ip4')?.value
  const ip6 = c.find(x => x.name === 'ip6')?.value
  const addr = ip4 ?? (ip6 !== undefined ? ip6.split(':').slice(0, 4).join(':') : remote.toString())
  return `${keyIndex}/addr/${addr}`
}

/** Who is admitted, with waiters for proofs still in flight, and the revocation lists. */
export class AdmissionTable {
  readonly #admitted = new Map<string, Admitted>()
  /** Peers whose proof was refused on their current connection: the gater fails them at once. */
  readonly #refused = new Set<string>()
  readonly #waiters = new Map<string, Array<() => void>>()
  readonly #crls = new Map<number, Crl>()
  readonly #waitMs: number
  readonly #keys: AdmitVerifier[]

  constructor (keys: AdmitVerifier[], waitMs: number) {
    this.#keys = keys
    this.#waitMs = waitMs
  }

  admit (peer: PeerId, admitted: Admitted): void {
    const id = peer.toString()
    this.#admitted.set(id, admitted)
    this.#refused.delete(id)
    this.#wake(id)
  }

  refuse (peer: PeerId): void {
    const id = peer.toString()
    if (this.#admitted.has(id)) return
    this.#refused.add(id)
    this.#wake(id)
  }

  #wake (id: string): void {
    for (const wake of this.#waiters.get(id) ?? []) wake()
    this.#waiters.delete(id)
  }

  forget (peer: PeerId | string): void { const id = peer.toString(); this.#admitted.delete(id); this.#refused.delete(id) }

  get size (): number { return this.#admitted.size }

  /** The peer's admission now (no waiting). */
  now (peer: PeerId | string): Admitted | undefined { return this.#admitted.get(peer.toString()) }

  /** The peer's admission, waiting up to the admission wait for one in flight. */
  async get (peer: PeerId): Promise<Admitted | undefined> {
    const id = peer.toString()
    const now = this.#admitted.get(id)
    if (now !== undefined || this.#refused.has(id)) return now
    await new Promise<void>(resolve => {
      const list = this.#waiters.get(id) ?? []
      const timer = setTimeout(done, this.#waitMs)
      function done (): void { clearTimeout(timer); resolve() }
      list.push(done)
      this.#waiters.set(id, list)
    })
    return this.#admitted.get(id)
  }

  /** Serials revoked in network `keyIndex` (the newest list seen). */
  revoked (keyIndex: number): ReadonlySet<string> { return this.#crls.get(keyIndex)?.serials ?? NONE }

  /**
   * Adopts a signed revocation list for whichever network's issuer signed it, when newer than
   * the one held. Returns the peers admitted with a credential it revokes (already forgotten
   * here: the caller releases their reservations and closes their connections), or null when
   * the list was not adopted (older, or no issuer of this relay signed it).
   */
  async adoptRevocations (text: string): Promise<{ keyIndex: number, seq: number, dropped: string[] } | null> {
    for (const [keyIndex, k] of this.#keys.entries()) {
      if (k.issuer === undefined) continue
      const list = await verifyRevocationList(k.issuer, text, undefined).catch(() => undefined)
      if (list === undefined) continue
      const held = this.#crls.get(keyIndex)
      if (held !== undefined && list.seq <= held.seq) return null
      const serials = new Set(list.serials)
      this.#crls.set(keyIndex, { seq: list.seq, serials })
      const dropped: string[] = []
      for (const [id, a] of this.#admitted) {
        if (a.keyIndex === keyIndex && a.credential !== undefined && serials.has(a.credential.serial)) { dropped.push(id); this.forget(id) }
      }
      return { keyIndex, seq: list.seq, dropped }
    }
    return null
  }

  /** How many of `peers` (reservation holders) other than `self` count against `account`. */
  held (account: string, peers: Iterable<PeerId>, self: PeerId): number {
    let n = 0
    for (const p of peers) if (!p.equals(self) && this.#admitted.get(p.toString())?.account === account) n++
    return n
  }
}
