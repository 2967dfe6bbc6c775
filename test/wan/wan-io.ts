/**
 * TCP ends for the WAN tests and the WAN benchmark, run inside a link's namespaces. One server
 * whose behaviour each connection picks with its first byte, and clients that print one JSON
 * line each.
 *
 * - `serve HOST PORT`: prints `listening`. Per connection, the first byte:
 *   `X` + u32 size: sends `size` random bytes while reading until FIN, then sends
 *     sha256(its payload) and sha256(what it read), 64 bytes, and ends (both directions at once);
 *   `S` + u32 MiB: sends that many MiB, then ends (downloads);
 *   `E`: echoes (request/response round trips);
 *   `R`: resets the connection once 64 KiB have arrived;
 *   `T` + u32 MiB: sends while reading, and resets the connection once that many MiB arrived
 *     (a reset in the middle of a bulk transfer both ways);
 *   `H`: holds it, answers `h` once 64 KiB arrived, and prints
 *     `{"peerClosed":"ECONNRESET"|"end"|"close"}` when the client goes.
 * - `exchange HOST PORT BYTES CONNS TIMEOUT_MS`: CONNS concurrent `X` exchanges, both
 *   directions checked by hash: `{"conns","intact","ms","failures":[...]}`.
 * - `download HOST PORT MIB CONNS TIMEOUT_MS`: CONNS concurrent `S` downloads of MIB each,
 *   bounded in time: `{"bytes","seconds","complete"}`.
 * - `rr HOST PORT CONNS DURATION_MS`: CONNS connections doing 64-byte request/response round
 *   trips for DURATION_MS: `{"count","p50","p99","stalled"}` (ms; stalled = connections whose
 *   last request went unanswered for 5 s more, or that failed).
 * - `reset-by-server HOST PORT TIMEOUT_MS [MIB]` / `reset-by-client HOST PORT TIMEOUT_MS [MIB]`: see
 *   the modes above; with MIB, the reset comes after that many MiB went to the server (`T`;
 *   `H`, the client sending them before it resets); `{"outcome", "received"}`: the client's socket
 *   error code, `end` or `close`, and the bytes it read.
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type Socket } from 'node:net'

const [mode, host = '127.0.0.1', portText = '0', ...rest] = process.argv.slice(2)
const port = Number(portText)
const BLOCK = Buffer.alloc(1 << 20, 0x5a)
const print = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`) }

/** Writes `total` bytes of `block` honouring backpressure, then `then()`. */
function pump (s: Socket, block: Buffer, total: number, then: () => void): void {
  let sent = 0
  const more = (): void => {
    while (sent < total) {
      const n = Math.min(block.length, total - sent)
      sent += n
      if (!s.write(n === block.length ? block : block.subarray(0, n))) { s.once('drain', more); return }
    }
    then()
  }
  more()
}

function serve (): void {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true)
    s.on('error', () => {})
    let head = Buffer.alloc(0)
    const onHead = (d: Buffer): void => {
      head = Buffer.concat([head, d])
      const cmd = String.fromCharCode(head[0] ?? 0)
      const need = cmd === 'X' || cmd === 'S' || cmd === 'T' ? 5 : 1
      if (head.length < need) return
      s.off('data', onHead)
      const body = head.subarray(need)
      if (cmd === 'X') exchangeServer(s, head.readUInt32BE(1), body)
      else if (cmd === 'S') pump(s, BLOCK, head.readUInt32BE(1) * (1 << 20), () => s.end())
      else if (cmd === 'T') {
        const after = head.readUInt32BE(1) * (1 << 20)
        let got = body.length
        s.on('data', (b: Buffer) => { got += b.length; if (got >= after) s.resetAndDestroy() })
        pump(s, BLOCK, 1 << 30, () => {})
      }
      else if (cmd === 'E') { if (body.length > 0) s.write(body); s.pipe(s) } else if (cmd === 'R') {
        let got = body.length
        const check = (): void => { if (got >= 64 << 10) s.resetAndDestroy() }
        s.on('data', (b: Buffer) => { got += b.length; check() })
        check()
      } else if (cmd === 'H') {
        let reported = false
        const report = (how: string): void => { if (!reported) { reported = true; print({ peerClosed: how }) } }
        // tells the client once 64 KiB arrived, so its reset follows a tunnel that reached us
        let got = body.length
        let told = false
        const tell = (): void => { if (!told && got >= 64 << 10) { told = true; s.write('h') } }
        s.on('data', (b: Buffer) => { got += b.length; tell() })
        tell()
        s.on('error', (err: NodeJS.ErrnoException) => report(err.code ?? err.message))
        s.on('end', () => report('end'))
        s.on('close', () => report('close'))
      } else s.destroy()
    }
    s.on('data', onHead)
  })
  server.listen(port, host, () => { process.stdout.write('listening\n') })
}

