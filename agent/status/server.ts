/**
 * The agent's local status API (bind it to localhost or the pod IP for probes):
 * - `GET /status` — JSON (AgentStatus): peers with state, path, candidate pair, RTT, bytes;
 *   shares, connects, imports.
 * - `GET /metrics` — Prometheus text.
 * - `GET /healthz` — 200 while the process runs; `GET /readyz` — 200 once joined to signaling
 *   or holding at least one peer connection.
 */
import { serve, type ServerType } from '@hono/node-server'
import { Hono } from 'hono'
import type { AddressInfo } from 'node:net'
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
  app.notFound(c => c.json({ error: { code: 'NOT_FOUND', message: 'no such route' } }, 404))
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s))
    s.once('error', reject)
  })
  const addr = server.address() as AddressInfo
  const shown = addr.address.includes(':') ? `[${addr.address}]` : addr.address
  return { url: `http://${shown}:${addr.port}`, port: addr.port, close: async () => { await new Promise<void>(resolve => server.close(() => resolve())) } }
}
