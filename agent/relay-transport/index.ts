/**
 * Relay transport: the agent's libp2p circuit-relay-v2 client, used when no direct WebRTC path
 * comes up. It gives byte streams between two agents through a causeway relay (`relay/`).
 *
 * ## API
 *
 * ```ts
 * const client = await startRelayClient({ relayKey, relays: ['/ip4/198.51.100.4/tcp/4001/p2p/12D3…'], log, signal })
 * await client.waitForReservation({ signal: AbortSignal.timeout(10_000) })
 * client.multiaddrs()          // ['<relay addr>/p2p-circuit/p2p/<own PeerId>', …] — send through sealed signaling
 * client.addEventListener('change', () => client.multiaddrs())   // reservations gained or lost
 * await client.handle('/causeway/tunnel/1.0.0', (stream, { remotePeer }) => { … })
 * const stream = await client.dial(peerCircuitAddrOrPeerId, '/causeway/tunnel/1.0.0', { signal })
 * client.status()              // per relay: connected, admitted, reserved, lastError
 * await client.close()
 * ```
 *
 * - `relayKey` is `deriveRelayKey(secret)` (`MemberKeys.relay`). The client derives the network's
 *   admission key from it and proves membership to each relay (`protocol/relay-admission.ts`) on every
 *   new connection, before it asks for a reservation. With `identity` (agent tokens) it also
 *   presents its credential, a signature by its key and the newest revocation list it holds: a
 *   relay that knows the network's issuer caps reservations per credential and refuses revoked
 *   ones. `pushRevocations()` proves admission again on every admitted connection, so that a
 *   newly adopted list reaches the relays at once (they drop the agents it revokes).
 * - Reservations are repaired on libp2p's events: when the connection to a relay closes or our
 *   addresses change (`self:peer:update`: the circuit transport withdrew a reservation), the
 *   client redials, proves admission again and re-listens on `<relay>/p2p-circuit` itself
 *   (js-libp2p does not re-reserve on a configured relay after the connection drops). Failed
 *   attempts are retried with a bounded backoff (`retryMinMs` 250 ms doubling to `retryMaxMs`
 *   4 s), so after a relay restart with the same identity and address the reservation is back
 *   within `retryMaxMs` (plus one dial) of the relay listening again. A relay that refuses the
 *   admission proof (wrong network) is asked again only after `refusedRetryMs` (default 30 s).
 *   A slow safety check (`checkIntervalMs`, default 30 s) remains for one case the events can
 *   miss: the circuit transport's reservation store is internal to libp2p, and we see its
 *   changes only through `self:peer:update`, which the address manager sends only when the
 *   announced set changes; a reservation dropped and re-made with the same address, or a
 *   connection we admitted replaced without a close event reaching us, shows only in a check.
 *   Each re-listen leaves one idle circuit listener object behind inside libp2p (closing one
 *   would cancel every reservation); a few bytes per restart.
 * - `dial(target)`: `target` is a full circuit multiaddr (`…/p2p/<relay>/p2p-circuit/p2p/<peer>`)
 *   or a PeerId (string or object), in which case each configured relay is tried in turn.
 *   Failures throw `RelayDialError` (`code` `PEER_UNAVAILABLE`).
 * - Streams are libp2p `Stream`s (libp2p 3 message streams):
 *   - write: `stream.send(bytes)` returns false when the buffer is full → `await stream.onDrain()`;
 *   - read: `'message'` events (`evt.data` is `Uint8Array | Uint8ArrayList`, use `.subarray()`),
 *     or `for await (const chunk of stream)`; `stream.pause()` / `resume()` apply backpressure
 *     to the remote (yamux stops granting window);
 *   - half-close: `await stream.close()` closes our writable end (the remote sees its read end
 *     finish, `'remoteCloseWrite'`), and we can still read;
 *   - reset: `stream.abort(err)`; the remote's stream gets `'close'` with `evt.error` set (a
 *     `StreamResetError`). When the relay dies, every relayed stream gets `'close'` with an error
 *     and reads end with a thrown `RelayPathLostError` (`guard.ts`) — never a silent clean end.
 *   - `'close'` is the one unconditional "finished" signal.
 *   - attach the reader (a `'message'` listener or the async iterator) right after `dial()` /
 *     in the handler, before awaiting anything else: in libp2p 3.3 an async iterator attached
 *     after both ends have closed, with data still buffered, never ends.
 * - The relayed connection carries the peers' own noise session: the relay cannot read it.
 * - Inbound relayed connections are accepted only through the configured relays.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { LogLike } from '../../peer/log.ts'
import { AdmissionRefusedError, admissionPrivateKey, proveAdmission, type AdmissionIdentity } from '../../protocol/relay-admission.ts'
import { RelayDialError } from './errors.ts'
import { guardStream } from './guard.ts'

export { RelayDialError, RelayPathLostError } from './errors.ts'
export { AdmissionRefusedError } from '../../protocol/relay-admission.ts'

export interface RelayClientInit {
  /** `deriveRelayKey(secret)`: 32 bytes. */
  relayKey: Uint8Array<ArrayBuffer>
  /** Relay multiaddrs, each ending in `/p2p/<relay PeerId>` (TCP or `/ws`). */
  relays: string[]
  /** Any LogLike (pino's Logger fits): the relay client's reservation and dial logs go here. */
  log: LogLike
  /** Aborting it closes the client. */
  signal?: AbortSignal
  /** The client's libp2p identity. Default: a new Ed25519 key per start. */
  privateKey?: PrivateKey
  /** Safety check of every reservation (ms), for what events can miss (see above). Default 30000. */
  checkIntervalMs?: number
  /** First retry after a failed reservation attempt (ms), doubling per failure. Default 250. */
  retryMinMs?: number
  /** Longest wait between attempts while a relay is unreachable (ms). Default 4000. */
  retryMaxMs?: number
  /** Timeout of one dial or admission attempt to a relay (ms). Default 5000. */
  relayTimeoutMs?: number
  /** Most concurrent inbound / outbound streams per protocol per peer connection. Default 1024. */
  maxStreams?: number
  /** Wait before asking a relay that refused our admission proof again (ms). Default 30000. */
  refusedRetryMs?: number
  /** The agent's credential and key (agent tokens), presented at admission; absent with a shared token. */
  identity?: AdmissionIdentity
}

