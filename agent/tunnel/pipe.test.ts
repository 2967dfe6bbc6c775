/**
 * StreamPipe's edges that need an exact order of events, driven deterministically: a real TCP
 * socket pair on loopback on one side, a scripted data channel on the other.
 */
import { createServer, connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { STREAM_INITIAL_WINDOW } from '../../protocol/peer.ts'
import { StreamPipe, type PipeHooks } from './pipe.ts'
import { PeerLanes } from './lanes.ts'
import { encodeLane, FROM_OPENER } from './stripe.ts'
import { until } from '../../test/until.ts'

/** The part of RTCDataChannel the pipe uses; records what the pipe sends. */
class ScriptedChannel {
  binaryType = 'arraybuffer'
  readyState: RTCDataChannelState = 'open'
  bufferedAmount = 0
  label = 'tcp:test'
  id = 1
  onmessage: ((ev: { data: unknown }) => void) | null = null
  onclose: (() => void) | null = null
  readonly sent: Array<string | Buffer> = []
  send (d: string | Uint8Array): void { this.sent.push(typeof d === 'string' ? d : Buffer.from(d)) }
  close (): void { this.readyState = 'closed' }
  addEventListener (): void {}
  removeEventListener (): void {}
  deliver (data: unknown): void { this.onmessage?.({ data }) }
  get texts (): string[] { return this.sent.filter((m): m is string => typeof m === 'string') }
  get binaryBytes (): number { return this.sent.reduce((n, m) => n + (typeof m === 'string' ? 0 : m.length), 0) }
}

const cleanups: Array<() => void> = []
afterEach(() => { for (const c of cleanups.splice(0)) c() })

/** `local` is the socket the pipe owns; `app` is the application at the other end of it. */
async function tcpPair (): Promise<{ local: Socket, app: Socket }> {
  const server = createServer({ allowHalfOpen: true })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>(resolve => server.once('connection', resolve))
  const app = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true })
  const local = await accepted
  local.pause()
  cleanups.push(() => { app.destroy(); local.destroy(); server.close() })
  return { local, app }
}

function start (local: Socket, dc: ScriptedChannel, early: unknown[] = [], hooks: PipeHooks = {}): { closes: Array<{ reason: string, code?: string }> } {
  const closes: Array<{ reason: string, code?: string }> = []
  new StreamPipe(local, dc as unknown as RTCDataChannel, {}, { ...hooks, onClose: (reason, code) => closes.push({ reason, code }) }).start(early)
  return { closes }
}

/** A version-2 stream we accepted as id 5, with a peer lane channel to deliver lane messages on. */
function striped (): { lanes: PeerLanes, lane: ScriptedChannel, hooks: PipeHooks } {
  const lanes = new PeerLanes({ associations: () => [], highWater: 1 << 20, budget: 256 << 10 })
  const lane = new ScriptedChannel()
  lane.label = 'lane'
  lanes.incoming(lane as unknown as RTCDataChannel)
  return { lanes, lane, hooks: { stripe: { id: 5, role: 'acceptor', lanes } } }
}

