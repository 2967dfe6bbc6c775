/**
 * The WAN emulator itself (scripts/wan/link.ts + delayline.c): the link delivers what it is
 * set to — ping RTT, random loss rate, rate limit (iperf3) — the namespaces get the congestion
 * control asked for, and teardown and stale-link cleanup leave nothing behind.
 * Needs root, gcc and /dev/net/tun (skipped with the reason otherwise).
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { afterAll, expect, it } from 'vitest'
import { cleanupStaleLinks, WanLink } from '../../scripts/wan/link.ts'
import { wanSuite } from './gate.ts'

const wanDescribe = await wanSuite('WAN emulator tests', false)

function pingStats (out: string): { loss: number, min: number, avg: number } {
  const loss = /([\d.]+)% packet loss/.exec(out)
  const rtt = /= ([\d.]+)\/([\d.]+)\//.exec(out)
  return { loss: Number(loss?.[1] ?? NaN), min: Number(rtt?.[1] ?? NaN), avg: Number(rtt?.[2] ?? NaN) }
}

wanDescribe('WAN emulator', () => {
  const links: WanLink[] = []
  afterAll(async () => { for (const l of links) await l.close() })

  it('delays by the RTT and limits the rate (iperf3), with cubic or bbr per namespace', async () => {
    const link = await WanLink.create({ rttMs: 40, rateMbit: 50, cc: { left: 'bbr', right: 'cubic' } })
    links.push(link)
    const ping = pingStats((await link.exec('left', ['ping', '-q', '-c', '10', '-i', '0.05', link.addr('right')], 20_000)).stdout)
    expect(ping.loss).toBe(0)
    expect(ping.min).toBeGreaterThanOrEqual(40)
    expect(ping.min).toBeLessThan(45)
    expect((await link.exec('left', ['sysctl', '-n', 'net.ipv4.tcp_congestion_control'])).stdout.trim()).toBe('bbr')
    expect((await link.exec('right', ['sysctl', '-n', 'net.ipv4.tcp_congestion_control'])).stdout.trim()).toBe('cubic')
    const server = link.spawn('right', ['iperf3', '-s', '-1', '-B', link.addr('right'), '--forceflush'])
    await server.waitFor(/listening/, 10_000)
    const r = await link.exec('left', ['iperf3', '-c', link.addr('right'), '-t', '4', '-J'], 30_000)
    const mbit = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6
    expect(mbit).toBeLessThanOrEqual(50)
    expect(mbit).toBeGreaterThan(25) // slow start included; a shared machine may steal some
  }, 60_000)

  it('drops the configured share of packets in each direction', async () => {
    const link = await WanLink.create({ rttMs: 2, lossPct: 5, seed: 7 })
    links.push(link)
    const ping = pingStats((await link.exec('left', ['ping', '-q', '-c', '1000', '-i', '0.002', link.addr('right')], 30_000)).stdout)
    const s = await link.stats()
    for (const d of [s.ab, s.ba]) {
      const rate = d.lost / (d.lost + d.packets)
      expect(rate).toBeGreaterThan(0.025)
      expect(rate).toBeLessThan(0.08)
    }
    // an echo is lost when either direction drops it: 1 - 0.95^2 = 9.75 %
    expect(ping.loss).toBeGreaterThan(5)
    expect(ping.loss).toBeLessThan(15)
  }, 60_000)

  it('close() removes its namespaces and processes; links of dead processes are cleaned up', async () => {
    const link = await WanLink.create({ rttMs: 1 })
    const sleeper = link.spawn('left', ['sleep', '600'])
    await link.close()
    expect(existsSync(`/run/netns/${link.ns('left')}`)).toBe(false)
    expect(existsSync(`/run/netns/${link.ns('right')}`)).toBe(false)
    expect(sleeper.child.exitCode !== null || sleeper.child.signalCode !== null).toBe(true)
    // a namespace named like the link of a process that no longer exists
    const dead = spawn('true')
    await new Promise(resolve => dead.once('exit', resolve))
    const stale = `cww${String(dead.pid)}n0l`
    execFileSync('ip', ['netns', 'add', stale])
    expect(await cleanupStaleLinks()).toContain(stale)
    expect(existsSync(`/run/netns/${stale}`)).toBe(false)
  }, 60_000)
})
