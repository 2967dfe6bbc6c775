/** netcheck stops when its signal aborts (an agent that stops): silent servers do not hold it for the whole limit. */
import { createSocket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { expect, it } from 'vitest'
import { encodeToken, decodeToken, newSecret, type MemberToken } from '../../protocol/token.ts'
import { configFromEnv } from '../../signaling/config.ts'
import { startNodeSignaling } from '../../signaling/node/server.ts'
import { fromRelayStatus } from './relay.ts'
import { runNetcheck } from './index.ts'

it('an abort ends a run against silent STUN/TURN servers and a relay that never reserves at once', async () => {
  const signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) })
  const silent = createSocket('udp4') // receives, never answers
  await new Promise<void>(resolve => silent.bind(0, '127.0.0.1', resolve))
  const port = (silent.address() as AddressInfo).port
  try {
    const token = decodeToken(encodeToken({ kind: 'member', signaling: signaling.url, secret: newSecret() })) as MemberToken
    const ice = { iceServers: [{ urls: [`stun:127.0.0.1:${port}`, `turn:127.0.0.1:${port}?transport=udp`], username: 'u', credential: 'c' }], relays: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWHpGm2vxrpEDrjfXb1YVg2pdR2HgoK1sNsCAtNHXzA6g9'] }
    const stop = new AbortController()
    const started = Date.now()
    setTimeout(() => stop.abort(), 300)
    const r = await runNetcheck({ token, timeoutMs: 10_000, ice, relayProber: fromRelayStatus(() => []), signal: stop.signal })
    expect(Date.now() - started).toBeLessThan(2000)
    expect(r.udp.reachable).toBe(false)
    expect(r.turn).toMatchObject([{ reachable: false, allocated: false }])
    expect(r.relays).toMatchObject([{ reserved: false }])
  } finally {
    silent.close()
    await signaling.close()
  }
})
