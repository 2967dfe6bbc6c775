/**
 * The agent's local status API (bind it to localhost or the pod IP for probes):
 * - `GET /status` — JSON (AgentStatus): peers with state, path, candidate pair, RTT, bytes;
 *   shares, connects, imports.
 * - `GET /metrics` — Prometheus text.
 * - `GET /healthz` — 200 while the process runs; `GET /readyz` — 200 once this instance is in
 *   the mesh and can carry streams: joined to signaling or holding a peer connection, and, when
 *   other agents are known, connected to at least one of them (after READY_GRACE_MS it is ready
 *   without: peers that are all unreachable must not block a rolling update forever); 503 again
 *   once the instance drains (SIGTERM). The chart's readinessProbe uses it.
 * - `POST /v1/connects` `{share, peer, listen?}` — opens (or returns the open) connect listener
 *   for SHARE@PEER on a loopback address (default `127.0.0.1:0`); answers `{share, peer, listen}`.
 *   `causeway kubeconfig` uses it.
 *
 * ## Who may call it (web pages and DNS rebinding)
 * A browser on the same machine can send requests here: a page on any origin may POST with
 * `mode: 'no-cors'` and a "simple" content type, and a DNS-rebinding page reaches the port
 * under its own host name. So every request is checked before routing:
 * - `Host` must name this server: `localhost`, `127.x.x.x` or `[::1]`, or the address it is bound
 *   to (bound to a wildcard such as the chart's `0.0.0.0:9090`: any address of this host's
 *   interfaces, i.e. the pod IP kubelet probes and Prometheus' pod/endpoints discovery use),
 *   always with the listening port. Other names are refused (HOST_NOT_ALLOWED): a rebinding
 *   page's requests carry its own name. Scrapers must address the agent by IP, not by a
 *   Service DNS name; a port-forward must keep the port number (`kubectl port-forward POD 9090`).
 * - A request carrying an `Origin` other than this server's own is refused
 *   (ORIGIN_NOT_ALLOWED), so a page cannot read `/status` through CORS either.
 * - State-changing requests (any method but GET/HEAD, including CORS preflights) are refused
 *   when they carry any `Origin` (browsers always send one; the CLI never does), need a
 *   loopback client address (FORBIDDEN) and a loopback `Host` even when the server is bound to
 *   a wildcard (HOST_NOT_ALLOWED), and `content-type: application/json`
 *   (UNSUPPORTED_MEDIA_TYPE), which a page can only send after a preflight this server refuses.
 *   Bodies are at most 4 KiB (MESSAGE_TOO_LARGE).
 * Errors are `{"error":{"code","message"}}` with codes from protocol/errors.ts.
 */
