/**
 * Cloudflare Worker adapter of the signaling service: the portable Hono app (../app.ts) with
 * rooms in Durable Objects, one per room id (`idFromName(room)`), see room.ts. Configuration
 * comes from vars and secrets (wrangler.toml documents them) through configFromEnv.
 *
 * Admission: with an access secret the Worker checks the ticket (subprotocol) itself, before
 * routing; a socket without a valid ticket never reaches (or creates) a room's Durable Object:
 * one of four fixed refusal objects accepts it only to send its error and close code. The
 * room's object gets a request the Worker builds from scratch (room, the ticket's role and
 * subject, the client address, the selected subprotocol), so a client cannot set those headers
 * itself.
 */
import type { Hono } from 'hono'
import { createApp } from '../app.ts'
import { configFromEnv } from '../config.ts'
import { assetsFromFetcher } from '../page/assets.ts'
import type { WorkerEnv } from './env.ts'
import { publicError } from '../../protocol/errors.ts'
import { ADDRESS_HEADER, REFUSAL_OBJECTS, REFUSE_HEADER, ROOM_HEADER, TICKET_ROLE_HEADER, TICKET_SUBJECT_HEADER } from './room.ts'

export { SignalingRoom } from './room.ts'
export type { WorkerEnv } from './env.ts'

let cached: { env: WorkerEnv, app: Hono } | undefined

/** The app for this isolate's env (built once; env is the same object between requests). */
function appFor (env: WorkerEnv): Hono {
  if (cached?.env === env) return cached.app
  const app = createApp({
    config: configFromEnv(env),
    ...(env.ASSETS !== undefined ? { assets: assetsFromFetcher(env.ASSETS) } : {}),
    rooms: async (c, room, admission) => {
      // Only what the object needs: the ticket (in the offered subprotocols) stays here.
      const headers = new Headers({ upgrade: 'websocket' })
      if (admission.subprotocol !== undefined) headers.set('sec-websocket-protocol', admission.subprotocol)
      if (!admission.ok) {
        // Refused (bad ticket): a small set of refusal objects carries the error; the room's object is never touched.
        const { code, message } = publicError(admission.error)
        headers.set(REFUSE_HEADER, JSON.stringify({ code, message }))
        const name = REFUSAL_OBJECTS[Math.floor(Math.random() * REFUSAL_OBJECTS.length)] ?? 'refusals:0'
        return await env.ROOMS.get(env.ROOMS.idFromName(name)).fetch(new Request(c.req.raw.url, { method: 'GET', headers }))
      }
      headers.set(ROOM_HEADER, room)
      if (admission.ticketRole !== undefined) headers.set(TICKET_ROLE_HEADER, admission.ticketRole)
      if (admission.ticketSubject !== undefined) headers.set(TICKET_SUBJECT_HEADER, admission.ticketSubject)
      headers.set(ADDRESS_HEADER, c.req.header('cf-connecting-ip') ?? 'unknown')
      const stub = env.ROOMS.get(env.ROOMS.idFromName(room))
      return await stub.fetch(new Request(c.req.raw.url, { method: 'GET', headers }))
    },
  })
  cached = { env, app }
  return app
}

export default {
  async fetch (request, env, ctx): Promise<Response> {
    try {
      return await appFor(env).fetch(request, env, ctx)
    } catch {
      return Response.json({ error: { code: 'INTERNAL', message: 'internal error' } }, { status: 500 })
    }
  },
} satisfies ExportedHandler<WorkerEnv>
