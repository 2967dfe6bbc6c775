/** `causeway signaling`: runs the Node signaling service (the embedded default). */
import { parseArgs } from 'node:util'
import { configFromEnv, redactUrl } from '../signaling/config.ts'
import type { CommandContext } from './commands.ts'
import { startNodeSignaling } from '../signaling/node/server.ts'
import { drainFlag, parseHostPort } from './duration.ts'

export const SIGNALING_HELP = `causeway signaling [--listen HOST:PORT] [--store memory|redis://HOST:PORT[/DB]] [--drain MS]

Runs the signaling service on Node (default --listen 127.0.0.1:8787).

--store memory (the default) keeps rooms in this process: one instance. --store
redis://HOST:PORT[/DB] (rediss:// for TLS; also CAUSEWAY_STORE) keeps rooms, joins, presence and
relayed signals in Redis, so any number of instances behind one load balancer serve one network;
the password comes from CAUSEWAY_REDIS_PASSWORD (or the URL), and a replica silent for
CAUSEWAY_PRESENCE_TTL_MS (default 5000) has its peers announced gone.

On SIGTERM it closes every socket (peers reconnect to another instance) and exits within
--drain (default 5000) + 2 s; a watchdog ends it with code 1 if closing hangs.

Configuration comes from the environment (see the README): CAUSEWAY_ACCESS_SECRET,
CAUSEWAY_TURN_SECRET, CAUSEWAY_TURN_URLS, CAUSEWAY_STUN_URLS, CAUSEWAY_RELAYS and the limits
CAUSEWAY_MAX_MESSAGE_BYTES, CAUSEWAY_MAX_PEERS_PER_ROOM, CAUSEWAY_MAX_ROOMS,
CAUSEWAY_RATE_PER_SECOND, CAUSEWAY_RATE_BURST, CAUSEWAY_JOIN_TIMEOUT_MS, CAUSEWAY_MAX_PREJOIN,
CAUSEWAY_MAX_PREJOIN_PER_ADDRESS, CAUSEWAY_MAX_SEATS_PER_ADDRESS, CAUSEWAY_MAX_SEATS_PER_AGENT,
CAUSEWAY_MAX_VIEWERS_PER_ROOM, CAUSEWAY_MAX_VIEWERS_PER_ADDRESS, CAUSEWAY_MAX_ROOMS_PER_ADDRESS;
behind a reverse proxy CAUSEWAY_CLIENT_IP_HEADER.`

export async function signalingCommand (argv: string[], ctx: CommandContext): Promise<void> {
  const { log, signal } = ctx
  const { values } = parseArgs({ args: argv, options: { listen: { type: 'string', default: '127.0.0.1:8787' }, store: { type: 'string' }, drain: { type: 'string', default: '5000' } }, strict: true })
  ctx.shutdownBound.drainMs = drainFlag(values.drain)
  const { host, port } = parseHostPort(values.listen)
  // --store overrides CAUSEWAY_STORE.
  const config = configFromEnv({ ...process.env, ...(values.store !== undefined ? { CAUSEWAY_STORE: values.store } : {}) })
  const service = await startNodeSignaling({ host, port, config, log })
  const store = config.store.kind === 'redis' ? ` (rooms in ${redactUrl(config.store.url)})` : ''
  process.stdout.write(`signaling listening on ${service.url}${store}\n`)
  await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
  await service.close()
}