export interface RelayStatus {
  relay: string
  connected: boolean
  admitted: boolean
  reserved: boolean
  lastError?: string
}

export interface StreamInfo { remotePeer: PeerId, remoteAddr: Multiaddr }
export type RelayStreamHandler = (stream: Stream, info: StreamInfo) => void | Promise<void>

export interface RelayClient extends EventTarget {
  peerId: PeerId
  /** Our relayed addresses (one per relay holding a reservation for us). */
  multiaddrs: () => string[]
  status: () => RelayStatus[]
  /** Resolves with `multiaddrs()` once at least `count` (default 1) relays hold a reservation. */
  waitForReservation: (opts?: { signal?: AbortSignal, count?: number }) => Promise<string[]>
  dial: (target: string | Multiaddr | PeerId, protocol: string, opts?: { signal?: AbortSignal }) => Promise<Stream>
  handle: (protocol: string, handler: RelayStreamHandler) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  /** Proves admission again on every admitted connection, carrying the current revocation list. */
  pushRevocations: () => Promise<void>
  close: () => Promise<void>
}

/** The one internal libp2p component the client needs (to re-listen on a relay). */
interface Listening { transportManager: { listen: (addrs: Multiaddr[]) => Promise<void> } }

interface RelayState {
  addr: Multiaddr
  peer: PeerId
  admittedConn?: string
  busy: boolean
  lastError?: string
  reserved: boolean
  /** The wait before the next attempt after a failure (ms): retryMinMs doubling to retryMaxMs. */
  backoffMs: number
  /** The scheduled next attempt, if any. */
  timer?: ReturnType<typeof setTimeout>
  /** When the last repair succeeded (ms): a relay lost again soon after is flapping and waits. */
  okAt: number
}

/** A relay lost within this long of its last repair is flapping: its backoff keeps growing (ms). */
const FLAP_MS = 10_000

const isCircuit = (conn: Connection): boolean => conn.remoteAddr.toString().includes('/p2p-circuit')

