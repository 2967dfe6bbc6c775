/** `causeway relay`: runs the libp2p circuit-relay-v2 server gated by relay admission. */
import { readFile, writeFile } from 'node:fs/promises'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { parseArgs } from 'node:util'
import type { Logger } from 'pino'
import type { CommandContext } from './commands.ts'
import { admitKeyFromToken, parseAdmitKey } from '../protocol/relay-admission.ts'
import { serveMetrics } from '../relay/metrics.ts'
import { startRelay, type RelayLimits } from '../relay/server.ts'
import { drainFlag, parseDuration, parseHostPort } from './duration.ts'
import { watchFile } from './watch-file.ts'

export const RELAY_HELP = `causeway relay [options]

Runs a libp2p circuit-relay-v2 relay (TCP and WebSockets) for agents that cannot reach each
other directly. Only holders of a network token get reservations and circuits: the relay is
given admit keys (public keys derived from tokens), never the network secret.

  --listen MULTIADDR          listen address, repeatable (default /ip4/0.0.0.0/tcp/4001 and
                              /ip4/0.0.0.0/tcp/4002/ws)
  --announce MULTIADDR        address to announce instead (e.g. the public one), repeatable
  --admit-token-file FILE     admit members of the network of the token in FILE, repeatable;
                              an agent token also gives the network's issuer key: the relay then
                              admits agents by their credential (it learns their names)
  --admit-key KEY             admit key (cwak2.… with the issuer key, cwak1.… without),
                              repeatable; also CAUSEWAY_RELAY_ADMIT_KEYS (comma separated)
  --revocations-file FILE     a network's signed revocation list (causeway token --revoke),
                              repeatable; re-read when it changes: revoked agents are refused
                              and lose their reservations (agents also pass newer lists on)
  --print-admit-key           print the admit key of each --admit-token-file and exit (run it
                              where the token is, deploy the relay with --admit-key only)
  --identity-file FILE        libp2p private key (created if missing, mode 0600); keeps the
                              relay's PeerId, and so the agents' relay addresses, stable
  --metrics HOST:PORT         serve Prometheus metrics on http://HOST:PORT/metrics
  --max-reservations N        reservations held at once (default 128)
  --max-reservations-per-credential N
                              reservations one agent credential holds at once (default 8: one
                              per agent process)
  --max-reservations-per-address N
                              networks admitted without the issuer key (cwak1): reservations
                              one client address (IPv6: /64) holds at once (default 32)
  --reservation-ttl DURATION  reservation lifetime before refresh (default 2h)
  --limit-duration DURATION   limit each relayed connection to DURATION (default: unlimited)
  --limit-data BYTES          limit each relayed connection to BYTES per direction (default: unlimited)
  --drain MS                  on SIGTERM, time to close relayed connections; the process exits
                              within MS + 2 s (default 5000; a watchdog ends it with code 1)

Prints one "relay listening on <multiaddr>" line per address; give those to the signaling
service (CAUSEWAY_RELAYS) so that agents learn them.`

async function loadIdentity (file: string, log: Logger): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64'))
  } catch (err) {
    if (!(err instanceof Error && 'code' in err && err.code === 'ENOENT')) throw new Error(`cannot read identity file ${file}: ${err instanceof Error ? err.message : String(err)}`)
  }
  const key = await generateKeyPair('Ed25519')
  await writeFile(file, `${Buffer.from(privateKeyToProtobuf(key)).toString('base64')}\n`, { mode: 0o600, flag: 'wx' })
  log.info({ file }, 'created relay identity')
  return key
}

