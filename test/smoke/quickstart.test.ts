/**
 * The README's "Using it" and "The debug page" sections, run command by command through
 * bin/causeway (the bundle users run): a signaling service, a network and agent tokens, an agent sharing
 * a TCP service, an agent reaching it on a local port, `causeway status` (table and --json), a
 * viewer token and its page link, and the page it names loaded in Chromium, which joins, sees
 * both agents and fetches the share through the tunnel. Run inside scripts/netns-run.sh.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium, type Browser } from '../browser.ts'
import { until } from '../until.ts'
import { freePort, run, start, stopAll, type Proc } from './causeway.ts'

const BODY = 'hello through the causeway tunnel\n'
let dir: string
let service: Server
let servicePort: number
let signaling: Proc
let url: string
let statusA: number
let statusB: number
let local: number
let browser: Browser | undefined

async function get (port: number, path: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 10_000 }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end()
  })
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'causeway-smoke-'))
  service = createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(req.url === '/hello' ? BODY : `asked ${req.url}\n`) })
  await new Promise<void>(resolve => service.listen(0, '127.0.0.1', resolve))
  servicePort = (service.address() as { port: number }).port
})

afterAll(async () => {
  await browser?.close()
  stopAll()
  await new Promise<void>(resolve => service.close(() => resolve()))
  await rm(dir, { recursive: true, force: true })
})

describe('the README, command by command through bin/causeway', () => {
  it('1. causeway signaling serves the API and the debug page', async () => {
    const port = await freePort()
    signaling = start(['signaling', '--listen', `127.0.0.1:${port}`])
    url = (await signaling.waitFor(/signaling listening on (http:\/\/\S+)/))[1] ?? ''
    expect(url).toBe(`http://127.0.0.1:${port}`)
    expect(signaling.output()).not.toMatch(/debug page not built/)
    const page = await fetch(`${url}/debug/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(await page.text()).toMatch(/<script[^>]+app\.js/)
    expect((await fetch(`${url}/debug/app.js`)).status).toBe(200)
  })

  it('2. causeway token makes a network (owner file) and an agent token per agent', async () => {
    const r = await run(['token', '--signaling', url], { cwd: dir })
    expect(r.code, r.stderr).toBe(0)
    expect((await stat(join(dir, 'causeway-owner.json'))).mode & 0o777).toBe(0o600)
    for (const name of ['site-a', 'site-b']) {
      const t = await run(['token', '--name', name, '--out', `${name}.token`], { cwd: dir })
      expect(t.code, t.stderr).toBe(0)
      expect((await readFile(join(dir, `${name}.token`), 'utf8')).trim()).toMatch(/^cw1\.\S+$/)
    }
  })

  it('3-4. one agent shares a TCP service, another reaches it on a local port', async () => {
    ;[statusA, statusB, local] = [await freePort(), await freePort(), await freePort()]
    const a = start(['agent', '--token-file', join(dir, 'site-a.token'), '--share', `web=127.0.0.1:${servicePort},protocol=http`, '--status', `127.0.0.1:${statusA}`], { CAUSEWAY_LOG_LEVEL: 'debug' })
    const b = start(['agent', '--token-file', join(dir, 'site-b.token'), '--connect', `web@site-a=127.0.0.1:${local}`, '--status', `127.0.0.1:${statusB}`], { CAUSEWAY_LOG_LEVEL: 'debug' })
    const res = await until(async () => await get(local, '/hello'), 30_000,
      () => `the tunnel to answer\n--- site-a:\n${a.output().slice(-6000)}\n--- site-b:\n${b.output().slice(-6000)}\n--- signaling:\n${signaling.output().slice(-3000)}`)
    expect(res).toEqual({ status: 200, body: BODY })
  })

  it('5. causeway status shows the path, as a table and as JSON', async () => {
    const json = await run(['status', '--status-addr', `127.0.0.1:${statusB}`, '--json'])
    expect(json.code, json.stderr).toBe(0)
    const s = JSON.parse(json.stdout) as { peers: Array<{ name: string, state: string, path: string }> }
    expect(s.peers.find(p => p.name === 'site-a')).toMatchObject({ state: 'connected', path: 'direct' })
    const table = await run(['status', '--status-addr', `127.0.0.1:${statusB}`])
    expect(table.code, table.stderr).toBe(0)
    expect(table.stdout).toMatch(/^site-a +\S+ +agent +connected +direct /m)
  })

  it('causeway token --viewer prints a viewer token and the page link; the page joins, sees both agents and fetches the share', async () => {
    const r = await run(['token', '--viewer', '--from-file', 'site-a.token', '--grant', 'web'], { cwd: dir })
    expect(r.code, r.stderr).toBe(0)
    const viewer = r.stdout.trim()
    expect(viewer).toMatch(/^cw1\.\S+$/)
    const link = /(http:\/\/\S+\/debug\/#token=\S+)/.exec(r.stderr)?.[1]
    expect(link).toBe(`${url}/debug/#token=${viewer}`)

    browser = await launchChromium()
    const page = await browser.ctx.newPage()
    await page.goto(link ?? '', { timeout: 15_000 })
    for (const name of ['site-a', 'site-b']) await page.locator(`[data-agent="${name}"] .own-link .pill-direct`).waitFor({ timeout: 30_000 })
    const target = page.locator('#http-target')
    await page.waitForFunction(() => [...document.querySelectorAll('#http-target option')].some(o => o.textContent?.startsWith('web @ site-a') === true), undefined, { timeout: 15_000 })
    await target.selectOption(await target.locator('option', { hasText: 'web @ site-a' }).getAttribute('value') ?? '')
    await page.fill('#http-path', '/hello')
    await page.click('#http-send')
    await page.locator('#http-body-text').waitFor({ timeout: 20_000 })
    expect(await page.locator('#http-body-text').textContent()).toContain(BODY.trim())
  })
})
