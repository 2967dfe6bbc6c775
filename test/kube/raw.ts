/** A raw HTTPS request to the test apiserver (for asserting exact wire shapes in tests). */
import { request } from 'node:https'
import type { ApiServer } from './apiserver.ts'

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  json(): unknown
}

export function raw(
  server: Pick<ApiServer, 'url' | 'token' | 'ca'>,
  method: string,
  path: string,
  opts: { body?: unknown; contentType?: string; headers?: Record<string, string | string[]>; token?: string | null } = {},
): Promise<RawResponse> {
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
  const headers: Record<string, string | string[]> = { Accept: 'application/json', ...opts.headers }
  const token = opts.token === undefined ? server.token : opts.token
  if (token !== null) headers.Authorization = `Bearer ${token}`
  if (body !== undefined) headers['Content-Type'] = opts.contentType ?? 'application/json'
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server.url), { method, headers, ca: server.ca, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) as unknown })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${path}`)))
    req.on('error', reject)
    req.end(body)
  })
}
