/** The API-server share's proxy against a plain upstream on loopback: identity headers, upgrades. */
import * as http from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isIdentityHeader, startApiserverProxy, type ApiserverProxy } from './apiserver-share.ts'

let upstream: http.Server
let proxy: ApiserverProxy
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
})

afterAll(async () => {
  await proxy?.close()
  upstream?.closeAllConnections()
  for (const s of upgradedUp) s.destroy()
  await new Promise((r) => upstream?.close(r))
})

describe('apiserver share proxy', () => {
  it('identity headers are recognised', () => {
    for (const h of ['Authorization', 'proxy-authorization', 'Impersonate-User', 'impersonate-extra-scopes', 'Impersonate-Uid', 'X-Remote-User']) expect(isIdentityHeader(h)).toBe(true)
    for (const h of ['accept', 'content-type', 'user-agent']) expect(isIdentityHeader(h)).toBe(false)
  })

  it('replaces the client identity with the configured one', async () => {
    const res = await fetch(`http://127.0.0.1:${proxy.port}/api/v1/pods?limit=1`, {
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
    const sock = connect({ host: '127.0.0.1', port: proxy.port })
    let got = ''
    sock.on('data', (d: Buffer) => (got += d.toString()))
    await new Promise<void>((r) => sock.on('connect', r))
    sock.write('POST /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nAuthorization: Bearer stolen\r\nImpersonate-User: admin\r\n\r\n')
    for (let i = 0; i < 100 && !got.includes('\r\n\r\n'); i++) await new Promise((r) => setTimeout(r, 20))
    expect(got).toMatch(/^HTTP\/1\.1 101 /)
    sock.write('ping')
    for (let i = 0; i < 100 && !got.includes('echo:ping'); i++) await new Promise((r) => setTimeout(r, 20))
    expect(got).toContain('echo:ping')
    sock.destroy()
    const h = seen.at(-1) ?? {}
    expect(h.upgrade).toBe('SPDY/3.1')
    expect(h.authorization).toBe('Bearer agent-own-token')
    expect(h['impersonate-user']).toBe('remote')
  })
})
