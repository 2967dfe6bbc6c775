/**
 * TURN probes (RFC 5766): a real Allocate with the long-term credentials `/v1/ice` hands out,
 * over UDP, TCP or TLS as the URL says, then a Refresh with lifetime 0 that releases the
 * allocation at once. Reports whether the server answered (reachable), whether the allocation
 * succeeded, the relayed address and the round-trip time of the first answer.
 */
import { connect as tcpConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import {
  ATTR, attr, decodeAddress, encodeStun, errorCode, longTermKey, METHOD, newTransactionId, parseStun, StunFramer,
  textAttr, u32, utf8Attr, type StunMessage,
} from './stun.ts'
import { StunSocket, type Endpoint } from './udp.ts'

import { parseIceUrl, type IceTransport, type IceUrl } from '../../protocol/ice-url.ts'
export { parseIceUrl, type IceTransport, type IceUrl }

export interface TurnResult {
  url: string
  transport: IceTransport
  host: string
  port: number
  /** The server answered (a STUN message came back). */
  reachable: boolean
  /** An allocation was granted with the given credentials. */
  allocated: boolean
  /** The relayed transport address the server allocated. */
  relayed?: string
  /** Round trip of the fastest STUN transaction with the server (allocate or refresh), ms; handshakes not counted. */
  rttMs: number | null
  error?: string
  /** Datagrams / frames that were not STUN or answered nothing of ours. */
  ignored: number
}

/** One request/response channel to a TURN server (UDP socket, or a TCP/TLS connection). */
interface Channel {
  transact: (bytes: Buffer, tid: Buffer, timeoutMs: number) => Promise<StunMessage | null>
  ignored: () => number
  close: () => void
}

async function udpChannel (to: Endpoint, signal?: AbortSignal): Promise<Channel> {
  const s = await StunSocket.open(isIP(to.host) === 6 ? 6 : 4, signal)
  return {
    transact: async (bytes, tid, ms) => (await s.transact(to, bytes, ms, tid))?.msg ?? null,
    ignored: () => s.ignored,
    close: () => s.close(),
  }
}

async function streamChannel (to: Endpoint, tls: boolean, timeoutMs: number, signal?: AbortSignal): Promise<Channel> {
  signal?.throwIfAborted()
  const sock: Socket = tls
    ? tlsConnect({ host: to.host, port: to.port, ...(isIP(to.host) === 0 ? { servername: to.host } : {}), ALPNProtocols: ['stun.turn'] })
    : tcpConnect({ host: to.host, port: to.port })
  const onAbort = (): void => { sock.destroy(new Error('aborted')) }
  signal?.addEventListener('abort', onAbort, { once: true })
  sock.once('close', () => signal?.removeEventListener('abort', onAbort))
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { reject(new Error(`${tls ? 'TLS' : 'TCP'} connect timed out`)) }, timeoutMs)
    sock.once(tls ? 'secureConnect' : 'connect', () => { clearTimeout(t); resolve() })
    sock.once('error', (err) => { clearTimeout(t); reject(err) })
  }).catch((err: unknown) => { sock.destroy(); throw err })
  sock.on('error', () => {})
  const framer = new StunFramer()
  const waiting = new Map<string, (m: StunMessage) => void>()
  let ignored = 0
  sock.on('data', (chunk: Buffer) => {
    for (const frame of framer.push(chunk)) {
      const msg = parseStun(frame)
      const done = msg === null ? undefined : waiting.get(msg.tid.toString('hex'))
      if (msg === null || done === undefined) { ignored++; continue }
      done(msg)
    }
    if (framer.broken) { ignored++; sock.destroy() }
  })
  return {
    transact: async (bytes, tid, ms) => {
      const key = tid.toString('hex')
      let t: ReturnType<typeof setTimeout> | undefined
      try {
        return await new Promise<StunMessage | null>((resolve) => {
          waiting.set(key, resolve)
          t = setTimeout(() => resolve(null), ms)
          sock.once('close', () => resolve(null))
          sock.write(bytes)
        })
      } finally { clearTimeout(t); waiting.delete(key) }
    },
    ignored: () => ignored,
    close: () => { sock.destroy() },
  }
}

const REQUESTED_UDP = Buffer.from([17, 0, 0, 0])
/** Share of a probe's time limit after which a server that has not answered (or accepted a TCP connection) counts as unreachable. */
export const UNANSWERED_SHARE = 0.6

