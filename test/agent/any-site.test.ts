/**
 * One share exported by several sites, reached through `--connect web@*` (agent/instances.ts
 * rankSites, Agent.openAnySite), in-process on loopback: east and west export `web`, each
 * target answering with its site's name. Round-robin by default, weights and priorities from
 * the importer's options or the exporters' announcements, failover when a site goes and back
 * when it returns, a site that refuses (target unreachable) is retried on the next one and
 * ejected after three failures in a row.
 */
import { createServer, connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import type { SitePolicy } from '../../agent/instances.ts'
import { listen, startNet, until, type Net } from './harness.ts'
import { freePort } from './ha-harness.ts'

async function answering (label: string): Promise<{ close: () => void, port: number }> {
  const server = createServer((s) => { s.on('error', () => {}); s.end(label) })
  return { close: () => server.close(), port: await listen(server) }
}

async function ask (port: number): Promise<string> {
  return await new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port })
    let got = ''
    const t = setTimeout(() => { sock.destroy(); resolve('error: timed out') }, 15_000)
    sock.setEncoding('utf8').on('data', (d: string) => { got += d })
    sock.on('error', (err) => { clearTimeout(t); resolve(`error: ${err.message}`) })
    sock.on('end', () => { clearTimeout(t); resolve(got) })
  })
}

/** `n` connections in sequence; the count per answer. */
async function split (port: number, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) { const a = await ask(port); out[a] = (out[a] ?? 0) + 1 }
  return out
}

describe('a share exported by several sites (web@*)', () => {
  let net: Net
  let local: Agent
  const targets: Array<{ close: () => void, port: number }> = []
  const exporters = new Map<string, Agent>()

  const exporter = async (site: string, opts: { weight?: number, port?: number } = {}): Promise<Agent> => {
    const a = await net.agent(site, { shares: [{ name: 'web', host: '127.0.0.1', port: opts.port ?? targets[site === 'east' ? 0 : 1]!.port, ...(opts.weight !== undefined ? { weight: opts.weight } : {}) }] })
    exporters.set(site, a)
    return a
  }
  const connectAny = async (policy?: Partial<SitePolicy>): Promise<number> => (await local.addConnect({ share: 'web', peer: '*', host: '127.0.0.1', port: 0, ...(policy !== undefined ? { policy } : {}) })).port
  const bothLive = async (): Promise<void> => { await until(() => local.siteSplit('web').filter(s => s.live).length === 2, 20_000, 'both sites live') }

  beforeAll(async () => {
    net = await startNet()
    targets.push(await answering('east'), await answering('west'))
    await exporter('east')
    await exporter('west')
    local = await net.agent('local')
    await bothLive()
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    for (const t of targets) t.close()
  })

  it('round-robin by default: connections alternate between the sites', async () => {
    expect(await split(await connectAny(), 100)).toEqual({ east: 50, west: 50 })
  })

  it('weights (the importer\'s): east:3|west:1 sends three of four to east', async () => {
    expect(await split(await connectAny({ weights: { east: 3, west: 1 } }), 100)).toEqual({ east: 75, west: 25 })
  })

  it('priorities: west only while east cannot take streams; back to east when it returns', async () => {
    const port = await connectAny({ priorities: { east: 0, west: 1 } })
    expect(await split(port, 20)).toEqual({ east: 20 })
    const east = exporters.get('east')!
    await east.stop()
    net.agents.splice(net.agents.indexOf(east), 1)
    expect(await split(port, 20)).toEqual({ west: 20 })
    await exporter('east')
    await bothLive()
    expect(await split(port, 20)).toEqual({ east: 20 })
  }, 60_000)

  it('the exporters\' announced weight applies when the importer sets none', async () => {
    const west = exporters.get('west')!
    await west.stop()
    net.agents.splice(net.agents.indexOf(west), 1)
    await exporter('west', { weight: 3 })
    await until(() => local.sitePolicy('web').weights.west === 3, 20_000, 'west\'s weight announced')
    await bothLive()
    expect(await split(await connectAny(), 40)).toEqual({ east: 10, west: 30 })
  }, 60_000)

  it('a site that refuses is retried on the next one (no failed connection) and ejected after three failures', async () => {
    const west = exporters.get('west')!
    await west.stop()
    net.agents.splice(net.agents.indexOf(west), 1)
    await exporter('west', { port: await freePort() }) // nothing accepts there: TARGET_UNREACHABLE
    await bothLive()
    const port = await connectAny()
    const answers = await split(port, 20)
    expect(answers).toEqual({ east: 20 })
    expect(local.siteSplit('web').find(s => s.site === 'west')?.ejected).toBe(true)
  }, 60_000)
})
