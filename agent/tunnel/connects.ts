/**
 * Connect listeners (`--connect SHARE@PEER=HOST:PORT`): every TCP connection accepted here
 * becomes its own stream to that share on that peer.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { CausewayError } from '../../protocol/errors.ts'
import type { LogLike } from '../../peer/peer-session.ts'
import type { SitePolicy } from '../instances.ts'

/** The peer of a connect that goes to any site exporting the share (`--connect web@*=…`). */
export const ANY_SITE = '*'

/**
 * `protocol: 'udp'`: a UDP listener (agent/tunnel/udp-connect.ts); default TCP. `peer` is a
 * site name or ANY_SITE; `policy` chooses between sites (ANY_SITE only; agent/instances.ts).
 */
export interface ConnectSpec { share: string, peer: string, host: string, port: number, protocol?: 'tcp' | 'udp', policy?: Partial<SitePolicy> }

export interface Listener {
  spec: ConnectSpec
  host: string
  port: number
  /** Stops listening; `drain`: connections already accepted go on (the agent's drain ends them), else they are destroyed too. */
  close: (opts?: { drain?: boolean }) => Promise<void>
  /** When the listener last accepted a connection (UDP: a datagram), ms since epoch; undefined: never. */
  lastAcceptAt?: number
}

export type StreamOpener = (peerName: string, share: string, socket: Socket) => Promise<void>

export async function listenConnect (spec: ConnectSpec, open: StreamOpener, log: LogLike): Promise<Listener> {
  const sockets = new Set<Socket>()
  const listener: Listener = {
    spec,
    host: spec.host,
    port: spec.port,
    close: async (opts) => {
      // server.close() stops accepting at once; its callback waits for every accepted connection
      // to end, so a drain (which ends them itself, later) must not wait for it
      const closed = new Promise<void>(resolve => { server.close(() => resolve()) })
      if (opts?.drain === true) return
      for (const s of sockets) s.destroy()
      await closed
    },
  }
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    listener.lastAcceptAt = Date.now()
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    open(spec.peer, spec.share, socket).catch((err: unknown) => {
      const code = err instanceof CausewayError ? err.code : 'STREAM_RESET'
      log.warn({ share: spec.share, peer: spec.peer, code, err: err instanceof Error ? err.message : String(err) }, 'connect failed')
      if (!socket.destroyed) socket.resetAndDestroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(spec.port, spec.host, () => { server.off('error', reject); resolve() })
  })
  const addr = server.address() as AddressInfo
  listener.host = addr.address
  listener.port = addr.port
  return listener
}
