/**
 * Striped streams across an emulated WAN link (scripts/wan/link.ts): real `bin/causeway`
 * signaling and agents (four associations per pair, striping on, the default) in two
 * namespaces. Each association recovers its own losses, so the chunks of one striped stream
 * arrive out of order across them; the receiver's reassembly must put every byte back in order:
 * - 40 ms RTT, 100 Mbit/s, 0.5 % random loss: 24 MiB each way at once through one tunnel,
 *   intact by hash (the client half-closes first; the server's last 64 bytes follow that FIN),
 *   striped on both agents, chunks reordered, the link really dropping packets;
 * - a reset by the target in the middle of a striped transfer both ways reaches the client, and
 *   the client's reset reaches the target; afterwards two concurrent transfers are intact.
 * Needs root, gcc and /dev/net/tun (skipped with the reason otherwise).
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { WanLink, type Side } from '../../scripts/wan/link.ts'
import { CONNECT_PORT, startCauseway, type CausewayOnLink } from './causeway.ts'
import { wanSuite } from './gate.ts'

const wanDescribe = await wanSuite('WAN stripe tests')

const MiB = 1024 * 1024
const TUNNEL = ['127.0.0.1', String(CONNECT_PORT)]

interface Exchange { conns: number, intact: number, ms: number, failures: string[] }

/** A counter of an agent's /metrics, in its namespace. */
async function metric (link: WanLink, side: Side, name: string): Promise<number> {
  const r = await link.exec(side, ['curl', '-s', '-m', '2', 'http://127.0.0.1:7777/metrics'], 5000)
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(r.stdout)
  if (m === null) throw new Error(`${name} not in ${side}'s metrics: ${r.stdout.slice(0, 300)}`)
  return Number(m[1])
}

wanDescribe('striped tunnel across 40 ms RTT, 100 Mbit/s, 0.5 % loss', () => {
  let link: WanLink
  let cw: CausewayOnLink
  beforeAll(async () => {
    link = await WanLink.create({ rttMs: 40, rateMbit: 100, lossPct: 0.5 })
    cw = await startCauseway(link, { extraArgs: ['--stripe', 'on', '--associations', '4'] })
  }, 180_000)
  afterAll(async () => { await cw?.close(); await link?.close() })

  it('moves 24 MiB each way at once through one striped tunnel, every byte in order (half-close: the answer follows the FIN)', async () => {
    const r = await cw.io<Exchange>('left', ['exchange', ...TUNNEL, String(24 * MiB), '1', '240000'], 240_000)
    expect(r.failures).toEqual([])
    expect(r.intact).toBe(1)
    const s = await link.stats()
    expect(s.ab.lost).toBeGreaterThan(0)
    expect(s.ba.lost).toBeGreaterThan(0)
    // both directions went over several associations, and chunks did arrive out of order
    expect(await metric(link, 'left', 'causeway_agent_streams_striped_total')).toBeGreaterThanOrEqual(1)
    expect(await metric(link, 'right', 'causeway_agent_streams_striped_total')).toBeGreaterThanOrEqual(1)
    const reordered = await metric(link, 'left', 'causeway_agent_stripe_reordered_chunks_total') + await metric(link, 'right', 'causeway_agent_stripe_reordered_chunks_total')
    expect(reordered).toBeGreaterThan(0)
  }, 300_000)

  it('a reset by the target in the middle of a striped transfer reaches the client', async () => {
    const before = await metric(link, 'right', 'causeway_agent_streams_striped_total')
    const r = await cw.io<{ outcome: string, received: number }>('left', ['reset-by-server', ...TUNNEL, '120000', '12'], 120_000)
    expect(r.outcome).toBe('ECONNRESET')
    // the server's bytes were flowing to the client when it reset (a transfer both ways)
    expect(r.received).toBeGreaterThan(MiB)
    // the client's 12 MiB to the server went striped
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(await metric(link, 'left', 'causeway_agent_streams_striped_total') + await metric(link, 'right', 'causeway_agent_streams_striped_total')).toBeGreaterThan(before)
  }, 180_000)

  it('a reset by the client in the middle of a striped transfer reaches the target', async () => {
    const r = await cw.io<{ outcome: string }>('left', ['reset-by-client', ...TUNNEL, '120000', '12'], 120_000)
    expect(r.outcome).toBe('reset sent')
    // The end reaches the target. A client that resets after sending 12 MiB leaves unread bytes
    // in the near agent's socket, and that socket reads the reset as an end (measured the same
    // with --stripe off, on loopback): the target then sees the end, not a reset.
    const m = await cw.server.waitFor(/\{"peerClosed":"([^"]+)"\}/, 60_000)
    expect(['ECONNRESET', 'close', 'end']).toContain(m[1])
  }, 180_000)

  it('after the resets, the next striped transfers are intact', async () => {
    const r = await cw.io<Exchange>('left', ['exchange', ...TUNNEL, String(8 * MiB), '2', '180000'], 180_000)
    expect(r.failures).toEqual([])
    expect(r.intact).toBe(2)
  }, 240_000)
})
