/**
 * Tunnel benchmark: one tunnelled TCP connection's throughput and time to first byte next to
 * direct TCP, socat, `ssh -L` and the raw data channel of the same engine; 16 parallel
 * connections; agent RSS idle and with 1,000 idle tunnelled connections.
 *
 *   npm run bench -- tunnel     (inside an isolated network namespace; loopback only)
 */
import { connect, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { encodeToken, newSecret } from '../protocol/token.ts'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { sshForward, socatForward, freePort } from './baselines.ts'
import { child, download, firstByte, killChildren, percentile, pingServer, rssMiB, sleep, sourceServer, table, waitFor } from './lib.ts'
import { rawDataChannel } from './raw-dc.ts'

const MIB = Number(process.env.BENCH_MIB ?? 128)
const TTFB_SAMPLES = Number(process.env.BENCH_TTFB ?? 200)
const CAUSEWAY = fileURLToPath(new URL('../bin/causeway', import.meta.url))

const RUNS = Number(process.env.BENCH_RUNS ?? 3)

/** Median of RUNS downloads (this machine is shared: single runs move by ±30%). */
async function single (port: number): Promise<number> {
  const rates: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const r = await download(port)
    if (r.bytes !== MIB << 20) throw new Error(`short download: ${r.bytes}`)
    rates.push(MIB / r.seconds)
  }
  return percentile(rates, 50)
}

async function parallel (port: number, n: number, mibEach: number): Promise<number> {
  const t0 = performance.now()
  const rs = await Promise.all(Array.from({ length: n }, async () => await download(port)))
  const total = rs.reduce((a, r) => a + r.bytes, 0)
  if (total !== n * (mibEach << 20)) throw new Error('short parallel download')
  return (total / (1 << 20)) / ((performance.now() - t0) / 1000)
}

async function ttfb (port: number): Promise<{ p50: number, p99: number }> {
  const samples: number[] = []
  for (let i = 0; i < TTFB_SAMPLES; i++) samples.push(await firstByte(port))
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
}

async function status (port: number): Promise<{ peers: Array<{ name: string, state: string, path: string, streams: number }> }> {
  const res = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(3000) })
  return await res.json() as { peers: Array<{ name: string, state: string, path: string, streams: number }> }
}

