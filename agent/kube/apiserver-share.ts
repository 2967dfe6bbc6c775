/**
 * The `kube-apiserver` share: a small HTTP reverse proxy that lives inside the exporting agent
 * and listens on nothing. The tunnel hands each accepted stream to it in memory
 * (`ShareSpec.serve`, `server.emit('connection', end)`), so no local user, no other container
 * of the pod and no process on the node can reach the share's identity without going through
 * the tunnel and its `peers=` check. The remote kubectl speaks plain HTTP to its own local
 * connect listener; the tunnel between the agents is end-to-end encrypted; this proxy opens TLS
 * to the real API server (in-cluster: `https://kubernetes.default.svc` with the cluster CA) and
 * authenticates as exactly one configured identity:
 *
 * - `token`: a dedicated ServiceAccount's bearer token (a token file re-read every 30 s, or a
 *   TokenRequest-minted token for `--apiserver-sa NAME`, renewed before it expires); the
 *   agent's own credentials are not used at all;
 * - `impersonate`: the agent's own credentials plus `Impersonate-User` / `Impersonate-Group`
 *   (the chart grants the agent impersonation of exactly that user and those groups). Empty
 *   names are refused: the API server reads an empty `Impersonate-User` as "no impersonation",
 *   which would be the agent's own identity.
 * - `impersonate-peer`: the same, but each request impersonates the peer that opened the
 *   stream, by its proven agent name: user `causeway:<peer>`, group `causeway:peers`, so RBAC
 *   can grant clusters different rights and the API server's audit log tells them apart (the
 *   chart grants the agent impersonation of exactly those users and that group). A stream from
 *   a peer whose name is not proven (a viewer, a shared token) is answered 403 and never
 *   reaches the API server.
 *
 * Whatever the remote client sends in `Authorization`, `Proxy-Authorization`, `Impersonate-*`
 * or `X-Remote-*` is dropped, and so are `Sec-WebSocket-Protocol` entries
 * `base64url.bearer.authorization.k8s.io.<token>` (the API server authenticates WebSocket
 * clients by them): the remote side can never choose its identity. Responses stream (watch,
 * chunked, logs -f); WebSocket and SPDY upgrades (exec, attach, port-forward) are relayed byte
 * for byte after the upstream's 101; any other upgrade (`h2c`, ...) is refused with 400.
 */
import * as http from 'node:http'
import * as https from 'node:https'
import type { Duplex } from 'node:stream'
import { CausewayError } from '../../protocol/errors.ts'
import { readFile } from 'node:fs/promises'
import type * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'

export type ApiserverIdentity =
  | { mode: 'token'; token: () => Promise<string> }
  | { mode: 'impersonate'; user: string; groups: string[] }
  | { mode: 'impersonate-peer' }

/** `impersonate-peer`: the user a peer's requests run as is this prefix + its agent name. */
export const PEER_USER_PREFIX = 'causeway:'
/** `impersonate-peer`: the group every peer's requests carry. */
export const PEERS_GROUP = 'causeway:peers'

/** Who opened a stream to the share (ShareSpec.serve's `from`). */
export interface StreamPeer { name: string; role: 'agent' | 'viewer'; proven?: boolean }

export interface ApiserverProxyInit {
  /** Upstream API server, its CA and (impersonate mode) the agent's own credentials. */
  kubeConfig: k8s.KubeConfig
  identity: ApiserverIdentity
  log?: LogLike
}

export interface ApiserverProxy {
  /** Serves one connection (a tunnelled stream handed over in memory) opened by `from`. */
  serve(stream: Duplex, from?: StreamPeer): void
  /** The upstream API server's port (what the catalog advertises). */
  upstreamPort: number
  close(): Promise<void>
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'http2-settings'])

/** The `Sec-WebSocket-Protocol` prefix the API server accepts a bearer token in. */
export const BEARER_SUBPROTOCOL = 'base64url.bearer.authorization.k8s.io.'

