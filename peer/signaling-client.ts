/**
 * Client of the signaling service, portable (Node 22's and browsers' global WebSocket). Joins
 * a room (answering the service's challenge with a join proof signed by its peer key, see
 * protocol/join-proof.ts), keeps the connection with exponential backoff and full jitter, and
 * hands sealed signals to its owner. A socket that stops answering pings (no frame within
 * `pongTimeoutMs` of a ping) is dropped and replaced, so a half-dead connection is noticed in
 * seconds rather than when TCP gives up. Tunnels do not depend on it: when it is down,
 * established peer connections keep working.
 */
import { signJoin, type JoinRole, type PeerKey } from '../protocol/join-proof.ts'
import { PROTOCOL_VERSION, parseServerMessage, SUBPROTOCOL, TICKET_SUBPROTOCOL_PREFIX, type ServerMessage } from '../protocol/messages.ts'
import { roomUrl } from '../protocol/token.ts'

export interface SignalingClientInit {
  /** Signaling service base URL (http/https). */
  signaling: string
  room: string
  /** This peer's key; its id is the peer id (the same key on every reconnect keeps the id). */
  key: PeerKey
  /** The role to join with (a viewer ticket admits only `viewer`). Default agent. */
  role?: JoinRole
  /** Access ticket, sent in the WebSocket subprotocol. */
  ticket?: string
  /** First reconnect delay, ms. Default 250. */
  minBackoffMs?: number
  /** Largest reconnect delay, ms. Default 15000. */
  maxBackoffMs?: number
  /** Ping interval to detect dead sockets, ms. Default 15000. */
  pingIntervalMs?: number
  /** A socket with no frame from the service this long after a ping is dropped and replaced, ms. Default 10000. */
  pongTimeoutMs?: number
  /** Time from connect to `welcome`, ms. Default 10000. */
  handshakeTimeoutMs?: number
  /** WebSocket constructor. Default: globalThis.WebSocket. */
  WebSocket?: typeof WebSocket
  signal?: AbortSignal
}

export interface SignalingEvents {
  welcome: (peers: string[]) => void
  joined: (peer: string) => void
  left: (peer: string) => void
  signal: (from: string, sealed: string) => void
  /** A fatal or non-fatal error from the service (e.g. UNAUTHORIZED, UNKNOWN_PEER). */
  error: (code: string, message: string) => void
  state: (state: SignalingState) => void
}

export type SignalingState = 'connecting' | 'joined' | 'disconnected' | 'closed'

/** Error codes after which reconnecting cannot help. */
const FATAL = new Set(['UNAUTHORIZED', 'TICKET_EXPIRED', 'FORBIDDEN', 'VERSION_MISMATCH'])

export class SignalingClient {
  state: SignalingState = 'disconnected'
  /** Last fatal error code; reconnects stop once one is seen. */
  fatal?: { code: string, message: string }
  private ws?: WebSocket
  private attempt = 0
  private timer?: ReturnType<typeof setTimeout>
  private pinger?: ReturnType<typeof setInterval>
  private pongTimer?: ReturnType<typeof setTimeout>
  private readonly listeners: { [K in keyof SignalingEvents]: Array<SignalingEvents[K]> } = { welcome: [], joined: [], left: [], signal: [], error: [], state: [] }
  private readonly init: Required<Omit<SignalingClientInit, 'ticket' | 'signal'>> & Pick<SignalingClientInit, 'ticket' | 'signal'>
  private stopped = false

  constructor (init: SignalingClientInit) {
    this.init = { minBackoffMs: 250, maxBackoffMs: 15_000, pingIntervalMs: 15_000, pongTimeoutMs: 10_000, handshakeTimeoutMs: 10_000, WebSocket: globalThis.WebSocket, role: 'agent', ...init }
    init.signal?.addEventListener('abort', () => this.close(), { once: true })
  }

  /** This client's peer id (derived from its key). */
  get peer (): string { return this.init.key.id }

  on<K extends keyof SignalingEvents> (event: K, fn: SignalingEvents[K]): void {
    this.listeners[event].push(fn)
  }

  private emit<K extends keyof SignalingEvents> (event: K, ...args: Parameters<SignalingEvents[K]>): void {
    for (const fn of this.listeners[event]) (fn as (...a: Parameters<SignalingEvents[K]>) => void)(...args)
  }

  private setState (s: SignalingState): void {
    if (this.state === s) return
    this.state = s
    this.emit('state', s)
  }

