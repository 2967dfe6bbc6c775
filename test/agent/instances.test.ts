/**
 * Several instances of one site (agent/instances.ts, peer/mesh.ts), in-process on loopback:
 * two `east` agents run with the same agent token, `west` reaches east's share through one
 * connect listener. West keeps a session to each instance, the instances know each other as
 * siblings without a session, concurrent streams spread over both, a draining instance gets no
 * new stream while its running ones finish, the same instance restarted replaces its old self,
 * and a claimant with another key under the name east is refused and displaces no instance.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MemberToken } from '../../protocol/token.ts'
import { Mesh } from '../../peer/mesh.ts'
import type { Agent } from '../../agent/agent.ts'
import { createPeerConnection } from '../../agent/wrtc.ts'
import { listen, log, startNet, until, type Net } from './harness.ts'

/** A target that answers each connection with the name of the instance that dialed it (its own label), and counts. */
async function labelled (label: string): Promise<{ server: Server, port: number, count: () => number, hold: Set<Socket> }> {
  let n = 0
  const hold = new Set<Socket>()
  const server = createServer((s) => {
    n++
    s.on('error', () => {})
    s.once('data', (d: Buffer) => {
      if (d.toString() === 'hold') { hold.add(s); s.write(label); s.on('close', () => hold.delete(s)); return }
      s.end(label)
    })
  })
  return { server, port: await listen(server), count: () => n, hold }
}

/** One request through `port`: sends `what`, returns what came back (the instance label) or the error. */
async function request (port: number, what = 'hi', timeoutMs = 15_000): Promise<string> {
  return await new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    const t = setTimeout(() => { sock.destroy(); resolve('error: timed out') }, timeoutMs)
    sock.on('connect', () => sock.write(what))
    sock.on('data', (d: Buffer) => { chunks.push(d); if (what === 'hold') { clearTimeout(t); resolve(Buffer.concat(chunks).toString()) } })
    sock.on('error', (err) => { clearTimeout(t); resolve(`error: ${err.message}`) })
    sock.on('end', () => { clearTimeout(t); resolve(Buffer.concat(chunks).toString()) })
  })
}

describe('instances of one site', () => {
  let net: Net
  let eastToken: MemberToken
  let e1: Agent
  let e2: Agent
  let west: Agent
  /** The instance left after the drain test. */
  let survivor: Agent
  const targets: Array<Awaited<ReturnType<typeof labelled>>> = []

  beforeAll(async () => {
    net = await startNet()
    eastToken = await net.issue('east')
    for (const label of ['e1', 'e2']) targets.push(await labelled(label))
    e1 = await net.agent('east', { token: eastToken, instance: 'east-1', shares: [{ name: 'web', host: '127.0.0.1', port: targets[0]!.port }] })
    e2 = await net.agent('east', { token: eastToken, instance: 'east-2', shares: [{ name: 'web', host: '127.0.0.1', port: targets[1]!.port }] })
    west = await net.agent('west', { connects: [{ share: 'web', peer: 'east', host: '127.0.0.1', port: 0 }] })
    await until(() => west.instancesOf('east').filter(p => p.session?.state === 'connected' && west.catalogs.has(p.id)).length === 2, 30_000, 'west connected to both instances')
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    for (const t of targets) t.server.close()
  })

  it('west keeps a session to each instance; the instances are siblings without a session', async () => {
    const east = west.status().peers.filter(p => p.name === 'east')
    expect(east.map(p => p.instance).sort()).toEqual(['east-1', 'east-2'])
    expect(east.every(p => p.state === 'connected' && p.responsive && !p.draining)).toBe(true)
    await until(() => e1.status().siblings.some(s => s.instance === 'east-2') && e2.status().siblings.some(s => s.instance === 'east-1'), 10_000, 'siblings known')
    expect(e1.status().peers.filter(p => p.name === 'east')).toHaveLength(0)
    expect(e1.status().instance).toBe('east-1')
  })

  it('concurrent streams spread over both instances (least loaded first)', async () => {
    const port = west.listeners[0]!.port
    const held = await Promise.all(Array.from({ length: 8 }, async () => await request(port, 'hold')))
    expect(held.filter(h => h === 'e1')).toHaveLength(4)
    expect(held.filter(h => h === 'e2')).toHaveLength(4)
    for (const t of targets) for (const s of t.hold) s.end()
    await until(() => west.instancesOf('east').every(p => west.tunnels.counter(p.id).streams === 0), 10_000, 'held streams closed')
  })

  it('a draining instance gets no new stream; its running stream finishes; requests never fail', async () => {
    const port = west.listeners[0]!.port
    const running = await request(port, 'hold')
    const onDraining = running === 'e1' ? e1 : e2
    const other = running === 'e1' ? 'e2' : 'e1'
    const results: string[] = []
    let stop = false
    const loop = (async () => { for (let i = 0; i < 400 && !stop; i++) results.push(await request(port)) })()
    await until(() => results.length >= 5, 10_000, 'requests flowing')
    const stopped = onDraining.stop()
    await until(() => west.instancesOf('east').some(p => p.draining === true), 5000, 'west to learn of the drain')
    const mark = results.length
    // its stream is still up: end it, so the drain completes early
    const [held] = [...targets[running === 'e1' ? 0 : 1]!.hold]
    expect(held?.destroyed).toBe(false)
    await until(() => results.length >= mark + 10, 10_000, 'requests after the drain')
    held?.end()
    await stopped
    stop = true
    await loop
    net.agents.splice(net.agents.indexOf(onDraining), 1)
    survivor = onDraining === e1 ? e2 : e1
    expect(results.filter(r => r.startsWith('error'))).toEqual([])
    expect(results.slice(mark).every(r => r === other)).toBe(true)
  }, 60_000)

  it('the same instance restarted (a new process under its name) replaces its old self', async () => {
    await until(() => west.instancesOf('east').length === 1, 10_000, 'the drained instance gone')
    const again = await net.agent('east', { token: eastToken, instance: survivor.instance, shares: [{ name: 'web', host: '127.0.0.1', port: targets[0]!.port }] })
    await until(() => west.instancesOf('east').length === 1 && west.instancesOf('east')[0]!.id === again.mesh.id, 20_000, 'old incarnation replaced')
    expect(await request(west.listeners[0]!.port)).toBe('e1')

  }, 30_000)

  it('a member claiming the name east with its own key is refused and displaces no instance', async () => {
    const before = west.instancesOf('east').map(p => p.id).sort()
    const refused: string[] = []
    west.mesh.events.on('refused', (from, code) => { refused.push(`${from}:${code}`) })
    const mallory = new Mesh({ token: await net.issue('mallory'), name: 'east', instance: 'east-9', createPeerConnection, iceServers: () => [], log: log.child({ agent: 'mallory' }), connectTimeoutMs: 5000 })
    await mallory.start()
    try {
      await until(() => refused.some(r => r.startsWith(`${mallory.id}:`)), 10_000, 'west to refuse the claimant')
      expect(refused.filter(r => r.startsWith(`${mallory.id}:`))).toContain(`${mallory.id}:IDENTITY_REJECTED`)
      expect(west.instancesOf('east').map(p => p.id).sort()).toEqual(before)
      expect(await request(west.listeners[0]!.port)).toMatch(/^e[12]$/)
    } finally {
      await mallory.close()
    }
  }, 30_000)
})
