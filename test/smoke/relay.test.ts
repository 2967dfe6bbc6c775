/**
 * The README's "When there is no direct path": `causeway relay --admit-token-file TOKEN`, the
 * signaling service told about it with CAUSEWAY_RELAYS, and agents that take reservations on it
 * (their relayed addresses show in `causeway status --json`), all through bin/causeway. The
 * relay listens on loopback here, an internal address: the agents allow it with
 * `--ice-allow 127.0.0.0/8` (without it they refuse the service's relay, agent/ice-policy.ts). Which
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
/** The relay's command line (same port and identity after a restart), its TCP address, the agents' status ports. */
let relayArgs: string[] = []
let relay: ReturnType<typeof start> | undefined
let tcp = ''
let statuses: number[] = []
const reservedOn = (st: Status | undefined, addr: string): boolean => st?.relay?.addrs.some(a => a.startsWith(`${addr}/p2p-circuit`)) === true
const statusOf = async (port: number): Promise<Status> => await (await fetch(`http://127.0.0.1:${port}/status`)).json() as Status
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

    relayArgs = ['relay', '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}/ws`, '--admit-token-file', join(dir, 'site-a.token'), '--identity-file', join(dir, 'relay.key')]
    const first = relay = start(relayArgs)
    tcp = (await first.waitFor(/relay listening on (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+)/))[1] ?? ''
    await first.waitFor(/relay listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\//)

    const signaling = start(['signaling', '--listen', `127.0.0.1:${sigPort}`], { CAUSEWAY_RELAYS: tcp })
    await signaling.waitFor(/signaling listening on/)
    statuses = [await freePort(), await freePort()]
    start(['agent', '--token-file', join(dir, 'site-a.token'), '--status', `127.0.0.1:${statuses[0]}`, '--ice-allow', '127.0.0.0/8'])
    start(['agent', '--token-file', join(dir, 'site-b.token'), '--status', `127.0.0.1:${statuses[1]}`, '--ice-allow', '127.0.0.0/8'])
    for (const [i, port] of statuses.entries()) {
      const reserved = (st: Status | undefined): boolean => reservedOn(st, tcp) && st?.peers.some(p => p.state === 'connected') === true
      await until(async () => reserved(await statusOf(port)), 45_000,
        () => `agent ${i} reserved on ${tcp} and connected (relay: ${first.output().slice(-1500)})`)
      const r = await run(['status', '--status-addr', `127.0.0.1:${port}`, '--json'])
      expect(r.code, r.stderr).toBe(0)
      const st = JSON.parse(r.stdout) as Status
      expect(reserved(st)).toBe(true)
      expect(st.relay?.peer).toMatch(/^12D3Koo/)
    }
  })

  it('agents reserve again within 10 s of a killed relay listening again (same port and identity)', async () => {
    if (relay === undefined) throw new Error('the first test did not start the relay')
    relay.child.kill('SIGKILL')
    await relay.stop()
    for (const port of statuses) await until(async () => !reservedOn(await statusOf(port), tcp), 15_000, 'the reservation to be seen lost')
    const again = relay = start(relayArgs)
    await again.waitFor(/relay listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\//)
    const listening = Date.now()
    for (const port of statuses) await until(async () => reservedOn(await statusOf(port), tcp), 10_000, () => `agent at ${port} reserved again on ${tcp} (relay: ${again.output().slice(-1500)})`)
    console.log(`smoke relay: both agents reserved again ${Date.now() - listening} ms after the restarted relay listened`)
  })
})
