// Calibration Worker for bench/signaling.ts (not part of causeway): the least a Durable Object
// with hibernatable WebSockets can do per relayed message — no parsing, no auth, no limits —
// so the bench shows how much of the Worker's cost is the runtime's on this machine.
import { DurableObject } from 'cloudflare:workers'

export class Floor extends DurableObject {
  async fetch () {
    const pair = new WebSocketPair()
    this.ctx.acceptWebSocket(pair[1])
    return new Response(null, { status: 101, webSocket: pair[0] })
  }

  async webSocketMessage (ws, message) {
    if (typeof message === 'string' && message.startsWith('{"type":"join"')) { ws.send('{"type":"welcome"}'); return }
    for (const other of this.ctx.getWebSockets()) if (other !== ws) other.send(message)
  }

  async webSocketClose (ws) { try { ws.close() } catch {} }
}

export default {
  fetch (request, env) {
    const url = new URL(request.url)
    if (url.pathname === '/healthz') return Response.json({ ok: true, protocol: 1 })
    return env.FLOOR.get(env.FLOOR.idFromName(url.pathname)).fetch(request)
  },
}