export async function startRelayClient (init: RelayClientInit): Promise<RelayClient> {
  const { log } = init
  const admissionKey = await admissionPrivateKey(init.relayKey)
  const checkMs = init.checkIntervalMs ?? 30_000
  const retryMinMs = init.retryMinMs ?? 250
  const retryMaxMs = init.retryMaxMs ?? 4000
  const timeoutMs = init.relayTimeoutMs ?? 5000
  const maxStreams = init.maxStreams ?? 1024
  const refusedRetryMs = init.refusedRetryMs ?? 30_000
  const relays = new Map<string, RelayState>()
  for (const text of init.relays) {
    const addr = multiaddr(text)
    const id = addr.getComponents().findLast(c => c.name === 'p2p')?.value
    if (id === undefined) throw new Error(`relay address needs /p2p/<PeerId>: ${text}`)
    relays.set(id, { addr, peer: peerIdFromString(id), busy: false, reserved: false, backoffMs: retryMinMs, okAt: 0 })
  }
  if (relays.size === 0) throw new Error('no relays configured')

  const node = await createLibp2p({
    ...(init.privateKey !== undefined ? { privateKey: init.privateKey } : {}),
    addresses: { listen: [] },
    transports: [tcp(), webSockets(), circuitRelayTransport({ reservationCompletionTimeout: timeoutMs })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: {
      denyDialMultiaddr: () => false,
      denyInboundRelayedConnection: (relay: PeerId) => !relays.has(relay.toString()),
    },
    services: {
      identify: identify(),
      listening: (components: Listening) => ({ transportManager: components.transportManager }),
    },
  })
  const tm = node.services.listening.transportManager
  const events = new EventTarget()
  const shutdown = new AbortController()
  let lastSeen = ''
  /** The reservation request in flight (they run one at a time: see repair()). */
  let listening: Promise<void> = Promise.resolve()

  const reservedOn = (id: string): boolean => node.getMultiaddrs().some(ma => ma.toString().includes(`/p2p/${id}/p2p-circuit`))
  const ownAddrs = (): string[] => [...relays.values()].filter(r => r.reserved).map(r => `${r.addr.toString()}/p2p-circuit/p2p/${node.peerId.toString()}`)

  function refresh (): void {
    for (const [id, r] of relays) r.reserved = reservedOn(id)
    const now = ownAddrs().join(' ')
    if (now !== lastSeen) {
      lastSeen = now
      log.info({ multiaddrs: ownAddrs() }, 'relayed addresses changed')
      events.dispatchEvent(new Event('change'))
    }
  }

  async function repair (id: string, r: RelayState): Promise<void> {
    const signal = AbortSignal.any([shutdown.signal, AbortSignal.timeout(timeoutMs)])
    const conn = node.getConnections(r.peer).find(c => !isCircuit(c) && c.status === 'open') ??
      await node.dial(r.addr, { signal })
    if (r.admittedConn !== conn.id) {
      await proveAdmission(conn, node.peerId, admissionKey, signal, init.identity)
      r.admittedConn = conn.id
      log.debug({ relay: id }, 'admitted by relay')
    }
    if (!reservedOn(id)) {
      // One reservation request at a time, bounded: with two relays, a second listen started
      // while the first relay's reservation was in flight never completed (js-libp2p 3.3,
      // circuit-relay-v2 4.2: the second reservation was queued and never requested), which
      // left that relay without a reservation for good.
      const listen = listening.then(async () => { if (!reservedOn(id)) await tm.listen([r.addr.encapsulate('/p2p-circuit')]) })
      const bounded = Promise.race([listen, new Promise<void>((_resolve, reject) => { signal.addEventListener('abort', () => reject(new Error('reservation timed out')), { once: true }) })])
      listening = bounded.catch(() => {})
      await bounded
    }
    delete r.lastError
  }

  /** Runs one repair of relay `id` after `delayMs` unless one is already running or scheduled. */
  function schedule (id: string, r: RelayState, delayMs: number): void {
    if (shutdown.signal.aborted || r.busy || r.timer !== undefined) return
    r.timer = setTimeout(() => {
      r.timer = undefined
      if (shutdown.signal.aborted || healthy(r)) return
      r.busy = true
      repair(id, r).then(() => {
        r.okAt = Date.now()
        r.busy = false
        refresh()
      }, (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err)
        const wait = err instanceof AdmissionRefusedError ? refusedRetryMs : backoff(r)
        if (message !== r.lastError) log.warn({ relay: id, err: message, retryMs: wait }, 'relay reservation not (yet) possible')
        r.lastError = message
        r.busy = false
        schedule(id, r, wait)
      })
    }, delayMs)
  }

  /** The next wait of a failing relay: retryMinMs doubling to retryMaxMs. */
  function backoff (r: RelayState): number {
    const wait = r.backoffMs
    r.backoffMs = Math.min(wait * 2, retryMaxMs)
    return wait
  }

  /** When to repair after an event: at once, unless the relay is flapping (lost soon after its last repair). */
  function afterEvent (r: RelayState): number {
    if (Date.now() - r.okAt < FLAP_MS) return backoff(r)
    r.backoffMs = retryMinMs
    return 0
  }

  /** Reserved over the connection we proved admission on. */
  const healthy = (r: RelayState): boolean => reservedOn(r.peer.toString()) && node.getConnections(r.peer).some(c => !isCircuit(c) && c.id === r.admittedConn)

  /** Repairs every relay that needs it; on events (soon, with its current backoff) and on the safety tick. */
  function check (): void {
    if (shutdown.signal.aborted) return
    refresh()
    for (const [id, r] of relays) if (!healthy(r) && !r.busy && r.timer === undefined) schedule(id, r, afterEvent(r))
  }

  // The safety check only (see the module comment); events below do the work.
  const timer = setInterval(check, checkMs)
  node.addEventListener('connection:open', evt => {
    if (relays.has(evt.detail.remotePeer.toString()) && !isCircuit(evt.detail)) queueMicrotask(check)
  })
  node.addEventListener('connection:close', evt => {
    queueMicrotask(() => {
      refresh()
      const id = evt.detail.remotePeer.toString()
      const r = relays.get(id)
      // The relay went away (restart, network): redial at once, then back off while it stays away.
      if (r !== undefined && !isCircuit(evt.detail) && !healthy(r) && !r.busy && r.timer === undefined) schedule(id, r, afterEvent(r))
    })
  })
  node.addEventListener('self:peer:update', () => {
    refresh()
    for (const [id, r] of relays) if (!r.reserved && !r.busy && r.timer === undefined) schedule(id, r, afterEvent(r))
  })

  let closed: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closed ??= (async () => {
      shutdown.abort()
      clearInterval(timer)
      for (const r of relays.values()) clearTimeout(r.timer)
      await node.stop()
    })()
    await closed
  }
  init.signal?.addEventListener('abort', () => { void close() }, { once: true })
  check()

  const client: RelayClient = Object.assign(events, {
    peerId: node.peerId,
    multiaddrs: ownAddrs,
    status: (): RelayStatus[] => [...relays.entries()].map(([id, r]) => ({
      relay: r.addr.toString(),
      connected: node.getConnections(r.peer).some(c => !isCircuit(c)),
      admitted: r.admittedConn !== undefined && node.getConnections(r.peer).some(c => c.id === r.admittedConn),
      reserved: reservedOn(id),
      ...(r.lastError !== undefined ? { lastError: r.lastError } : {}),
    })),
    waitForReservation: async (opts: { signal?: AbortSignal, count?: number } = {}): Promise<string[]> => {
      const want = opts.count ?? 1
      const signal = AbortSignal.any([shutdown.signal, opts.signal ?? AbortSignal.timeout(30_000)])
      while (true) {
        refresh()
        if (ownAddrs().length >= want) return ownAddrs()
        signal.throwIfAborted()
        // Woken by 'change' (refresh() runs on every libp2p address or connection event).
        await new Promise<void>(resolve => {
          const done = (): void => { events.removeEventListener('change', done); signal.removeEventListener('abort', done); resolve() }
          events.addEventListener('change', done)
          signal.addEventListener('abort', done)
        })
      }
    },
    dial: async (target: string | Multiaddr | PeerId, protocol: string, opts: { signal?: AbortSignal } = {}): Promise<Stream> => {
      const signal = AbortSignal.any([shutdown.signal, opts.signal ?? AbortSignal.timeout(15_000)])
      const addrs = targetAddrs(target, [...relays.values()].map(r => r.addr))
      const errors: string[] = []
      for (const addr of addrs) {
        try {
          return guardStream(await node.dialProtocol(addr, protocol, { signal, runOnLimitedConnection: true }))
        } catch (err) {
          errors.push(`${addr.toString()}: ${err instanceof Error ? err.message : String(err)}`)
          if (signal.aborted) break
        }
      }
      throw new RelayDialError(`could not open ${protocol} through any relay: ${errors.join('; ')}`)
    },
    handle: async (protocol: string, handler: RelayStreamHandler): Promise<void> => {
      await node.handle(protocol, async (stream, connection) => {
        try {
          await handler(guardStream(stream), { remotePeer: connection.remotePeer, remoteAddr: connection.remoteAddr })
        } catch (err) {
          log.warn({ protocol, err: err instanceof Error ? err.message : String(err) }, 'relay stream handler failed')
          stream.abort(err instanceof Error ? err : new Error(String(err)))
        }
      }, { runOnLimitedConnection: true, maxInboundStreams: maxStreams, maxOutboundStreams: maxStreams })
    },
    unhandle: async (protocol: string): Promise<void> => { await node.unhandle(protocol) },
    pushRevocations: async (): Promise<void> => {
      await Promise.allSettled([...relays.values()].map(async r => {
        const conn = node.getConnections(r.peer).find(c => c.id === r.admittedConn && c.status === 'open')
        if (conn !== undefined) await proveAdmission(conn, node.peerId, admissionKey, AbortSignal.any([shutdown.signal, AbortSignal.timeout(timeoutMs)]), init.identity)
      }))
    },
    close,
  })
  return client
}

/** The circuit addresses to try for a dial target. */
function targetAddrs (target: string | Multiaddr | PeerId, relays: Multiaddr[]): Multiaddr[] {
  if (typeof target !== 'string' && 'getComponents' in target) return [target]
  const text = target.toString()
  if (text.startsWith('/')) return [multiaddr(text)]
  const peer = peerIdFromString(text).toString()
  return relays.map(r => r.encapsulate(`/p2p-circuit/p2p/${peer}`))
}
