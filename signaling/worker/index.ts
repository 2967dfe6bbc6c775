/**
 * Cloudflare Worker adapter of the signaling service: the portable Hono app (../app.ts) with
 * rooms in Durable Objects, one per room id (`idFromName(room)`), see room.ts. Configuration
 * comes from vars and secrets (wrangler.toml documents them) through configFromEnv.
 */
import type { Hono } from 'hono'
import { createApp } from '../app.ts'
import { configFromEnv } from '../config.ts'
import { assetsFromFetcher } from '../page/assets.ts'
import type { WorkerEnv } from './env.ts'
import { ROOM_HEADER } from './room.ts'

export { SignalingRoom } from './room.ts'
export type { WorkerEnv } from './env.ts'

let cached: { env: WorkerEnv, app: Hono } | undefined

/** The app for this isolate's env (built once; env is the same object between requests). */
function appFor (env: WorkerEnv): Hono {
  if (cached?.env === env) return cached.app
  const app = createApp({
    config: configFromEnv(env),
    ...(env.ASSETS !== undefined ? { assets: assetsFromFetcher(env.ASSETS) } : {}),
    rooms: async (c, room) => {
      const headers = new Headers(c.req.raw.headers)
      headers.set(ROOM_HEADER, room)
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
