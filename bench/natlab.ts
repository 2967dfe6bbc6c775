/**
 * NAT-lab benchmark (root only): for each site pair and ICE configuration, how long WebRTC
 * takes to come up and which path it picks, and the throughput of the libp2p relay fallback
 * between two NAT'd sites. A benchmark, not a test: it prints a table and asserts nothing.
 *
 *   node bench/natlab.ts [--relay-mib 64] [--agent-mib 32] [--only agents|webrtc]
 *
 * The agents part (bench/natlab-agents.ts) runs real `causeway agent` processes per NAT pair:
 * path, time to a first working tunnel, one tunnelled connection's throughput.
 *
 * Everything runs in namespaces this script creates (test/natlab/lab.ts); nothing public.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { toBase64Url } from '../protocol/encoding.ts'
import { deriveRelayKey } from '../protocol/keys.ts'
import { newSecret } from '../protocol/token.ts'
import { admitKeyFromRelayKey } from '../protocol/relay-admission.ts'
import { Lab, labAvailability, type NatType } from '../test/natlab/lab.ts'
import { ROOT } from '../test/natlab/relay-helpers.ts'
import { benchAgents } from './natlab-agents.ts'

const { values } = parseArgs({ options: { 'relay-mib': { type: 'string', default: '64' }, 'agent-mib': { type: 'string', default: '32' }, only: { type: 'string' } } })
const relayBytes = Number(values['relay-mib']) * 1024 * 1024

const available = await labAvailability()
if (!available.ok) {
  console.error(`natlab bench NOT RUN: ${available.reason}`)
  process.exit(2)
}

type Kind = 'stun' | 'turn' | 'turn-tcp' | 'turn-443'
const CASES: Array<[NatType, NatType, Kind]> = [
  ['eim', 'eim', 'stun'], ['symmetric', 'eim', 'turn'], ['symmetric', 'symmetric', 'turn'],
  ['udpblock', 'eim', 'turn-tcp'], ['tcp443', 'eim', 'turn-443'],
]
const rows: string[] = []
if (values.only !== 'agents') await benchWebrtc()
if (values.only !== 'webrtc') rows.push('', '### Agents (one tunnelled connection per NAT pair)', '', ...await benchAgents(Number(values['agent-mib'])))
console.log(rows.join('\n'))

async function benchWebrtc (): Promise<void> {
  rows.push('| a | b | ICE servers | connected | path (a) | open ms |', '|---|---|---|---|---|---|')
  let n = 0
  for (const [na, nb, kind] of CASES) {
    const lab = new Lab({ a: na, b: nb })
    try {
      await lab.setup()
      await lab.startTurn()
      const dir = join(lab.dir, `w${++n}`)
      await mkdir(dir)
      const ice = JSON.stringify(await lab.iceServers(kind))
      const peer = join(ROOT, 'test/natlab/wrtc-peer.ts')
      const [a] = await Promise.all([lab.node('a', peer, ['offer', dir, ice, '25000'], 40_000), lab.node('b', peer, ['answer', dir, ice, '25000'], 40_000)])
      const r = JSON.parse(a.stdout.trim() || '{}') as { connected?: boolean, local?: string, remote?: string, ms?: number }
      rows.push(`| ${na} | ${nb} | ${kind} | ${String(r.connected)} | ${r.local ?? '-'}→${r.remote ?? '-'} | ${r.ms ?? '-'} |`)
    } finally { await lab.teardown() }
  }

  const lab = new Lab({ a: 'symmetric', b: 'tcp443' })
  try {
    await lab.setup()
    const secret = newSecret()
    const { addrs } = await lab.startRelay([await admitKeyFromRelayKey(await deriveRelayKey(secret))])
    const key = toBase64Url(await deriveRelayKey(secret))
    const script = join(ROOT, 'test/natlab/relay-peer.ts')
    const [, a] = await Promise.all([
      lab.node('b', script, ['listen', lab.dir, key, addrs.find(x => x.includes('/ws/')) ?? '', '0', '120000'], 150_000),
      lab.node('a', script, ['dial', lab.dir, key, addrs.find(x => x.includes('/tcp/4001/')) ?? '', String(relayBytes), '120000'], 150_000),
    ])
    rows.push('', '| relay fallback | bytes | result |', '|---|---|---|', `| symmetric → tcp443 (TCP in, WS/443 out) | ${relayBytes} | ${a.stdout.trim()} |`)
  } finally { await lab.teardown() }
}