/** Allocates on the TURN server of `url` with `username`/`credential`, then releases it; bounded by `timeoutMs`. */
export async function probeTurn (url: string, cred: { username?: string, credential?: string }, timeoutMs: number, signal?: AbortSignal): Promise<TurnResult> {
  const parsed = parseIceUrl(url)
  const base = { url, transport: parsed?.transport ?? 'udp' as const, host: parsed?.host ?? '', port: parsed?.port ?? 0, reachable: false, allocated: false, rttMs: null, ignored: 0 }
  if (parsed === null || parsed.scheme === 'stun') return { ...base, error: 'not a TURN URL' }
  const deadline = performance.now() + timeoutMs
  const left = (): number => Math.max(1, deadline - performance.now())
  // A server that has not answered within 60 % of the limit (3 s of 5; 5 UDP retransmissions) will not.
  const firstLimit = (): number => Math.min(timeoutMs * UNANSWERED_SHARE, left())
  let ch: Channel
  try {
    ch = parsed.transport === 'udp' ? await udpChannel(parsed, signal) : await streamChannel(parsed, parsed.transport === 'tls', firstLimit(), signal)
  } catch (err) {
    return { ...base, error: err instanceof Error ? err.message : String(err) }
  }
  const out: TurnResult = { ...base }
  const rtts: number[] = []
  const transact = async (bytes: Buffer, tid: Buffer, ms: number): Promise<StunMessage | null> => {
    const t0 = performance.now()
    const m = await ch.transact(bytes, tid, ms)
    if (m !== null) { rtts.push(performance.now() - t0); out.rttMs = round(Math.min(...rtts)) }
    return m
  }
  try {
    const allocate = async (auth?: { realm: string, nonce: string }): Promise<StunMessage | null> => {
      const tid = newTransactionId()
      const attrs: Array<[number, Buffer]> = [[ATTR.REQUESTED_TRANSPORT, REQUESTED_UDP]]
      if (auth === undefined) return await transact(encodeStun({ method: METHOD.allocate, cls: 'request', tid, attrs }), tid, firstLimit())
      attrs.push([ATTR.USERNAME, utf8Attr(cred.username ?? '')], [ATTR.REALM, utf8Attr(auth.realm)], [ATTR.NONCE, utf8Attr(auth.nonce)])
      const key = longTermKey(cred.username ?? '', auth.realm, cred.credential ?? '')
      return await transact(encodeStun({ method: METHOD.allocate, cls: 'request', tid, attrs, integrityKey: key }), tid, left())
    }
    let res = await allocate()
    if (res === null) return { ...out, error: 'no answer', ignored: ch.ignored() }
    out.reachable = true
    let auth: { realm: string, nonce: string } | undefined
    for (let attempt = 0; attempt < 2 && res !== null && res.cls === 'error'; attempt++) {
      const e = errorCode(res)
      const realm = textAttr(res, ATTR.REALM) ?? auth?.realm
      const nonce = textAttr(res, ATTR.NONCE)
      if ((e?.code !== 401 && e?.code !== 438) || realm === undefined || nonce === undefined) break
      if (cred.username === undefined || cred.credential === undefined) return { ...out, error: 'the server needs credentials; /v1/ice gave none', ignored: ch.ignored() }
      auth = { realm, nonce }
      res = await allocate(auth)
    }
    if (res === null) return { ...out, error: 'no answer to the authenticated allocate', ignored: ch.ignored() }
    if (res.cls !== 'success') {
      const e = errorCode(res)
      return { ...out, error: e !== null ? `${e.code} ${e.reason}`.trim() : 'allocate refused', ignored: ch.ignored() }
    }
    const relayed = decodeAddress(attr(res, ATTR.XOR_RELAYED_ADDRESS), true, res.tid)
    out.allocated = true
    if (relayed !== null) out.relayed = relayed.family === 6 ? `[${relayed.address}]:${relayed.port}` : `${relayed.address}:${relayed.port}`
    if (auth !== undefined) {
      // Release it: a Refresh with LIFETIME 0 (answer awaited briefly; the allocation expires anyway).
      const tid = newTransactionId()
      const key = longTermKey(cred.username ?? '', auth.realm, cred.credential ?? '')
      const bytes = encodeStun({ method: METHOD.refresh, cls: 'request', tid, integrityKey: key, attrs: [[ATTR.LIFETIME, u32(0)], [ATTR.USERNAME, utf8Attr(cred.username ?? '')], [ATTR.REALM, utf8Attr(auth.realm)], [ATTR.NONCE, utf8Attr(auth.nonce)]] })
      await transact(bytes, tid, Math.min(300, left()))
    }
    return { ...out, ignored: ch.ignored() }
  } finally {
    ch.close()
  }
}

export const round = (ms: number): number => Math.round(ms * 10) / 10
