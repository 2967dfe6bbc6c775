/** `causeway agent`: runs an agent (host mode flags here; in-cluster mode adds --kube). */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { Logger } from 'pino'
import type { CommandContext } from './commands.ts'
import { decodeToken } from '../protocol/token.ts'
import { MAX_ASSOCIATIONS, PeerName } from '../protocol/peer.ts'
import { Agent } from '../agent/agent.ts'
import { parseIceFlag } from '../agent/ice.ts'
import { ENGINE_CHOICES, isEngineChoice } from '../agent/engine/index.ts'
import { startStatusServer } from '../agent/status/server.ts'
import { DEFAULT_ASSOCIATIONS } from '../agent/tunnel/associations.ts'
import { parseConnectFlag, parseShareFlag } from '../agent/tunnel/shares.ts'
import { parseHostPort } from './duration.ts'
import { checkKubeFlags, KUBE_HELP, KUBE_OPTIONS, kubeModeFromFlags } from './agent-kube.ts'
import { readTokenText } from './token-input.ts'
import { watchFile } from './watch-file.ts'
import { ICE_POLICY_HELP, ICE_POLICY_OPTIONS, icePolicyFromFlags } from './ice-flags.ts'

export const AGENT_HELP = `causeway agent (--token-file F | env CAUSEWAY_TOKEN) [--name NAME] [options]

  --token-file F                 the agent token (causeway token --name NAME); CAUSEWAY_TOKEN
                                 works too. --token T also works but shows the secret in ps.
  --name NAME                    default: the name in the agent token's credential (a
                                 different name is refused); required with a shared token
  --instance NAME                this process's instance name within its site (several agents
                                 may run with one agent token: the chart's replicas); default
                                 env CAUSEWAY_INSTANCE, else host name + random suffix
  --revocations-file F           the network's signed revocation list (causeway token
                                 --revoke); re-read when it changes, passed on to peers
  --state-dir DIR                keep state across restarts here (created if missing): the
                                 newest revocation list seen (from the file or a peer), loaded
                                 at start; a list only moves forward (its seq); env
                                 CAUSEWAY_STATE_DIR

  --share NAME=HOST:PORT[,peers=a|b][,protocol=tcp|http|udp][,weight=N][,priority=N][,balance=B]
                                 export a TCP (default) or UDP service (repeatable); only this
                                 declared target is ever dialed for NAME; weight/priority/balance
                                 are announced to importers that pick between sites (NAME@*)
  --connect SHARE@PEER=HOST:PORT[,protocol=udp]  listen locally (TCP, or UDP with
                                 protocol=udp); each connection (UDP: each client address) is
                                 tunnelled to SHARE on PEER (any instance of that site);
                                 PEER * = any site exporting SHARE, with
                                 [,balance=round-robin|least-loaded|nearest]
                                 [,weight=SITE:N|SITE:N] [,priority=SITE:N|SITE:N] (lower first)
  --udp-max-flows N              UDP flows per peer (share side) and per listener (connect
                                 side) (default 256)
  --udp-idle MS                  close a UDP flow silent this long (default 30000)
  --ice URL[,username=U,credential=C]  extra STUN/TURN server (repeatable); the signaling
                                 service's /v1/ice is used too (disable with --no-service-ice)
${ICE_POLICY_HELP}
  --status HOST:PORT             status API + /metrics (default 127.0.0.1:7777; "off" to disable)
  --max-streams N                concurrent streams per peer (default 500)
  --connect-timeout MS           peer connection timeout before retry (default 20000)
  --relay MULTIADDR              libp2p relay (…/p2p/<relay PeerId>, TCP or /ws; repeatable),
                                 added to the signaling service's relays
  --direct-timeout MS            a peer not reached directly (WebRTC) this long is reached
                                 through the relay, while direct keeps being retried (default 5000)
  --drain MS                     on SIGTERM, let streams finish this long (default 5000); the
                                 process exits within MS + 2 s of the signal (a watchdog ends
                                 it with code 1 if closing hangs)
  --engine auto|datachannel|wrtc WebRTC engine for new peer connections (default auto, or env
                                 CAUSEWAY_ENGINE): auto = datachannel where this host reaches its
                                 STUN/TURN servers over UDP (or has none), else wrtc;
                                 datachannel = node-datachannel (faster across distance, no TURN
                                 over TCP, no ICE restart); wrtc = @roamhq/wrtc (TURN over TCP/TLS)
  --associations N               SCTP associations (peer connections) per peer pair that streams
                                 are spread over, 1-${MAX_ASSOCIATIONS} (default ${DEFAULT_ASSOCIATIONS}, or env
                                 CAUSEWAY_ASSOCIATIONS); the two agents each offer half of the
                                 extras once the session is up (set it on both)
  --stripe on|off                spread one bulk connection's bytes over the pair's associations
                                 (default on, or env CAUSEWAY_STRIPE); used only with agents that
                                 stripe too, and only once a connection's window is its limit
${KUBE_HELP}`

function onOff (v: string, flag: string): boolean {
  if (v !== 'on' && v !== 'off') throw new Error(`${flag} must be on or off`)
  return v === 'on'
}

function associationsFlag (v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > MAX_ASSOCIATIONS) throw new Error(`--associations must be an integer from 1 to ${MAX_ASSOCIATIONS}`)
  return n
}

