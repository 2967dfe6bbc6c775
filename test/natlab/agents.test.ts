/**
 * Real agents through real NAT: `./bin/causeway agent` processes in the LAN namespaces of one
 * lab (coturn, signaling and the libp2p relay on the fake Internet), the site routers switched
 * between NAT types between cases. Every case asserts the path from the agents' status API
 * (`GET /status` peers[].path) and moves bytes through a tunnel, checked by hash. The agents
 * run the default engine choice (`auto`, or CAUSEWAY_ENGINE): with `auto` each case also
 * checks the engine picked (node-datachannel where UDP reaches the STUN/TURN servers, @roamhq/wrtc
 * where only TURN over TCP can work), so the two engines meet across every NAT pair:
 * - eim/eim: direct (server-reflexive pair), 32 MiB intact; an agent with a wrong token gets
 *   neither a peer nor a relay reservation;
 * - udpblock/eim and tcp443/eim (TURN over TCP 443, relay over WebSockets on 443): connected;
 * - symmetric/symmetric with TURN offered: turn;
 * - symmetric/symmetric without TURN: relay; the relay killed mid-transfer resets the relayed
 *   tunnel cleanly, reservations return within 10 s of the relay's restart and new tunnels
 *   work; once the routers allow hole punching the pair flips to direct for new streams, and
 *   killing the relay then leaves the direct tunnel untouched.
 * Needs root (skipped with the reason otherwise).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { deriveRelayKey } from '../../protocol/keys.ts'
import { encodeToken, newSecret } from '../../protocol/token.ts'
import { admitKeyFromRelayKey } from '../../protocol/relay-admission.ts'
import { startAgent, startEcho, startXfer, waitPath, waitUntil, xfer, type LabAgent } from './agent-helpers.ts'
import { cleanupStale, Lab, labAvailability, NAT_TYPES, type LabProcess } from './lab.ts'
import { netcheck } from './netcheck-helpers.ts'
import { ROOT } from './relay-helpers.ts'
import { prerequisite } from '../prereq.ts'

const availability = await labAvailability()
if (!availability.ok) prerequisite(`NAT lab: ${availability.reason}`, false)
if (!availability.ok) console.warn(`\n!!!!!!!! NAT LAB (agents) NOT RUN: ${availability.reason} !!!!!!!!\n`)
else await cleanupStale()
const labDescribe = availability.ok ? describe : describe.skip
if (!availability.ok) it.skip(`NAT lab agents SKIPPED — ${availability.reason}`, () => {})

const MiB = 1024 * 1024
/** The engine each agent should pick by itself when the choice is `auto` (the default). */
const AUTO = (process.env.CAUSEWAY_ENGINE ?? 'auto') === 'auto'
async function expectEngine (x: LabAgent, peer: string, engine: string): Promise<void> {
  if (!AUTO) return
  const s = await x.status()
  expect({ agent: x.name, picked: s?.engine?.engine, session: s?.peers.find(p => p.name === peer)?.engine }).toEqual({ agent: x.name, picked: engine, session: engine })
}
/** Fast fallback and retries for the lab (defaults: 8 s and 20 s). */
const TIMING = ['--direct-timeout', '4000', '--connect-timeout', '8000']

