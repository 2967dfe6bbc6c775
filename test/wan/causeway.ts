/**
 * causeway across an emulated WAN link, started the way users start it (`bin/causeway`):
 *
 *   left  (10.77.0.1): `causeway signaling` on :8787, agent `near` with
 *                       `--connect wan@far=127.0.0.1:7001`, the clients (wan-io.ts)
 *   right (10.77.0.2): the server (wan-io.ts serve on 0.0.0.0:7000), agent `far` with
 *                       `--share wan=127.0.0.1:7000`
 *
 * `relay: true` adds `causeway relay` on the left (10.77.0.1:4001) and forces the agents onto it:
 * on the link the right side reaches only the signaling service and the relay (iptables), so
 * WebRTC never connects and new streams take the relay after `--direct-timeout`. Both agents read their status API on 127.0.0.1:7777 of their namespace.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { deriveRelayKey } from '../../protocol/keys.ts'
import { admitKeyFromRelayKey } from '../../protocol/relay-admission.ts'
import { encodeToken, newSecret } from '../../protocol/token.ts'
import type { LinkProcess, Side, WanLink } from '../../scripts/wan/link.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const NODE = join(ROOT, 'node_modules/.bin/node')
export const CAUSEWAY = join(ROOT, 'bin/causeway')
export const WAN_IO = join(ROOT, 'test/wan/wan-io.ts')
export const SERVER_PORT = 7000
export const CONNECT_PORT = 7001
const STATUS = '127.0.0.1:7777'

export interface PeerView { name: string, state: string, path: string, streams: number }

export interface CausewayOnLink {
  near: LinkProcess
  far: LinkProcess
  server: LinkProcess
  /** The near agent's view of `far` once it is connected on the expected path. */
  peer: PeerView
  /** Runs wan-io.ts in a side's namespace and parses its JSON line. */
  io: <T>(side: Side, args: string[], timeoutMs: number) => Promise<T>
  status: (side: Side) => Promise<{ peers: PeerView[] } | undefined>
  /** Kills what this started (signaling, relay, agents, server) by PID; the link stays up. */
  close: () => Promise<void>
}

/** Runs `test/wan/wan-io.ts ARGS` in `side` and parses the JSON line it prints. */
export async function wanIo<T> (link: WanLink, side: Side, args: string[], timeoutMs: number): Promise<T> {
  const r = await link.exec(side, [NODE, '--disable-warning=ExperimentalWarning', WAN_IO, ...args], timeoutMs + 15_000)
  const line = r.stdout.split('\n').find(l => l.startsWith('{'))
  if (line === undefined) throw new Error(`wan-io ${args.join(' ')} printed nothing (exit ${r.code}): ${r.stderr.slice(-2000)}`)
  return JSON.parse(line) as T
}

/** Starts `wan-io.ts serve` on 0.0.0.0:port in `side` (reachable on lo, the link and tunnels). */
export async function startServer (link: WanLink, side: Side, port = SERVER_PORT): Promise<LinkProcess> {
  const p = link.spawn(side, [NODE, '--disable-warning=ExperimentalWarning', WAN_IO, 'serve', '0.0.0.0', String(port)])
  await p.waitFor(/^listening$/m, 20_000)
  return p
}

async function status (link: WanLink, side: Side): Promise<{ peers: PeerView[] } | undefined> {
  const r = await link.exec(side, ['curl', '-s', '-m', '2', `http://${STATUS}/status`], 5000)
  if (r.code !== 0) return undefined
  try { return JSON.parse(r.stdout) as { peers: PeerView[] } } catch { return undefined }
}

export async function startCauseway (link: WanLink, opts: { relay?: boolean, extraArgs?: string[], logLevel?: string } = {}): Promise<CausewayOnLink> {
  const env = { CAUSEWAY_LOG_LEVEL: opts.logLevel ?? 'warn' }
  const procs: LinkProcess[] = []
  const close = async (): Promise<void> => { await Promise.all(procs.map(async p => { await p.kill() })) }
  const signaling = link.spawn('left', [CAUSEWAY, 'signaling', '--listen', `${link.addr('left')}:8787`], env)
  procs.push(signaling)
  await signaling.waitFor(/signaling listening on/, 30_000)
  const secret = newSecret()
  const token = encodeToken({ kind: 'member', signaling: `http://${link.addr('left')}:8787`, secret })
  const relayArgs: string[] = []
  if (opts.relay === true) {
    const relay = link.spawn('left', [CAUSEWAY, 'relay', '--listen', `/ip4/${link.addr('left')}/tcp/4001`,
      '--admit-key', await admitKeyFromRelayKey(await deriveRelayKey(secret))], env)
    procs.push(relay)
    const m = await relay.waitFor(/relay listening on (\/ip4\/\S+\/tcp\/4001\/p2p\/\S+)/, 30_000)
    relayArgs.push('--relay', m[1]!, '--direct-timeout', '2000', '--connect-timeout', '4000')
    // WebRTC must never connect (over UDP or ICE-TCP): on the link, the right side talks only
    // to the signaling service and the relay.
    const r = await link.exec('right', ['sh', '-c', [
      'iptables -w -A OUTPUT -o wan0 -p tcp -m multiport --dports 8787,4001 -j ACCEPT', 'iptables -w -A OUTPUT -o wan0 -j DROP',
      'iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED -j ACCEPT', 'iptables -w -A INPUT -i wan0 -j DROP',
    ].join(' && ')])
    if (r.code !== 0) throw new Error(`iptables in the right namespace: ${r.stderr}`)
  }
  const server = await startServer(link, 'right')
  procs.push(server)
  const common = ['--status', STATUS, '--no-service-ice', '--drain', '200', ...relayArgs, ...(opts.extraArgs ?? [])]
  const far = link.spawn('right', [CAUSEWAY, 'agent', '--name', 'far', '--share', `wan=127.0.0.1:${SERVER_PORT}`, ...common], { ...env, CAUSEWAY_TOKEN: token })
  const near = link.spawn('left', [CAUSEWAY, 'agent', '--name', 'near', '--connect', `wan@far=127.0.0.1:${CONNECT_PORT}`, ...common], { ...env, CAUSEWAY_TOKEN: token })
  procs.push(far, near)
  const want = opts.relay === true ? 'relay' : 'direct'
  const deadline = Date.now() + 90_000
  let last = ''
  for (let i = 0; i < 1000; i++) {
    const s = await status(link, 'left')
    const p = s?.peers.find(x => x.name === 'far')
    last = JSON.stringify(p ?? s ?? 'no status')
    if (p !== undefined && p.state === 'connected' && p.path === want) {
      return { near, far, server, peer: p, io: async (side, args, ms) => await wanIo(link, side, args, ms), status: async side => await status(link, side), close }
    }
    if (Date.now() > deadline) break
    await new Promise(resolve => setTimeout(resolve, 300))
  }
  await close()
  throw new Error(`near never saw far connected on ${want}: ${last}\nnear: ${near.output().slice(-2000)}\nfar: ${far.output().slice(-2000)}`)
}
