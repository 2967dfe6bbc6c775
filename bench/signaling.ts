/**
 * Signaling benchmark (not a test): the Node adapter (`causeway signaling`, child process) with
 * rooms in memory and on Redis (a real redis-server started here on a free loopback port), and
 * the Worker under workerd (`wrangler dev`, child process) side by side, loopback only.
 *
 *   node bench/signaling.ts [--seconds 5] [--pairs 100] [--window 16] [--samples 1000] [--only node|redis|workerd]
 *
 * - Redis rows: one replica on Redis (every signal is a script in Redis and a pub/sub message
 *   back to the same process), and two replicas with each pair split across them (every signal
 *   crosses from one replica to the other through Redis).
 *
 * - relayed msgs/s: 200 clients in 100 rooms (one pair per room) play ping-pong with signals,
 *   each pair keeping `window` signals in flight (pipelined); counts signals delivered during
 *   `seconds` after a 1 s warm-up.
 * - idle RTT: one signal echo (A -> B -> A, two relays) at a time across the whole system.
 * - bare row: the same bundle under `workerd serve` without wrangler dev's harness (bench/signaling-bare.ts).
 * - calibration row: a Durable Object that only echoes (bench/signaling-floor), same runtime,
 *   same client: the most this machine's `wrangler dev` relays at all (`--floor no` skips it).
 * Rate limits are raised through the environment. Prints a markdown table.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { generatePeerKey, signJoin } from '../protocol/join-proof.ts'
import { PROTOCOL_VERSION, SUBPROTOCOL } from '../protocol/messages.ts'
import { startRedis } from '../test/signaling/redis.ts'
import { freePort, ROOT, startWorkerd, type Target } from '../test/signaling/servers.ts'
import { compatibilityOf, startBareWorkerd } from './signaling-bare.ts'
import { directWorkerdUrl } from './signaling-direct.ts'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    pairs: { type: 'string', default: '100' },
    window: { type: 'string', default: '16' },
    samples: { type: 'string', default: '1000' },
    only: { type: 'string' },
    client: { type: 'string', default: 'ws' },
    floor: { type: 'string', default: 'yes' },
  },
})
const SECONDS = Number(values.seconds)
const PAIRS = Number(values.pairs)
const WINDOW = Number(values.window)
const SAMPLES = Number(values.samples)

const ENV: Record<string, string> = {
  CAUSEWAY_RATE_PER_SECOND: '1000000',
  CAUSEWAY_RATE_BURST: '1000000',
  CAUSEWAY_MAX_ROOMS: '100000',
  // Every client is on loopback: one address creates all the rooms (open mode).
  CAUSEWAY_MAX_ROOMS_PER_ADDRESS: '100000',
  CAUSEWAY_JOIN_TIMEOUT_MS: '30000',
}
const SEALED = 'c2VhbGVkLWJlbmNobWFyay1wYXlsb2FkLW9mLWFib3V0LTEwMC1ieXRlcy1saWtlLWFuLWljZS1jYW5kaWRhdGUtZW52ZWxvcGU'

async function startNodeChild (env: Record<string, string>, args: string[] = []): Promise<Target> {
  const port = await freePort()
  const child: ChildProcess = spawn(`${ROOT}bin/causeway`, ['signaling', '--listen', `127.0.0.1:${port}`, ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  const deadline = Date.now() + 20_000
  while (!out.includes('signaling listening on') && Date.now() < deadline && child.exitCode === null) await new Promise(resolve => setTimeout(resolve, 50))
  if (!out.includes('signaling listening on')) { child.kill('SIGKILL'); throw new Error(`causeway signaling did not start:\n${out}`) }
  // On Redis: until the store is connected (/healthz 200).
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    name: 'node',
    url: `http://127.0.0.1:${port}`,
    port,
    env,
    output: () => out,
    close: async () => {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await once(child, 'exit')
      clearTimeout(t)
    },
  }
}

interface Peer { ws: WebSocket, id: string, onSignal: (from: string) => void, closing: boolean }

/** Unexpected closes by code and reason (reported: a benchmark that loses clients measures nothing). */
const closes = new Map<string, number>()

