/**
 * A small Kubernetes API client for another cluster, reached through that cluster's
 * API-server share: every HTTP connection is one tunnelled stream handed over in memory
 * (`AgentPort.openStream`), so requests run with exactly the identity the share grants (the
 * far agent drops any credentials sent; none are sent). Used by RemoteManifests.
 */
import * as http from 'node:http'
import type { Duplex } from 'node:stream'
import { APISERVER_SHARE } from './agent-port.ts'
import type { AgentPort } from './ports.ts'

export interface RemoteResponse {
  status: number
  body: unknown
  /** The API server's `Status.message`, or the transport error. */
  message: string
}

export interface ResourceInfo {
  /** Path prefix for this kind, e.g. `/apis/apps/v1` */
  base: string
  plural: string
  namespaced: boolean
}

export class RemoteApiError extends Error {
  override name = 'RemoteApiError'
}

const TIMEOUT_MS = 20_000

export class RemoteApi {
  private readonly port: AgentPort
  readonly peer: string
  private readonly discovery = new Map<string, Promise<Map<string, ResourceInfo>>>()

  constructor(port: AgentPort, peer: string) {
    this.port = port
    this.peer = peer
  }

  /** One request; resolves with any HTTP answer, rejects only when the peer cannot be reached. */
  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<RemoteResponse> {
    const text = body === undefined ? undefined : JSON.stringify(body)
    return new Promise((resolve, reject) => {
      const req = http.request({
        method,
        path,
        host: 'kube-apiserver',
        headers: { accept: 'application/json', ...(text !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(text) } : {}) },
        timeout: TIMEOUT_MS,
        createConnection: (_opts: unknown, done: (err: Error | null, s: Duplex) => void) => {
          this.port.openStream(this.peer, APISERVER_SHARE).then((s) => done(null, s), (e: unknown) => done(e instanceof Error ? e : new Error(String(e)), undefined as unknown as Duplex))
          return undefined
        },
      } as http.RequestOptions, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = raw
          try { parsed = JSON.parse(raw) } catch { /* not JSON */ }
          const msg = parsed !== null && typeof parsed === 'object' && 'message' in parsed && typeof parsed.message === 'string' ? parsed.message : `HTTP ${res.statusCode ?? 0}`
          resolve({ status: res.statusCode ?? 0, body: parsed, message: msg })
        })
        res.on('error', (e) => reject(new RemoteApiError(e.message)))
      })
      req.on('timeout', () => req.destroy(new Error('the peer\'s API server did not answer in time')))
      req.on('error', (e) => reject(new RemoteApiError(e.message)))
      req.end(text)
    })
  }

  /** Where `apiVersion`/`kind` lives on the target (discovery, cached per group-version). */
  async resource(apiVersion: string, kind: string): Promise<ResourceInfo> {
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`
    let kinds = this.discovery.get(base)
    if (kinds === undefined) {
      kinds = this.request('GET', base).then((r) => {
        if (r.status !== 200) throw new RemoteApiError(`${apiVersion} is not served by ${this.peer}'s API server: ${r.message}`)
        const out = new Map<string, ResourceInfo>()
        const list = (r.body as { resources?: Array<{ name: string; kind: string; namespaced: boolean }> }).resources ?? []
        for (const res of list) if (!res.name.includes('/')) out.set(res.kind, { base, plural: res.name, namespaced: res.namespaced })
        return out
      })
      kinds.catch(() => this.discovery.delete(base))
      this.discovery.set(base, kinds)
    }
    const info = (await kinds).get(kind)
    if (info === undefined) throw new RemoteApiError(`${peerKind(apiVersion, kind)} is not served by ${this.peer}'s API server`)
    return info
  }

  /** The object's URL on the target. */
  async path(ref: { apiVersion: string; kind: string; namespace?: string; name: string }): Promise<string> {
    const info = await this.resource(ref.apiVersion, ref.kind)
    const ns = info.namespaced ? `/namespaces/${encodeURIComponent(ref.namespace ?? 'default')}` : ''
    return `${info.base}${ns}/${info.plural}/${encodeURIComponent(ref.name)}`
  }
}

const peerKind = (apiVersion: string, kind: string): string => `${kind} (${apiVersion})`