/** `Sec-WebSocket-Protocol` without bearer-token entries; undefined when nothing is left. */
export function stripBearerSubprotocols(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  const kept = (Array.isArray(value) ? value : [value])
    .flatMap((v) => v.split(','))
    .map((p) => p.trim())
    .filter((p) => p !== '' && !p.toLowerCase().startsWith(BEARER_SUBPROTOCOL))
  return kept.length > 0 ? kept.join(', ') : undefined
}

/** Upgrades the Kubernetes API uses (exec, attach, port-forward): WebSocket and SPDY/3.1. */
export function isAllowedUpgrade(value: string | undefined): boolean {
  if (value === undefined) return false
  const protos = value.split(',').map((p) => p.trim().toLowerCase()).filter((p) => p !== '')
  return protos.length > 0 && protos.every((p) => p === 'websocket' || p === 'spdy/3.1')
}

/** Refuses identities the API server would read as "none" (the agent's own identity). */
export function checkIdentity(id: ApiserverIdentity): void {
  if (id.mode !== 'impersonate') return
  if (id.user.trim() === '') throw new CausewayError('BAD_CONFIG', 'the impersonated user is empty: the API server would treat that as no impersonation, i.e. the agent\'s own identity')
  if (id.user !== id.user.trim()) throw new CausewayError('BAD_CONFIG', `the impersonated user ${JSON.stringify(id.user)} has leading or trailing spaces`)
  for (const g of id.groups) {
    if (g.trim() === '' || g !== g.trim() || g.includes(',')) throw new CausewayError('BAD_CONFIG', `impersonated group ${JSON.stringify(g)} is empty, padded or contains a comma`)
  }
}

/** True for request headers a remote client may never pass to the API server. */
export function isIdentityHeader(name: string): boolean {
  const n = name.toLowerCase()
  return n === 'authorization' || n === 'proxy-authorization' || n.startsWith('impersonate-') || n.startsWith('x-remote-')
}

/** Token from a file (a projected ServiceAccount token), re-read at most every `cacheMs`. */
export function tokenFromFile(path: string, cacheMs = 30_000): () => Promise<string> {
  let cached: { token: string; at: number } | undefined
  return async () => {
    if (cached !== undefined && Date.now() - cached.at < cacheMs) return cached.token
    const token = (await readFile(path, 'utf8')).trim()
    if (token === '') throw new Error(`token file ${path} is empty`)
    cached = { token, at: Date.now() }
    return token
  }
}

/**
 * Token minted with the TokenRequest API for ServiceAccount `name` in `namespace` (the chart
 * lets the agent create tokens for that one ServiceAccount only); renewed at 80 % of its life.
 */
export function tokenFromServiceAccount(core: k8s.CoreV1Api, namespace: string, name: string, expirationSeconds = 3600): () => Promise<string> {
  let cached: { token: string; renewAt: number } | undefined
  let inflight: Promise<string> | undefined
  return async () => {
    if (cached !== undefined && Date.now() < cached.renewAt) return cached.token
    inflight ??= (async () => {
      try {
        const tr = await core.createNamespacedServiceAccountToken({ name, namespace, body: { spec: { audiences: [], expirationSeconds } } })
        const token = tr.status?.token ?? ''
        if (token === '') throw new Error(`TokenRequest for ${namespace}/${name} returned no token`)
        const exp = tr.status?.expirationTimestamp
        const expiresAt = exp instanceof Date ? exp.getTime() : Date.now() + expirationSeconds * 1000
        cached = { token, renewAt: Date.now() + Math.max(10_000, (expiresAt - Date.now()) * 0.8) }
        return token
      } finally {
        inflight = undefined
      }
    })()
    return await inflight
  }
}