// The `ws` client (a dependency of @hono/node-ws) without permessage-deflate: Node's global
// WebSocket always offers it, and wrangler dev accepts, which measures zlib rather than signaling.
// `--client global` uses Node's WebSocket instead. (ws ships no types; its client has the same event API.)
type WsCtor = new (url: string, protocols: string[], opts?: { perMessageDeflate: boolean }) => WebSocket
const WsClient = (createRequire(import.meta.url)('ws') as { WebSocket: WsCtor }).WebSocket
const newSocket = (url: string): WebSocket => values.client === 'global' ? new WebSocket(url, [SUBPROTOCOL]) : new WsClient(url, [SUBPROTOCOL], { perMessageDeflate: false })

async function openPeer (url: string, room: string): Promise<Peer> {
  const key = await generatePeerKey()
  const id = key.id
  const ws = newSocket(`${url.replace(/^http/, 'ws')}/v1/rooms/${room}`)
  const peer: Peer = { ws, id, onSignal: () => {}, closing: false }
  ws.addEventListener('close', (e) => { if (!peer.closing) closes.set(`${e.code} ${e.reason}`, (closes.get(`${e.code} ${e.reason}`) ?? 0) + 1) })
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('open timeout')), 10_000)
    ws.addEventListener('error', () => { clearTimeout(t); reject(new Error('open failed')) }, { once: true })
    ws.addEventListener('open', () => {
      ws.addEventListener('message', (e) => {
        clearTimeout(t)
        const text = String(e.data)
        if (text.startsWith('{"type":"challenge"')) {
          const { nonce } = JSON.parse(text) as { nonce: string }
          void signJoin(key, { room, role: 'agent', challenge: nonce }).then(sig => ws.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, peer: id, role: 'agent', key: key.publicKey, sig })))
        } else if (text.startsWith('{"type":"signal"')) {
          const m = JSON.parse(text) as { from: string }
          peer.onSignal(m.from)
        } else if (text.startsWith('{"type":"welcome"')) resolve()
        else if (text.startsWith('{"type":"error"')) reject(new Error(text))
      })
    }, { once: true })
  })
  return peer
}

const send = (from: Peer, to: Peer): void => from.ws.send(`{"type":"signal","to":"${to.id}","sealed":"${SEALED}"}`)

/** Opens the pairs; the second peer of each pair on `url2` when given (another replica). */
async function setup (url: string, url2 = url): Promise<Array<[Peer, Peer]>> {
  const pairs: Array<[Peer, Peer]> = []
  const stamp = Date.now().toString(36)
  for (let i = 0; i < PAIRS; i += 20) {
    const batch = await Promise.all(Array.from({ length: Math.min(20, PAIRS - i) }, async (_, j) => {
      const room = `benchroom-${stamp}-${i + j}`.padEnd(20, 'x')
      const a = await openPeer(url, room)
      const b = await openPeer(url2, room)
      return [a, b] as [Peer, Peer]
    }))
    pairs.push(...batch)
  }
  return pairs
}

async function throughput (pairs: Array<[Peer, Peer]>): Promise<number> {
  let counted = 0
  let counting = false
  let running = true
  for (const [a, b] of pairs) {
    a.onSignal = () => { if (counting) counted++; if (running) send(a, b) }
    b.onSignal = () => { if (counting) counted++; if (running) send(b, a) }
    for (let k = 0; k < WINDOW; k++) send(a, b)
  }
  await new Promise(resolve => setTimeout(resolve, 1000))
  counting = true
  const t0 = performance.now()
  await new Promise(resolve => setTimeout(resolve, SECONDS * 1000))
  counting = false
  const elapsed = (performance.now() - t0) / 1000
  running = false
  await new Promise(resolve => setTimeout(resolve, 500)) // drain
  return counted / elapsed
}

