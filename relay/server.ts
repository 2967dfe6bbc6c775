/**
 * The causeway relay: a libp2p node running the circuit-relay-v2 server (hop protocol) on TCP
 * and WebSockets, with noise, yamux and identify, whose reservations and hops are gated by the
 * relay admission protocol (`admission.ts`): only peers that proved they hold a network token
 * may reserve a slot or open a circuit, and only to peers of the same network.
 *
 * The relay never learns a network secret: it is configured with admit keys (Ed25519 public
 * keys derived from the secret). It cannot read relayed traffic either: the circuit carries the
 * peers' own noise-encrypted libp2p connection.
 *
 * ```ts
 * const relay = await startRelay({ listen: ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws'],
 *   admission: { keys: ['cwak1.…'] }, limits: {}, log })
 * relay.multiaddrs // dialable addresses, each ending in /p2p/<relay PeerId>
 * await relay.close()
 * ```
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { PeerId, PrivateKey, PublicKey, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import { utf8 } from '../protocol/encoding.ts'
import { ADMISSION_PROTOCOL, MAX_ADMISSION_BYTES, parseAdmitKey, readAll, verifyProof } from '../protocol/relay-admission.ts'
import { createRelayMetrics, type RelayMetrics } from './metrics.ts'

/** Per-reservation and per-relay limits. Every field is optional; defaults shown. */
export interface RelayLimits {
  /** Most reservations held at once. Default 128. */
  maxReservations?: number
  /** How long a reservation lasts before the client must refresh it (ms). Default 2 h. */
  reservationTtlMs?: number
  /**
   * Whether to apply a per-relayed-connection limit. Default false: relayed connections are
   * unlimited, so they can carry long-lived tunnels. When true, `durationLimitMs` and
   * `dataLimitBytes` apply to every relayed connection (libp2p defaults: 2 min, 128 KiB).
   */
  applyLimit?: boolean
  /** Per relayed connection duration limit when `applyLimit` (ms). Default 120000. */
  durationLimitMs?: number
  /** Per relayed connection data limit in each direction when `applyLimit`. Default 131072. */
  dataLimitBytes?: bigint
  /** Most inbound hop streams per connection. Default 32. */
  maxInboundHopStreams?: number
  /** Most connections the relay holds. Default 1024. */
  maxConnections?: number
  /** New inbound connections per second accepted from one host (NAT'd sites share one). Default 50. */
  inboundConnectionThreshold?: number
}

export interface RelayAdmission {
  /** Admit keys (`cwak1.…`); at least one. */
  keys: string[]
  /** How long the gater waits for an in-flight admission proof before refusing (ms). Default 5000. */
  admissionWaitMs?: number
}

export interface RelayInit {
  /** Listen multiaddrs, e.g. `/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/tcp/4002/ws`. */
  listen: string[]
  /** Addresses to announce instead of the listen addresses (e.g. the public address). Default none. */
  announce?: string[]
  admission: RelayAdmission
  limits?: RelayLimits
  log: Logger
  /** The relay's libp2p identity; keep it stable so clients' relay multiaddrs stay valid. Default: a new Ed25519 key. */
  privateKey?: PrivateKey
}

export interface Relay {
  peerId: PeerId
  /** Dialable addresses, each ending in `/p2p/<peerId>`. */
  multiaddrs: Multiaddr[]
  metrics: RelayMetrics
  /** The libp2p node (for tests and diagnostics). */
  node: Libp2p<{ relay: CircuitRelayService }>
  close: () => Promise<void>
}

interface Admitted { keyIndex: number }

