/**
 * The causeway relay: a libp2p node running the circuit-relay-v2 server (hop protocol) on TCP
 * and WebSockets, with noise, yamux and identify, whose reservations and hops are gated by the
 * relay admission protocol (protocol/relay-admission.ts, relay/admission.ts): only peers that
 * proved they hold a network token (for networks with per-agent identity: a valid, unrevoked
 * credential) may reserve a slot or open a circuit, and only to peers of the same network; each
 * credential (or, without identity, each client address) holds a bounded number of reservations.
 *
 * The relay never learns a network secret: it is configured with admit keys (Ed25519 public
 * keys derived from the secret). It cannot read relayed traffic either: the circuit carries the
 * peers' own noise-encrypted libp2p connection.
 *
 * ```ts
 * const relay = await startRelay({ listen: ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws'],
 *   admission: { keys: ['cwak2.…'] }, limits: {}, log })
 * relay.multiaddrs // dialable addresses, each ending in /p2p/<relay PeerId>
 * await relay.close()
 * ```
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import { utf8 } from '../protocol/encoding.ts'
import { ADMISSION_PROTOCOL, admitVerifier, MAX_ADMISSION_BYTES, parseAdmitKey, readAll, verifyProof } from '../protocol/relay-admission.ts'
import { AdmissionTable, addressAccount } from './admission.ts'
import { createRelayMetrics, type RelayMetrics } from './metrics.ts'

/** Per-reservation and per-relay limits. Every field is optional; defaults shown. */
export interface RelayLimits {
  /** Most reservations held at once. Default 128. */
  maxReservations?: number
  /** Most reservations one agent credential holds at once (`cwak2` networks). Default 8. */
  maxReservationsPerCredential?: number
  /** Most reservations one client address (IPv6: /64) holds at once in networks admitted without identity (`cwak1`). Default 32 (a NAT'd site's agents share one address). */
  maxReservationsPerAddress?: number
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
  /** Admit keys (`cwak1.…`, `cwak2.…` with the issuer key); at least one. */
  keys: string[]
  /** Signed revocation lists to start with (each adopted for the network whose issuer signed it). */
  revocations?: string[]
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
  /** Adopts a newer signed revocation list: revoked agents lose their reservations and connections. Returns whether it was adopted. */
  adoptRevocations: (text: string) => Promise<boolean>
  close: () => Promise<void>
}

export async function startRelay (init: RelayInit): Promise<Relay> {
  const { log } = init
  const limits = init.limits ?? {}
  if (init.admission.keys.length === 0) throw new Error('the relay needs at least one admit key')
  const keys = await Promise.all(init.admission.keys.map(async k => await admitVerifier(parseAdmitKey(k))))
  const table = new AdmissionTable(keys, init.admission.admissionWaitMs ?? 5000)
  const perCredential = limits.maxReservationsPerCredential ?? 8
  const perAddress = limits.maxReservationsPerAddress ?? 32
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
        const a = await table.get(source)
        if (a === undefined) { metrics.denied.inc({ what: 'reservation' }); log.info({ peer: source.toString() }, 'reservation refused: peer not admitted'); return true }
        const held = table.held(a.account, node.services.relay.reservations.keys(), source)
        if (held >= (a.credential !== undefined ? perCredential : perAddress)) {
          metrics.denied.inc({ what: 'reservation_limit' })
          log.info({ peer: source.toString(), account: a.credential?.name ?? a.account, held }, `reservation refused: this ${a.credential !== undefined ? 'credential' : 'address'} holds its limit of reservations`)
          return true
        }
        return false
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
  /** Frees a peer's reservation now (libp2p would keep it for its whole lifetime). */
  const release = (peer: PeerId, reason: 'disconnect' | 'revoked'): void => {
    const r = relayService.reservations.get(peer)
    if (r === undefined) return
    r.signal.clear()
    relayService.reservations.delete(peer)
    metrics.released.inc({ reason })
  }
  node.addEventListener('peer:disconnect', evt => { table.forget(evt.detail); release(evt.detail, 'disconnect') })
  const adoptRevocations = async (text: string): Promise<boolean> => {
    const r = await table.adoptRevocations(text)
    if (r === null) return false
    log.info({ network: r.keyIndex, seq: r.seq, dropped: r.dropped.length }, 'revocation list adopted')
    for (const id of r.dropped) {
      const peer = node.getConnections().find(c => c.remotePeer.toString() === id)?.remotePeer
      if (peer === undefined) continue
      release(peer, 'revoked')
      await node.hangUp(peer).catch(() => {})
    }
    return true
  }
  for (const text of init.admission.revocations ?? []) {
    if (!await adoptRevocations(text)) throw new Error('a revocation list given to the relay is signed by none of its networks\' issuers (or is older than another one given)')
  }
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
      let verdict = await verifyProof(bytes, client, node.peerId, keys, { revoked: i => table.revoked(i) })
      if (verdict.ok && verdict.crl !== undefined) {
        // An agent passes on the newest list it holds; it may revoke this very credential.
        await adoptRevocations(verdict.crl).catch((err: unknown) => { log.debug({ err: String(err) }, 'revocation list in admission not adopted') })
        const serial = verdict.credential?.serial
        if (serial !== undefined && table.revoked(verdict.keyIndex).has(serial)) verdict = { ok: false, code: 'CREDENTIAL_REVOKED', message: `credential ${serial} is revoked` }
      }
      if (verdict.ok) {
        const c = verdict.credential
        table.admit(client, { keyIndex: verdict.keyIndex, account: c !== undefined ? `${verdict.keyIndex}/cred/${c.serial}` : addressAccount(verdict.keyIndex, connection.remoteAddr), ...(c !== undefined ? { credential: { name: c.name, serial: c.serial } } : {}) })
        metrics.admissions.inc({ result: 'ok' })
        log.debug({ peer: client.toString(), ...(c !== undefined ? { agent: c.name, serial: c.serial } : {}) }, 'peer admitted')
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
    adoptRevocations,
    close: async () => { await node.stop() },
  }
}
