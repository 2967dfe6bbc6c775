/**
 * The API-server share's proxy against a plain upstream on loopback: identity headers, bearer
 * subprotocols, upgrades, empty identities. The proxy listens on nothing; the test hands it
 * connections through its own listener (`feeder`), the way the tunnel hands it streams.
 */
import * as http from 'node:http'
import { connect, createServer, type AddressInfo, type Server } from 'node:net'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CausewayError } from '../../protocol/errors.ts'
import { socketPair } from '../tunnel/socket-pair.ts'
import { checkIdentity, isAllowedUpgrade, isIdentityHeader, startApiserverProxy, stripBearerSubprotocols, type ApiserverProxy } from './apiserver-share.ts'

let upstream: http.Server
let proxy: ApiserverProxy
let feeder: Server
let port = 0
const seen: http.IncomingHttpHeaders[] = []
const upgradedUp: Array<{ destroy: () => void }> = []

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    seen.push(req.headers)
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`hello ${req.url}`)
  })
  upstream.on('upgrade', (req: http.IncomingMessage, socket) => {
    seen.push(req.headers)
    upgradedUp.push(socket)
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n')
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])))
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const kc = new k8s.KubeConfig()
  kc.loadFromOptions({
    // client-node accepts an http:// server only with skipTLSVerify (meaningless without TLS).
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'agent-own-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  proxy = await startApiserverProxy({ kubeConfig: kc, identity: { mode: 'impersonate', user: 'remote', groups: ['g1', 'g2'] } })
  feeder = createServer((sock) => proxy.serve(sock))
  await new Promise<void>((r) => feeder.listen(0, '127.0.0.1', r))
  port = (feeder.address() as AddressInfo).port
})

afterAll(async () => {
  await proxy?.close()
  await new Promise((r) => feeder?.close(r))
  upstream?.closeAllConnections()
  for (const s of upgradedUp) s.destroy()
  await new Promise((r) => upstream?.close(r))
})

/** A raw connection to the proxy: `send` writes, `waitFor` polls what came back (bounded). */
async function raw(): Promise<{ send: (t: string) => void; waitFor: (needle: string) => Promise<string>; close: () => void }> {
  const sock = connect({ host: '127.0.0.1', port })
  let got = ''
  sock.on('data', (d: Buffer) => (got += d.toString()))
  await new Promise<void>((r) => sock.on('connect', r))
  return {
    send: (t) => sock.write(t),
    waitFor: async (needle) => {
      for (let i = 0; i < 100 && !got.includes(needle); i++) await new Promise((r) => setTimeout(r, 20))
      return got
    },
    close: () => sock.destroy(),
  }
}