async function idleRtt (pairs: Array<[Peer, Peer]>): Promise<{ p50: number, p99: number }> {
  const rtts: number[] = []
  for (let i = 0; i < SAMPLES; i++) {
    const pair = pairs[i % pairs.length]
    if (pair === undefined) break
    const [a, b] = pair
    const rtt = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`echo timeout on pair ${i % pairs.length} (sample ${i}), states ${a.ws.readyState}/${b.ws.readyState}, closes ${JSON.stringify([...closes])}`)), 5000)
      b.onSignal = () => send(b, a)
      const t0 = performance.now()
      a.onSignal = () => { clearTimeout(t); resolve(performance.now() - t0) }
      send(a, b)
    })
    rtts.push(rtt)
  }
  rtts.sort((x, y) => x - y)
  const q = (p: number): number => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] ?? NaN
  return { p50: q(0.5), p99: q(0.99) }
}

interface Row { name: string, rate: number, p50: number, p99: number }

async function measureUrl (name: string, url: string, url2?: string): Promise<Row> {
  console.error(`measuring: ${name}`)
  const pairs = await setup(url, url2)
  await idleRtt(pairs) // warm-up pass; the measured pass follows
  const rtt = await idleRtt(pairs)
  const rate = await throughput(pairs)
  if (closes.size > 0) throw new Error(`${name}: clients were closed during the run: ${JSON.stringify([...closes])}`)
  for (const p of pairs.flat()) { p.closing = true; p.ws.close() }
  await new Promise(resolve => setTimeout(resolve, 500))
  return { name, rate, ...rtt }
}

async function measure (name: string, start: () => Promise<Target>, direct?: string): Promise<Row[]> {
  const target = await start()
  try {
    const rows = [await measureUrl(name, target.url)]
    if (direct !== undefined && target.pid !== undefined) {
      const url = await directWorkerdUrl(target.pid, target.port)
      if (url === undefined) console.error('could not find the Worker\'s own workerd port; skipping the direct row')
      else rows.push(await measureUrl(direct, url))
    }
    return rows
  } finally {
    await target.close()
  }
}

const rows: Row[] = []
if (values.only === undefined || values.only === 'node') rows.push(...await measure('Node adapter (`causeway signaling`), rooms in memory', async () => await startNodeChild(ENV)))
if (values.only === undefined || values.only === 'redis') {
  const redis = await startRedis()
  try {
    rows.push(...await measure('Node adapter on Redis (`--store redis://…`), one replica', async () => await startNodeChild(ENV, ['--store', redis.url])))
    const [r1, r2] = [await startNodeChild(ENV, ['--store', redis.url]), await startNodeChild(ENV, ['--store', redis.url])]
    try {
      rows.push(await measureUrl('Node adapter on Redis, two replicas, each pair split across them', r1.url, r2.url))
    } finally {
      await Promise.all([r1.close(), r2.close()])
    }
  } finally {
    await redis.close()
  }
}
if (values.only === undefined || values.only === 'workerd') {
  rows.push(...await measure('Worker + Durable Objects, `wrangler dev` (through its dev proxy)', async () => await startWorkerd(ENV),
    'Worker + Durable Objects, workerd direct (same `wrangler dev`, its proxy bypassed)'))
  rows.push(...await measure('Worker + Durable Objects, bare `workerd serve` (wrangler bundle, no dev harness)',
    async () => await startBareWorkerd(ENV, compatibilityOf(readFileSync(`${ROOT}wrangler.toml`, 'utf8')))))
  if (values.floor !== 'no') {
    rows.push(...await measure('calibration: echo-only Durable Object, `wrangler dev` (bench/signaling-floor)',
      async () => await startWorkerd({}, { config: `${ROOT}bench/signaling-floor/wrangler.toml` })))
  }
}

console.log(`\n${PAIRS * 2} clients in ${PAIRS} rooms, window ${WINDOW} per pair, ${SECONDS} s; idle RTT over ${SAMPLES} sequential echoes (two relays each)\n`)
console.log('| adapter | relayed msgs/s | idle RTT p50 (ms) | idle RTT p99 (ms) |')
console.log('|---|---:|---:|---:|')
for (const r of rows) console.log(`| ${r.name} | ${Math.round(r.rate).toLocaleString('en-US')} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`)
