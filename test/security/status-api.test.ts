/**
 * Finding 8 of issue 10: the agent's status API had no Host, Origin or content-type check. A
 * page on another loopback origin in real Chromium made the agent open a connect listener with a
 * `no-cors` text/plain POST, and a forged Host (DNS rebinding) was accepted. Here the attacks
 * run again: a hostile page served from another loopback port in Debian's Chromium
 * (playwright-core, never a downloaded browser), a DNS-rebinding page (Chromium resolves
 * `rebind.test` to 127.0.0.1; its first document is served by the "attacker", then its
 * same-origin requests reach the agent under that name), and forged Host headers from a
 * non-browser client. The agent opens no listener and answers with the refusal codes; the CLI's
 * own request (JSON, no Origin, loopback Host) still works and its listener carries a tunnel.
 * Also covers the chart's wildcard binding: GET /metrics by the pod's address works, changes
 * through that address do not. Run inside scripts/netns-run.sh (like `npm test`).
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { networkInterfaces } from 'node:os'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { startStatusServer } from '../../agent/status/server.ts'
import { requestConnect } from '../../cli/kubeconfig.ts'
import { exchange, hashServer, startNet, type Net } from '../agent/harness.ts'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', // Chromium's own Local Network Access checks would block the rebinding page before it reaches the
// agent; they are off here to model browsers without them (Firefox, Safari, older Chrome) and
// test the agent's own defence.
'--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights', '--host-resolver-rules=MAP rebind.test 127.0.0.1']

let net: Net
let b: Agent
let status: Awaited<ReturnType<typeof startStatusServer>>
let target: Awaited<ReturnType<typeof hashServer>>
let browser: Browser
let hostile: Server
let hostilePort: number

interface Answer { status: number, code?: string, body: string }

/** One HTTP request with exactly these headers (Host included), from a non-browser client. */
async function raw (port: number, method: string, path: string, headers: Record<string, string>, body?: string, addr = '127.0.0.1'): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: addr, port, method, path, headers, setHost: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let code: string | undefined
        try { code = (JSON.parse(text) as { error?: { code?: string } }).error?.code } catch { code = undefined }
        resolve({ status: res.statusCode ?? 0, ...(code !== undefined ? { code } : {}), body: text })
      })
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.end(body)
  })
}

const CONNECT = JSON.stringify({ share: 'web', peer: 'site-a', listen: '127.0.0.1:0' })

function ensureChromium (): void {
  if (existsSync(CHROMIUM)) return
  if (process.getuid?.() !== 0) throw new Error(`${CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium)`)
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'inherit', timeout: 600_000 })
  if (r.status !== 0 || !existsSync(CHROMIUM)) throw new Error(`apt-get install chromium failed (status ${r.status})`)
}

/** The attacker's page: tries the original no-cors attack, a CORS JSON POST and a CORS read. */
function hostileHtml (statusOrigin: string): string {
  return `<!doctype html><meta charset="utf-8"><title>hostile</title><script>
  window.results = (async () => {
    const out = {}
    const body = ${JSON.stringify(CONNECT)}
    try { const r = await fetch('${statusOrigin}/v1/connects', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body }); out.noCors = r.type } catch (e) { out.noCors = 'error ' + e.message }
    try { const r = await fetch('${statusOrigin}/v1/connects', { method: 'POST', headers: { 'content-type': 'application/json' }, body }); out.json = String(r.status) } catch (e) { out.json = 'blocked' }
    try { const r = await fetch('${statusOrigin}/status'); out.read = await r.text() } catch (e) { out.read = 'blocked' }
    try { const r = await fetch('${statusOrigin}/status', { mode: 'no-cors' }); out.readNoCors = r.type + ':' + (await r.text()).length } catch (e) { out.readNoCors = 'error' }
    return out
  })()
  </script>`
}

/** The rebinding page: same origin as the agent's port under the name rebind.test. */
const REBIND_HTML = `<!doctype html><meta charset="utf-8"><title>rebind</title><script>
  window.results = (async () => {
    const out = {}
    const code = async (r) => { try { return r.status + ' ' + (await r.json()).error.code } catch { return String(r.status) } }
    try { out.read = await code(await fetch('/status')) } catch (e) { out.read = 'error ' + e.message }
    try { out.metrics = await code(await fetch('/metrics')) } catch (e) { out.metrics = 'error ' + e.message }
    try { out.post = await code(await fetch('/v1/connects', { method: 'POST', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(CONNECT)} })) } catch (e) { out.post = 'error ' + e.message }
    return out
  })()
  </script>`

beforeAll(async () => {
  ensureChromium()
  target = await hashServer(4096)
  net = await startNet()
  await net.agent('site-a', { shares: [{ name: 'web', host: '127.0.0.1', port: target.port }] })
  b = await net.agent('site-b')
  await b.peerByName('site-a', 30_000)
  status = await startStatusServer(b, '127.0.0.1', 0)
  hostile = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(hostileHtml(`http://127.0.0.1:${status.port}`))
  })
  await new Promise<void>(resolve => hostile.listen(0, '127.0.0.1', resolve))
  hostilePort = (hostile.address() as AddressInfo).port
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 })
}, 90_000)