describe('apiserver share proxy', () => {
  it('identity headers are recognised', () => {
    for (const h of ['Authorization', 'proxy-authorization', 'Impersonate-User', 'impersonate-extra-scopes', 'Impersonate-Uid', 'X-Remote-User']) expect(isIdentityHeader(h)).toBe(true)
    for (const h of ['accept', 'content-type', 'user-agent']) expect(isIdentityHeader(h)).toBe(false)
  })

  it('replaces the client identity with the configured one', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/pods?limit=1`, {
      headers: { authorization: 'Bearer stolen', 'impersonate-user': 'admin', 'impersonate-group': 'system:masters', 'impersonate-extra-x': 'y', 'x-remote-user': 'admin', accept: 'application/json' },
    })
    expect(await res.text()).toBe('hello /api/v1/pods?limit=1')
    const h = seen.at(-1) ?? {}
    expect(h.authorization).toBe('Bearer agent-own-token')
    expect(h['impersonate-user']).toBe('remote')
    expect(h['impersonate-group']).toBe('g1, g2')
    expect(h['impersonate-extra-x']).toBeUndefined()
    expect(h['x-remote-user']).toBeUndefined()
    expect(h.accept).toBe('application/json')
  })

  it('relays a protocol upgrade (exec / port-forward) byte for byte, with the configured identity', async () => {
    const c = await raw()
    c.send('POST /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nAuthorization: Bearer stolen\r\nImpersonate-User: admin\r\n\r\n')
    expect(await c.waitFor('\r\n\r\n')).toMatch(/^HTTP\/1\.1 101 /)
    c.send('ping')
    expect(await c.waitFor('echo:ping')).toContain('echo:ping')
    c.close()
    const h = seen.at(-1) ?? {}
    expect(h.upgrade).toBe('SPDY/3.1')
    expect(h.authorization).toBe('Bearer agent-own-token')
    expect(h['impersonate-user']).toBe('remote')
  })

  it('drops bearer-token WebSocket subprotocols and keeps the others', async () => {
    expect(stripBearerSubprotocols('v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.c3RvbGVu, v4.channel.k8s.io')).toBe('v5.channel.k8s.io, v4.channel.k8s.io')
    expect(stripBearerSubprotocols(['Base64Url.Bearer.Authorization.K8s.Io.eA'])).toBeUndefined()
    const c = await raw()
    c.send('GET /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.c3RvbGVu, v5.channel.k8s.io\r\n\r\n')
    expect(await c.waitFor('\r\n\r\n')).toMatch(/^HTTP\/1\.1 101 /)
    c.close()
    const h = seen.at(-1) ?? {}
    expect(h['sec-websocket-protocol']).toBe('v5.channel.k8s.io')
    expect(JSON.stringify(h)).not.toContain('c3RvbGVu')
  })

  it('refuses upgrades other than WebSocket and SPDY (h2c) and strips h2c from plain requests', async () => {
    expect(isAllowedUpgrade('SPDY/3.1')).toBe(true)
    expect(isAllowedUpgrade('websocket')).toBe(true)
    for (const u of ['h2c', 'websocket, h2c', 'TLS/1.2', '', undefined]) expect(isAllowedUpgrade(u)).toBe(false)
    const before = seen.length
    const c = await raw()
    c.send('GET /api HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n')
    expect(await c.waitFor('"code":400')).toMatch(/^HTTP\/1\.1 400 /)
    c.close()
    expect(seen.length).toBe(before) // never reached the API server
    // Without `Connection: Upgrade` it is a plain request: the upgrade offer is not passed on.
    const plain = await raw()
    plain.send('GET /api HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n')
    expect(await plain.waitFor('hello /api')).toMatch(/^HTTP\/1\.1 200 /)
    plain.close()
    const h = seen.at(-1) ?? {}
    expect(h.upgrade).toBeUndefined()
    expect(h['http2-settings']).toBeUndefined()
  })

  it('refuses empty identities (the API server would read them as the agent itself)', async () => {
    const bad = [{ user: '', groups: [] }, { user: '  ', groups: [] }, { user: 'u', groups: [''] }, { user: 'u', groups: ['a,b'] }]
    for (const b of bad) {
      expect(() => checkIdentity({ mode: 'impersonate', ...b })).toThrow(CausewayError)
      await expect(startApiserverProxy({ kubeConfig: new k8s.KubeConfig(), identity: { mode: 'impersonate', ...b } })).rejects.toMatchObject({ code: 'BAD_CONFIG' })
    }
    expect(() => checkIdentity({ mode: 'impersonate', user: 'remote', groups: ['g'] })).not.toThrow()
  })

  it('serves a stream handed over in memory (how the tunnel reaches it)', async () => {
    const [client, end] = socketPair()
    proxy.serve(end)
    let got = ''
    client.on('data', (d: Buffer) => (got += d.toString()))
    client.write('GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer stolen\r\n\r\n')
    for (let i = 0; i < 100 && !got.includes('hello /version'); i++) await new Promise((r) => setTimeout(r, 20))
    client.destroy()
    expect(got).toMatch(/^HTTP\/1\.1 200 /)
    expect(got).toContain('hello /version')
    expect(seen.at(-1)?.authorization).toBe('Bearer agent-own-token')
  })
})
