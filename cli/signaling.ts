/** `causeway signaling`: runs the Node signaling service (the embedded default). */
import { parseArgs } from 'node:util'
import type { Logger } from 'pino'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { parseHostPort } from './duration.ts'

export const SIGNALING_HELP = `causeway signaling [--listen HOST:PORT]

Runs the signaling service on Node with in-memory rooms (default --listen 127.0.0.1:8787).
Configuration comes from the environment (see the README): CAUSEWAY_ACCESS_SECRET,
CAUSEWAY_TURN_SECRET, CAUSEWAY_TURN_URLS, CAUSEWAY_STUN_URLS, CAUSEWAY_RELAYS and the limits
CAUSEWAY_MAX_MESSAGE_BYTES, CAUSEWAY_MAX_PEERS_PER_ROOM, CAUSEWAY_MAX_ROOMS,
CAUSEWAY_RATE_PER_SECOND, CAUSEWAY_RATE_BURST, CAUSEWAY_JOIN_TIMEOUT_MS, CAUSEWAY_MAX_PREJOIN,
CAUSEWAY_MAX_PREJOIN_PER_ADDRESS; behind a reverse proxy CAUSEWAY_CLIENT_IP_HEADER.`

export async function signalingCommand (argv: string[], log: Logger, signal: AbortSignal): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { listen: { type: 'string', default: '127.0.0.1:8787' } }, strict: true })
  const { host, port } = parseHostPort(values.listen)
  const config = configFromEnv(process.env)
  const service = await startNodeSignaling({ host, port, config, log })
  process.stdout.write(`signaling listening on ${service.url}\n`)
  await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
  await service.close()
}