function exchangeServer (s: Socket, size: number, first: Buffer): void {
  const got = createHash('sha256').update(first)
  const payload = randomBytes(size)
  let sent = false
  let ended = false
  const finish = (): void => { if (sent && ended) s.end(Buffer.concat([createHash('sha256').update(payload).digest(), got.digest()])) }
  s.on('data', (d: Buffer) => got.update(d))
  s.on('end', () => { ended = true; finish() })
  pump(s, payload, size, () => { sent = true; finish() })
}

async function exchangeOne (size: number, deadline: number): Promise<string | undefined> {
  const data = randomBytes(size)
  const sentHash = createHash('sha256').update(data).digest('hex')
  return await new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect({ host, port, allowHalfOpen: true })
    const t = setTimeout(() => { s.destroy(); resolve(`timed out after ${Buffer.concat(chunks).length} bytes`) }, Math.max(0, deadline - Date.now()))
    s.on('connect', () => {
      const head = Buffer.alloc(5)
      head.write('X')
      head.writeUInt32BE(size, 1)
      s.write(head)
      pump(s, data, size, () => s.end())
    })
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('error', (err: NodeJS.ErrnoException) => { clearTimeout(t); resolve(err.code ?? err.message) })
    s.on('end', () => {
      clearTimeout(t)
      s.destroy()
      const all = Buffer.concat(chunks)
      if (all.length !== size + 64) { resolve(`received ${all.length} bytes, expected ${size + 64}`); return }
      if (createHash('sha256').update(all.subarray(0, size)).digest('hex') !== all.subarray(size, size + 32).toString('hex')) { resolve('payload from the server corrupted'); return }
      if (sentHash !== all.subarray(size + 32).toString('hex')) { resolve('payload to the server corrupted'); return }
      resolve(undefined)
    })
  })
}

async function downloadOne (mib: number, deadline: number): Promise<{ bytes: number, complete: boolean }> {
  return await new Promise((resolve) => {
    let bytes = 0
    const s = connect({ host, port })
    const done = (complete: boolean): void => { clearTimeout(t); s.destroy(); resolve({ bytes, complete }) }
    const t = setTimeout(() => done(false), Math.max(0, deadline - Date.now()))
    s.on('connect', () => { const head = Buffer.alloc(5); head.write('S'); head.writeUInt32BE(mib, 1); s.write(head) })
    s.on('data', (d: Buffer) => { bytes += d.length })
    s.on('end', () => done(bytes === mib * (1 << 20)))
    s.on('error', () => done(false))
  })
}

/** Round trips on one connection until `until`; a request still unanswered 5 s later counts as stalled. */
async function roundTrips (until: number): Promise<{ samples: number[], stalled: boolean }> {
  return await new Promise((resolve) => {
    const samples: number[] = []
    const s = connect({ host, port })
    s.setNoDelay(true)
    const req = Buffer.alloc(64, 0x71)
    let got = 0
    let t0 = 0
    const done = (stalled: boolean): void => { clearTimeout(bound); s.destroy(); resolve({ samples, stalled }) }
    const bound = setTimeout(() => done(true), Math.max(0, until - Date.now()) + 5000)
    const send = (): void => { if (Date.now() >= until) { done(false); return } got = 0; t0 = performance.now(); s.write(req) }
    s.on('connect', () => { s.write('E'); send() })
    s.on('data', (d: Buffer) => { got += d.length; if (got >= 64) { samples.push(performance.now() - t0); send() } })
    s.on('error', () => done(true))
  })
}

