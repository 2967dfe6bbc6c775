/** `causeway agent`: runs an agent (host mode flags here; in-cluster mode adds --kube). */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { Logger } from 'pino'
import { decodeToken } from '../protocol/token.ts'
import { PeerName } from '../protocol/peer.ts'
import { Agent } from '../agent/agent.ts'
import { parseIceFlag } from '../agent/ice.ts'
import { startStatusServer } from '../agent/status/server.ts'
import { parseConnectFlag, parseShareFlag } from '../agent/tunnel/shares.ts'
import { parseHostPort } from './duration.ts'
import { checkKubeFlags, KUBE_HELP, KUBE_OPTIONS, kubeModeFromFlags } from './agent-kube.ts'

export const AGENT_HELP = `causeway agent (--token T | --token-file F | env CAUSEWAY_TOKEN) --name NAME [options]

  --share NAME=HOST:PORT[,peers=a|b][,protocol=http]   export a TCP service (repeatable);
                                 only this declared target is ever dialed for NAME
  --connect SHARE@PEER=HOST:PORT listen locally; each connection is tunnelled to SHARE on PEER
  --ice URL[,username=U,credential=C]  extra STUN/TURN server (repeatable); the signaling
                                 service's /v1/ice is used too (disable with --no-service-ice)
  --status HOST:PORT             status API + /metrics (default 127.0.0.1:7777; "off" to disable)
  --max-streams N                concurrent streams per peer (default 500)
  --connect-timeout MS           peer connection timeout before retry (default 20000)
  --relay MULTIADDR              libp2p relay (…/p2p/<relay PeerId>, TCP or /ws; repeatable),
                                 added to the signaling service's relays
  --direct-timeout MS            a peer not reached directly (WebRTC) this long is reached
                                 through the relay, while direct keeps being retried (default 5000)
  --drain MS                     on SIGTERM, let streams finish this long (default 5000)
${KUBE_HELP}`

export async function agentCommand (argv: string[], log: Logger, signal: AbortSignal): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      token: { type: 'string' },
      'token-file': { type: 'string' },
      name: { type: 'string' },
      share: { type: 'string', multiple: true, default: [] },
      connect: { type: 'string', multiple: true, default: [] },
      ice: { type: 'string', multiple: true, default: [] },
      'no-service-ice': { type: 'boolean', default: false },
      status: { type: 'string', default: '127.0.0.1:7777' },
      'max-streams': { type: 'string', default: '500' },
      'connect-timeout': { type: 'string', default: '20000' },
      relay: { type: 'string', multiple: true, default: [] },
      'direct-timeout': { type: 'string', default: '5000' },
      drain: { type: 'string', default: '5000' },
      ...KUBE_OPTIONS,
    },
    strict: true,
  })
  const tokenText = values.token ?? (values['token-file'] !== undefined ? readFileSync(values['token-file'], 'utf8') : process.env.CAUSEWAY_TOKEN)
  if (tokenText === undefined) throw new Error('a network token is required: --token, --token-file or CAUSEWAY_TOKEN')
  const decoded = decodeToken(tokenText)
  // The signaling service may be reachable at another URL than the token's (e.g. in-cluster).
  const override = process.env.CAUSEWAY_SIGNALING_URL
  if (override !== undefined && override !== '' && !/^https?:\/\/[^\s]+$/.test(override)) throw new Error('CAUSEWAY_SIGNALING_URL must be an http(s) URL')
  const token = override !== undefined && override !== '' ? { ...decoded, signaling: override.replace(/\/$/, '') } : decoded
  if (token.kind !== 'member') throw new Error('agents need a member token, not a viewer token')
  const name = PeerName.safeParse(values.name ?? process.env.CAUSEWAY_NAME)
  if (!name.success) throw new Error('--name NAME is required (letters, digits, . _ -; up to 64)')
  checkKubeFlags(values) // bad Kubernetes flags fail before the agent joins the network
  const agent = new Agent({
    token,
    name: name.data,
    shares: values.share.map(parseShareFlag),
    connects: values.connect.map(parseConnectFlag),
    iceServers: values.ice.map(parseIceFlag),
    useServiceIce: !values['no-service-ice'],
    log,
    tunnel: { maxStreamsPerPeer: positive(values['max-streams'], '--max-streams') },
    connectTimeoutMs: positive(values['connect-timeout'], '--connect-timeout'),
    relays: values.relay,
    directTimeoutMs: positive(values['direct-timeout'], '--direct-timeout'),
    drainMs: positive(values.drain, '--drain'),
  })
  await agent.start()
  const kube = await kubeModeFromFlags(agent, values, log, signal)
  let status: Awaited<ReturnType<typeof startStatusServer>> | undefined
  if (values.status !== 'off') {
    const { host, port } = parseHostPort(values.status)
    status = await startStatusServer(agent, host, port)
    log.info({ url: status.url }, 'status API listening')
  }
  for (const l of agent.listeners) log.info({ share: l.spec.share, peer: l.spec.peer, listen: `${l.host}:${l.port}` }, 'connect listener')
  await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
  await kube?.close()
  await agent.stop()
  await status?.close()
  return 0
}

function positive (text: string, flag: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer`)
  return n
}