export async function tunnelBench (): Promise<string> {
  const out: string[] = []
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) })
  const token = encodeToken({ kind: 'member', signaling: signaling.url, secret: newSecret() })
  const src = await sourceServer(MIB)
  const par = await sourceServer(MIB / 16)
  const ping = await pingServer()
  const ports: number[] = []
  for (let i = 0; i < 7; i++) ports.push(await freePort())
  const [sa, sb, lSrc, lPar, lPing, lIdleA, lIdleB] = ports as [number, number, number, number, number, number, number]
  const a = child(CAUSEWAY, ['agent', '--token', token, '--name', 'bench-a', '--status', `127.0.0.1:${sa}`, '--max-streams', '1100', '--no-service-ice',
    '--share', `src=127.0.0.1:${src.port}`, '--share', `par=127.0.0.1:${par.port}`, '--share', `ping=127.0.0.1:${ping.port}`,
    '--connect', `ping@bench-b=127.0.0.1:${lIdleA}`], { CAUSEWAY_LOG_LEVEL: 'warn' })
  const b = child(CAUSEWAY, ['agent', '--token', token, '--name', 'bench-b', '--status', `127.0.0.1:${sb}`, '--max-streams', '1100', '--no-service-ice',
    '--share', `ping=127.0.0.1:${ping.port}`,
    '--connect', `src@bench-a=127.0.0.1:${lSrc}`, '--connect', `par@bench-a=127.0.0.1:${lPar}`, '--connect', `ping@bench-a=127.0.0.1:${lPing}`,
    '--connect', `ping@bench-a=127.0.0.1:${lIdleB}`], { CAUSEWAY_LOG_LEVEL: 'warn' })
  try {
    await waitFor(async () => (await status(sb)).peers.some(p => p.name === 'bench-a' && p.state === 'connected'), 30_000, 'agents to connect')
    await waitFor(async () => (await status(sa)).peers.some(p => p.name === 'bench-b' && p.state === 'connected'), 30_000, 'agents to connect')
    await sleep(2500)
    const path = (await status(sb)).peers.find(p => p.name === 'bench-a')?.path ?? '?'
    const rssIdle = rssMiB(a.pid!)

    const rows: Array<Array<string | number>> = [['path', 'MiB/s (1 conn)', 'vs raw DC', 'vs ssh -L', 'TTFB p50 ms', 'TTFB p99 ms', 'MiB/s (16 conns)']]
    const socatPort = await socatForward(src.port)
    const socatPar = await socatForward(par.port)
    const socatPing = await socatForward(ping.port)
    const sshPort = await sshForward(src.port)
    const sshPar = await sshForward(par.port)
    const sshPing = await sshForward(ping.port)
    const step = (s: string): void => { if (process.env.BENCH_VERBOSE === '1') process.stderr.write(`bench: ${s}\n`) }
    step('raw data channel')
    const raws = []
    for (let i = 0; i < RUNS; i++) raws.push(await rawDataChannel(MIB, Math.min(TTFB_SAMPLES, 100)))
    raws.sort((x, y) => x.mibps - y.mibps)
    const raw = raws[Math.floor(raws.length / 2)]!
    step('direct')
    const direct = { mibps: await single(src.port), ttfb: await ttfb(ping.port), par: await parallel(par.port, 16, MIB / 16) }
    step('socat')
    const socat = socatPort !== undefined ? { mibps: await single(socatPort), ttfb: (step('socat ttfb'), await ttfb(socatPing!)), par: (step('socat par'), await parallel(socatPar!, 16, MIB / 16)) } : undefined
    step('ssh')
    const ssh = sshPort !== undefined ? { mibps: await single(sshPort), ttfb: await ttfb(sshPing!), par: await parallel(sshPar!, 16, MIB / 16) } : undefined
    step('tunnel')
    const tun = { mibps: await single(lSrc), ttfb: await ttfb(lPing), par: await parallel(lPar, 16, MIB / 16) }
    const f = (x: number): string => x.toFixed(1)
    const ratio = (x: number, base: number | undefined): string => base === undefined ? 'n/a' : `${Math.round((x / base) * 100)}%`
    rows.push(['direct TCP', f(direct.mibps), '', '', f(direct.ttfb.p50), f(direct.ttfb.p99), f(direct.par)])
    rows.push(socat === undefined ? ['socat', 'n/a (not installed)', '', '', '', '', ''] : ['socat', f(socat.mibps), '', '', f(socat.ttfb.p50), f(socat.ttfb.p99), f(socat.par)])
    rows.push(ssh === undefined ? ['ssh -L', 'n/a (no sshd / not root)', '', '', '', '', ''] : ['ssh -L', f(ssh.mibps), '', '100%', f(ssh.ttfb.p50), f(ssh.ttfb.p99), f(ssh.par)])
    rows.push(['raw data channel (@roamhq/wrtc)', f(raw.mibps), '100%', ratio(raw.mibps, ssh?.mibps), `${f(raw.ttfbP50)} (new channel)`, f(raw.ttfbP99), ''])
    rows.push([`causeway tunnel (${path})`, f(tun.mibps), ratio(tun.mibps, raw.mibps), ratio(tun.mibps, ssh?.mibps), f(tun.ttfb.p50), f(tun.ttfb.p99), f(tun.par)])
    out.push(`One TCP connection downloading ${MIB} MiB (median of ${RUNS} runs); TTFB = connect() to first byte over an established peer (${TTFB_SAMPLES} samples); 16 parallel connections of ${MIB / 16} MiB each.`, '', table(rows), '')

    // memory: 500 idle connections each way -> 1,000 tunnelled streams on agent A
    const idle: Socket[] = []
    const open = async (port: number): Promise<void> => {
      await new Promise<void>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port })
        s.once('data', () => resolve())
        s.once('error', reject)
        idle.push(s)
      })
    }
    for (let i = 0; i < 500; i++) { await open(lIdleA); await open(lIdleB) }
    await waitFor(async () => ((await status(sa)).peers.find(p => p.name === 'bench-b')?.streams ?? 0) >= 1000, 30_000, '1000 streams')
    await sleep(3000)
    const rssBusy = rssMiB(a.pid!)
    const streams = (await status(sa)).peers.find(p => p.name === 'bench-b')?.streams ?? 0
    for (const s of idle) s.destroy()
    out.push(table([
      ['agent memory', 'RSS MiB', 'target'],
      ['idle, one peer connected', rssIdle.toFixed(1), '<= 120 MB'],
      [`${streams} idle tunnelled connections (500 each way)`, rssBusy.toFixed(1), ''],
      ['extra per idle connection', `${(((rssBusy - rssIdle) * 1024) / Math.max(1, streams)).toFixed(1)} KiB`, '<= 64 KiB'],
    ]))
    return out.join('\n')
  } finally {
    killChildren()
    await signaling.close()
    for (const s of [src, par, ping]) s.server.close()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  tunnelBench().then(t => { process.stdout.write(`${t}\n`); process.exit(0) }, (err: unknown) => { process.stderr.write(`${String(err instanceof Error ? err.stack : err)}\n`); killChildren(); process.exit(1) })
}
