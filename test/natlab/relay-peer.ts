/**
 * A relay-client peer for the NAT lab (the relay transport of `agent/relay-transport`, without
 * the agent): `node relay-peer.ts listen|dial DIR RELAY_KEY_B64URL RELAYS BYTES TIMEOUT_MS`.
 * `listen` reserves on the relay, writes its relayed address to DIR/relay-addr, and answers one
 * transfer with the SHA-256 of what it read; `dial` sends BYTES random bytes to that address and
 * checks the hash. Prints one JSON line.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { startRelayClient } from '../../agent/relay-transport/index.ts'
import { fromBase64Url, utf8 } from '../../protocol/encoding.ts'
import { hashAll, sendAll } from './relay-helpers.ts'

const [role, dir = '', keyText = '', relaysText = '', bytesText = '0', timeoutText = '30000'] = process.argv.slice(2)
const PROTO = '/causeway-lab/xfer/1.0.0'
const started = Date.now()
const signal = AbortSignal.timeout(Number(timeoutText))
const log = pino({ level: process.env.CAUSEWAY_LOG_LEVEL ?? 'warn' }, pino.destination(2))

async function main (): Promise<Record<string, unknown>> {
  const client = await startRelayClient({ relayKey: fromBase64Url(keyText), relays: relaysText.split(','), log, signal })
  try {
    if (role === 'listen') {
      const done = new Promise<string>((resolve, reject) => {
        void client.handle(PROTO, async stream => {
          const got = await hashAll(stream)
          await sendAll(stream, utf8(`${got.hash} ${got.bytes}`), signal)
          resolve(got.hash)
        }).catch(reject)
      })
      const [addr] = await client.waitForReservation({ signal })
      const reservedMs = Date.now() - started
      await writeFile(join(dir, 'relay-addr.tmp'), addr ?? '')
      await rename(join(dir, 'relay-addr.tmp'), join(dir, 'relay-addr'))
      const hash = await Promise.race([done, new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('no transfer')), { once: true }))])
      await new Promise(resolve => setTimeout(resolve, 300))
      return { ok: true, addr, reservedMs, hash }
    }
    while (!existsSync(join(dir, 'relay-addr'))) {
      signal.throwIfAborted()
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const target = await readFile(join(dir, 'relay-addr'), 'utf8')
    const data = new Uint8Array(randomBytes(Number(bytesText)))
    const t = Date.now()
    const stream = await client.dial(target, PROTO, { signal })
    const [answer] = await Promise.all([(async () => {
      const parts: Uint8Array[] = []
      for await (const c of stream) parts.push(c instanceof Uint8Array ? c : c.subarray())
      return Buffer.concat(parts).toString()
    })(), sendAll(stream, data, signal)])
    const secs = (Date.now() - t) / 1000
    const expected = `${createHash('sha256').update(data).digest('hex')} ${data.byteLength}`
    return { ok: answer === expected, target, secs, mibps: Number((data.byteLength / 1048576 / secs).toFixed(1)) }
  } finally {
    await client.close()
  }
}

main().then(r => { process.stdout.write(`${JSON.stringify(r)}\n`); process.exit(0) },
  (err: unknown) => { process.stdout.write(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`); process.exit(1) })
