/**
 * A small TCP load balancer for the replica tests: the stand-in for a Kubernetes Service in
 * front of several signaling pods. Like kube-proxy it hands each new connection to one backend
 * (round robin here, random there) and then only copies bytes; when a backend's connection
 * ends, so does the client's. Unlike a Service it moves on to the next backend when one refuses
 * the connection (a Service does the same only once the dead pod's endpoint is gone, after its
 * readiness probe fails or the pod is deleted: until then some connects fail and clients retry
 * with backoff). `pin` sends every new connection to one backend, so a test can place a client.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'

export interface Balancer {
  port: number
  url: string
  /** Backend index for new connections, or undefined for round robin. */
  pin: number | undefined
  /** Connections accepted per backend index so far. */
  accepted: number[]
  close: () => Promise<void>
}

export async function startBalancer (backends: number[]): Promise<Balancer> {
  const open = new Set<Socket>()
  let next = 0
  const lb: Balancer = { port: 0, url: '', pin: undefined, accepted: backends.map(() => 0), close: async () => {} }
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => {})
    const first = lb.pin ?? (next++ % backends.length)
    const attempt = (i: number, tries: number): void => {
      if (tries >= backends.length || client.destroyed) { client.destroy(); return }
      const upstream = connect({ host: '127.0.0.1', port: backends[i] ?? 0 })
      let connected = false
      open.add(upstream)
      upstream.on('error', () => { if (!connected) attempt((i + 1) % backends.length, tries + 1) })
      upstream.on('close', () => { open.delete(upstream); if (connected) client.destroy() })
      upstream.once('connect', () => {
        connected = true
        lb.accepted[i] = (lb.accepted[i] ?? 0) + 1
        client.on('close', () => upstream.destroy())
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      })
    }
    attempt(first, 0)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  lb.port = (server.address() as AddressInfo).port
  lb.url = `http://127.0.0.1:${lb.port}`
  lb.close = async () => {
    for (const s of open) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  return lb
}