/** Who is admitted, with waiters for proofs still in flight. */
class AdmissionTable {
  readonly #admitted = new Map<string, Admitted>()
  /** Peers whose proof was refused on their current connection: the gater fails them at once. */
  readonly #refused = new Set<string>()
  readonly #waiters = new Map<string, Array<() => void>>()
  readonly #waitMs: number
  constructor (waitMs: number) { this.#waitMs = waitMs }

  admit (peer: PeerId, keyIndex: number): void {
    const id = peer.toString()
    this.#admitted.set(id, { keyIndex })
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

  forget (peer: PeerId): void { this.#admitted.delete(peer.toString()); this.#refused.delete(peer.toString()) }

  get size (): number { return this.#admitted.size }

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
}

export async function startRelay (init: RelayInit): Promise<Relay> {
  const { log } = init
  const limits = init.limits ?? {}
  if (init.admission.keys.length === 0) throw new Error('the relay needs at least one admit key')
  const keys: PublicKey[] = init.admission.keys.map(parseAdmitKey)
  const table = new AdmissionTable(init.admission.admissionWaitMs ?? 5000)
  const metrics = createRelayMetrics()

  const node = await createLibp2p({
    ...(init.privateKey !== undefined ? { privateKey: init.privateKey } : {}),
    addresses: { listen: init.listen, ...(init.announce !== undefined ? { announce: init.announce } : {}) },
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      maxConnections: limits.maxConnections ?? 1024,
      inboundConnectionThreshold: limits.inboundConnectionThreshold ?? 50,
      maxIncomingPendingConnections: 64,
    },
    connectionGater: {
      // Relay addresses of other peers are not dialled by the relay; allow private ranges so
      // that loopback and lab addresses work.
      denyDialMultiaddr: () => false,
      denyInboundRelayReservation: async (source: PeerId) => {
        const ok = (await table.get(source)) !== undefined
        if (!ok) { metrics.denied.inc({ what: 'reservation' }); log.info({ peer: source.toString() }, 'reservation refused: peer not admitted') }
        return !ok
      },
      denyOutboundRelayedConnection: async (source: PeerId, destination: PeerId) => {
        const [a, b] = await Promise.all([table.get(source), table.get(destination)])
        const ok = a !== undefined && b !== undefined && a.keyIndex === b.keyIndex
        if (ok) metrics.circuits.inc()
        else { metrics.denied.inc({ what: 'hop' }); log.info({ source: source.toString(), destination: destination.toString() }, 'hop refused: peers not admitted to the same network') }
        return !ok
      },
    },
    services: {
      identify: identify(),
      relay: circuitRelayServer({
        maxInboundHopStreams: limits.maxInboundHopStreams ?? 32,
        reservations: {
          maxReservations: limits.maxReservations ?? 128,
          reservationTtl: limits.reservationTtlMs ?? 2 * 60 * 60_000,
          applyDefaultLimit: limits.applyLimit ?? false,
          defaultDurationLimit: limits.durationLimitMs ?? 120_000,
          defaultDataLimit: limits.dataLimitBytes ?? 131_072n,
        },
      }),
    },
  })

  const relayService = node.services.relay
  relayService.addEventListener('relay:reservation', () => { metrics.reservationsMade.inc() })
  node.addEventListener('peer:disconnect', evt => { table.forget(evt.detail) })
  metrics.observe({
    reservations: () => relayService.reservations.size,
    connections: () => node.getConnections().length,
    admitted: () => table.size,
  })

  await node.handle(ADMISSION_PROTOCOL, async (stream: Stream, connection) => {
    const client = connection.remotePeer
    let answer: object
    try {
      const bytes = await readAll(stream, MAX_ADMISSION_BYTES, AbortSignal.timeout(10_000))
      const verdict = await verifyProof(bytes, client, node.peerId, keys)
      if (verdict.ok) {
        table.admit(client, verdict.keyIndex)
        metrics.admissions.inc({ result: 'ok' })
        log.debug({ peer: client.toString() }, 'peer admitted')
        answer = { ok: true }
      } else {
        table.refuse(client)
        metrics.admissions.inc({ result: verdict.code === 'UNAUTHORIZED' ? 'denied' : 'bad' })
        log.info({ peer: client.toString(), code: verdict.code }, 'admission refused')
        answer = { ok: false, code: verdict.code, message: verdict.message }
      }
    } catch (err) {
      metrics.admissions.inc({ result: 'bad' })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return
    }
    try {
      stream.send(utf8(JSON.stringify(answer)))
      await stream.close({ signal: AbortSignal.timeout(5000) })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }, { maxInboundStreams: 4 })

  const multiaddrs = node.getMultiaddrs()
  log.info({ peerId: node.peerId.toString(), multiaddrs: multiaddrs.map(String) }, 'relay listening')
  return {
    peerId: node.peerId,
    multiaddrs,
    metrics,
    node,
    close: async () => { await node.stop() },
  }
}
