/**
 * One failover round under load, shared by `npm run bench -- ha` (bench/ha.ts) and
 * `npm run bench -- merged` (bench/merged-failover.ts): `rate` requests/s to `port` (through an
 * agent's listener), one agent stopped with `signal` after 1 s, then the load runs until 5 s
 * after the stop and the agent is started again.
 * - detected: the stop until `gone()` says the importer no longer uses it (keepalive, drain);
 * - first ok: the stop until the first request started after it has its answer;
 * - worst: the slowest request started within 5 s after the stop;
 * - lost / requests: failed and all requests from 1 s before the stop to the end of the round.
 */
import { request, type AgentProc, type HaNetwork, type RequestResult } from '../test/agent/ha-harness.ts'
import { until } from '../test/until.ts'
import { percentile } from './lib.ts'

export interface Round { detectedMs: number, firstOkMs: number, worstMs: number, lost: number, requests: number }

export interface RoundInit {
  net: HaNetwork
  port: number
  rate: number
  victim: AgentProc
  signal: NodeJS.Signals
  /** The importer no longer sends new streams to the stopped agent. */
  gone: () => Promise<boolean>
}

/** Runs one round; resolves with its figures and the restarted agent. */
export async function failoverRound (r: RoundInit): Promise<{ round: Round, restarted: AgentProc }> {
  const results: Array<Promise<RequestResult>> = []
  let stop = false
  const loop = (async () => {
    for (let i = 0; i < 100_000 && !stop; i++) {
      results.push(request(r.port, i))
      await new Promise(resolve => setTimeout(resolve, 1000 / r.rate))
    }
  })()
  await new Promise(resolve => setTimeout(resolve, 1000))
  const killAt = Date.now()
  const stopped = r.net.stop(r.victim, r.signal)
  await until(r.gone, 20_000, 'the importer to stop using the stopped agent', 20)
  const detectedMs = Date.now() - killAt
  await stopped
  await new Promise(resolve => setTimeout(resolve, 5000 - Math.min(5000, Date.now() - killAt)))
  stop = true
  await loop
  const all = await Promise.all(results)
  const restarted = await r.net.restart(r.victim)
  const after = all.filter(x => x.start >= killAt)
  return {
    round: {
      detectedMs,
      firstOkMs: Math.min(...after.filter(x => x.ok).map(x => x.start + x.ms - killAt)),
      worstMs: Math.max(0, ...after.filter(x => x.start <= killAt + 5000).map(x => x.ms)),
      lost: all.filter(x => x.start >= killAt - 1000 && !x.ok).length,
      requests: all.filter(x => x.start >= killAt - 1000).length,
    },
    restarted,
  }
}

/** `p50 / p99` of one figure over the rounds. */
export const p50p99 = (rs: Round[], f: (r: Round) => number): string => `${percentile(rs.map(f), 50).toFixed(0)} / ${percentile(rs.map(f), 99).toFixed(0)}`

/** `lost of requests (max n per kill)`. */
export const lostCell = (rs: Round[]): string => `${rs.reduce((n, r) => n + r.lost, 0)} of ${rs.reduce((n, r) => n + r.requests, 0)} (max ${Math.max(...rs.map(r => r.lost))} per kill)`
