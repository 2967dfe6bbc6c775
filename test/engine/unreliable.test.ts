/**
 * What UDP shares need from every engine behind agent/engine (and across engines): a channel
 * created `ordered: false, maxRetransmits: 0` says so on the opener (and, on wrtc, which reads
 * DCEP, on the acceptor too), and carries messages of the UDP payload limit (plus the flow id)
 * both ways on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { whenOpen } from '../../peer/channel.ts'
import { UDP_FLOW_HEADER, UDP_MAX_PAYLOAD } from '../../protocol/udp.ts'
import { connectPair, ENGINE_PAIRS, type Pair } from './pair.ts'

describe.each(ENGINE_PAIRS)('unreliable channels, %s <-> %s', (engineA, engineB) => {
  let pair: Pair
  beforeAll(async () => { pair = await connectPair(engineA, engineB) }, 60_000)
  afterAll(() => pair?.close())

  it('opens unordered without retransmissions and carries full-size datagrams both ways', async () => {
    const accepted = new Promise<RTCDataChannel>((resolve) => { pair.b.onDataChannel = resolve })
    const dc = pair.a.pc.createDataChannel('udp:bench', { ordered: false, maxRetransmits: 0 })
    dc.binaryType = 'arraybuffer'
    expect(dc.ordered).toBe(false)
    expect(dc.maxRetransmits).toBe(0)
    const remote = await accepted
    remote.binaryType = 'arraybuffer'
    if (engineB === 'wrtc') {
      expect(remote.ordered).toBe(false)
      expect(remote.maxRetransmits).toBe(0)
    }
    const n = 50
    const size = UDP_FLOW_HEADER + UDP_MAX_PAYLOAD
    const gotB: number[] = []
    const gotA: number[] = []
    remote.onmessage = (ev: MessageEvent) => { const b = new Uint8Array(ev.data as ArrayBuffer); gotB.push(b.byteLength === size ? b[0]! : -1); remote.send(b) }
    const back = new Promise<void>((resolve) => { dc.onmessage = (ev: MessageEvent) => { const b = new Uint8Array(ev.data as ArrayBuffer); gotA.push(b.byteLength === size ? b[0]! : -1); if (gotA.length === n) resolve() } })
    await whenOpen(dc)
    for (let i = 0; i < n; i++) dc.send(new Uint8Array(size).fill(i))
    await Promise.race([back, new Promise((_, reject) => setTimeout(() => reject(new Error(`echoes: ${gotA.length}/${n}`)), 15_000))])
    // Unordered: compare as sets (loopback loses nothing at this volume).
    expect([...gotB].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i))
    expect([...gotA].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i))
    dc.close()
  })
})
