/**
 * Client of the signaling service, portable (Node 22's and browsers' global WebSocket). Joins
 * a room, keeps the connection with exponential backoff and full jitter, and hands sealed
 * signals to its owner. Tunnels do not depend on it: when it is down, established peer
 * connections keep working.
 */
import { PROTOCOL_VERSION, parseServerMessage, type ServerMessage } from '../protocol/messages.ts'
import { roomUrl } from '../protocol/token.ts'

export interface SignalingClientInit {
  /** Signaling service base URL (http/https). */
  signaling: string
  room: string
  peer: string
  ticket?: string
  /** First reconnect delay, ms. Default 250. */
  minBackoffMs?: number
  /** Largest reconnect delay, ms. Default 15000. */
  maxBackoffMs?: number
  /** Ping interval to detect dead sockets, ms. Default 15000. */
  pingIntervalMs?: number
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
  private readonly listeners: { [K in keyof SignalingEvents]: Array<SignalingEvents[K]> } = { welcome: [], joined: [], left: [], signal: [], error: [], state: [] }
  private readonly init: Required<Omit<SignalingClientInit, 'ticket' | 'signal'>> & Pick<SignalingClientInit, 'ticket' | 'signal'>
  private stopped = false

  constructor (init: SignalingClientInit) {
    this.init = { minBackoffMs: 250, maxBackoffMs: 15_000, pingIntervalMs: 15_000, handshakeTimeoutMs: 10_000, WebSocket: globalThis.WebSocket, ...init }
    init.signal?.addEventListener('abort', () => this.close(), { once: true })
  }

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
      ws = new this.init.WebSocket(roomUrl(this.init.signaling, this.init.room))
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
      ws.send(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, peer: this.init.peer, ...(this.init.ticket !== undefined ? { ticket: this.init.ticket } : {}) }))
      this.pinger = setInterval(() => { this.sendRaw({ type: 'ping', id: Date.now() }) }, this.init.pingIntervalMs)
    }
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data !== 'string') return
      const msg = parseServerMessage(ev.data)
      if (msg !== null) this.handle(msg)
    }
    ws.onclose = (ev: CloseEvent) => {
      clearTimeout(handshake)
      if (this.ws !== ws) return
      this.ws = undefined
      clearInterval(this.pinger)
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
    if (this.ws === ws) this.ws = undefined
    clearInterval(this.pinger)
    if (this.stopped) return
    this.setState('disconnected')
    this.scheduleReconnect()
  }

  private handle (msg: ServerMessage): void {
    switch (msg.type) {
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
    clearInterval(this.pinger)
    const ws = this.ws
    this.ws = undefined
    try { ws?.close(1000, 'bye') } catch { /* already closed */ }
    this.setState('closed')
  }
}
