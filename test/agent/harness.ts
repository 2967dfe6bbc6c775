/** Test harness: a Node signaling service and in-process agents on loopback. */
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { issueAgentToken, newNetwork, type NetworkOwner } from '../../protocol/identity-owner.ts'
import { encodeToken, type MemberToken } from '../../protocol/token.ts'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../../signaling/node/server.ts'
import { Agent, type AgentInit } from '../../agent/agent.ts'

export const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

export interface Net {
  signaling: NodeSignaling
  /** The network owner's records (issuer key): `issue` makes agent tokens from it. */
  owner: NetworkOwner
  /** Issues an agent token for `name` (valid `ttlSeconds`, default 1 h). */
  issue: (name: string, ttlSeconds?: number) => Promise<MemberToken>
  agents: Agent[]
  agent: (name: string, init?: Partial<AgentInit>) => Promise<Agent>
  close: () => Promise<void>
}

export async function startNet (env: Record<string, string> = {}, port = 0): Promise<Net> {
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port, config: configFromEnv(env), log })
  const owner = await newNetwork(signaling.url)
  const agents: Agent[] = []
  const net: Net = {
    signaling,
    owner,
    issue: async (name, ttlSeconds = 3600) => await issueAgentToken(owner, name, { ttlSeconds }),
    agents,
    /** An in-process agent with its own agent token (unless `init.token` is given). */
    async agent (name, init = {}) {
      const token = init.token ?? await net.issue(name)
      const a = new Agent({ token, name, log: log.child({ agent: name }), drainMs: 200, ...init })
      agents.push(a)
      await a.start()
      return a
    },
    async close () {
      await Promise.allSettled(agents.map(async a => await a.stop()))
      await net.signaling.close()
    },
  }
  return net
}

export function tokenString (t: MemberToken): string { return encodeToken(t) }

/** The suites' one wait-for-condition helper (test/until.ts). */
export { until } from '../until.ts'

export async function listen (server: Server): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/**
 * A target that reads everything until FIN while sending `size` random bytes; then sends
 * sha256(its payload) and sha256(what it received), 64 bytes, and closes. Counts connections.
 */
export async function hashServer (size: number): Promise<{ server: Server, port: number, accepted: () => number }> {
  let accepted = 0
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    accepted++
    const got = createHash('sha256')
    const payload = randomBytes(size)
    sock.on('data', (d: Buffer) => got.update(d))
    sock.on('error', () => {})
    let sent = false
    let ended = false
    const finish = (): void => {
      if (sent && ended) sock.end(Buffer.concat([createHash('sha256').update(payload).digest(), got.digest()]))
    }
    sock.write(payload, () => { sent = true; finish() })
    sock.on('end', () => { ended = true; finish() })
  })
  const port = await listen(server)
  return { server, port, accepted: () => accepted }
}

export interface ExchangeResult { ok: boolean, why?: string }

/**
 * Connects to `port`, sends `size` random bytes and half-closes while reading everything the
 * hashServer sends; checks both directions by hash.
 */
export async function exchange (port: number, size: number, timeoutMs = 60_000): Promise<ExchangeResult> {
  const data = randomBytes(size)
  const sentHash = createHash('sha256').update(data).digest('hex')
  return await new Promise((resolve) => {
    const chunks: Buffer[] = []
    const sock = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const t = setTimeout(() => { sock.destroy(); resolve({ ok: false, why: 'timed out' }) }, timeoutMs)
    sock.on('connect', () => { sock.end(data) })
    sock.on('data', (d: Buffer) => chunks.push(d))
    sock.on('error', (err) => { clearTimeout(t); resolve({ ok: false, why: err.message }) })
    sock.on('end', () => {
      clearTimeout(t)
      const all = Buffer.concat(chunks)
      sock.destroy()
      if (all.length !== size + 64) { resolve({ ok: false, why: `received ${all.length} bytes, expected ${size + 64}` }); return }
      const payloadHash = createHash('sha256').update(all.subarray(0, size)).digest('hex')
      if (payloadHash !== all.subarray(size, size + 32).toString('hex')) { resolve({ ok: false, why: 'payload from the server corrupted' }); return }
      if (sentHash !== all.subarray(size + 32).toString('hex')) { resolve({ ok: false, why: 'payload to the server corrupted' }); return }
      resolve({ ok: true })
    })
  })
}

/**
 * Pins `a`'s measured RTT to `peer` at `ms`: on loopback the RTT is well under a millisecond, so
 * rules that depend on it (window growth, when a stream stripes) would depend on the machine's
 * speed; pinned as between distant sites, the rule is what a test checks.
 */
export async function pinRtt (a: Agent, peer: string, ms: number): Promise<void> {
  const p = await a.peerByName(peer)
  Object.defineProperty(p.session!, 'rttMs', { configurable: true, get: () => ms, set: () => {} })
}

/** How many associations `a` has up to the agent named `to` (its status). */
export const associationsTo = (a: Agent, to: string): number => a.status().peers.find(p => p.name === to)?.associations ?? 0
