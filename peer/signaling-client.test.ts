/**
 * The signaling client against a real Node signaling service behind a TCP relay this test
 * controls: when the relay stops passing bytes on an established connection (a half-dead
 * socket: no FIN, no RST, TCP would take minutes to notice), the client notices the missing
 * pong, drops the socket, reconnects with backoff and joins again with the same peer id,
 * replacing its own stale entry on the service.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generatePeerKey } from '../protocol/join-proof.ts'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../signaling/node/server.ts'
import { until } from '../test/until.ts'
import { SignalingClient, type SignalingState } from './signaling-client.ts'

/** A TCP relay to `port` whose established connections can be frozen (bytes held, nothing closed). */
async function freezableRelay (port: number): Promise<{ url: string, freeze: () => void, close: () => Promise<void> }> {
  const pairs: Array<[Socket, Socket]> = []
  const frozen: Array<[Socket, Socket]> = []
  const server: Server = createServer(client => {
    const upstream = connect({ host: '127.0.0.1', port })
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.pipe(upstream)
    upstream.pipe(client)
    pairs.push([client, upstream])
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const relayPort = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${relayPort}`,
    freeze: () => {
      for (const [a, b] of pairs.splice(0)) { a.unpipe(b); b.unpipe(a); a.pause(); b.pause(); frozen.push([a, b]) }
    },
    close: async () => {
      for (const [a, b] of [...pairs, ...frozen]) { a.destroy(); b.destroy() }
      await new Promise<void>(resolve => server.close(() => resolve()))
    },
  }
}

let signaling: NodeSignaling
beforeAll(async () => { signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) }) })
afterAll(async () => { await signaling.close() })

describe('signaling client liveness', () => {
  it('drops a socket that stops answering pings and joins again with the same id', async () => {
    const relay = await freezableRelay(signaling.port)
    const room = 'room-liveness-0123456789'
    const key = await generatePeerKey()
    const sc = new SignalingClient({ signaling: relay.url, room, key, pingIntervalMs: 150, pongTimeoutMs: 400, minBackoffMs: 20, maxBackoffMs: 100 })
    const states: SignalingState[] = []
    const errors: string[] = []
    sc.on('state', s => states.push(s))
    sc.on('error', code => errors.push(code))
    // A second peer in the room sees who is there.
    const watcher = new SignalingClient({ signaling: signaling.url, room, key: await generatePeerKey() })
    const seen: string[] = []
    watcher.on('welcome', peers => seen.push(...peers))
    try {
      sc.start()
      await until(() => sc.state === 'joined', 5000, 'first join')
      // Healthy: several ping rounds without a drop.
      await new Promise(resolve => setTimeout(resolve, 1000))
      expect(states.filter(s => s === 'disconnected')).toEqual([])
      expect(errors).toEqual([])

      const frozenAt = Date.now()
      relay.freeze()
      await until(() => states.includes('disconnected'), 3000, 'the silent socket to be dropped', 10)
      const noticedMs = Date.now() - frozenAt
      expect(errors).toContain('PING_TIMEOUT')
      // At most a ping interval plus the pong timeout (and some scheduling slack).
      expect(noticedMs).toBeLessThan(150 + 400 + 1000)
      await until(() => sc.state === 'joined', 5000, 'the join on a fresh socket')
      // Same key, same id: the service replaced the stale entry instead of locking the peer out.
      watcher.start()
      await until(() => watcher.state === 'joined', 5000, 'the watcher to join')
      expect(seen).toEqual([key.id])
    } finally {
      sc.close()
      watcher.close()
      await relay.close()
    }
  })
})