/** impersonate-peer: the stream's peer has no proven agent name to impersonate. */
class NoPeerIdentity extends Error {
  constructor(name: string | undefined) { super(`the API-server share runs requests as the calling agent, and ${name === undefined ? 'this caller' : JSON.stringify(name)} has no proven agent name (a viewer, or a shared token)`) }
}

export async function startApiserverProxy(init: ApiserverProxyInit): Promise<ApiserverProxy> {
  const log = init.log ?? silentLog
  checkIdentity(init.identity)
  const cluster = init.kubeConfig.getCurrentCluster()
  if (cluster === null) throw new Error('the kubeconfig has no current cluster')
  const upstream = new URL(cluster.server)
  const secure = upstream.protocol === 'https:'
  const base: https.RequestOptions = {}
  await init.kubeConfig.applyToHTTPSOptions(base)
  const tls: https.AgentOptions = { keepAlive: true, maxSockets: 256 }
  if (base.ca !== undefined) tls.ca = base.ca
  if (base.rejectUnauthorized !== undefined) tls.rejectUnauthorized = base.rejectUnauthorized
  if (base.servername !== undefined) tls.servername = base.servername
  if (init.identity.mode !== 'token') {
    // Client certificates belong to the agent's identity: only in impersonate modes.
    if (base.cert !== undefined) tls.cert = base.cert
    if (base.key !== undefined) tls.key = base.key
  }
  const agent = secure ? new https.Agent(tls) : new http.Agent({ keepAlive: true, maxSockets: 256 })
  const prefix = upstream.pathname.replace(/\/$/, '')

  /** Who opened each stream handed in (impersonate-peer). */
  const openedBy = new WeakMap<object, StreamPeer>()

  async function upstreamHeaders(req: http.IncomingMessage, upgrade: boolean): Promise<http.OutgoingHttpHeaders> {
    const out: http.OutgoingHttpHeaders = {}
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined || isIdentityHeader(k) || HOP_BY_HOP.has(k) || k === 'sec-websocket-protocol') continue
      out[k] = v
    }
    const subprotocols = stripBearerSubprotocols(req.headers['sec-websocket-protocol'])
    if (subprotocols !== undefined) out['sec-websocket-protocol'] = subprotocols
    out.host = upstream.host
    if (upgrade) {
      out.connection = 'Upgrade'
      if (req.headers.upgrade !== undefined) out.upgrade = req.headers.upgrade
    }
    const id = init.identity
    if (id.mode === 'token') {
      out.authorization = `Bearer ${await id.token()}`
    } else {
      const own: https.RequestOptions = {}
      await init.kubeConfig.applyToHTTPSOptions(own) // refreshes the agent's own token file
      const ownHeaders = own.headers
      const auth = ownHeaders === undefined || Array.isArray(ownHeaders) ? undefined : ((ownHeaders as http.OutgoingHttpHeaders).Authorization ?? (ownHeaders as http.OutgoingHttpHeaders).authorization)
      if (typeof auth === 'string') out.authorization = auth
      if (id.mode === 'impersonate') {
        out['impersonate-user'] = id.user
        if (id.groups.length > 0) out['impersonate-group'] = id.groups
      } else {
        const from = openedBy.get(req.socket)
        if (from === undefined || from.role !== 'agent' || from.proven !== true) throw new NoPeerIdentity(from?.name)
        out['impersonate-user'] = `${PEER_USER_PREFIX}${from.name}`
        out['impersonate-group'] = [PEERS_GROUP]
      }
    }
    return out
  }

  function open(req: http.IncomingMessage, headers: http.OutgoingHttpHeaders): http.ClientRequest {
    const opts: https.RequestOptions = {
      protocol: upstream.protocol,
      hostname: upstream.hostname.replace(/^\[|\]$/g, ''),
      port: upstream.port === '' ? (secure ? 443 : 80) : Number(upstream.port),
      method: req.method,
      path: prefix + (req.url ?? '/'),
      headers,
      agent,
    }
    return secure ? https.request(opts) : http.request(opts)
  }

  const fail = (res: http.ServerResponse, code: number, message: string): void => {
    if (res.headersSent) {
      res.destroy()
      return
    }
    const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: code === 502 ? 'BadGateway' : code === 403 ? 'Forbidden' : 'ServiceUnavailable', code })
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }

  const server = http.createServer((req, res) => {
    upstreamHeaders(req, false).then(
      (headers) => {
        const up = open(req, headers)
        up.on('response', (ur) => {
          const h: http.OutgoingHttpHeaders = {}
          for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) h[k] = v
          res.writeHead(ur.statusCode ?? 502, ur.statusMessage, h)
          res.flushHeaders() // a watch sends its headers long before its first event
          ur.pipe(res)
          ur.on('error', () => res.destroy())
        })
        up.on('error', (e) => {
          log.warn({ err: e.message, method: req.method, url: req.url }, 'apiserver share: upstream request failed')
          fail(res, 502, 'the API server cannot be reached from the exporting agent')
        })
        res.on('close', () => { if (!up.writableFinished || !res.writableFinished) up.destroy() })
        req.pipe(up)
      },
      (e: unknown) => {
        if (e instanceof NoPeerIdentity) { fail(res, 403, e.message); return }
        log.warn({ err: String(e) }, 'apiserver share: no credentials for the API server')
        fail(res, 503, 'the exporting agent has no credentials for the API server')
      },
    )
  })

  const conns = new Set<Duplex>() // every stream handed in (the server has no listener to close)
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    if (!isAllowedUpgrade(req.headers.upgrade)) {
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'only WebSocket and SPDY/3.1 upgrades are relayed', reason: 'BadRequest', code: 400 })
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
      return
    }
    upstreamHeaders(req, true).then(
      (headers) => {
        const up = open(req, headers)
        up.on('upgrade', (ur, upSocket, upHead) => {
          const lines = [`HTTP/1.1 ${ur.statusCode ?? 101} ${ur.statusMessage ?? 'Switching Protocols'}`]
          for (let i = 0; i + 1 < ur.rawHeaders.length; i += 2) lines.push(`${ur.rawHeaders[i] ?? ''}: ${ur.rawHeaders[i + 1] ?? ''}`)
          socket.write(lines.join('\r\n') + '\r\n\r\n')
          if (upHead.length > 0) socket.write(upHead)
          if (head.length > 0) upSocket.write(head)
          upSocket.on('error', () => socket.destroy())
          socket.on('close', () => upSocket.destroy())
          upSocket.on('close', () => socket.destroy())
          upSocket.pipe(socket)
          socket.pipe(upSocket)
        })
        up.on('response', (ur) => {
          // The upstream refused the upgrade: relay its plain answer, then close.
          const lines = [`HTTP/1.1 ${ur.statusCode ?? 502} ${ur.statusMessage ?? ''}`]
          for (let i = 0; i + 1 < ur.rawHeaders.length; i += 2) {
            const k = ur.rawHeaders[i] ?? ''
            if (!HOP_BY_HOP.has(k.toLowerCase())) lines.push(`${k}: ${ur.rawHeaders[i + 1] ?? ''}`)
          }
          lines.push('connection: close')
          socket.write(lines.join('\r\n') + '\r\n\r\n')
          ur.pipe(socket)
        })
        up.on('error', () => socket.destroy())
        up.end()
      },
      () => socket.destroy(),
    )
  })

  return {
    upstreamPort: upstream.port === '' ? (secure ? 443 : 80) : Number(upstream.port),
    serve: (stream: Duplex, from?: StreamPeer) => {
      if (from !== undefined) openedBy.set(stream, from)
      conns.add(stream)
      stream.on('close', () => conns.delete(stream))
      stream.on('error', () => {})
      server.emit('connection', stream)
    },
    close: async () => {
      for (const s of conns) s.destroy()
      conns.clear()
      agent.destroy()
    },
  }
}
