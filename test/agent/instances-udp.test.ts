/**
 * A UDP connect follows its site's instances (Agent.moveWhenUnusable): two `east` instances
 * export one UDP share, each target answering with its instance's label; `west` sends a
 * datagram every 50 ms through its UDP connect. When the instance that carries the flow drains,
 * the channel moves to the other instance and the answers come from there within a second.
 */
import { createSocket, type Socket } from 'node:dgram'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { startNet, until, type Net } from './harness.ts'

async function udpLabel (label: string): Promise<Socket> {
  const s = createSocket('udp4')
  s.on('message', (msg, from) => { s.send(Buffer.concat([Buffer.from(`${label}:`), msg]), from.port, from.address) })
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
  return s
}

describe('a UDP connect across the instances of a site', () => {
  let net: Net
  let west: Agent
  const instances: Agent[] = []
  const targets: Socket[] = []

  beforeAll(async () => {
    net = await startNet()
    const token = await net.issue('east')
    for (const label of ['e1', 'e2']) {
      const t = await udpLabel(label)
      targets.push(t)
      instances.push(await net.agent('east', { token, instance: label, shares: [{ name: 'echo', host: '127.0.0.1', port: t.address().port, protocol: 'udp' }] }))
    }
    west = await net.agent('west', { connects: [{ share: 'echo', peer: 'east', host: '127.0.0.1', port: 0, protocol: 'udp' }] })
    await until(() => west.instancesOf('east').filter(p => p.session?.state === 'connected' && west.catalogs.has(p.id)).length === 2, 30_000, 'both instances')
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    for (const t of targets) t.close()
  })

  it('moves to the other instance when the one carrying it drains', async () => {
    const client = createSocket('udp4')
    const answers: Array<{ at: number, label: string }> = []
    client.on('message', (m) => { answers.push({ at: Date.now(), label: m.toString().split(':')[0] ?? '' }) })
    await new Promise<void>(resolve => client.bind(0, '127.0.0.1', resolve))
    const port = west.listeners[0]!.port
    const timer = setInterval(() => client.send('ping', port, '127.0.0.1'), 50)
    try {
      const first = await until(() => answers[0]?.label, 10_000, 'a first answer')
      const draining = instances.find(a => a.instance === first)!
      const other = first === 'e1' ? 'e2' : 'e1'
      const stopped = draining.stop()
      const since = Date.now()
      const moved = await until(() => answers.find(a => a.at > since && a.label === other), 10_000, 'answers from the other instance')
      console.log(`udp: first answer from ${other} ${moved.at - since} ms after ${first} began draining`)
      expect(moved.at - since).toBeLessThan(2000)
      await stopped
      net.agents.splice(net.agents.indexOf(draining), 1)
      const after = Date.now()
      await until(() => answers.filter(a => a.at > after).length >= 10, 5000, 'answers keep coming')
      expect(answers.filter(a => a.at > after).every(a => a.label === other)).toBe(true)
    } finally {
      clearInterval(timer)
      client.close()
    }
  }, 60_000)
})
