/**
 * causeway tunnels across emulated WAN links (scripts/wan/link.ts): real `bin/causeway`
 * signaling and agents in two namespaces joined by the delay line. Correctness, not timing:
 * - 80 ms RTT, 50 Mbit/s, 1 % random loss: 4 MiB each way through one tunnel at once, intact by
 *   hash (the client half-closes first; the server's last 64 bytes follow that FIN); a reset
 *   from either end reaches the other end;
 * - 40 ms RTT, 200 Mbit/s, no random loss: 64 MiB each way intact, then 100 concurrent
 *   tunnelled connections intact.
 * Needs root, gcc and /dev/net/tun (skipped with the reason otherwise).
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { WanLink } from '../../scripts/wan/link.ts'
import { CONNECT_PORT, startCauseway, type CausewayOnLink } from './causeway.ts'
import { wanSuite } from './gate.ts'

const wanDescribe = await wanSuite('WAN tunnel tests')

const MiB = 1024 * 1024
const TUNNEL = ['127.0.0.1', String(CONNECT_PORT)]

interface Exchange { conns: number, intact: number, ms: number, failures: string[] }

wanDescribe('tunnel across 80 ms RTT, 50 Mbit/s, 1 % loss', () => {
  let link: WanLink
  let cw: CausewayOnLink
  beforeAll(async () => {
    link = await WanLink.create({ rttMs: 80, rateMbit: 50, lossPct: 1 })
    cw = await startCauseway(link)
  })
  afterAll(async () => { await link?.close() })

  it('moves 4 MiB each way at once through one tunnel, intact (half-close: the answer follows the FIN)', async () => {
    const r = await cw.io<Exchange>('left', ['exchange', ...TUNNEL, String(4 * MiB), '1', '240000'], 240_000)
    expect(r.failures).toEqual([])
    expect(r.intact).toBe(1)
    const s = await link.stats()
    // the link really dropped packets in both directions (about 1 %)
    expect(s.ab.lost).toBeGreaterThan(0)
    expect(s.ba.lost).toBeGreaterThan(0)
  }, 300_000)

  it('a reset by the target reaches the client', async () => {
    const r = await cw.io<{ outcome: string }>('left', ['reset-by-server', ...TUNNEL, '60000'], 60_000)
    expect(['ECONNRESET', 'close']).toContain(r.outcome)
  }, 90_000)

  it('a reset by the client reaches the target', async () => {
    expect(cw.server.output()).not.toMatch(/peerClosed/)
    const r = await cw.io<{ outcome: string }>('left', ['reset-by-client', ...TUNNEL, '30000'], 30_000)
    expect(r.outcome).toBe('reset sent')
    const m = await cw.server.waitFor(/\{"peerClosed":"([^"]+)"\}/, 60_000)
    expect(['ECONNRESET', 'close']).toContain(m[1])
  }, 120_000)
})

wanDescribe('tunnel across 40 ms RTT, 200 Mbit/s', () => {
  let link: WanLink
  let cw: CausewayOnLink
  beforeAll(async () => {
    link = await WanLink.create({ rttMs: 40, rateMbit: 200 })
    cw = await startCauseway(link)
  })
  afterAll(async () => { await link?.close() })

  it('moves 64 MiB each way at once through one tunnel, intact', async () => {
    const r = await cw.io<Exchange>('left', ['exchange', ...TUNNEL, String(64 * MiB), '1', '240000'], 240_000)
    expect(r.failures).toEqual([])
    expect(r.intact).toBe(1)
  }, 300_000)

  it('carries 100 concurrent tunnelled connections, each intact both ways', async () => {
    const r = await cw.io<Exchange>('left', ['exchange', ...TUNNEL, String(256 * 1024), '100', '180000'], 180_000)
    expect(r.failures).toEqual([])
    expect(r.intact).toBe(100)
    const s = await cw.status('left')
    expect(s?.peers.find(p => p.name === 'far')?.path).toBe('direct')
  }, 240_000)
})