afterAll(async () => {
  await browser?.close().catch(() => {})
  await new Promise<void>(resolve => { if (hostile === undefined) resolve(); else hostile.close(() => resolve()) })
  await status?.close()
  await net?.close()
  await new Promise<void>(resolve => { if (target === undefined) resolve(); else target.server.close(() => resolve()) })
})

describe('status API against web pages and forged Host headers (issue 10, finding 8)', () => {
  it('a hostile page on another loopback origin in Chromium opens no listener', async () => {
    const before = b.listeners.length
    const page = await browser.newPage()
    try {
      // what Chromium puts on the wire (Origin and Host included), from the DevTools protocol
      const cdp = await page.context().newCDPSession(page)
      await cdp.send('Network.enable')
      const requests = new Map<string, { method: string, url: string, headers?: Record<string, string>, status?: number }>()
      cdp.on('Network.requestWillBeSent', e => { requests.set(e.requestId, { ...requests.get(e.requestId), method: e.request.method, url: e.request.url }) })
      cdp.on('Network.requestWillBeSentExtraInfo', e => { const r = requests.get(e.requestId); requests.set(e.requestId, { method: r?.method ?? '?', url: r?.url ?? '?', ...r, headers: e.headers as Record<string, string> }) })
      cdp.on('Network.responseReceivedExtraInfo', e => { const r = requests.get(e.requestId); if (r !== undefined) r.status = e.statusCode })
      await page.goto(`http://127.0.0.1:${hostilePort}/`, { timeout: 15_000 })
      const results = await page.evaluate(async () => await (window as unknown as { results: Promise<Record<string, string>> }).results)
      // the original attack is sent (an opaque response), and refused by the agent
      expect(results.noCors).toBe('opaque')
      expect(results.json).toBe('blocked') // the preflight is refused
      expect(results.read).toBe('blocked') // no CORS read of /status
      expect(results.readNoCors).toBe('opaque:0')
      // the agent refused the no-cors POST (its body is opaque to the page and to Playwright:
      // the code comes from replaying exactly the headers Chromium sent, without a browser)
      // every POST that went on the wire (the CORS JSON one never does: its preflight is refused)
      const posts = [...requests.values()].filter(r => r.method === 'POST' && r.url.startsWith(`http://127.0.0.1:${status.port}/`) && r.headers !== undefined)
      expect(posts.length, JSON.stringify([...requests.values()])).toBeGreaterThanOrEqual(1)
      for (const a of posts) {
        expect(a.status).toBe(403)
        const headers = Object.fromEntries(Object.entries(a.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]))
        expect(headers.origin).toBe(`http://127.0.0.1:${hostilePort}`)
        expect(headers['content-type']).toMatch(/^text\/plain/)
        expect(await raw(status.port, 'POST', '/v1/connects', headers, CONNECT)).toMatchObject({ status: 403, code: 'ORIGIN_NOT_ALLOWED' })
      }
      expect(b.listeners.length).toBe(before)
    } finally {
      await page.close()
    }
    // what Chromium sent, replayed without a browser: each check refuses it on its own
    const noOrigin = await raw(status.port, 'POST', '/v1/connects', { host: `127.0.0.1:${status.port}`, 'content-type': 'text/plain;charset=UTF-8' }, CONNECT)
    expect(noOrigin).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' })
    const preflight = await raw(status.port, 'OPTIONS', '/v1/connects', { host: `127.0.0.1:${status.port}`, origin: `http://127.0.0.1:${hostilePort}`, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' })
    expect(preflight).toMatchObject({ status: 403, code: 'ORIGIN_NOT_ALLOWED' })
    expect(preflight.body).not.toContain('access-control')
    expect(b.listeners.length).toBe(before)
  }, 60_000)

  it('a DNS-rebinding page in Chromium is refused by its Host name', async () => {
    const before = b.listeners.length
    const page = await browser.newPage()
    try {
      const origin = `http://rebind.test:${status.port}`
      // the name first resolves to the attacker (its page), then to 127.0.0.1 (the agent)
      await page.route(`${origin}/`, async route => { await route.fulfill({ status: 200, contentType: 'text/html', body: REBIND_HTML }) })
      await page.goto(`${origin}/`, { timeout: 15_000 })
      const results = await page.evaluate(async () => await (window as unknown as { results: Promise<Record<string, string>> }).results)
      expect(results).toEqual({ read: '403 HOST_NOT_ALLOWED', metrics: '403 HOST_NOT_ALLOWED', post: '403 HOST_NOT_ALLOWED' })
      expect(b.listeners.length).toBe(before)
    } finally {
      await page.close()
    }
  }, 60_000)

  it('forged Host headers from a non-browser client are refused', async () => {
    const before = b.listeners.length
    const p = status.port
    const json = { 'content-type': 'application/json' }
    for (const host of [`rebind.example:${p}`, 'rebind.example', `127.0.0.1:${p + 1 > 65535 ? 1 : p + 1}`, `localhost.rebind.example:${p}`, `127.0.0.1.nip.io:${p}`, `[::2]:${p}`, '']) {
      for (const path of ['/status', '/metrics', '/healthz']) {
        expect(await raw(p, 'GET', path, { host }), `${host} GET ${path}`).toMatchObject({ status: 403, code: 'HOST_NOT_ALLOWED' })
      }
      expect(await raw(p, 'POST', '/v1/connects', { host, ...json }, CONNECT), `${host} POST`).toMatchObject({ status: 403, code: 'HOST_NOT_ALLOWED' })
    }
    // Host values Node's HTTP parser itself refuses (400, no route runs)
    for (const host of [`evil@127.0.0.1:${p}`, `127.0.0.1:${p}/x`]) {
      expect((await raw(p, 'POST', '/v1/connects', { host, ...json }, CONNECT)).status, host).toBeGreaterThanOrEqual(400)
    }
    // a cross-origin Origin on a read, any Origin on a change
    expect(await raw(p, 'GET', '/status', { host: `127.0.0.1:${p}`, origin: 'http://rebind.example' })).toMatchObject({ status: 403, code: 'ORIGIN_NOT_ALLOWED' })
    expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, origin: `http://127.0.0.1:${p}`, ...json }, CONNECT)).toMatchObject({ status: 403, code: 'ORIGIN_NOT_ALLOWED' })
    expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, origin: 'null', ...json }, CONNECT)).toMatchObject({ status: 403, code: 'ORIGIN_NOT_ALLOWED' })
    expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}` }, CONNECT)).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' })
    expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, 'content-type': 'application/x-www-form-urlencoded' }, CONNECT)).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' })
    expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, ...json }, JSON.stringify({ share: 'web', peer: 'site-a', pad: 'x'.repeat(5000) }))).toMatchObject({ status: 413, code: 'MESSAGE_TOO_LARGE' })
    expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, ...json }, '{"share":')).toMatchObject({ status: 400, code: 'BAD_MESSAGE' })
    expect(b.listeners.length).toBe(before)
    // the legitimate requests: loopback names with the right port
    for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `127.1.2.3:${p}`]) {
      expect((await raw(p, 'GET', '/status', { host })).status, host).toBe(200)
    }
    expect((await raw(p, 'GET', '/status', { host: `127.0.0.1:${p}`, origin: `http://127.0.0.1:${p}` })).status).toBe(200) // same origin
  }, 60_000)

  it('the CLI request still opens a listener, and it carries a tunnel', async () => {
    const listen = await requestConnect(status.url.replace(/^http:\/\//, ''), 'site-a', '127.0.0.1:0', 'web')
    const port = Number(listen.split(':').pop())
    expect(b.listeners.some(l => l.port === port)).toBe(true)
    expect(await exchange(port, 4096)).toEqual({ ok: true })
  }, 60_000)

  it('bound to a wildcard (the chart): reads by the pod address work, changes only by loopback', async () => {
    const own = Object.values(networkInterfaces()).flat().find(i => i !== undefined && i.family === 'IPv4' && !i.internal)
    if (own === undefined) throw new Error('no non-loopback IPv4 address: run inside scripts/netns-run.sh (as npm test does)')
    const wild = await startStatusServer(b, '0.0.0.0', 0)
    try {
      const p = wild.port
      const byPod = `${own.address}:${p}`
      // kubelet probes and Prometheus' pod discovery address the pod IP
      const metrics = await raw(p, 'GET', '/metrics', { host: byPod }, undefined, own.address)
      expect(metrics.status).toBe(200)
      expect(metrics.body).toContain('causeway_')
      expect((await raw(p, 'GET', '/healthz', { host: byPod }, undefined, own.address)).status).toBe(200)
      // a Service DNS name or any other name is refused
      expect(await raw(p, 'GET', '/metrics', { host: `causeway-agent-status.causeway.svc:${p}` }, undefined, own.address)).toMatchObject({ status: 403, code: 'HOST_NOT_ALLOWED' })
      // changes: not through the pod address, even from a loopback client
      const before = b.listeners.length
      expect(await raw(p, 'POST', '/v1/connects', { host: byPod, 'content-type': 'application/json' }, CONNECT)).toMatchObject({ status: 403, code: 'HOST_NOT_ALLOWED' })
      // nor from a non-loopback client naming loopback
      expect(await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, 'content-type': 'application/json' }, CONNECT, own.address)).toMatchObject({ status: 403, code: 'FORBIDDEN' })
      expect(b.listeners.length).toBe(before)
      // the CLI on the same host still can
      expect((await raw(p, 'POST', '/v1/connects', { host: `127.0.0.1:${p}`, 'content-type': 'application/json' }, CONNECT)).status).toBe(200)
    } finally {
      await wild.close()
    }
  }, 60_000)
})
