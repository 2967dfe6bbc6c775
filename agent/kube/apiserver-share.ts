/**
 * The `kube-apiserver` share: a small HTTP reverse proxy the exporting agent runs on 127.0.0.1
 * (port 0) and shares like any TCP target. The remote kubectl speaks plain HTTP to its own
 * local connect listener; the tunnel between the agents is end-to-end encrypted; this proxy
 * opens TLS to the real API server (in-cluster: `https://kubernetes.default.svc` with the
 * cluster CA) and authenticates as exactly one configured identity:
 *
 * - `token`: a dedicated ServiceAccount's bearer token (a token file re-read every 30 s, or a
 *   TokenRequest-minted token for `--apiserver-sa NAME`, renewed before it expires); the
 *   agent's own credentials are not used at all;
 * - `impersonate`: the agent's own credentials plus `Impersonate-User` / `Impersonate-Group`
 *   (the chart grants the agent impersonation of exactly that user and those groups).
 *
 * Whatever the remote client sends in `Authorization`, `Proxy-Authorization`, `Impersonate-*`
 * or `X-Remote-*` is dropped: the remote side can never choose its identity. Responses stream
 * (watch, chunked, logs -f); protocol upgrades (exec, attach, port-forward over SPDY or
 * WebSocket) are relayed byte for byte after the upstream's 101.
 */
import * as http from 'node:http'
import * as https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { readFile } from 'node:fs/promises'
import type * as k8s from '@kubernetes/client-node'

export type ApiserverIdentity =
  | { mode: 'token'; token: () => Promise<string> }
  | { mode: 'impersonate'; user: string; groups: string[] }

export interface ApiserverProxyInit {
  /** Upstream API server, its CA and (impersonate mode) the agent's own credentials. */
  kubeConfig: k8s.KubeConfig
  identity: ApiserverIdentity
  /** Listen address. Default 127.0.0.1 (never expose the proxy beyond the agent's pod). */
  host?: string
  log?: (msg: string) => void
}

export interface ApiserverProxy {
  host: string
  port: number
  close(): Promise<void>
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host'])

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

export async function startApiserverProxy(init: ApiserverProxyInit): Promise<ApiserverProxy> {
  const log = init.log ?? (() => {})
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
  if (init.identity.mode === 'impersonate') {
    // Client certificates belong to the agent's identity: only in impersonate mode.
    if (base.cert !== undefined) tls.cert = base.cert
    if (base.key !== undefined) tls.key = base.key
  }
  const agent = secure ? new https.Agent(tls) : new http.Agent({ keepAlive: true, maxSockets: 256 })
  const prefix = upstream.pathname.replace(/\/$/, '')

  async function upstreamHeaders(req: http.IncomingMessage, upgrade: boolean): Promise<http.OutgoingHttpHeaders> {
    const out: http.OutgoingHttpHeaders = {}
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined || isIdentityHeader(k) || HOP_BY_HOP.has(k)) continue
      out[k] = v
    }
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
      out['impersonate-user'] = id.user
      if (id.groups.length > 0) out['impersonate-group'] = id.groups
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
    const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: code === 502 ? 'BadGateway' : 'ServiceUnavailable', code })
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
          log(`apiserver share: upstream ${req.method} ${req.url}: ${e.message}`)
          fail(res, 502, 'the API server cannot be reached from the exporting agent')
        })
        res.on('close', () => { if (!up.writableFinished || !res.writableFinished) up.destroy() })
        req.pipe(up)
      },
      (e: unknown) => {
        log(`apiserver share: credentials: ${String(e)}`)
        fail(res, 503, 'the exporting agent has no credentials for the API server')
      },
    )
  })

  const upgraded = new Set<Socket>() // detached from the HTTP server: closed by hand
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {})
    upgraded.add(socket)
    socket.on('close', () => upgraded.delete(socket))
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

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, init.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  return {
    host: addr.address,
    port: addr.port,
    close: async () => {
      server.closeAllConnections()
      for (const s of upgraded) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      agent.destroy()
    },
  }
}