export async function relayCommand (argv: string[], ctx: CommandContext): Promise<number> {
  const { log, signal } = ctx
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      listen: { type: 'string', multiple: true },
      announce: { type: 'string', multiple: true },
      'admit-token-file': { type: 'string', multiple: true },
      'admit-key': { type: 'string', multiple: true },
      'print-admit-key': { type: 'boolean' },
      'identity-file': { type: 'string' },
      metrics: { type: 'string' },
      'max-reservations': { type: 'string' },
      'max-reservations-per-credential': { type: 'string' },
      'max-reservations-per-address': { type: 'string' },
      'revocations-file': { type: 'string', multiple: true },
      'reservation-ttl': { type: 'string' },
      'limit-duration': { type: 'string' },
      'limit-data': { type: 'string' },
      drain: { type: 'string', default: '5000' },
    },
  })
  ctx.shutdownBound.drainMs = drainFlag(values.drain)
  const fromTokens: string[] = []
  for (const file of values['admit-token-file'] ?? []) fromTokens.push(await admitKeyFromToken(await readFile(file, 'utf8')))
  if (values['print-admit-key'] === true) {
    if (fromTokens.length === 0) throw new Error('--print-admit-key needs --admit-token-file')
    process.stdout.write(fromTokens.map(k => `${k}\n`).join(''))
    return 0
  }
  const envKeys = (process.env.CAUSEWAY_RELAY_ADMIT_KEYS ?? '').split(/[\s,]+/).filter(Boolean)
  const keys = [...fromTokens, ...(values['admit-key'] ?? []), ...envKeys]
  if (keys.length === 0) throw new Error('no admit keys: give --admit-token-file, --admit-key or CAUSEWAY_RELAY_ADMIT_KEYS')
  for (const k of keys) parseAdmitKey(k)

  const limits: RelayLimits = {}
  if (values['max-reservations'] !== undefined) {
    const n = Number(values['max-reservations'])
    if (!Number.isInteger(n) || n <= 0) throw new Error('--max-reservations must be a positive integer')
    limits.maxReservations = n
  }
  for (const [flag, key] of [['max-reservations-per-credential', 'maxReservationsPerCredential'], ['max-reservations-per-address', 'maxReservationsPerAddress']] as const) {
    const v = values[flag]
    if (v === undefined) continue
    const n = Number(v)
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${flag} must be a positive integer`)
    limits[key] = n
  }
  if (values['reservation-ttl'] !== undefined) limits.reservationTtlMs = parseDuration(values['reservation-ttl']) * 1000
  if (values['limit-duration'] !== undefined || values['limit-data'] !== undefined) {
    limits.applyLimit = true
    limits.durationLimitMs = values['limit-duration'] !== undefined ? parseDuration(values['limit-duration']) * 1000 : 2 ** 31 - 1
    if (values['limit-data'] !== undefined) {
      if (!/^\d+$/.test(values['limit-data'])) throw new Error('--limit-data must be a number of bytes')
      limits.dataLimitBytes = BigInt(values['limit-data'])
    } else limits.dataLimitBytes = 2n ** 62n
  }

  const privateKey = values['identity-file'] !== undefined ? await loadIdentity(values['identity-file'], log) : undefined
  const revocationFiles = values['revocations-file'] ?? []
  const relay = await startRelay({
    listen: values.listen ?? ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws'],
    ...(values.announce !== undefined ? { announce: values.announce } : {}),
    admission: { keys, revocations: await Promise.all(revocationFiles.map(async f => await readFile(f, 'utf8'))) },
    limits,
    log,
    ...(privateKey !== undefined ? { privateKey } : {}),
  })
  let metrics: { url: string, close: () => Promise<void> } | undefined
  if (values.metrics !== undefined) {
    const { host, port } = parseHostPort(values.metrics)
    metrics = await serveMetrics(relay.metrics.registry, host, port)
    process.stdout.write(`relay metrics on ${metrics.url}\n`)
  }
  const stopWatches = revocationFiles.map(file => watchFile(file, text => {
    relay.adoptRevocations(text).then(
      adopted => { if (!adopted) log.info({ file }, 'revocation list not newer than the one in force, or of no network of this relay') },
      (err: unknown) => log.warn({ file, err: err instanceof Error ? err.message : String(err) }, 'revocation list refused'))
  }))
  process.stdout.write(relay.multiaddrs.map(ma => `relay listening on ${ma.toString()}\n`).join(''))
  await new Promise<void>(resolve => {
    if (signal.aborted) resolve()
    signal.addEventListener('abort', () => resolve(), { once: true })
  })
  for (const stop of stopWatches) stop()
  await metrics?.close()
  await relay.close()
  return 0
}
