/**
 * The browser debug page, driven in Debian's Chromium (playwright-core, never a downloaded
 * browser) against the Node signaling service and two in-process agents on loopback: the page
 * joins as a viewer with its own RTCPeerConnection, shows both agents and their direct path,
 * sends an HTTP request through a tunnel, is refused a share it was not granted, and explains
 * bad tokens and empty rooms; in an open deployment of a shared-token network it refuses a viewer
 * that joined as an agent and sends agent hellos (issue 22: the page checks members' proofs with
 * the same Mesh code as every viewer). The main flow runs again with the page served by the Worker under
 * wrangler dev (workerd), agents and page signaling through it. Run inside scripts/netns-run.sh
 * (WebRTC host candidates then stay in the test's own namespace; mDNS is off so nothing is
 * multicast).
 */
import { until } from '../until.ts'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent } from '../../agent/agent.ts'
import { issueAgentToken, newNetwork, sharedToken } from '../../protocol/identity-owner.ts'
import { generatePeerKey } from '../../protocol/join-proof.ts'
import { deriveViewerSealKey } from '../../protocol/keys.ts'
import { seal } from '../../protocol/seal.ts'
import { SignalingClient } from '../../peer/signaling-client.ts'
import { encodeToken, newSecret, viewerTokenFor, type MemberToken } from '../../protocol/token.ts'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../../signaling/node/server.ts'
import { buildPage } from '../../signaling/page/build.ts'
import { startWorkerd, type Target } from '../signaling/servers.ts'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-features=WebRtcHideLocalIpsWithMdns']
const BODY = 'hello from the web share, through causeway\n'
/** Where screenshots go (not committed). */
export const SHOT_DIR = join(tmpdir(), 'causeway-page-shots')

function ensureChromium (): void {
  if (existsSync(CHROMIUM)) return
  if (process.getuid?.() !== 0) throw new Error(`${CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium). This test never downloads a browser.`)
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'inherit', timeout: 600_000 })
  if (r.status !== 0 || !existsSync(CHROMIUM)) throw new Error(`apt-get install chromium failed (status ${r.status}); ${CHROMIUM} is still missing`)
}

let service: Server
let servicePort: number
let ctx: BrowserContext
let profile: string
const logs: string[] = []

async function newPage (): Promise<Page> {
  const page = await ctx.newPage()
  page.on('console', m => { if (logs.length < 500) logs.push(`[${m.type()}] ${m.text()}`) })
  page.on('pageerror', e => { if (logs.length < 500) logs.push(`[pageerror] ${e.message}`) })
  return page
}

interface Network { member: MemberToken, a: Agent, b: Agent, stop: () => Promise<void> }

/**
 * Two agents with their own agent tokens on the signaling service at `url`: site-a shares
 * `web` (granted), `secret`, and `private` (peers=site-b: never offered to a viewer).
 */
/** The card of each agent the network runs (site-a has two instances: a-1 and a-2). */
const CARD: Record<string, string> = { 'site-a': '[data-agent="site-a"][data-instance="a-1"]', 'site-b': '[data-agent="site-b"][data-instance="b-1"]' }

async function startNetwork (url: string): Promise<Network> {
  const owner = await newNetwork(url, 'page-test')
  const member = await issueAgentToken(owner, 'site-a', { ttlSeconds: 3600 })
  const port = servicePort
  const a = new Agent({ token: member, instance: 'a-1', shares: [{ name: 'web', host: '127.0.0.1', port, protocol: 'http' }, { name: 'secret', host: '127.0.0.1', port, protocol: 'http' }, { name: 'private', host: '127.0.0.1', port, protocol: 'http', peers: ['site-b'] }] })
  const b = new Agent({ token: await issueAgentToken(owner, 'site-b', { ttlSeconds: 3600 }), instance: 'b-1' })
  // a second instance of site-a (same token): the page shows both, site-b reports a link to each
  const a2 = new Agent({ token: member, instance: 'a-2', shares: [{ name: 'web', host: '127.0.0.1', port, protocol: 'http' }] })
  const stop = async (): Promise<void> => { await b.stop(); await a2.stop(); await a.stop() }
  try {
    await a.start()
    await a2.start()
    await b.start()
    await a.peerByName('site-b', 20_000)
    await until(() => b.instancesOf('site-a').filter(p => p.session?.state === 'connected').length === 2, 20_000, 'site-b connected to both instances of site-a')
  } catch (err) {
    await stop()
    throw err
  }
  return { member, a, b, stop }
}

