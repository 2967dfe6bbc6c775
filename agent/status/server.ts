/**
 * The agent's local status API (bind it to localhost or the pod IP for probes):
 * - `GET /status` — JSON (AgentStatus): peers with state, path, candidate pair, RTT, bytes;
 *   shares, connects, imports.
 * - `GET /metrics` — Prometheus text.
 * - `GET /healthz` — 200 while the process runs; `GET /readyz` — 200 once joined to signaling
 *   or holding at least one peer connection.
 * - `POST /v1/connects` `{share, peer, listen?}` — opens (or returns the open) connect listener
 *   for SHARE@PEER on a loopback address (default `127.0.0.1:0`); answers `{share, peer, listen}`.
 *   Only from loopback clients (`causeway kubeconfig` uses it); 403 otherwise.
 */
import { serve, type ServerType } from '@hono/node-server'
import { Hono } from 'hono'
import { isIP, type AddressInfo } from 'node:net'
import * as z from 'zod'
import { PeerName, ShareName } from '../../protocol/peer.ts'
import type { Agent } from '../agent.ts'
import { agentMetrics } from './metrics.ts'

export async function startStatusServer (agent: Agent, host: string, port: number): Promise<{ url: string, port: number, close: () => Promise<void> }> {
  const registry = agentMetrics(agent)
  const app = new Hono()
  app.get('/status', c => c.json(agent.status()))
  app.get('/metrics', async c => c.text(await registry.metrics(), 200, { 'content-type': registry.contentType }))
  app.get('/healthz', c => c.json({ ok: true }))
  app.get('/readyz', c => {
    const s = agent.status()
    const ready = s.signaling === 'joined' || s.peers.some(p => p.state === 'connected')
    return c.json({ ready }, ready ? 200 : 503)
  })
  app.post('/v1/connects', async c => {
    const from = (c.env as { incoming?: { socket?: { remoteAddress?: string } } }).incoming?.socket?.remoteAddress ?? ''
    if (!isLoopback(from)) return c.json({ error: { code: 'FORBIDDEN', message: 'only loopback clients may add connect listeners' } }, 403)
    const body = AddConnect.safeParse(await c.req.json().catch(() => null))
    if (!body.success) return c.json({ error: { code: 'BAD_REQUEST', message: 'expected {share, peer, listen?: "127.0.0.1:PORT"}' } }, 400)
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(body.data.listen)
    const host = m?.[1] ?? m?.[2] ?? ''
    const port = Number(m?.[3] ?? -1)
    if (!isLoopback(host) || port > 65535) return c.json({ error: { code: 'BAD_REQUEST', message: 'listen must be a loopback HOST:PORT' } }, 400)
    const { share, peer } = body.data
    let l = agent.listeners.find(x => x.spec.share === share && x.spec.peer === peer && isLoopback(x.host) && (port === 0 || x.port === port))
    if (l === undefined) {
      try { l = await agent.addConnect({ share, peer, host, port }) } catch (e) {
        return c.json({ error: { code: 'LISTEN_FAILED', message: e instanceof Error ? e.message : 'cannot listen' } }, 409)
      }
    }
    return c.json({ share, peer, listen: `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}` })
  })
  app.notFound(c => c.json({ error: { code: 'NOT_FOUND', message: 'no such route' } }, 404))
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s))
    s.once('error', reject)
  })
  const addr = server.address() as AddressInfo
  const shown = addr.address.includes(':') ? `[${addr.address}]` : addr.address
  return { url: `http://${shown}:${addr.port}`, port: addr.port, close: async () => { await new Promise<void>(resolve => server.close(() => resolve())) } }
}

const AddConnect = z.object({ share: ShareName, peer: PeerName, listen: z.string().max(64).default('127.0.0.1:0') }).strict()

function isLoopback (addr: string): boolean {
  const a = addr.replace(/^::ffff:/, '')
  return (isIP(a) === 4 && a.startsWith('127.')) || a === '::1'
}
