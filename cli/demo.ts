/**
 * `causeway demo`: the whole system on one machine with the embedded default — Node signaling
 * in-process, two agents, a local HTTP service shared by one and reached through the other.
 * Prints the path, the candidate pair, RTT and a throughput figure; exits 0 when it all worked,
 * within 3 s of its last line (it closes everything it started; a watchdog exits with the
 * result's code should closing hang).
 */
import { createHash } from 'node:crypto'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import type { CommandContext } from './commands.ts'
import { issueAgentToken, newNetwork } from '../protocol/identity-owner.ts'
import { encodeToken } from '../protocol/token.ts'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { Agent } from '../agent/agent.ts'

export const DEMO_HELP = `causeway demo [--mib N]

Starts the Node signaling service, two agents (site-a, site-b) and a local HTTP service on
loopback; site-a shares the service as "web", site-b reaches it through an end-to-end
encrypted WebRTC tunnel. Prints the path and a throughput figure (N MiB, default 64).`

function httpGet (port: number, path: string): Promise<{ status: number, body: Buffer, ms: number }> {
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: performance.now() - t0 }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

/** A small HTTP service: `/` says hello, `/blob?mib=N` streams N MiB of deterministic bytes. */
export async function startDemoService (): Promise<{ server: Server, port: number }> {
  const block = Buffer.alloc(1 << 20)
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/blob') {
      const mib = Math.min(1024, Math.max(1, Number(url.searchParams.get('mib') ?? '1') | 0))
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(mib << 20) })
      let sent = 0
      const pump = (): void => {
        while (sent < mib) { sent++; if (!res.write(block)) { res.once('drain', pump); return } }
        res.end()
      }
      pump()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('hello from site-a, through causeway\n')
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

/** How long the demo may take to close everything after its result line before it exits anyway, ms. */
const CLOSE_BOUND_MS = 3000

export async function demoCommand (argv: string[], ctx: CommandContext): Promise<number> {
  const { log } = ctx
  const { values } = parseArgs({ args: argv, options: { mib: { type: 'string', default: '64' } }, strict: true })
  const mib = Math.max(1, Math.min(1024, Number(values.mib) | 0))
  const quiet = log.child({}, { level: process.env.CAUSEWAY_LOG_LEVEL ?? 'warn' })
  const out = (s: string): void => { process.stdout.write(`${s}\n`) }
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}), log: quiet.child({ c: 'signaling' }) })
  const service = await startDemoService()
  // One network (issuer key in memory), one agent token per agent: names are proven.
  const owner = await newNetwork(signaling.url)
  const tokenA = await issueAgentToken(owner, 'site-a', { ttlSeconds: 3600 })
  const tokenB = await issueAgentToken(owner, 'site-b', { ttlSeconds: 3600 })
  out(`signaling    ${signaling.url} (Node, in-memory rooms)`)
  out(`tokens       site-a ${encodeToken(tokenA).slice(0, 16)}…, site-b ${encodeToken(tokenB).slice(0, 16)}… (own keys; the secret never leaves the agents)`)
  const a = new Agent({ token: tokenA, shares: [{ name: 'web', host: '127.0.0.1', port: service.port, protocol: 'http', peers: ['site-b'] }], log: quiet.child({ c: 'site-a' }) })
  const b = new Agent({ token: tokenB, connects: [{ share: 'web', peer: 'site-a', host: '127.0.0.1', port: 0 }], log: quiet.child({ c: 'site-b' }) })
  let code = 1
  try {
    const t0 = performance.now()
    await a.start()
    await b.start()
    await b.peerByName('site-a', 20_000)
    const listen = b.listeners[0]
    if (listen === undefined) throw new Error('no listener')
    out(`service      http://127.0.0.1:${service.port} shared by site-a as "web"`)
    out(`tunnel       site-b listens on ${listen.host}:${listen.port} -> web@site-a (connected in ${Math.round(performance.now() - t0)} ms)`)
    const hello = await httpGet(listen.port, '/')
    out(`GET /        ${hello.status} ${JSON.stringify(hello.body.toString().trim())} in ${hello.ms.toFixed(1)} ms`)
    const blob = await httpGet(listen.port, `/blob?mib=${mib}`)
    const expected = await httpGet(service.port, `/blob?mib=${mib}`)
    const same = createHash('sha256').update(blob.body).digest('hex') === createHash('sha256').update(expected.body).digest('hex')
    out(`GET /blob    ${mib} MiB in ${(blob.ms / 1000).toFixed(2)} s = ${(mib / (blob.ms / 1000)).toFixed(1)} MiB/s through the tunnel, sha256 ${same ? 'matches' : 'DIFFERS'}`)
    await b.refreshPaths()
    const peer = b.status().peers.find(p => p.name === 'site-a')
    out(`path         ${peer?.path ?? 'none'} (${peer?.pair ?? 'no pair'}), rtt ${peer?.rttMs ?? '?'} ms`)
    code = hello.status === 200 && blob.status === 200 && same && peer?.path === 'direct' ? 0 : 1
    out(code === 0 ? 'demo ok' : 'demo FAILED')
  } finally {
    // The result is out: closing must not keep the process (cli/main.ts exits once this returns).
    ctx.watchdog(CLOSE_BOUND_MS, `demo: closing the agents and the service took over ${CLOSE_BOUND_MS} ms`, code)
    await b.stop()
    await a.stop()
    await signaling.close()
    service.server.close()
  }
  return code
}