/** The page from `url` joins with a viewer token granting `web`, sees both agents, tunnels HTTP. */
async function joinAndTunnel (url: string, member: MemberToken, shot: string): Promise<void> {
  const page = await newPage()
  try {
    const viewer = encodeToken(await viewerTokenFor(member, ['web']))
    await page.goto(`${url}/debug/#token=${viewer}`, { timeout: 15_000 })
    // The token is read from the fragment and cleared from the address bar at once.
    await page.waitForFunction(() => location.hash === '', undefined, { timeout: 5000 })

    for (const name of ['site-a', 'site-b']) {
      const card = page.locator(CARD[name]!)
      await card.locator('.own-link .pill-direct').waitFor({ timeout: 30_000 })
      await expect(card.locator('.own-link .mono').textContent()).resolves.toMatch(/^(host|prflx|srflx) \S+ +↔ +(host|prflx|srflx) \S+$/)
    }
    // Each agent's own report of its link to the other, within two status rounds.
    await page.locator(`${CARD['site-a']!} tr[data-peer="site-b"] .pill-direct`).waitFor({ timeout: 15_000 })
    await page.locator(`${CARD['site-b']!} tr[data-peer="site-a"] .pill-direct`).first().waitFor({ timeout: 15_000 })
    // site → instances: a card per instance of site-a, and site-b's report lists both
    await page.locator('[data-agent="site-a"][data-instance="a-2"] .own-link .pill-direct').waitFor({ timeout: 30_000 })
    await page.locator(`${CARD['site-b']!} tr[data-peer="site-a"]`, { hasText: 'instance a-2' }).waitFor({ timeout: 15_000 })
    expect(await page.locator(`${CARD['site-b']!} tr[data-peer="site-a"]`).count()).toBe(2)
    // Each agent's netcheck at start (loopback: no STUN/TURN/relay offered); a viewer without
    // the `*` grant gets no addresses (no public address row).
    for (const name of ['site-a', 'site-b']) {
      const nc = page.locator(`${CARD[name]!} .netcheck`)
      await nc.waitFor({ timeout: 15_000 })
      expect(await nc.getAttribute('data-site')).toBe('unknown')
      expect(await nc.textContent()).toMatch(/signaling ok; no STUN\/TURN servers or relays offered/)
      expect(await nc.textContent()).not.toMatch(/public address/)
    }
    // The picture: agent-to-agent links and three browser links, all direct; one node per instance.
    await page.locator('svg.mesh line.edge-direct:not(.edge-viewer)').first().waitFor({ state: 'attached', timeout: 10_000 })
    expect(await page.locator('svg.mesh line.edge-viewer.edge-direct').count()).toBe(3)
    expect(await page.locator('svg.mesh g.node[data-name="site-a"]').count()).toBe(2)
    expect(await page.locator('svg.mesh g.node[data-name="site-a"][data-instance="a-2"]').count()).toBe(1)

    // Only the granted share is offered as granted.
    const target = page.locator('#http-target')
    await page.waitForFunction(() => [...document.querySelectorAll('#http-target option')].some(o => o.textContent?.startsWith('web @ site-a') === true), undefined, { timeout: 10_000 })
    const grantedTexts = await target.locator('optgroup[label^="granted"] option').allTextContents()
    expect(grantedTexts.some(t => t.startsWith('web @ site-a'))).toBe(true)
    expect(grantedTexts.some(t => t.startsWith('secret'))).toBe(false)

    const webValue = await target.locator('option', { hasText: 'web @ site-a' }).first().getAttribute('value')
    await target.selectOption(webValue ?? '')
    await page.fill('#http-path', '/hello')
    await page.click('#http-send')
    await page.locator('#http-body-text').waitFor({ timeout: 20_000 })
    expect(await page.locator('#http-body-text').textContent()).toContain(BODY.trim())
    expect(await page.locator('.resp-head .status-line').textContent()).toMatch(/^HTTP\/1\.1 200/)

    // Shares outside the grant are not even shown to this viewer (issue 10 finding 9); the
    // agents refuse them anyway (test/agent/viewer.test.ts).
    expect(await target.locator('option', { hasText: 'secret @ site-a' }).count()).toBe(0)
    expect(await target.locator('option', { hasText: 'private @ site-a' }).count()).toBe(0)

    // Back to a successful request for the screenshot.
    await target.selectOption(webValue ?? '')
    await page.click('#http-send')
    await page.locator('#http-body-text').waitFor({ timeout: 20_000 })
    await page.waitForTimeout(2500) // one more status round, for fresh numbers
    await page.screenshot({ path: join(SHOT_DIR, shot), fullPage: true, timeout: 10_000 })
    await page.setViewportSize({ width: 820, height: 1000 })
    await page.screenshot({ path: join(SHOT_DIR, `narrow-${shot}`), fullPage: true, timeout: 10_000 })
  } finally {
    await page.close()
  }
}

