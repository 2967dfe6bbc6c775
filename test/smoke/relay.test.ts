/**
 * The README's "When there is no direct path": `causeway relay --admit-token-file TOKEN`, the
 * signaling service told about it with CAUSEWAY_RELAYS, and agents that take reservations on it
 * (their relayed addresses show in `causeway status --json`), all through bin/causeway. Which
 * path a pair takes behind real NAT is the NAT lab's subject (test/natlab/). Run inside
 * scripts/netns-run.sh.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { until } from '../until.ts'
import { freePort, run, start, stopAll } from './causeway.ts'

interface Status { peers: Array<{ name: string, state: string }>, relay?: { peer: string, addrs: string[] } }

let dir = ''
afterAll(async () => {
  stopAll()
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

describe('causeway relay, as the README shows it', () => {
  it('admits the network of a token; agents learn it from the signaling service and reserve on it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'causeway-smoke-relay-'))
    const sigPort = await freePort()
    const url = `http://127.0.0.1:${sigPort}`
    for (const args of [['--signaling', url], ['--name', 'site-a', '--out', 'site-a.token'], ['--name', 'site-b', '--out', 'site-b.token']]) {
      const tok = await run(['token', ...args], { cwd: dir })
      expect(tok.code, tok.stderr).toBe(0)
    }

    const relay = start(['relay', '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}/ws`, '--admit-token-file', join(dir, 'site-a.token')])
    const tcp = (await relay.waitFor(/relay listening on (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+)/))[1] ?? ''
    await relay.waitFor(/relay listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\//)

    const signaling = start(['signaling', '--listen', `127.0.0.1:${sigPort}`], { CAUSEWAY_RELAYS: tcp })
    await signaling.waitFor(/signaling listening on/)
    const statuses = [await freePort(), await freePort()]
    start(['agent', '--token-file', join(dir, 'site-a.token'), '--status', `127.0.0.1:${statuses[0]}`])
    start(['agent', '--token-file', join(dir, 'site-b.token'), '--status', `127.0.0.1:${statuses[1]}`])
    for (const [i, port] of statuses.entries()) {
      const reserved = (st: Status | undefined): boolean => st?.relay?.addrs.some(a => a.startsWith(`${tcp}/p2p-circuit`)) === true && st.peers.some(p => p.state === 'connected')
      await until(async () => reserved(await (await fetch(`http://127.0.0.1:${port}/status`)).json() as Status), 45_000,
        () => `agent ${i} reserved on ${tcp} and connected (relay: ${relay.output().slice(-1500)})`)
      const r = await run(['status', '--status-addr', `127.0.0.1:${port}`, '--json'])
      expect(r.code, r.stderr).toBe(0)
      const st = JSON.parse(r.stdout) as Status
      expect(reserved(st)).toBe(true)
      expect(st.relay?.peer).toMatch(/^12D3Koo/)
    }
  })
})