import { serve, type ServerType } from '@hono/node-server'
import { Hono, type Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { isIP, type AddressInfo } from 'node:net'
import { networkInterfaces } from 'node:os'
import * as z from 'zod'
import { ERRORS, publicError, type ErrorCode } from '../../protocol/errors.ts'
import { PeerName, ShareName } from '../../protocol/peer.ts'
import { parseHostPort } from '../../protocol/host-port.ts'
import type { Agent, AgentStatus, PeerView } from '../agent.ts'
import { agentMetrics } from './metrics.ts'

const MAX_BODY = 4096
/** Ready without a connected agent peer after this long (all known peers unreachable), ms. */
export const READY_GRACE_MS = 30_000

export async function startStatusServer (agent: Agent, host: string, port: number): Promise<{ url: string, port: number, close: () => Promise<void> }> {
  const registry = agentMetrics(agent)
  const app = new Hono()
  let listening = 0
  const started = Date.now()
  app.onError((err, c) => {
    const e = publicError(err)
    return fail(c, e.code, e.message)
  })
  app.use(async (c, next) => {
    const state = c.req.method !== 'GET' && c.req.method !== 'HEAD'
    const h = parseHost(c.req.header('host'))
    if (h === undefined || h.port !== listening) return fail(c, 'HOST_NOT_ALLOWED', 'the Host header must name this server (loopback or its bound address) and its port')
    if (!(isLoopbackName(h.name) || (!state && isBoundAddress(h.name, host)))) return fail(c, 'HOST_NOT_ALLOWED', state ? 'state-changing requests must address the server by a loopback name' : 'the Host header must name this server (loopback or its bound address) and its port')
    const origin = c.req.header('origin')
    if (origin !== undefined && (state || !sameOrigin(origin, h))) return fail(c, 'ORIGIN_NOT_ALLOWED', 'requests from web pages are refused')
    if (state) {
      const from = (c.env as { incoming?: { socket?: { remoteAddress?: string } } }).incoming?.socket?.remoteAddress ?? ''
      if (!isLoopbackName(from.replace(/^::ffff:/, ''))) return fail(c, 'FORBIDDEN', 'only loopback clients may change the agent')
      const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
      if (type !== 'application/json') return fail(c, 'UNSUPPORTED_MEDIA_TYPE', 'state-changing requests need content-type: application/json')
    }
    await next()
  })
  app.get('/status', c => c.json(agent.status()))
  app.get('/metrics', async c => c.text(await registry.metrics(), 200, { 'content-type': registry.contentType }))
  app.get('/healthz', c => c.json({ ok: true }))
  app.get('/readyz', c => {
    const ready = isReady(agent.status(), Date.now() - started)
    return c.json({ ready }, ready ? 200 : 503)
  })
  app.post('/v1/connects', bodyLimit({ maxSize: MAX_BODY, onError: c => fail(c, 'MESSAGE_TOO_LARGE', `bodies are at most ${MAX_BODY} bytes`) }), async c => {
    const body = AddConnect.safeParse(await c.req.json().catch(() => null))
    if (!body.success) return fail(c, 'BAD_MESSAGE', 'expected {share, peer, listen?: "127.0.0.1:PORT"}')
    let lhost = ''
    let lport = -1
    try { ({ host: lhost, port: lport } = parseHostPort(body.data.listen, null)) } catch { /* refused below */ }
    if (!isLoopback(lhost) || lport < 0) return fail(c, 'BAD_MESSAGE', 'listen must be a loopback HOST:PORT')
    const { share, peer } = body.data
    let l = agent.listeners.find(x => x.spec.share === share && x.spec.peer === peer && isLoopback(x.host) && (lport === 0 || x.port === lport))
    if (l === undefined) {
      try { l = await agent.addConnect({ share, peer, host: lhost, port: lport }) } catch (e) {
        return fail(c, 'LISTEN_FAILED', e instanceof Error ? e.message : 'cannot listen')
      }
    }
    return c.json({ share, peer, listen: `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}` })
  })
  app.notFound(c => fail(c, 'NOT_FOUND', 'no such route'))
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s))
    s.once('error', reject)
  })
  const addr = server.address() as AddressInfo
  listening = addr.port
  const shown = addr.address.includes(':') ? `[${addr.address}]` : addr.address
  return { url: `http://${shown}:${addr.port}`, port: addr.port, close: async () => { await new Promise<void>(resolve => server.close(() => resolve())) } }
}

/**
 * What /readyz answers: in the mesh (joined to signaling, or a live peer connection while
 * signaling is away), not draining, and able to carry streams: connected to an agent when any is
 * known, or up for READY_GRACE_MS already (`upMs`).
 */
export function isReady (s: Pick<AgentStatus, 'draining' | 'signaling'> & { peers: Array<Pick<PeerView, 'role' | 'state'>> }, upMs: number): boolean {
  const agents = s.peers.filter(p => p.role === 'agent')
  const carries = agents.length === 0 || agents.some(p => p.state === 'connected') || upMs >= READY_GRACE_MS
  return !s.draining && (s.signaling === 'joined' || s.peers.some(p => p.state === 'connected')) && carries
}

function fail (c: Context, code: ErrorCode, message: string): Response {
  return c.json({ error: { code, message } }, ERRORS[code].http as 400)
}

const AddConnect = z.object({ share: ShareName, peer: PeerName, listen: z.string().max(64).default('127.0.0.1:0') }).strict()

/** A Host header as {name, port} (name normalized like a browser does, IPv6 without brackets); undefined when malformed. */
export function parseHost (value: string | undefined): { name: string, port: number } | undefined {
  if (value === undefined || value.length > 300 || !/^[A-Za-z0-9.:[\]-]+$/.test(value)) return undefined
  let u: URL
  try { u = new URL(`http://${value}/`) } catch { return undefined }
  const name = u.hostname.replace(/^\[(.*)\]$/, '$1')
  return { name, port: u.port === '' ? 80 : Number(u.port) }
}

function sameOrigin (origin: string, h: { name: string, port: number }): boolean {
  const host = isIP(h.name) === 6 ? `[${h.name}]` : h.name
  return origin === `http://${host}${h.port === 80 ? '' : `:${h.port}`}`
}

function isLoopbackName (name: string): boolean {
  return name === 'localhost' || isLoopback(name)
}

/** Whether `name` is the address the server is bound to (any interface address for a wildcard bind). */
function isBoundAddress (name: string, bound: string): boolean {
  if (isIP(name) === 0) return false
  const b = bound.replace(/^\[(.*)\]$/, '$1')
  if (b !== '' && b !== '0.0.0.0' && b !== '::') return name === (parseHost(isIP(b) === 6 ? `[${b}]` : b)?.name ?? '')
  return Object.values(networkInterfaces()).some(list => list?.some(i => i.address === name))
}

function isLoopback (addr: string): boolean {
  const a = addr.replace(/^::ffff:/, '')
  return (isIP(a) === 4 && a.startsWith('127.')) || a === '::1'
}