beforeAll(async () => {
  ensureChromium()
  await buildPage()
  service = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-seen-host': req.headers.host ?? '' })
    res.end(req.url === '/hello' ? BODY : `you asked for ${req.method} ${req.url}\n`)
  })
  await new Promise<void>(resolve => service.listen(0, '127.0.0.1', resolve))
  servicePort = (service.address() as AddressInfo).port
  profile = await mkdtemp(join(tmpdir(), 'causeway-chromium-'))
  ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1440, height: 1000 }, timeout: 30_000 })
})

afterAll(async () => {
  if (logs.length > 0) console.log(`browser console (last 80):\n${logs.slice(-80).join('\n')}`)
  await ctx?.close().catch(() => {})
  await new Promise<void>(resolve => { if (service === undefined) resolve(); else service.close(() => resolve()) })
  if (profile !== undefined) await rm(profile, { recursive: true, force: true })
})

describe('browser debug page, served by the Node signaling service', () => {
  let signaling: NodeSignaling
  let net: Network
  let member: MemberToken

  beforeAll(async () => {
    signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) })
    net = await startNetwork(signaling.url)
    member = net.member
  })

  afterAll(async () => {
    await net?.stop()
    await signaling?.close()
  })

  it('joins as a viewer, shows both agents on direct paths, and tunnels an HTTP request', async () => {
    await joinAndTunnel(signaling.url, member, 'debug-page.png')
  })

  it('explains a token that is not a causeway token', async () => {
    const page = await newPage()
    await page.goto(`${signaling.url}/debug/`, { timeout: 15_000 })
    await page.fill('#token-input', 'cw1.this-is-not-a-token')
    await page.click('#join-form button[type=submit]')
    const err = page.locator('.notice-error')
    await err.waitFor({ timeout: 5000 })
    expect(await err.textContent()).toMatch(/BAD_TOKEN.*not a causeway token/)
    expect(await page.locator('#join').isVisible()).toBe(true)
    await page.screenshot({ path: join(SHOT_DIR, 'bad-token.png'), timeout: 10_000 })
    await page.close()
  })

  it('takes a member token (deriving a viewer token locally) and says when no agent answers', async () => {
    const page = await newPage()
    await page.goto(`${signaling.url}/debug/#token=${encodeToken(member)}`, { timeout: 15_000 })
    await page.locator('.notice-info', { hasText: 'Member token given' }).waitFor({ timeout: 5000 })
    await page.locator(`${CARD['site-a']!} .own-link .pill-direct`).waitFor({ timeout: 30_000 })
    // With every share granted, `secret` is offered as granted too.
    await page.waitForFunction(() => [...document.querySelectorAll('#http-target optgroup[label^="granted"] option')].some(o => o.textContent?.startsWith('secret @ site-a') === true), undefined, { timeout: 10_000 })
    // …but not `private`, limited to site-b by peers=: a viewer grant never overrides that.
    expect(await page.locator('#http-target option', { hasText: 'private @ site-a' }).count()).toBe(0)
    // With `*`, the netcheck findings include the public address (none here: no STUN server).
    await page.locator(`${CARD['site-a']!} .netcheck`, { hasText: 'public address' }).waitFor({ timeout: 10_000 })

    // A token of another network: the page joins an empty room and says so as soon as the
    // roster arrives (no timer: well under the 10 s an agent in the room gets to answer)…
    const otherMember: MemberToken = { kind: 'member', signaling: signaling.url, secret: newSecret() }
    const other = encodeToken(await viewerTokenFor(otherMember, ['web']))
    await page.goto(`${signaling.url}/debug/#token=${other}`, { timeout: 15_000 })
    const none = page.locator('.notice-error', { hasText: 'No agent in the room' })
    await none.waitFor({ timeout: 5000 })
    expect(await none.textContent()).toMatch(/no agent is in it/)
    await page.screenshot({ path: join(SHOT_DIR, 'no-agents.png'), timeout: 10_000 })
    // …and drops the notice when an agent joins that room, and shows the agent.
    const late = new Agent({ token: otherMember, name: 'late' })
    try {
      await late.start()
      await none.waitFor({ state: 'detached', timeout: 10_000 })
      await page.locator('[data-agent="late"]').waitFor({ timeout: 20_000 })
    } finally {
      await late.stop()
    }
    await page.close()
  })
  it('refuses a viewer that joined as an agent and sends agent hellos (open deployment, shared token)', async () => {
    const open = sharedToken(await newNetwork(signaling.url, 'open'))
    const agent = new Agent({ token: open, name: 'open-a' })
    const page = await newPage()
    const viewer = await viewerTokenFor(open, ['*'])
    const peerKey = await generatePeerKey()
    const sc = new SignalingClient({ signaling: signaling.url, room: viewer.room, key: peerKey, role: 'agent' })
    try {
      await agent.start()
      await page.goto(`${signaling.url}/debug/#token=${encodeToken(viewer)}`, { timeout: 15_000 })
      await page.locator('[data-agent="open-a"] .own-link .pill-direct').waitFor({ timeout: 30_000 })
      const refusedBefore = logs.filter(l => l.includes('agent hello refused')).length
      // The attacker holds the same viewer token, joins as an agent and seals agent hellos
      // (one replacing open-a, one new name) with the viewer key every viewer holds.
      const key = await deriveViewerSealKey(viewer.viewerSecret)
      const forge = async (to: string, name: string): Promise<void> => {
        sc.send(to, await seal(key, { room: viewer.room, from: peerKey.id, to, body: { type: 'hello', name, role: 'agent', caps: ['tcp/1'], mproof: { ts: Date.now(), sig: 'A'.repeat(86) } } }))
      }
      sc.on('welcome', peers => { for (const p of peers) { void forge(p, 'open-a'); void forge(p, 'evil') } })
      sc.start()
      const deadline = Date.now() + 10_000
      while (logs.filter(l => l.includes('agent hello refused')).length < refusedBefore + 2 && Date.now() < deadline) await page.waitForTimeout(100)
      expect(logs.filter(l => l.includes('agent hello refused')).length).toBeGreaterThanOrEqual(refusedBefore + 2)
      await page.waitForTimeout(1000)
      expect(await page.locator('[data-agent="evil"]').count()).toBe(0)
      expect(await page.locator('[data-agent="open-a"]').count()).toBe(1)
      await page.locator('[data-agent="open-a"] .own-link .pill-direct').waitFor({ timeout: 5000 })
    } finally {
      sc.close()
      await page.close()
      await agent.stop()
    }
  })

  it('shows the code and message when the signaling service refuses the token', async () => {
    // A deployment that requires access tickets, and a token that carries none.
    const locked = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({ CAUSEWAY_ACCESS_SECRET: 'a-test-access-secret-of-32-chars!' }) })
    const page = await newPage()
    try {
      const token = encodeToken(await viewerTokenFor({ kind: 'member', signaling: locked.url, secret: newSecret() }, ['web']))
      await page.goto(`${locked.url}/debug/#token=${token}`, { timeout: 15_000 })
      const err = page.locator('.notice-error', { hasText: 'refused' })
      await err.waitFor({ timeout: 10_000 })
      expect(await err.locator('code').textContent()).toBe('UNAUTHORIZED')
      expect(await err.textContent()).toMatch(/access ticket/)
      await page.screenshot({ path: join(SHOT_DIR, 'unauthorized.png'), timeout: 10_000 })
    } finally {
      await page.close()
      await locked.close()
    }
  })
})

describe('browser debug page, served by the Worker (wrangler dev, workerd)', () => {
  let worker: Target
  let net: Network

  beforeAll(async () => {
    worker = await startWorkerd({})
    net = await startNetwork(worker.url)
  })

  afterAll(async () => {
    await net?.stop()
    await worker?.close()
  })

  it('serves the page from static assets with its security headers', async () => {
    const res = await fetch(`${worker.url}/debug/`, { signal: AbortSignal.timeout(5000) })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/text\/html/)
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(await res.text()).toContain('causeway')
    const missing = await fetch(`${worker.url}/debug/nope.js`, { signal: AbortSignal.timeout(5000) })
    expect(missing.status).toBe(404)
  })

  it('joins through the Worker, shows both agents, and tunnels an HTTP request', async () => {
    await joinAndTunnel(worker.url, net.member, 'debug-page-worker.png')
  })
})
