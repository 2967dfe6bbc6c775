/**
 * `npm run bench -- merged`: failover of a merged Kubernetes import, with real processes. Two
 * exporting sites (`east`, `west`: `bin/causeway agent --share web=…`, one echo target each)
 * and one importer in Kubernetes mode (`bin/causeway agent --kube --kubeconfig …` against the
 * repo's API test server, test/kube/apiserver.ts), which imports `web` merged: one Service
 * `web-clusterset` whose EndpointSlice (the importer instance's `web-clusterset-<instance>`) names
 * the importer's any-site listener. 100 requests/s go
 * to that address:port (where kube-proxy would send them). Each round kills one exporter with
 * SIGKILL, measures, then starts it again and waits until the importer sees both sites:
 * - first other ms: kill until the first request started after the kill is answered (by the
 *   other site: the killed one cannot answer);
 * - detected ms: kill until the importer no longer counts the killed site as connected and
 *   answering (keepalive);
 * - worst ms: the slowest request started within 5 s after the kill (one sent to the dead site
 *   waits for the detection, then goes to the other);
 * - lost: failed requests from 1 s before the kill to the end of the round.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { echoTarget, HaNetwork, type AgentProc } from '../test/agent/ha-harness.ts'
import { log } from '../test/agent/harness.ts'
import { startApiServer } from '../test/kube/apiserver.ts'
import { until } from '../test/until.ts'
import { failoverRound, lostCell, p50p99, type Round } from './failover-round.ts'

const ROUNDS = Number(process.env.MERGED_ROUNDS ?? 20)
const RATE = 100

export async function mergedFailoverBench (): Promise<string> {
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}), log })
  const net = await HaNetwork.create(signaling.url)
  const api = await startApiServer()
  const dir = mkdtempSync(join(tmpdir(), 'causeway-bench-merged-'))
  const targets = [await echoTarget(), await echoTarget()]
  try {
    const kubeconfig = join(dir, 'kubeconfig')
    writeFileSync(kubeconfig, api.kubeconfig())
    const exporters: AgentProc[] = []
    for (const [i, site] of ['east', 'west'].entries()) exporters.push(await net.start(site, `${site}-1`, ['--share', `web=127.0.0.1:${targets[i]!.port}`]))
    // the importer's pod IP and namespace come from the downward API in a cluster
    process.env.POD_IP = '127.0.0.1'
    process.env.POD_NAMESPACE = 'default'
    const importer = await net.start('local', 'local-1', ['--kube', '--kubeconfig', kubeconfig])
    for (const site of ['east', 'west']) await net.waitInstances(importer, site, 1)
    const kc = new k8s.KubeConfig()
    kc.loadFromString(api.kubeconfig())
    const disc = kc.makeApiClient(k8s.DiscoveryV1Api)
    // the importer's own slice behind the merged Service (one per agent instance: <service>-<instance>)
    const slice = await until(async () => {
      const all = await disc.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=web-clusterset,causeway.dev/instance' })
      return all.items.find(s => s.endpoints?.[0]?.conditions?.ready === true)
    }, 30_000, 'the merged import\'s EndpointSlice')
    const port = slice.ports?.[0]?.port ?? 0
    const out: Round[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const victim = exporters[r % 2]!
      const { round, restarted } = await failoverRound({
        net, port, rate: RATE, victim, signal: 'SIGKILL',
        gone: async () => {
          const s = await net.status(importer)
          return s !== undefined && !s.peers.some(p => p.name === victim.site && p.state === 'connected' && p.responsive)
        },
      })
      exporters[r % 2] = restarted
      await net.waitInstances(importer, victim.site, 1)
      out.push(round)
      process.stderr.write(`merged round ${r + 1}/${ROUNDS}: ${JSON.stringify(out.at(-1))}\n`)
    }
    const col = (f: (r: Round) => number): string => p50p99(out, f)
    return [
      `${RATE} requests/s to a merged import (web from east and west, round-robin); one exporter killed (SIGKILL) per round, then started again (load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}).`,
      '',
      '| rounds | first answer after the kill ms p50 / p99 | detected ms p50 / p99 | worst request ms p50 / p99 | requests lost |',
      '|---|---|---|---|---|',
      `| ${out.length} | ${col(r => r.firstOkMs)} | ${col(r => r.detectedMs)} | ${col(r => r.worstMs)} | ${lostCell(out)} |`,
    ].join('\n')
  } finally {
    net.killAll()
    for (const t of targets) t.server.close()
    await api.close()
    await signaling.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) process.stdout.write(`${await mergedFailoverBench()}\n`)