export async function agentCommand (argv: string[], ctx: CommandContext): Promise<number> {
  const { log, signal } = ctx
  const { values } = parseArgs({
    args: argv,
    options: {
      token: { type: 'string' },
      'token-file': { type: 'string' },
      name: { type: 'string' },
      instance: { type: 'string' },
      'revocations-file': { type: 'string' },
      'state-dir': { type: 'string' },
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
      'udp-max-flows': { type: 'string', default: '256' },
      'udp-idle': { type: 'string', default: '30000' },
      engine: { type: 'string', default: process.env.CAUSEWAY_ENGINE ?? 'auto' },
      associations: { type: 'string', default: process.env.CAUSEWAY_ASSOCIATIONS ?? String(DEFAULT_ASSOCIATIONS) },
      stripe: { type: 'string', default: process.env.CAUSEWAY_STRIPE ?? 'on' },
      ...KUBE_OPTIONS,
      ...ICE_POLICY_OPTIONS,
    },
    strict: true,
  })
  const tokenText = readTokenText(values)
  if (tokenText === undefined) throw new Error('a network token is required: --token-file or CAUSEWAY_TOKEN')
  const decoded = decodeToken(tokenText)
  // The signaling service may be reachable at another URL than the token's (e.g. in-cluster).
  const override = process.env.CAUSEWAY_SIGNALING_URL
  if (override !== undefined && override !== '' && !/^https?:\/\/[^\s]+$/.test(override)) throw new Error('CAUSEWAY_SIGNALING_URL must be an http(s) URL')
  const token = override !== undefined && override !== '' ? { ...decoded, signaling: override.replace(/\/$/, '') } : decoded
  if (token.kind !== 'member') throw new Error('agents need a member token, not a viewer token')
  const nameText = values.name ?? process.env.CAUSEWAY_NAME
  const name = nameText !== undefined ? PeerName.safeParse(nameText) : undefined
  if (name?.success === false || (name === undefined && token.identity === undefined)) throw new Error('--name NAME is required with a shared token (letters, digits, . _ -; up to 64)')
  const envInstance = process.env.CAUSEWAY_INSTANCE
  const instance = values.instance ?? (envInstance !== '' ? envInstance : undefined)
  if (instance !== undefined && !PeerName.safeParse(instance).success) throw new Error('--instance must be 1-64 letters, digits, . _ or -')
  const revocationsFile = values['revocations-file']
  const stateDir = values['state-dir'] ?? (process.env.CAUSEWAY_STATE_DIR !== '' ? process.env.CAUSEWAY_STATE_DIR : undefined)
  const engine = values.engine
  if (!isEngineChoice(engine)) throw new Error(`--engine must be one of ${ENGINE_CHOICES.join(', ')}`)
  checkKubeFlags(values) // bad Kubernetes flags fail before the agent joins the network
  const drainMs = positive(values.drain, '--drain')
  ctx.shutdownBound.drainMs = drainMs // SIGTERM: exit within drain + 2 s (cli/main.ts)
  const agent = new Agent({
    token,
    ...(name?.data !== undefined ? { name: name.data } : {}),
    ...(instance !== undefined ? { instance } : {}),
    ...(revocationsFile !== undefined ? { revocations: readFileSync(revocationsFile, 'utf8') } : {}),
    ...(stateDir !== undefined ? { stateDir } : {}),
    shares: values.share.map(parseShareFlag),
    connects: values.connect.map(parseConnectFlag),
    iceServers: values.ice.map(parseIceFlag),
    useServiceIce: !values['no-service-ice'],
    icePolicy: icePolicyFromFlags(values),
    log,
    tunnel: { maxStreamsPerPeer: positive(values['max-streams'], '--max-streams'), stripe: onOff(values.stripe, '--stripe') },
    udp: { maxFlowsPerPeer: positive(values['udp-max-flows'], '--udp-max-flows'), idleMs: positive(values['udp-idle'], '--udp-idle') },
    connectTimeoutMs: positive(values['connect-timeout'], '--connect-timeout'),
    relays: values.relay,
    directTimeoutMs: positive(values['direct-timeout'], '--direct-timeout'),
    drainMs,
    engine,
    associations: associationsFlag(values.associations),
  })
  await agent.start()
  const stopWatch = revocationsFile !== undefined ? watchRevocations(agent, revocationsFile, log) : undefined
  const kube = await kubeModeFromFlags(agent, values, log, signal)
  let status: Awaited<ReturnType<typeof startStatusServer>> | undefined
  if (values.status !== 'off') {
    const { host, port } = parseHostPort(values.status)
    status = await startStatusServer(agent, host, port)
    log.info({ url: status.url }, 'status API listening')
  }
  for (const l of agent.listeners) log.info({ share: l.spec.share, peer: l.spec.peer, listen: `${l.host}:${l.port}` }, 'connect listener')
  await new Promise<void>(resolve => signal.addEventListener('abort', () => resolve(), { once: true }))
  stopWatch?.()
  // the agent drains first (kube mode hands its Lease over and marks its endpoints terminating on
  // the 'draining' event); then the controller removes this instance's slices
  const stopping = Date.now()
  await agent.stop()
  log.info({ ms: Date.now() - stopping }, 'drained')
  await kube?.close()
  await status?.close()
  return 0
}

function positive (text: string, flag: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer`)
  return n
}

/** Re-reads the revocation list file every 5 s when its content changes. */
function watchRevocations (agent: Agent, file: string, log: Logger): () => void {
  return watchFile(file, text => {
    agent.mesh.adoptRevocations(text).then(
      adopted => { if (!adopted) log.info({ file }, 'revocation list not newer than the one in force') },
      (err: unknown) => log.warn({ file, err: err instanceof Error ? err.message : String(err) }, 'revocation list refused'))
  })
}
