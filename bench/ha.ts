/**
 * `npm run bench -- ha`: failover between the instances of one site, with real processes
 * (bin/causeway agent, test/agent/ha-harness.ts). Two instances of `east` share a
 * request/response service under one agent token; one `west` agent reaches it through its
 * connect listener while 100 requests/s run. Each round kills one east instance (SIGKILL, or
 * SIGTERM for the drain rows), measures, then starts it again and waits until west sees both:
 * - detected: kill until west no longer counts the instance as ready (keepalive);
 * - first ok: kill until the first request started after the kill has its answer;
 * - worst: the slowest request started within 5 s after the kill (a stream sent to the dead
 *   instance waits for the detection, then goes to the other one);
 * - lost: requests that failed, out of those started from 1 s before the kill to the end of the
 *   round (a request in flight on the killed instance is lost; nothing else should be).
 * The `sites` rows do the same one level up: `east` and `west` are two sites (one agent each)
 * exporting the same share, the importer connects to `web@*` (round-robin), and the killed
 * agent is one site's only instance.
 */
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { echoTarget, freePort, HaNetwork, request, type AgentProc, type RequestResult } from '../test/agent/ha-harness.ts'
import { log } from '../test/agent/harness.ts'
import { until } from '../test/until.ts'

const ROUNDS = Number(process.env.HA_ROUNDS ?? 20)
const RATE = 100

interface Round { detectedMs: number, firstOkMs: number, worstMs: number, lost: number, requests: number }

const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] ?? NaN }

async function rounds (signal: 'SIGKILL' | 'SIGTERM', across: 'instances' | 'sites'): Promise<Round[]> {
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}), log })
  const net = await HaNetwork.create(signaling.url)
  const target = await echoTarget()
  try {
    const sites = across === 'instances' ? ['east', 'east'] : ['east', 'west']
    const east: AgentProc[] = [
      await net.start(sites[0]!, `${sites[0]!}-1`, ['--share', `web=127.0.0.1:${target.port}`]),
      await net.start(sites[1]!, `${sites[1]!}-2`, ['--share', `web=127.0.0.1:${target.port}`]),
    ]
    const port = await freePort()
    const west = await net.start('local', 'local-1', ['--connect', `web@${across === 'instances' ? 'east' : '*'}=127.0.0.1:${port}`])
    const allReady = async (): Promise<void> => {
      if (across === 'instances') await net.waitInstances(west, 'east', 2)
      else for (const site of sites) await net.waitInstances(west, site, 1)
    }
    await allReady()
    const out: Round[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const results: Array<Promise<RequestResult>> = []
      let stop = false
      const loop = (async () => {
        for (let i = 0; i < 100_000 && !stop; i++) {
          results.push(request(port, i))
          await new Promise(resolve => setTimeout(resolve, 1000 / RATE))
        }
      })()
      await new Promise(resolve => setTimeout(resolve, 1000))
      const victim = east[r % 2]!
      const killAt = Date.now()
      const stopped = net.stop(victim, signal)
      await until(async () => {
        const s = await net.status(west)
        return s !== undefined && !s.peers.some(p => p.name === victim.site && p.instance === victim.instance && p.state === 'connected' && p.responsive && !p.draining)
      }, 20_000, 'west to stop using the instance', 20)
      const detectedMs = Date.now() - killAt
      await stopped
      await new Promise(resolve => setTimeout(resolve, 5000 - Math.min(5000, Date.now() - killAt)))
      stop = true
      await loop
      const all = await Promise.all(results)
      east[r % 2] = await net.restart(victim)
      await allReady()
      const after = all.filter(x => x.start >= killAt)
      const firstOk = after.filter(x => x.ok).map(x => x.start + x.ms - killAt)
      out.push({
        detectedMs,
        firstOkMs: Math.min(...firstOk),
        worstMs: Math.max(0, ...after.filter(x => x.start <= killAt + 5000).map(x => x.ms)),
        lost: all.filter(x => x.start >= killAt - 1000 && !x.ok).length,
        requests: all.filter(x => x.start >= killAt - 1000).length,
      })
      process.stderr.write(`ha ${across} ${signal} round ${r + 1}/${ROUNDS}: ${JSON.stringify(out.at(-1))}\n`)
    }
    return out
  } finally {
    net.killAll()
    target.server.close()
    await signaling.close()
  }
}

export async function haBench (): Promise<string> {
  const rows: string[] = []
  for (const [across, signal] of [['instances', 'SIGKILL'], ['instances', 'SIGTERM'], ['sites', 'SIGKILL']] as const) {
    const rs = await rounds(signal, across)
    const col = (f: (r: Round) => number): string => `${pct(rs.map(f), 50).toFixed(0)} / ${pct(rs.map(f), 99).toFixed(0)}`
    rows.push(`| ${across === 'instances' ? 'two instances of one site' : 'two sites, web@*'} | ${signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM (drain)'} | ${rs.length} | ${col(r => r.detectedMs)} | ${col(r => r.firstOkMs)} | ${col(r => r.worstMs)} | ${rs.reduce((n, r) => n + r.lost, 0)} of ${rs.reduce((n, r) => n + r.requests, 0)} (max ${Math.max(...rs.map(r => r.lost))} per kill) |`)
  }
  return [
    `${RATE} requests/s through one importer; one agent stopped per round, then started again (load ${(await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}).`,
    '',
    '| across | stop | rounds | detected ms p50 / p99 | first ok ms p50 / p99 | worst request ms p50 / p99 | requests lost |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}
