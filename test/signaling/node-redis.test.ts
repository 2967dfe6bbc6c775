/**
 * The black-box suite of the signaling service (ws.suite.ts: every route, message and rejection
 * code) against the Node adapter with its rooms in a real redis-server (started here), so the
 * protocol is the same whatever the store. Several replicas: redis-store.test.ts (the store)
 * and replicas.test.ts (agents through bin/causeway).
 */
import { describe } from 'vitest'
import { haveRedis, startRedis } from './redis.ts'
import { startNode } from './servers.ts'
import { signalingSuite } from './ws.suite.ts'

describe.skipIf(!haveRedis())('on Redis', () => {
  signalingSuite('node on redis', async (env) => {
    const redis = await startRedis()
    const target = await startNode({ ...env, CAUSEWAY_STORE: redis.url })
    return { ...target, close: async () => { await target.close(); await redis.close() } }
  })
})
