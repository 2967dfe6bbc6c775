/**
 * A hostile signaling operator for tests: a WebSocket proxy in front of the real signaling
 * service that every agent connects to. It holds the network secret (the worst case: the
 * operator colludes with a member), so it can open and reseal every agent-to-agent envelope.
 * Modes, switchable at run time:
 * - `swapFingerprint`: rewrites the DTLS fingerprint in every offer/answer and reseals it;
 * - `replay`: forwards every signal twice (the copy 100 ms later);
 * - `reorder`: holds signals and delivers each 60 ms batch in reverse order;
 * - `forgeWelcome`: adds a fake peer id to each welcome and, from it, sends a hello claiming
 *   `site-b` with site-b's credential (copied from a hello it opened) and its own proof.
 * `GET /v1/ice` answers `ice` when set (the operator lists whatever servers it likes, e.g.
 * internal hosts and ports to make agents probe them), else 404; `GET /healthz` answers ok.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer, type RawData } from 'ws'
import { deriveMemberKeys } from '../../protocol/keys.ts'
import { Opener, seal } from '../../protocol/seal.ts'
import { importSigningKey } from '../../protocol/identity.ts'
import { signHello } from '../../protocol/identity-proof.ts'

export interface HostileModes { swapFingerprint: boolean, replay: boolean, reorder: boolean, forgeWelcome: boolean }

export interface HostileSignaling {
  url: string
  modes: HostileModes
  /** What `/v1/ice` answers (undefined: 404). */
  ice?: { iceServers: RTCIceServer[], relays: string[] }
  /** `/v1/ice` requests served. */
  iceRequests: number
  /** What the proxy did: counts of rewritten, replayed and forged frames. */
  done: { swapped: number, replayed: number, forged: number, reordered: number }
  close: () => Promise<void>
}

const FAKE = 'forgedPeerIdFromTheOperator'

export async function startHostileSignaling (upstream: string, secret: Uint8Array<ArrayBuffer>, attackerKeyPkcs8: Uint8Array<ArrayBuffer>): Promise<HostileSignaling> {
  const keys = await deriveMemberKeys(secret)
  const attackerKey = await importSigningKey(attackerKeyPkcs8)
  const modes: HostileModes = { swapFingerprint: false, replay: false, reorder: false, forgeWelcome: false }
  const done = { swapped: 0, replayed: 0, forged: 0, reordered: 0 }
  /** Credentials seen in opened hellos, by name. */
  const creds = new Map<string, string>()
  const http = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'); return }
    if (path === '/v1/ice' && evil.ice !== undefined) { evil.iceRequests++; res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(evil.ice)); return }
    res.writeHead(404).end()
  })
  const wss = new WebSocketServer({ server: http })
  await new Promise<void>(resolve => http.listen(0, '127.0.0.1', resolve))
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const later = (ms: number, fn: () => void): void => { const t = setTimeout(() => { timers.delete(t); fn() }, ms); timers.add(t) }

  wss.on('connection', (client, req) => {
    const up = new WebSocket(upstream.replace(/^http/, 'ws') + (req.url ?? '/'))
    let self = ''
    let opener: Opener | undefined
    const pending: string[] = []
    let batch: string[] = []
    const toClient = (text: string): void => { if (client.readyState === WebSocket.OPEN) client.send(text) }
    const flushBatch = (): void => { const b = batch.reverse(); batch = []; if (b.length > 1) done.reordered++; for (const t of b) toClient(t) }

    const rewrite = async (text: string): Promise<string[]> => {
      let msg: Record<string, unknown>
      try { msg = JSON.parse(text) as Record<string, unknown> } catch { return [text] }
      if (msg.type === 'welcome' && typeof msg.peer === 'string') {
        self = msg.peer
        opener = new Opener({ room: keys.room, self, keys: [{ key: keys.seal, role: 'agent' }], replayCache: 100_000 })
        if (modes.forgeWelcome && Array.isArray(msg.peers)) {
          msg.peers = [...msg.peers as string[], FAKE]
          later(300, () => { void forgeHello() })
          return [JSON.stringify(msg)]
        }
        return [text]
      }
      if (msg.type !== 'signal' || typeof msg.from !== 'string' || typeof msg.sealed !== 'string' || opener === undefined) return [text]
      let body: Record<string, unknown>
      try { body = (await opener.open(msg.from, msg.sealed)).body as Record<string, unknown> } catch { return [text] }
      if (body.type === 'hello' && typeof body.name === 'string' && typeof body.cred === 'string') creds.set(body.name, body.cred)
      const d = body.description as { type?: string, sdp?: string } | undefined
      if (modes.swapFingerprint && body.type === 'description' && typeof d?.sdp === 'string' && d.sdp.includes('a=fingerprint:')) {
        const sdp = d.sdp.replace(/(a=fingerprint:\S+ )([0-9A-Fa-f:]+)/g, (_m, p: string, hex: string) => p + hex.split(':').map(() => 'AA').join(':'))
        done.swapped++
        return [JSON.stringify({ ...msg, sealed: await seal(keys.seal, { room: keys.room, from: msg.from, to: self, body: { ...body, description: { ...d, sdp } } }) })]
      }
      return [text]
    }

    const forgeHello = async (): Promise<void> => {
      const cred = creds.get('site-b')
      const ts = Date.now()
      const sig = await signHello(attackerKey, { room: keys.room, from: FAKE, to: self, ts, name: 'site-b', role: 'agent' })
      const hello = { type: 'hello', name: 'site-b', role: 'agent', caps: ['tcp/1'], ...(cred !== undefined ? { cred } : {}), proof: { ts, sig } }
      done.forged++
      toClient(JSON.stringify({ type: 'signal', from: FAKE, sealed: await seal(keys.seal, { room: keys.room, from: FAKE, to: self, body: hello }) }))
    }

    // Server -> client frames go through `rewrite` strictly in order.
    let chain: Promise<void> = Promise.resolve()
    up.on('message', (data: RawData) => {
      const text = data.toString()
      chain = chain.then(async () => {
        for (const out of await rewrite(text)) {
          const isSignal = out.startsWith('{"type":"signal"')
          if (modes.reorder && isSignal) { batch.push(out); if (batch.length === 1) later(60, flushBatch) } else toClient(out)
          if (modes.replay && isSignal) { done.replayed++; later(100, () => toClient(out)) }
        }
      }).catch(() => {})
    })
    up.on('open', () => { for (const p of pending.splice(0)) up.send(p) })
    client.on('message', (data: RawData) => { const t = data.toString(); if (up.readyState === WebSocket.OPEN) up.send(t); else pending.push(t) })
    const closeBoth = (): void => { try { client.close() } catch { /* closed */ } try { up.close() } catch { /* closed */ } }
    up.on('close', closeBoth)
    up.on('error', closeBoth)
    client.on('close', closeBoth)
    client.on('error', closeBoth)
  })

  const evil: HostileSignaling = {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    modes,
    iceRequests: 0,
    done,
    close: async () => {
      for (const t of timers) clearTimeout(t)
      for (const c of wss.clients) c.terminate()
      await new Promise<void>(resolve => wss.close(() => resolve()))
      await new Promise<void>(resolve => http.close(() => resolve()))
    },
  }
  return evil
}
