/**
 * TCP ends for the agent NAT-lab tests, run inside lab namespaces (their `lo` is down: bind the
 * LAN address).
 * - `echo HOST PORT`: an echo server (half-close aware); prints `echo listening`.
 * - `xfer HOST PORT BYTES RATE_KIB_S TIMEOUT_MS`: connects, sends BYTES random bytes (paced
 *   at RATE KiB/s when > 0), half-closes, reads the echo to its end; prints one JSON line
 *   `{ok, intact, sent, got, ms, error?}` (`error` is the socket error code, e.g. ECONNRESET).
 * - `get URL`: prints the body of one HTTP GET (2 s timeout); exit 1 on failure (when curl is
 *   not installed).
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer } from 'node:net'

const [mode, host = '', portText = '0', bytesText = '0', rateText = '0', timeoutText = '60000'] = process.argv.slice(2)
const port = Number(portText)

if (mode === 'echo') {
  const server = createServer({ allowHalfOpen: true }, s => { s.on('error', () => {}); s.pipe(s) })
  server.listen(port, host, () => { console.log('echo listening') })
} else if (mode === 'xfer') {
  const bytes = Number(bytesText)
  const rate = Number(rateText) * 1024
  const started = Date.now()
  const data = randomBytes(bytes)
  const want = createHash('sha256').update(data).digest('hex')
  const h = createHash('sha256')
  let got = 0
  let sent = 0
  let finished = false
  const finish = (error?: string): void => {
    if (finished) return
    finished = true
    const digest = h.digest('hex')
    console.log(JSON.stringify({ ok: error === undefined, intact: error === undefined && got === bytes && digest === want, sent, got, ms: Date.now() - started, ...(error !== undefined ? { error } : {}) }))
    process.exit(0)
  }
  setTimeout(() => finish('TIMEOUT'), Number(timeoutText)).unref()
  const s = connect({ host, port, allowHalfOpen: true })
  s.on('data', (b: Buffer) => { h.update(b); got += b.length })
  s.on('end', () => finish())
  s.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message))
  s.on('close', () => finish(got === bytes ? undefined : 'CLOSED'))
  s.on('connect', () => {
    const chunk = 64 * 1024
    const tick = 50
    const perTick = rate > 0 ? Math.max(1, Math.floor(rate * tick / 1000)) : Infinity
    const pump = (): void => {
      let budget = perTick
      while (sent < bytes && budget > 0) {
        const n = Math.min(chunk, bytes - sent, budget)
        const ok = s.write(data.subarray(sent, sent + n))
        sent += n
        budget -= n
        if (!ok) { s.once('drain', pump); return }
      }
      if (sent >= bytes) { s.end(); return }
      setTimeout(pump, tick)
    }
    pump()
  })
} else if (mode === 'get') {
  try {
    const res = await fetch(host, { signal: AbortSignal.timeout(2000) })
    process.stdout.write(await res.text())
  } catch { process.exit(1) }
} else {
  console.error('usage: agent-io.ts echo HOST PORT | xfer HOST PORT BYTES RATE_KIB_S TIMEOUT_MS')
  process.exit(2)
}
