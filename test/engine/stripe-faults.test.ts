/**
 * Striped streams when things go wrong (in-process agents, real node-datachannel
 * associations on loopback):
 * - a peer that sends lane chunks past the credit it was given (after holding a window's worth
 *   out of order) gets the stream reset with FLOW_CONTROL_VIOLATION; what it floods afterwards
 *   on the lane is dropped, and the receiver's memory stays bounded;
 * - one association failing mid-transfer (its peer connection closed, as when it fails alone)
 *   resets the striped streams that sent over it, cleanly: the client sees a TCP reset, never
 *   a short or corrupted stream; the agents release everything and carry the next stream on the
 *   associations left. (The documented choice: bytes lost with an association are not
 *   retransmitted over the others, protocol/peer.ts.)
 */
import { createServer, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { encodeLane, FROM_OPENER } from '../../agent/tunnel/stripe.ts'
import { whenOpen } from '../../peer/channel.ts'
import { LANE_LABEL, STREAM_INITIAL_WINDOW } from '../../protocol/peer.ts'
import { exchange, hashServer, listen, startNet, until, type Net, associationsTo, pinRtt } from '../agent/harness.ts'

describe('striped streams: a hostile sender', () => {
  let net: Net
  let exporter: Agent
  let attacker: Agent
  const held: Socket[] = []

  beforeAll(async () => {
    const hold = createServer({ allowHalfOpen: true }, (s) => { s.pause(); held.push(s); s.on('error', () => {}) })
    const holdPort = await listen(hold)
    net = await startNet()
    exporter = await net.agent('exporter', { engine: 'datachannel', shares: [{ name: 'hold', host: '127.0.0.1', port: holdPort }] })
    attacker = await net.agent('attacker', { engine: 'datachannel' })
    await attacker.peerByName('exporter')
    await until(() => exporter.status().peers.some(p => p.name === 'attacker' && p.state === 'connected'), 20_000, 'connected')
  }, 60_000)

  afterAll(async () => {
    for (const s of held) s.destroy()
    await net?.close()
  })

  it('a lane chunk past the window resets the stream with FLOW_CONTROL_VIOLATION; the flood after it is dropped; memory stays bounded', async () => {
    const session = (await attacker.peerByName('exporter')).session!
    const dc = session.pc.createDataChannel('tcp:hold', { ordered: true })
    dc.binaryType = 'arraybuffer'
    let rst: string | undefined
    const ok = new Promise<{ v?: number, id?: number }>((resolve, reject) => {
      dc.onmessage = (ev: MessageEvent) => {
        if (typeof ev.data !== 'string') return
        const m = JSON.parse(ev.data) as { t: string, code?: string, v?: number, id?: number }
        if (m.t === 'ok') resolve(m)
        else if (m.t === 'rst') rst = m.code
        else reject(new Error(m.code))
      }
    })
    await whenOpen(dc)
    const answer = await ok
    // the attacker is an agent with the cap: the exporter offered a version-2 stream
    expect(answer.v).toBe(2)
    const id = answer.id!
    const lane = session.pc.createDataChannel(LANE_LABEL, { ordered: true })
    await whenOpen(lane)
    const chunk = new Uint8Array(64 << 10).fill(7)
    const send = async (offset: number): Promise<void> => {
      for (let i = 0; i < 1000 && lane.bufferedAmount > (4 << 20); i++) await new Promise(resolve => setTimeout(resolve, 5))
      lane.send(encodeLane(FROM_OPENER, id, offset, chunk))
    }
    const rss0 = process.memoryUsage().rss
    let rssMax = rss0
    // a window's worth held out of order (offset 0 never comes), within the credit
    for (let off = chunk.length; off + chunk.length <= STREAM_INITIAL_WINDOW; off += chunk.length) await send(off)
    expect(exporter.tunnels.totals.flowViolations).toBe(0)
    // past the credit
    await send(STREAM_INITIAL_WINDOW)
    await until(() => exporter.tunnels.totals.flowViolations === 1, 20_000, 'the exporter to detect the violation')
    await until(() => rst !== undefined || dc.readyState === 'closed', 20_000, 'the stream to be reset')
    if (rst !== undefined) expect(rst).toBe('FLOW_CONTROL_VIOLATION')
    // 256 MiB more on the lane for the stream that is gone: dropped, not held
    const deadline = Date.now() + 60_000
    for (let i = 0; i < 4096 && lane.readyState === 'open' && Date.now() < deadline; i++) {
      await send(STREAM_INITIAL_WINDOW + (i + 1) * chunk.length)
      if ((i & 31) === 0) { rssMax = Math.max(rssMax, process.memoryUsage().rss); await new Promise(resolve => setImmediate(resolve)) }
    }
    await new Promise(resolve => setTimeout(resolve, 500))
    rssMax = Math.max(rssMax, process.memoryUsage().rss)
    expect(exporter.tunnels.totals.flowViolations).toBe(1)
    expect(rssMax - rss0).toBeLessThan(96 << 20)
    await until(() => exporter.status().peers.find(p => p.name === 'attacker')?.streams === 0, 10_000, 'streams released')
    lane.close()
  }, 120_000)
})

describe('striped streams: an association fails mid-transfer', () => {
  let net: Net
  let a: Agent
  let b: Agent
  let target: Awaited<ReturnType<typeof hashServer>>

  beforeAll(async () => {
    target = await hashServer(8 << 20)
    net = await startNet()
    const shares = [{ name: 'blob', host: '127.0.0.1', port: target.port }]
    a = await net.agent('fa', { engine: 'datachannel', shares, connects: [{ share: 'blob', peer: 'fb', host: '127.0.0.1', port: 0 }] })
    b = await net.agent('fb', { engine: 'datachannel', shares })
    await until(() => associationsTo(a, 'fb') === 4 && associationsTo(b, 'fa') === 4, 30_000, 'four associations')
    await pinRtt(a, 'fb', 40)
    await pinRtt(b, 'fa', 40)
  }, 60_000)

  afterAll(async () => {
    await net?.close()
    target?.server.close()
  })

  it('the striped stream is reset cleanly (TCP reset, never short or corrupted data); the next stream runs on the associations left', async () => {
    const peer = await a.peerByName('fb')
    const c = a.tunnels.counter(peer.id)
    const before = c.bytesOut
    // 512 MiB to the server: still running when the association goes
    const running = exchange(a.listeners[0]!.port, 512 << 20, 120_000)
    await until(() => c.bytesOut - before > (64 << 20), 60_000, 'the transfer under way')
    // fb ends its first association, as the protocol does for one that failed alone
    // (`assoc close`: fa closes that peer connection, and so does fb on fa's answer)
    const session = (await b.peerByName('fa')).session!
    expect(session.sendControl({ type: 'assoc', i: 1, of: 'mine', close: true })).toBe(true)
    const r = await running
    expect(r.ok).toBe(false)
    expect(r.why).toMatch(/ECONNRESET/)
    await until(() => a.tunnels.liveStreams === 0 && b.tunnels.liveStreams === 0, 20_000, 'streams released')
    expect(c.budget.used).toBe(0)
    expect(associationsTo(a, 'fb')).toBe(3)
    // the next bulk stream stripes over the three left and arrives intact both ways
    const striped = a.tunnels.totals.striped
    expect(await exchange(a.listeners[0]!.port, 8 << 20, 60_000)).toEqual({ ok: true })
    await until(() => a.tunnels.liveStreams === 0, 20_000, 'closed')
    expect(a.tunnels.totals.striped).toBeGreaterThan(striped)
  }, 150_000)
})