function pct (v: number[], p: number): number {
  const s = [...v].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN
}

async function outcome (s: Socket, ms: number): Promise<string> {
  return await new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms)
    s.on('error', (err: NodeJS.ErrnoException) => { clearTimeout(t); resolve(err.code ?? err.message) })
    s.on('end', () => { clearTimeout(t); resolve('end') })
    s.on('close', () => { clearTimeout(t); resolve('close') })
  })
}

const t0 = Date.now()
if (mode === 'serve') {
  serve()
} else if (mode === 'exchange') {
  const [bytes = '0', conns = '1', timeout = '60000'] = rest
  const deadline = t0 + Number(timeout)
  const results = await Promise.all(Array.from({ length: Number(conns) }, async () => await exchangeOne(Number(bytes), deadline)))
  const failures = results.filter((r): r is string => r !== undefined)
  print({ conns: results.length, intact: results.length - failures.length, ms: Date.now() - t0, failures: failures.slice(0, 5) })
} else if (mode === 'download') {
  const [mib = '1', conns = '1', timeout = '60000'] = rest
  const deadline = t0 + Number(timeout)
  const rs = await Promise.all(Array.from({ length: Number(conns) }, async () => await downloadOne(Number(mib), deadline)))
  print({ bytes: rs.reduce((a, r) => a + r.bytes, 0), seconds: (Date.now() - t0) / 1000, complete: rs.every(r => r.complete) })
} else if (mode === 'rr') {
  const [conns = '8', duration = '5000'] = rest
  const rs = await Promise.all(Array.from({ length: Number(conns) }, async () => await roundTrips(t0 + Number(duration))))
  const all = rs.flatMap(r => r.samples)
  print({ count: all.length, p50: pct(all, 50), p99: pct(all, 99), stalled: rs.filter(r => r.stalled).length })
} else if (mode === 'reset-by-server') {
  const s = connect({ host, port })
  const mib = Number(rest[1] ?? 0)
  let received = 0
  s.on('data', (d: Buffer) => { received += d.length })
  s.on('connect', () => {
    if (mib === 0) { s.write('R'); s.write(BLOCK.subarray(0, 128 << 10)); return }
    const head = Buffer.alloc(5)
    head.write('T')
    head.writeUInt32BE(mib, 1)
    s.write(head)
    pump(s, BLOCK, 1 << 30, () => {})
  })
  print({ outcome: await outcome(s, Number(rest[0] ?? 30_000)), received })
} else if (mode === 'reset-by-client') {
  const s = connect({ host, port })
  s.on('error', () => {})
  // Reset only once the server said it holds the connection and read our 64 KiB: a reset sent
  // while the tunnel is still opening reaches a target that never saw a byte (nothing to report).
  const held = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), Number(rest[0] ?? 30_000))
    s.on('connect', () => { s.write('H'); s.write(BLOCK.subarray(0, 64 << 10)) })
    s.on('data', () => { clearTimeout(t); resolve(true) })
    s.on('close', () => { clearTimeout(t); resolve(false) })
  })
  const mib = Number(rest[1] ?? 0)
  if (held && mib > 0) await new Promise<void>((resolve) => { pump(s, BLOCK, mib << 20, resolve) })
  s.resetAndDestroy()
  print({ outcome: held ? 'reset sent' : 'server never held the connection' })
} else {
  process.stderr.write('usage: wan-io.ts serve|exchange|download|rr|reset-by-server|reset-by-client HOST PORT ...\n')
  process.exit(2)
}
if (mode !== 'serve') process.exit(0)