  start (): void {
    if (this.stopped || this.ws !== undefined) return
    this.setState('connecting')
    let ws: WebSocket
    try {
      const protocols = [SUBPROTOCOL, ...(this.init.ticket !== undefined ? [TICKET_SUBPROTOCOL_PREFIX + this.init.ticket] : [])]
      ws = new this.init.WebSocket(roomUrl(this.init.signaling, this.init.room), protocols)
    } catch (err) {
      this.emit('error', 'BAD_TOKEN', err instanceof Error ? err.message : String(err))
      this.scheduleReconnect()
      return
    }
    this.ws = ws
    // A handshake that hangs (half-dead service, lost SYN) must not stall reconnection.
    const handshake = setTimeout(() => {
      if (this.ws !== ws || this.state === 'joined') return
      this.drop(ws)
    }, this.init.handshakeTimeoutMs)
    ws.onopen = () => {
      // The join waits for the service's challenge (first frame).
      clearInterval(this.pinger)
      this.pinger = setInterval(() => { this.ping(ws) }, this.init.pingIntervalMs)
    }
    ws.onmessage = (ev: MessageEvent) => {
      // Any frame shows the socket is alive.
      clearTimeout(this.pongTimer)
      this.pongTimer = undefined
      if (typeof ev.data !== 'string') return
      const msg = parseServerMessage(ev.data)
      if (msg !== null) this.handle(ws, msg)
    }
    ws.onclose = (ev: CloseEvent) => {
      clearTimeout(handshake)
      if (this.ws !== ws) return
      this.ws = undefined
      this.stopTimers()
      const code = /^([A-Z_]+):/.exec(ev.reason)?.[1]
      if (code !== undefined && FATAL.has(code)) this.fatal = { code, message: ev.reason }
      if (this.stopped || this.fatal !== undefined) { this.setState('closed'); return }
      this.setState('disconnected')
      this.scheduleReconnect()
    }
    ws.onerror = () => { /* onclose follows */ }
  }

  /** Abandons a socket that does not get anywhere and starts over. */
  private drop (ws: WebSocket): void {
    ws.onopen = null
    ws.onmessage = null
    ws.onclose = null
    try { ws.close() } catch { /* not open */ }
    if (this.ws !== ws) return
    this.ws = undefined
    this.stopTimers()
    if (this.stopped) return
    this.setState('disconnected')
    this.scheduleReconnect()
  }

  /** Ends a socket after a fatal error: no reconnect. */
  private finish (ws: WebSocket): void {
    ws.onopen = null
    ws.onmessage = null
    ws.onclose = null
    try { ws.close(1000, 'refused') } catch { /* not open */ }
    this.ws = undefined
    this.stopTimers()
    this.setState('closed')
  }

  private stopTimers (): void {
    clearInterval(this.pinger)
    clearTimeout(this.pongTimer)
    this.pinger = undefined
    this.pongTimer = undefined
  }

  /** Sends a ping and, unless one is already pending, arms the timer that drops a silent socket. */
  private ping (ws: WebSocket): void {
    if (this.ws !== ws || ws.readyState !== 1) return
    ws.send(JSON.stringify({ type: 'ping', id: Date.now() }))
    if (this.pongTimer !== undefined) return
    this.pongTimer = setTimeout(() => {
      this.pongTimer = undefined
      if (this.ws !== ws) return
      this.emit('error', 'PING_TIMEOUT', `no answer from the signaling service within ${this.init.pongTimeoutMs} ms of a ping: reconnecting`)
      this.drop(ws)
    }, this.init.pongTimeoutMs)
  }

  /** Answers the service's challenge with a signed join. */
  private async join (ws: WebSocket, challenge: string): Promise<void> {
    const { key, role, room } = this.init
    let sig: string
    try {
      sig = await signJoin(key, { room, role, challenge })
    } catch (err) {
      this.emit('error', 'INTERNAL', `cannot sign the join: ${err instanceof Error ? err.message : String(err)}`)
      this.drop(ws)
      return
    }
    if (this.ws !== ws || ws.readyState !== 1) return
    ws.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, peer: key.id, role, key: key.publicKey, sig }))
  }

  private handle (ws: WebSocket, msg: ServerMessage): void {
    switch (msg.type) {
      case 'challenge':
        if (msg.v !== PROTOCOL_VERSION) {
          this.fatal = { code: 'VERSION_MISMATCH', message: `the service speaks protocol version ${msg.v}, this client ${PROTOCOL_VERSION}` }
          this.emit('error', this.fatal.code, this.fatal.message)
          this.close()
          return
        }
        void this.join(ws, msg.nonce)
        return
      case 'welcome':
        this.attempt = 0
        this.setState('joined')
        this.emit('welcome', msg.peers)
        return
      case 'peer-joined': this.emit('joined', msg.peer); return
      case 'peer-left': this.emit('left', msg.peer); return
      case 'signal': this.emit('signal', msg.from, msg.sealed); return
      case 'pong': return
      case 'error':
        if (FATAL.has(msg.code)) this.fatal = { code: msg.code, message: msg.message }
        this.emit('error', msg.code, msg.message)
        // Refused for good: stop here rather than wait for the service's close to arrive.
        if (this.fatal !== undefined && this.ws === ws) this.finish(ws)
    }
  }

  private scheduleReconnect (): void {
    if (this.stopped) return
    const ceiling = Math.min(this.init.maxBackoffMs, this.init.minBackoffMs * 2 ** Math.min(this.attempt, 16))
    this.attempt++
    const delay = Math.random() * ceiling // full jitter
    this.timer = setTimeout(() => { this.timer = undefined; this.start() }, delay)
  }

  private sendRaw (msg: object): boolean {
    const ws = this.ws
    if (ws === undefined || ws.readyState !== 1) return false
    ws.send(JSON.stringify(msg))
    return true
  }

  /** Sends a sealed envelope; false when not connected (the caller retries on reconnect). */
  send (to: string, sealed: string): boolean {
    if (this.state !== 'joined') return false
    return this.sendRaw({ type: 'signal', to, sealed })
  }

  close (): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.stopTimers()
    const ws = this.ws
    this.ws = undefined
    try { ws?.close(1000, 'bye') } catch { /* already closed */ }
    this.setState('closed')
  }
}
