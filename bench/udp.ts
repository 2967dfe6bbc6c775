/**
 * UDP share benchmark: iperf3 in UDP mode (`-u -b RATE -l 1100`) through a UDP share, and the
 * same run straight to the iperf3 server, at several offered rates: received rate, loss and
 * jitter as iperf3 reports them, and the agents' drops by reason. iperf3's control connection
 * is TCP: it goes through a TCP share on the same port number (the UDP connect listener and the
 * TCP one share the port, as the server's do). `-l 1100` keeps each datagram under the UDP
 * shares' 1152-byte payload limit (iperf3 would pick up to the control connection's MSS).
 *
 *   npm run bench -- udp     (inside an isolated network namespace; loopback only)
 *   BENCH_UDP_RATES=10M,50M,200M BENCH_UDP_SECONDS=10 BENCH_UDP_ENGINE=auto|wrtc|datachannel (both agents; default auto)
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { encodeToken, newSecret } from '../protocol/token.ts'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { freePort } from './baselines.ts'
import { child, killChildren, sleep, table, waitFor } from './lib.ts'

const exec = promisify(execFile)
const CAUSEWAY = fileURLToPath(new URL('../bin/causeway', import.meta.url))
const RATES = (process.env.BENCH_UDP_RATES ?? '10M,50M,200M').split(',')
const SECONDS = Number(process.env.BENCH_UDP_SECONDS ?? 10)
const LENGTH = 1100
const ENGINE = process.env.BENCH_UDP_ENGINE ?? 'auto'

interface Iperf { receivedMbps: number, sentMbps: number, lostPercent: number, jitterMs: number, packets: number }

async function iperf (port: number, rate: string): Promise<Iperf> {
  const { stdout } = await exec('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-u', '-b', rate, '-l', String(LENGTH), '-t', String(SECONDS), '--json'], { timeout: (SECONDS + 30) * 1000, maxBuffer: 16 << 20 })
  const r = JSON.parse(stdout) as { error?: string, end?: { sum?: { bits_per_second: number, lost_percent: number, jitter_ms: number, packets: number, lost_packets: number }, sum_sent?: { bits_per_second: number }, sum_received?: { bits_per_second: number } } }
  const sum = r.end?.sum
  if (r.error !== undefined || sum === undefined) throw new Error(`iperf3: ${r.error ?? 'no summary'}`)
  // iperf3 3.1x: end.sum is the server's view of the UDP stream (received packets, loss, jitter).
  const received = r.end?.sum_received?.bits_per_second ?? sum.bits_per_second * (1 - sum.lost_percent / 100)
  return { receivedMbps: received / 1e6, sentMbps: (r.end?.sum_sent?.bits_per_second ?? sum.bits_per_second) / 1e6, lostPercent: sum.lost_percent, jitterMs: sum.jitter_ms, packets: sum.packets }
}

interface UdpStatus { udp: { drops: Record<string, number>, datagramsIn: number, datagramsOut: number }, peers: Array<{ name: string, state: string, path: string }> }

async function status (port: number): Promise<UdpStatus> {
  const res = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(3000) })
  return await res.json() as UdpStatus
}

const dropText = (before: UdpStatus, after: UdpStatus): string =>
  Object.entries(after.udp.drops).map(([k, v]) => [k, v - (before.udp.drops[k] ?? 0)] as const).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'

export async function udpBench (): Promise<string> {
  const out: string[] = []
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) })
  const token = encodeToken({ kind: 'member', signaling: signaling.url, secret: newSecret() })
  const [server, listen, sa, sb] = [await freePort(), await freePort(), await freePort(), await freePort()]
  child('iperf3', ['-s', '-p', String(server)])
  child(CAUSEWAY, ['agent', '--token', token, '--name', 'bench-a', '--status', `127.0.0.1:${sa}`, '--no-service-ice', '--engine', ENGINE,
    '--share', `iperf=127.0.0.1:${server},protocol=udp`, '--share', `iperf-ctl=127.0.0.1:${server}`], { CAUSEWAY_LOG_LEVEL: 'warn' })
  child(CAUSEWAY, ['agent', '--token', token, '--name', 'bench-b', '--status', `127.0.0.1:${sb}`, '--no-service-ice', '--engine', ENGINE,
    '--connect', `iperf@bench-a=127.0.0.1:${listen},protocol=udp`, '--connect', `iperf-ctl@bench-a=127.0.0.1:${listen}`], { CAUSEWAY_LOG_LEVEL: 'warn' })
  try {
    await waitFor(async () => (await status(sb).catch(() => undefined))?.peers.some(p => p.name === 'bench-a' && p.state === 'connected') === true, 30_000, 'agents to connect')
    await waitFor(async () => (await status(sa).catch(() => undefined))?.peers.some(p => p.name === 'bench-b' && p.state === 'connected') === true, 30_000, 'agents to connect')
    await sleep(2000)
    const loadBefore = (await exec('uptime')).stdout.trim()
    const path = (await status(sb)).peers.find(p => p.name === 'bench-a')?.path ?? '?'
    const rows: Array<Array<string | number>> = [['offered', 'path', 'sent Mbit/s', 'received Mbit/s', 'loss %', 'jitter ms', 'datagrams', 'into tunnel (b)', 'out of tunnel (a)', 'agent drops (b / a)']]
    for (const rate of RATES) {
      const direct = await iperf(server, rate)
      rows.push([rate, 'direct (no tunnel)', direct.sentMbps.toFixed(1), direct.receivedMbps.toFixed(1), direct.lostPercent.toFixed(2), direct.jitterMs.toFixed(3), direct.packets, '-', '-', '-'])
      const [b0, a0] = [await status(sb), await status(sa)]
      const tunnel = await iperf(listen, rate)
      await sleep(1000) // the agents drain what their socket buffers still hold
      const [b1, a1] = [await status(sb), await status(sa)]
      rows.push([rate, `UDP share (${path}, ${ENGINE})`, tunnel.sentMbps.toFixed(1), tunnel.receivedMbps.toFixed(1), tunnel.lostPercent.toFixed(2), tunnel.jitterMs.toFixed(3), tunnel.packets,
        b1.udp.datagramsOut - b0.udp.datagramsOut, a1.udp.datagramsIn - a0.udp.datagramsIn, `${dropText(b0, b1)} / ${dropText(a0, a1)}`])
    }
    out.push(table(rows))
    out.push('', `iperf3 -c 127.0.0.1 -p PORT -u -b RATE -l ${LENGTH} -t ${SECONDS} --json\n\nuptime before: ${loadBefore}\nuptime after: ${(await exec('uptime')).stdout.trim()}`)
  } finally {
    killChildren()
    await signaling.close()
  }
  return out.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${await udpBench()}\n`)
  process.exit(0)
}