labDescribe('agents through real NAT', () => {
  const lab = new Lab({ a: 'eim', b: 'eim' })
  const secret = newSecret()
  let token = ''
  let admitKey = ''
  let relay: { proc: LabProcess, addrs: string[] }
  let signaling: { proc: LabProcess, url: string }
  const agents: LabAgent[] = []

  const pairUp = (): [LabAgent, LabAgent] => {
    const a = startAgent(lab, 'a', { name: 'a', token, connectTo: 'b', extra: TIMING })
    const b = startAgent(lab, 'b', { name: 'b', token, share: true, extra: TIMING })
    agents.push(a, b)
    return [a, b]
  }
  const killRelay = async (): Promise<void> => {
    const child = relay.proc.child
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
  }
  const reserved = async (x: LabAgent): Promise<true | undefined> => ((await x.status())?.relay?.addrs.length ?? 0) > 0 ? true : undefined

  beforeAll(async () => {
    const t = Date.now()
    await lab.setup()
    await lab.startTurn()
    admitKey = await admitKeyFromRelayKey(await deriveRelayKey(secret))
    relay = await lab.startRelay([admitKey])
    signaling = await lab.startSignaling(relay.addrs, { turn: true })
    token = encodeToken({ kind: 'member', signaling: signaling.url, secret })
    await startEcho(lab, 'b')
    console.log(`natlab agents: lab up in ${Date.now() - t} ms`)
  }, 90_000)
  afterEach(async () => { await Promise.all(agents.splice(0).map(async x => { await x.kill() })) })
  afterAll(async () => { await lab.teardown() }, 60_000)

  it('netcheck in each kind of site: its JSON matches what the lab built; signaling down: says so, exits non-zero', async () => {
    const allTurn = { eim: 'turn', symmetric: 'turn', udpblock: 'turn', tcp443: 'turn' }
    await signaling.proc.kill() // this case only: TURN over TLS offered too (agents' wrtc refuses the lab certificate)
    signaling = await lab.startSignaling(relay.addrs, { turn: true, turns: true })
    for (const nat of NAT_TYPES) {
      await lab.setNat('a', nat)
      const { code, report: r, ms } = await netcheck(lab, 'a', token)
      console.log(`natlab netcheck ${nat}: exit ${code} in ${ms} ms (probes ${r.tookMs} ms): ${r.verdict}`)
      expect(code).toBe(0)
      expect(r).toMatchObject({ ok: true, site: nat, signaling: { reachable: true, ice: true } })
      const udp = nat === 'eim' || nat === 'symmetric'
      expect(r.udp.reachable).toBe(udp)
      expect(r.nat.mapping).toBe(nat === 'eim' ? 'endpoint-independent' : nat === 'symmetric' ? 'endpoint-dependent' : 'unknown')
      if (udp) expect(r.nat).toMatchObject({ publicAddress: expect.stringMatching(/^203\.0\.113\.2:\d+$/), stable: true, hairpinning: false }) // the lab's routers do not hairpin
      else expect(r.nat).toEqual({ mapping: 'unknown', publicAddress: null, stable: null, hairpinning: null })
      // TURN: a real allocation per URL, where the site's firewall lets it through
      const allocated = Object.fromEntries(r.turn.map(t => [t.url.replace(/^turn:198\.51\.100\.1:/, ''), t.allocated]))
      expect(allocated).toEqual({ '3478?transport=udp': udp, '3478?transport=tcp': nat !== 'tcp443', '443?transport=tcp': true, 'turns:198.51.100.1:5349?transport=tcp': nat !== 'tcp443' })
      expect(r.turn.map(t => t.transport)).toEqual(['udp', 'tcp', 'tcp', 'tls'])
      const reserved = Object.fromEntries(r.relays.map(x => [x.transport, x.reserved]))
      expect(reserved).toEqual({ tcp: nat !== 'tcp443', ws: true })
      expect(r.expect).toEqual(nat === 'eim' ? { ...allTurn, eim: 'direct' } : allTurn)
    }
    await lab.setNat('a', 'eim')
    await signaling.proc.kill()
    try {
      const down = await netcheck(lab, 'a', token)
      expect(down.code).toBe(1)
      expect(down.report).toMatchObject({ ok: false, site: 'offline', signaling: { reachable: false } })
      expect(down.report.verdict).toMatch(/^NO PATH: signaling service unreachable/)
      const text = await lab.exec('a', ['env', `CAUSEWAY_TOKEN=${token}`, `${ROOT}bin/causeway`, 'netcheck'], 30_000)
      expect(text.code).toBe(1)
      expect(text.stdout.split('\n')[0]).toMatch(/^NO PATH: signaling service unreachable \(http:\/\/198\.51\.100\.3:443/)
    } finally {
      signaling = await lab.startSignaling(relay.addrs, { turn: true })
    }
  }, 120_000)

  it('eim/eim: direct (server-reflexive), 32 MiB intact; a wrong token gets no peer and no reservation', async () => {
    const t = Date.now()
    const [a, b] = pairUp()
    const mallory = startAgent(lab, 'b', { name: 'mallory', token: encodeToken({ kind: 'member', signaling: signaling.url, secret: newSecret() }), statusPort: 7778, extra: TIMING })
    agents.push(mallory)
    const pa = await waitPath(a, 'b', ['direct'], 30_000)
    const pb = await waitPath(b, 'a', ['direct'], 10_000)
    console.log(`natlab agents eim/eim: direct after ${Date.now() - t} ms: ${pa.value.pair ?? '?'} | ${pb.value.pair ?? '?'}`)
    expect(`${pa.value.pair ?? ''} ${pb.value.pair ?? ''}`).toMatch(/srflx|prflx/)
    await expectEngine(a, 'b', 'datachannel')
    await expectEngine(b, 'a', 'datachannel')
    const r = await xfer(lab, 'a', 32 * MiB, 60_000)
    console.log(`natlab agents eim/eim: 32 MiB echoed through the tunnel in ${r.ms} ms (${(64 / (r.ms / 1000)).toFixed(1)} MiB/s both ways)`)
    expect(r).toMatchObject({ ok: true, intact: true, got: 32 * MiB })
    const after = (await a.status())?.peers.find(p => p.name === 'b')
    expect(after?.bytesOut).toBeGreaterThanOrEqual(32 * MiB)
    expect(after?.bytesIn).toBeGreaterThanOrEqual(32 * MiB)
    // mallory: another network's token: its own room (no peer) and the relay refuses it
    const refused = await waitUntil(async () => {
      const s = await mallory.status()
      return s?.relay?.relays.some(x => /UNAUTHORIZED|refused/i.test(x.lastError ?? '')) === true ? s : undefined
    }, 15_000, 'the relay to refuse mallory')
    expect(refused.value.peers).toEqual([])
    expect(refused.value.relay?.addrs).toEqual([])
    expect((await a.status())?.peers.map(p => p.name)).toEqual(['b'])
    expect((await b.status())?.peers.map(p => p.name)).toEqual(['a'])
    // The netcheck each agent ran at start, in /status (relays from its own relay client)
    const nc = (await waitUntil(async () => (await a.status())?.netcheck ?? undefined, 15_000, "a's netcheck")).value
    expect(nc).toMatchObject({ ok: true, site: 'eim', udp: true, expect: { eim: 'direct', symmetric: 'turn', udpblock: 'turn', tcp443: 'turn' } })
    expect(nc.relays.some(r => r.reserved)).toBe(true)
  }, 120_000)

  for (const nat of ['udpblock', 'tcp443'] as const) {
    it(`${nat}/eim: connects (TURN over TCP / relay over WebSockets on 443), 8 MiB intact`, async () => {
      await lab.setNat('a', nat)
      const t = Date.now()
      const [a, b] = pairUp()
      const pa = await waitPath(a, 'b', ['turn', 'relay'], 45_000)
      const pb = await waitPath(b, 'a', ['turn', 'relay'], 15_000)
      console.log(`natlab agents ${nat}/eim: ${pa.value.path} after ${Date.now() - t} ms (${pa.value.pair ?? '?'}); b sees ${pb.value.path}; engines ${pa.value.engine ?? '?'} / ${pb.value.engine ?? '?'}`)
      // a reaches its STUN/TURN servers only over TCP: wrtc (TURN over TCP); b keeps node-datachannel
      if (pa.value.path === 'turn') {
        await expectEngine(a, 'b', 'wrtc')
        await expectEngine(b, 'a', 'datachannel')
      }
      const r = await xfer(lab, 'a', 8 * MiB, 60_000)
      console.log(`natlab agents ${nat}/eim: 8 MiB echoed in ${r.ms} ms over ${((await a.status())?.peers[0]?.path) ?? '?'}`)
      expect(r).toMatchObject({ ok: true, intact: true })
      const nc = (await waitUntil(async () => (await a.status())?.netcheck ?? undefined, 15_000, "a's netcheck")).value
      expect(nc).toMatchObject({ ok: true, site: nat, udp: false })
    }, 120_000)
  }

  it('symmetric/symmetric with TURN offered: turn, 8 MiB intact', async () => {
    await lab.setNat('a', 'symmetric')
    await lab.setNat('b', 'symmetric')
    const t = Date.now()
    const [a, b] = pairUp()
    const pa = await waitPath(a, 'b', ['turn'], 45_000)
    await waitPath(b, 'a', ['turn'], 15_000)
    console.log(`natlab agents symmetric/symmetric + TURN: turn after ${Date.now() - t} ms (${pa.value.pair ?? '?'})`)
    await expectEngine(a, 'b', 'datachannel')
    await expectEngine(b, 'a', 'datachannel')
    const r = await xfer(lab, 'a', 8 * MiB, 60_000)
    console.log(`natlab agents symmetric/symmetric + TURN: 8 MiB echoed in ${r.ms} ms`)
    expect(r).toMatchObject({ ok: true, intact: true })
  }, 120_000)

  it('symmetric/symmetric without TURN: relay; relay death resets relayed tunnels, reservations return, then direct takes over', async () => {
    await lab.setNat('a', 'symmetric')
    await lab.setNat('b', 'symmetric')
    await signaling.proc.kill()
    signaling = await lab.startSignaling(relay.addrs, { turn: false })
    const t = Date.now()
    const [a, b] = pairUp()
    const pa = await waitPath(a, 'b', ['relay'], 45_000)
    await waitPath(b, 'a', ['relay'], 15_000)
    console.log(`natlab agents symmetric/symmetric, STUN only: relay after ${Date.now() - t} ms (${pa.value.pair ?? '?'})`)
    expect(await a.metrics()).toMatch(/causeway_agent_peer_connected\{peer="b",instance="[^"]*",path="relay"\} 1/)
    const r1 = await xfer(lab, 'a', 8 * MiB, 60_000)
    console.log(`natlab agents relay: 8 MiB echoed in ${r1.ms} ms`)
    expect(r1).toMatchObject({ ok: true, intact: true })
    expect((await b.status())?.peers.find(p => p.name === 'a')?.bytesIn).toBeGreaterThanOrEqual(8 * MiB)

    // the relay dies under a relayed tunnel: a clean reset, then reservations come back
    const slow = startXfer(lab, 'a', 64 * MiB, 512, 120_000)
    await waitUntil(async () => ((await a.status())?.peers[0]?.bytesOut ?? 0) > 8 * MiB + 256 * 1024 ? true : undefined, 15_000, 'the slow relayed transfer to flow')
    const killedAt = Date.now()
    await killRelay()
    const cut = await slow.result()
    console.log(`natlab agents relay death: relayed tunnel ended ${Date.now() - killedAt} ms later: ${JSON.stringify(cut)}`)
    expect(cut.ok).toBe(false)
    expect(cut.error).toMatch(/ECONNRESET|CLOSED/)
    relay = await lab.startRelay([admitKey])
    const back = await waitUntil(async () => (await reserved(a)) === true && (await reserved(b)) === true ? true : undefined, 10_000, 'reservations after the relay restart')
    console.log(`natlab agents relay restart: reservations back ${back.ms} ms after the relay listened`)
    await waitPath(a, 'b', ['relay'], 10_000)
    const r2 = await xfer(lab, 'a', 2 * MiB, 30_000)
    expect(r2).toMatchObject({ ok: true, intact: true })

    // hole punching becomes possible: the retried session comes up direct; new streams use it,
    // a relayed stream in flight stays on the relay (and dies with it), the direct one does not
    const relayed = startXfer(lab, 'a', 64 * MiB, 512, 150_000)
    await new Promise(resolve => setTimeout(resolve, 1000))
    await lab.setNat('a', 'eim')
    await lab.setNat('b', 'eim')
    const flipped = await waitPath(a, 'b', ['direct'], 40_000)
    console.log(`natlab agents: flipped to direct ${flipped.ms} ms after the routers allowed it (${flipped.value.pair ?? '?'})`)
    expect(relayed.proc.child.exitCode).toBeNull()
    const direct = startXfer(lab, 'a', 6 * MiB, 1024, 60_000)
    await new Promise(resolve => setTimeout(resolve, 1500))
    await killRelay()
    const [rRelayed, rDirect] = await Promise.all([relayed.result(), direct.result()])
    console.log(`natlab agents relay death after the flip: relayed ${JSON.stringify(rRelayed)} direct ${JSON.stringify(rDirect)}`)
    expect(rRelayed.ok).toBe(false)
    expect(rDirect).toMatchObject({ ok: true, intact: true })
    expect((await a.status())?.peers.find(p => p.name === 'b')?.path).toBe('direct')
  }, 200_000)
})