describe('StreamPipe', () => {
  it('a socket closed in both directions while its last bytes wait for credit is not a reset: the bytes and the fin follow the credit', async () => {
    const { local, app } = await tcpPair()
    const dc = new ScriptedChannel()
    const { closes } = start(local, dc)
    app.on('error', () => {})
    const extra = 1000
    app.end(Buffer.alloc(STREAM_INITIAL_WINDOW + extra, 7))
    await until(() => dc.binaryBytes === STREAM_INITIAL_WINDOW, 10_000, 'the initial credit to be used')
    // the remote's fin ends our socket's write side: with the app's end already read, the socket closes
    dc.deliver('{"t":"fin"}')
    await until(() => local.destroyed, 10_000, 'the local socket to close')
    expect(closes).toEqual([])
    expect(dc.texts.some(t => t.includes('"rst"'))).toBe(false)
    dc.deliver(`{"t":"credit","n":${STREAM_INITIAL_WINDOW}}`)
    expect(dc.binaryBytes).toBe(STREAM_INITIAL_WINDOW + extra)
    expect(dc.sent.at(-1)).toBe('{"t":"fin"}')
    expect(closes).toEqual([])
  })

  it('processes messages that arrived before it started, in order, before anything else', async () => {
    const { local, app } = await tcpPair()
    const dc = new ScriptedChannel()
    const got: Buffer[] = []
    app.on('data', (d: Buffer) => got.push(d))
    const ended = new Promise<void>(resolve => app.on('end', resolve))
    start(local, dc, [new Uint8Array([1, 2, 3]).buffer, new Uint8Array([4, 5]).buffer, '{"t":"fin"}'])
    await ended
    expect([...Buffer.concat(got)]).toEqual([1, 2, 3, 4, 5])
  })

  it('a channel that closed before the pipe started resets the socket', async () => {
    const { local, app } = await tcpPair()
    const dc = new ScriptedChannel()
    dc.readyState = 'closed'
    const failed = new Promise<string>(resolve => app.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message)))
    const { closes } = start(local, dc)
    expect(closes).toEqual([{ reason: 'reset', code: 'CHANNEL_CLOSED' }])
    expect(await failed).toBe('ECONNRESET')
  })

  it('version 2: bytes from the channel and the lanes come out in stream order; a fin that overtook lane bytes ends the direction once they arrived', async () => {
    const { local, app } = await tcpPair()
    const dc = new ScriptedChannel()
    const { lane, hooks } = striped()
    const got: Buffer[] = []
    app.on('data', (d: Buffer) => got.push(d))
    let ended = false
    app.on('end', () => { ended = true })
    const reordered: number[] = []
    start(local, dc, [], { ...hooks, onReorder: () => reordered.push(1) })
    dc.deliver(new Uint8Array([0, 1, 2]).buffer)
    lane.deliver(encodeLane(FROM_OPENER, 5, 6, new Uint8Array([6, 7, 8])).buffer)
    // for another stream: dropped
    lane.deliver(encodeLane(FROM_OPENER, 6, 3, new Uint8Array([9, 9, 9])).buffer)
    dc.deliver('{"t":"fin","n":9}')
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(ended).toBe(false)
    lane.deliver(encodeLane(FROM_OPENER, 5, 3, new Uint8Array([3, 4, 5])).buffer)
    await until(() => ended, 5000, 'the end after the last lane bytes')
    expect([...Buffer.concat(got)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
    expect(reordered.length).toBe(1)
  })

  it('version 2: the absolute credit counts once, however often it arrives', async () => {
    const { local, app } = await tcpPair()
    const dc = new ScriptedChannel()
    const { hooks } = striped()
    start(local, dc, [], hooks)
    app.write(Buffer.alloc(3 * STREAM_INITIAL_WINDOW, 1))
    await until(() => dc.binaryBytes === STREAM_INITIAL_WINDOW, 10_000, 'the initial credit to be used')
    // the same grant on the channel twice (and it could come on a lane too): 1 MiB more, not 2
    dc.deliver(`{"t":"credit","n":${STREAM_INITIAL_WINDOW},"max":${2 * STREAM_INITIAL_WINDOW}}`)
    dc.deliver(`{"t":"credit","n":${STREAM_INITIAL_WINDOW},"max":${2 * STREAM_INITIAL_WINDOW}}`)
    await until(() => dc.binaryBytes === 2 * STREAM_INITIAL_WINDOW, 10_000, 'the second window sent')
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(dc.binaryBytes).toBe(2 * STREAM_INITIAL_WINDOW)
    // a bulk stream out of credit says so (and stripes when it can)
    expect(dc.texts).toContain('{"t":"blocked"}')
  })

  it('version-2 messages on a version-1 stream are refused', async () => {
    const { local, app } = await tcpPair()
    app.on('error', () => {})
    const dc = new ScriptedChannel()
    const { closes } = start(local, dc)
    dc.deliver('{"t":"blocked"}')
    expect(closes).toEqual([{ reason: 'reset', code: 'BAD_MESSAGE' }])
  })
})
