/**
 * NAT-lab benchmark of real agents (part of bench/natlab.ts; root only): for each NAT pair, the
 * path the agents pick (from `GET /status`), the time from starting both agent processes to a
 * first working tunnel (a 4 KiB echo through it), and one tunnelled TCP connection's
 * throughput (N MiB echoed: both directions at once, MiB/s per direction). Agents run with the
 * default timeouts (direct 8 s before the relay, session retry 20 s).
 */
import { deriveRelayKey } from '../protocol/keys.ts'
import { encodeToken, newSecret } from '../protocol/token.ts'
import { admitKeyFromRelayKey } from '../protocol/relay-admission.ts'
import { startAgent, startEcho, waitPath, xfer, type LabAgent } from '../test/natlab/agent-helpers.ts'
import { Lab, type NatType } from '../test/natlab/lab.ts'

interface Case { a: NatType, b: NatType, turn: boolean }
const CASES: Case[] = [
  { a: 'eim', b: 'eim', turn: true },
  { a: 'symmetric', b: 'eim', turn: true },
  { a: 'symmetric', b: 'symmetric', turn: true },
  { a: 'udpblock', b: 'eim', turn: true },
  { a: 'tcp443', b: 'eim', turn: true },
  { a: 'symmetric', b: 'symmetric', turn: false },
  { a: 'tcp443', b: 'symmetric', turn: false },
]

export async function benchAgents (mib: number): Promise<string[]> {
  const rows = ['| a | b | TURN offered | path (a → b) | first working tunnel ms | echo MiB | MiB/s each way |', '|---|---|---|---|---|---|---|']
  const lab = new Lab({ a: 'eim', b: 'eim' })
  const secret = newSecret()
  try {
    await lab.setup()
    await lab.startTurn()
    const relay = await lab.startRelay([await admitKeyFromRelayKey(await deriveRelayKey(secret))])
    let signaling = await lab.startSignaling(relay.addrs, { turn: true })
    let turn = true
    await startEcho(lab, 'b')
    const token = encodeToken({ kind: 'member', signaling: signaling.url, secret })
    for (const c of CASES) {
      if (c.turn !== turn) {
        await signaling.proc.kill()
        signaling = await lab.startSignaling(relay.addrs, { turn: c.turn })
        turn = c.turn
      }
      await lab.setNat('a', c.a)
      await lab.setNat('b', c.b)
      const agents: LabAgent[] = []
      try {
        const started = Date.now()
        const a = startAgent(lab, 'a', { name: 'a', token, connectTo: 'b' })
        agents.push(a, startAgent(lab, 'b', { name: 'b', token, share: true }))
        let firstMs = -1
        for (let i = 0; i < 10 && Date.now() - started < 60_000; i++) {
          const r = await xfer(lab, 'a', 4096, 20_000).catch(() => undefined)
          if (r?.intact === true) { firstMs = Date.now() - started; break }
          await new Promise(resolve => setTimeout(resolve, 250))
        }
        const path = await waitPath(a, 'b', ['direct', 'turn', 'relay'], 30_000).then(p => `${p.value.path} (${(p.value.pair ?? '').replace(/\/p2p\/\w+/g, '/p2p/…')})`, () => 'none')
        const r = await xfer(lab, 'a', mib * 1024 * 1024, 120_000)
        const rate = r.intact ? (mib / (r.ms / 1000)).toFixed(1) : `failed (${r.error ?? 'corrupt'})`
        rows.push(`| ${c.a} | ${c.b} | ${c.turn ? 'yes' : 'no'} | ${path} | ${firstMs} | ${mib} | ${rate} |`)
        console.error(rows.at(-1))
      } finally {
        await Promise.all(agents.map(async x => { await x.kill() }))
      }
    }
  } finally {
    await lab.teardown()
  }
  return rows
}
