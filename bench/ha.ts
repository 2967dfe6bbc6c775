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
import { echoTarget, freePort, HaNetwork, type AgentProc } from '../test/agent/ha-harness.ts'
import { log } from '../test/agent/harness.ts'
import { failoverRound, lostCell, p50p99, type Round } from './failover-round.ts'

const ROUNDS = Number(process.env.HA_ROUNDS ?? 20)
const RATE = 100

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
      const victim = east[r % 2]!
      const { round, restarted } = await failoverRound({
        net, port, rate: RATE, victim, signal,
        gone: async () => {
          const s = await net.status(west)
          return s !== undefined && !s.peers.some(p => p.name === victim.site && p.instance === victim.instance && p.state === 'connected' && p.responsive && !p.draining)
        },
      })
      east[r % 2] = restarted
      await allReady()
      out.push(round)
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
    const col = (f: (r: Round) => number): string => p50p99(rs, f)
    rows.push(`| ${across === 'instances' ? 'two instances of one site' : 'two sites, web@*'} | ${signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM (drain)'} | ${rs.length} | ${col(r => r.detectedMs)} | ${col(r => r.firstOkMs)} | ${col(r => r.worstMs)} | ${lostCell(rs)} |`)
  }
  return [
    `${RATE} requests/s through one importer; one agent stopped per round, then started again (load ${(await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}).`,
    '',
    '| across | stop | rounds | detected ms p50 / p99 | first ok ms p50 / p99 | worst request ms p50 / p99 | requests lost |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}
