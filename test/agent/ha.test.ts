/**
 * High availability with real processes (bin/causeway agent): two instances of site `east`
 * share one service under one agent token, two instances of `west` reach it through their
 * connect listeners, behind a balancer that stands in for a Kubernetes Service (ha-harness.ts).
 * A load of 200 requests/s runs for 60 s while
 * - one east instance is killed with SIGKILL (later started again, then the other drained and
 *   restarted): no request started later than the detection bound after the kill fails, both
 *   west instances stop sending to the dead one within that bound, and a long-lived connection
 *   on the surviving instance is not hurt;
 * - every instance of both sides is restarted with SIGTERM, one at a time (a rolling upgrade):
 *   not one request fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../../signaling/node/server.ts'
import { log, until } from './harness.ts'
import { Balancer, echoTarget, freePort, HaNetwork, holdConnection, runLoad, type AgentProc, type RequestResult } from './ha-harness.ts'

/** The documented bound from a kill to new streams avoiding the dead instance (keepalive: 1 s pings, silent 3 s = unresponsive), ms. */
const DETECTION_MS = 5000
const RATE = 200
const DURATION_MS = 60_000

describe('several agent instances per site under load', () => {
  let signaling: NodeSignaling
  let net: HaNetwork
  let target: Awaited<ReturnType<typeof echoTarget>>
  let lb: Balancer
  let east: AgentProc[]
  let west: AgentProc[]

  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
  const failures = (rs: RequestResult[]): RequestResult[] => rs.filter(r => !r.ok)
  const summary = (rs: RequestResult[]): string => `${rs.length} requests, ${failures(rs).length} failed: ${JSON.stringify(failures(rs).slice(0, 10))}`

  /** Waits until every west instance sees `n` ready east instances. */
  const eastReady = async (n: number): Promise<void> => { for (const w of west) await net.waitInstances(w, 'east', n) }
  /** Waits until `w` is ready (its /readyz) and sees both east instances. */
  const westReady = async (w: AgentProc): Promise<void> => {
    await net.waitInstances(w, 'east', 2)
    await until(async () => { try { return (await fetch(`http://127.0.0.1:${w.statusPort}/readyz`)).status === 200 } catch { return false } }, 20_000, 'west ready', 100)
  }

  beforeAll(async () => {
    signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}), log })
    net = await HaNetwork.create(signaling.url)
    target = await echoTarget()
    east = [
      await net.start('east', 'east-1', ['--share', `web=127.0.0.1:${target.port}`]),
      await net.start('east', 'east-2', ['--share', `web=127.0.0.1:${target.port}`]),
    ]
    const listeners = [await freePort(), await freePort()]
    west = [
      await net.start('west', 'west-1', ['--connect', `web@east=127.0.0.1:${listeners[0]!}`]),
      await net.start('west', 'west-2', ['--connect', `web@east=127.0.0.1:${listeners[1]!}`]),
    ]
    await eastReady(2)
    lb = new Balancer(west.map((w, i) => ({ port: listeners[i]!, statusPort: w.statusPort })))
    await lb.start()
    await until(() => lb.backends.every(b => b.ready), 20_000, 'both west instances ready')
  }, 90_000)

  afterAll(async () => {
    lb?.close()
    net?.killAll()
    target?.server.close()
    await signaling?.close()
  })

  it('SIGKILL of one east instance: no request fails after the detection bound, the other instance\'s connections carry on', { timeout: 150_000 }, async () => {
    const held = holdConnection(lb.port)
    // which east instance carries it: the one a west instance counts a stream to
    const carrier = await until(async () => {
      for (const w of west) {
        const p = (await net.status(w))?.peers.find(x => x.name === 'east' && x.streams > 0)
        if (p?.instance !== undefined) return p.instance
      }
      return undefined
    }, 10_000, 'the held connection to be up')
    const victim = east.find(e => e.instance !== carrier)!
    let killAt = 0
    let heldThrough: { closed: string | undefined, maxGapMs: number, ticks: number } | undefined
    const detected: number[] = []
    const results = await runLoad(lb.port, RATE, DURATION_MS, async () => {
      await sleep(10_000)
      killAt = Date.now()
      expect(await net.stop(victim, 'SIGKILL')).toBeNull()
      for (const w of west) {
        await until(async () => {
          const s = await net.status(w)
          return s !== undefined && !s.peers.some(p => p.name === 'east' && p.instance === victim.instance && p.responsive && p.state === 'connected')
        }, DETECTION_MS + 5000, `${w.instance} to stop using ${victim.instance}${net.tail()}`, 100)
        detected.push(Date.now() - killAt)
      }
      await sleep(10_000)
      const again = await net.restart(victim)
      east[east.indexOf(victim)] = again
      await eastReady(2)
      await sleep(5000)
      // the long-lived connection on the instance that was not killed carried on throughout
      heldThrough = { closed: held.closed(), maxGapMs: held.maxGapMs(), ticks: held.ticks() }
      held.end()
      // and the other one goes away gracefully and comes back
      const other = east.find(e => e !== again)!
      expect(await net.stop(other, 'SIGTERM')).toBe(0)
      east[east.indexOf(other)] = await net.restart(other)
      await eastReady(2)
    })
    const late = failures(results).filter(r => r.start < killAt - 2000 || r.start > killAt + DETECTION_MS)
    log.info({ detected, failures: failures(results).length }, 'kill run')
    expect(late, `${summary(results)}${net.tail()}`).toEqual([])
    expect(Math.max(...detected)).toBeLessThanOrEqual(DETECTION_MS)
    expect(heldThrough?.closed, 'the long-lived connection').toBeUndefined()
    expect(heldThrough?.maxGapMs ?? Infinity).toBeLessThan(2000)
    expect(heldThrough?.ticks ?? 0).toBeGreaterThan(200)
    expect(results.length).toBe(RATE * DURATION_MS / 1000)
  })

  it('a rolling restart of every instance, one at a time, under load: zero failed requests', { timeout: 150_000 }, async () => {
    const results = await runLoad(lb.port, RATE, DURATION_MS, async () => {
      await sleep(3000)
      for (const side of [east, west]) {
        for (let i = 0; i < side.length; i++) {
          const old = side[i]!
          expect(await net.stop(old, 'SIGTERM')).toBe(0)
          side[i] = await net.restart(old)
          if (side === east) await eastReady(2); else await westReady(side[i]!)
          await until(() => lb.backends.every(b => b.ready), 20_000, 'balancer sees both west instances', 100)
          await sleep(2000)
        }
      }
    })
    expect(failures(results), `${summary(results)}${net.tail()}`).toEqual([])
    expect(results.length).toBe(RATE * DURATION_MS / 1000)
  })
})
