/**
 * One HTTP/1.1 request through a stream data channel (`tcp:<share>`), the same stream protocol
 * the agents speak (agent/tunnel/pipe.ts): wait for `ok` (or `err {code}`), write the request
 * bytes, send `fin`, read the response bytes while granting `credit` as they are consumed (the
 * agent stops after its 1 MiB window otherwise), until the agent's `fin`.
 */
import { whenOpen } from '../../../peer/channel.ts'
import { parseJson, STREAM_LABEL_PREFIX, StreamControl } from '../../../protocol/peer.ts'

/** Response bytes kept for display; the rest is read (and credited) but dropped. */
export const KEEP_BYTES = 1 << 20
const CREDIT_EVERY = 256 << 10

export interface HttpRequest {
  share: string
  method: string
  path: string
  /** Host header value. */
  host: string
  body?: string
  timeoutMs?: number
}

export interface HttpResponse {
  status: number
  statusLine: string
  headers: Array<[string, string]>
  body: Uint8Array
  /** Bytes received on the stream in total (headers included). */
  received: number
  truncated: boolean
  ms: number
}

export class StreamError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.name = 'StreamError'
    this.code = code
  }
}

function concat (parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total)
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}

function indexOfCrlfCrlf (b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i
  }
  return -1
}

/** Decodes a chunked body, bounded; returns what decodes cleanly (the rest when malformed). */
export function dechunk (b: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = []
  let total = 0
  let off = 0
  for (let n = 0; n < 100_000 && off < b.length; n++) {
    let eol = -1
    for (let i = off; i + 1 < b.length; i++) if (b[i] === 13 && b[i + 1] === 10) { eol = i; break }
    if (eol < 0) break
    const size = parseInt(new TextDecoder().decode(b.subarray(off, eol)).split(';')[0] ?? '', 16)
    if (!Number.isFinite(size) || size < 0) return b
    if (size === 0) break
    const start = eol + 2
    const part = b.subarray(start, Math.min(start + size, b.length))
    parts.push(part)
    total += part.length
    off = start + size + 2
  }
  return concat(parts, total)
}

/** Parses raw response bytes (status line, headers, body). */
export function parseResponse (raw: Uint8Array): Omit<HttpResponse, 'received' | 'truncated' | 'ms'> {
  const end = indexOfCrlfCrlf(raw)
  if (end < 0) throw new StreamError('BAD_RESPONSE', `no complete HTTP header in ${raw.length} bytes`)
  const lines = new TextDecoder().decode(raw.subarray(0, end)).split('\r\n')
  const statusLine = lines[0] ?? ''
  const m = /^HTTP\/\d(?:\.\d)?\s+(\d{3})/.exec(statusLine)
  if (m?.[1] === undefined) throw new StreamError('BAD_RESPONSE', `not an HTTP status line: ${statusLine.slice(0, 80)}`)
  const headers: Array<[string, string]> = []
  for (const line of lines.slice(1, 201)) {
    const i = line.indexOf(':')
    if (i > 0) headers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()])
  }
  let body: Uint8Array = raw.subarray(end + 4)
  const chunked = headers.some(([k, v]) => k.toLowerCase() === 'transfer-encoding' && /chunked/i.test(v))
  if (chunked) body = dechunk(body)
  return { status: Number(m[1]), statusLine, headers, body }
}

function requestBytes (req: HttpRequest): Uint8Array {
  const body = req.body !== undefined && req.body !== '' ? new TextEncoder().encode(req.body) : undefined
  const path = req.path.startsWith('/') ? req.path : `/${req.path}`
  const lines = [
    `${req.method} ${path} HTTP/1.1`,
    `Host: ${req.host}`,
    'User-Agent: causeway-debug-page',
    'Accept: */*',
    'Connection: close',
    ...(body !== undefined ? ['Content-Type: text/plain; charset=utf-8', `Content-Length: ${body.length}`] : []),
    '', '',
  ]
  const head = new TextEncoder().encode(lines.join('\r\n'))
  return body === undefined ? head : concat([head, body], head.length + body.length)
}

/** Sends one HTTP request over a new stream channel of `pc`; rejects with StreamError. */
export async function httpOverChannel (pc: RTCPeerConnection, req: HttpRequest): Promise<HttpResponse> {
  if (/[\s\r\n]/.test(req.path) || req.path.length > 2048) throw new StreamError('BAD_REQUEST', 'the path must be one token without spaces (at most 2048 characters)')
  if (!/^[A-Z]{1,16}$/.test(req.method)) throw new StreamError('BAD_REQUEST', 'the method must be uppercase letters')
  const t0 = performance.now()
  const dc = pc.createDataChannel(`${STREAM_LABEL_PREFIX}${req.share}`, { ordered: true })
  dc.binaryType = 'arraybuffer'
  const timeoutMs = req.timeoutMs ?? 20_000
  const parts: Uint8Array[] = []
  let kept = 0
  let received = 0
  let truncated = false
  let uncredited = 0
  try {
    // Handlers go on at once: an agent that refuses answers `err` as soon as the channel opens.
    await new Promise<void>((resolve, reject) => {
      let accepted = false
      const timer = setTimeout(() => fail(new StreamError('TIMEOUT', accepted ? `no end of response within ${timeoutMs} ms` : `the agent did not answer the stream open within ${timeoutMs} ms`)), timeoutMs)
      const fail = (err: Error): void => { clearTimeout(timer); reject(err) }
      const done = (): void => { clearTimeout(timer); resolve() }
      dc.onclose = () => {
        if (accepted && received > 0) done()
        else fail(new StreamError('STREAM_RESET', 'the channel closed before a response'))
      }
      dc.onmessage = (ev: MessageEvent) => {
        if (typeof ev.data === 'string') {
          const ctl = parseJson(StreamControl, ev.data)
          if (ctl === null) { fail(new StreamError('BAD_MESSAGE', 'malformed stream control message')); return }
          switch (ctl.t) {
            case 'ok':
              if (accepted) return
              accepted = true
              // Chromium may deliver the agent's first message before the channel's own `open`.
              whenOpen(dc, undefined, 10_000).then(() => {
                dc.send(requestBytes(req) as Uint8Array<ArrayBuffer>)
                dc.send('{"t":"fin"}')
              }).catch((err: unknown) => fail(new StreamError('STREAM_RESET', err instanceof Error ? err.message : String(err))))
              return
            case 'err': fail(new StreamError(ctl.code, ctl.message)); return
            case 'rst': fail(new StreamError(ctl.code, 'the agent reset the stream')); return
            case 'fin': done(); return
            case 'credit': return
          }
        }
        if (!(ev.data instanceof ArrayBuffer) || !accepted) { fail(new StreamError('BAD_MESSAGE', 'unexpected stream data')); return }
        const bytes = new Uint8Array(ev.data)
        received += bytes.length
        if (kept < KEEP_BYTES) {
          const take = bytes.subarray(0, KEEP_BYTES - kept)
          parts.push(take)
          kept += take.length
          if (take.length < bytes.length) truncated = true
        } else truncated = true
        uncredited += bytes.length
        if (uncredited >= CREDIT_EVERY && dc.readyState === 'open') {
          dc.send(JSON.stringify({ t: 'credit', n: uncredited }))
          uncredited = 0
        }
      }
    })
  } finally {
    dc.onmessage = null
    dc.onclose = null
    try { dc.close() } catch { /* closed */ }
  }
  const parsed = parseResponse(concat(parts, kept))
  return { ...parsed, received, truncated, ms: performance.now() - t0 }
}
