import { describe, expect, it } from 'vitest'
import { dechunk, parseResponse, StreamError } from './http.ts'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

describe('debug page HTTP parsing', () => {
  it('parses status line, headers and a plain body', () => {
    const r = parseResponse(enc('HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-A: b: c\r\n\r\nnope\n'))
    expect(r.status).toBe(404)
    expect(r.statusLine).toBe('HTTP/1.1 404 Not Found')
    expect(r.headers).toEqual([['Content-Type', 'text/plain'], ['X-A', 'b: c']])
    expect(dec(r.body)).toBe('nope\n')
  })

  it('decodes a chunked body', () => {
    const r = parseResponse(enc('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n'))
    expect(dec(r.body)).toBe('hello, world')
  })

  it('keeps what decodes of a truncated chunked body', () => {
    expect(dec(dechunk(enc('5\r\nhello\r\n10\r\nabc')))).toBe('helloabc')
  })

  it('rejects bytes that are not an HTTP response', () => {
    expect(() => parseResponse(enc('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(StreamError)
    expect(() => parseResponse(enc('HTTP/1.1 200 OK\r\nno end'))).toThrow(/no complete HTTP header/)
  })
})
