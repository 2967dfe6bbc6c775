/**
 * Hello ordering in the mesh, driven deterministically: a real Mesh ("a") and a hand-played
 * peer ("b": a bare signaling client with the network's keys) in one room of a real Node
 * signaling service. Relay addresses may change before, while or after the peers learn about
 * each other; whatever the order, the last hello each side holds carries the other's current
 * relay addresses (the NAT lab once saw an agent announce `[]`, then its address, and its peer
 * keep the `[]`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generatePeerKey } from '../protocol/join-proof.ts'
import { deriveMemberKeys } from '../protocol/keys.ts'
import { PeerSignal, type Hello } from '../protocol/peer.ts'
import { Opener, seal } from '../protocol/seal.ts'
import { newSecret, type MemberToken } from '../protocol/token.ts'
import { configFromEnv } from '../signaling/config.ts'
import { startNodeSignaling, type NodeSignaling } from '../signaling/node/server.ts'
import { createPeerConnection } from '../agent/wrtc.ts'
import { Mesh } from './mesh.ts'
import { SignalingClient } from './signaling-client.ts'

let signaling: NodeSignaling
/** libp2p PeerIds (base58), as a relay client announces them. */
const RELAY_A = '12D3KooWAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
const RELAY_B = '12D3KooWBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
beforeAll(async () => { signaling = await startNodeSignaling({ host: '127.0.0.1', port: 0, config: configFromEnv({}) }) })
afterAll(async () => { await signaling.close() })

async function until (cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  for (let i = 0; i < 1000 && !cond(); i++) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** A peer played by hand: joins the room, records the agent hellos it gets, sends its own. */
async function handPeer (token: MemberToken): Promise<{ id: string, hellos: Hello[], sendHello: (to: string, hello: Hello) => Promise<void>, close: () => void }> {
  const keys = await deriveMemberKeys(token.secret)
  const key = await generatePeerKey()
  const id = key.id
  const opener = new Opener({ room: keys.room, self: id, keys: [{ key: keys.seal, role: 'agent' }] })
  const sc = new SignalingClient({ signaling: token.signaling, room: keys.room, key })
  const hellos: Hello[] = []
  const inbox: string[] = []
  let busy = false
  sc.on('signal', (from, sealed) => {
    inbox.push(sealed)
    if (busy) return
    busy = true
    void (async () => {
      for (let s = inbox.shift(); s !== undefined; s = inbox.shift()) {
        const opened = await opener.open(from, s).catch(() => undefined) // the viewer-sealed copy does not open
        const sig = PeerSignal.safeParse(opened?.body)
        if (sig.success && sig.data.type === 'hello') hellos.push(sig.data)
      }
      busy = false
    })()
  })
  const joined = new Promise<void>(resolve => sc.on('state', s => { if (s === 'joined') resolve() }))
  sc.start()
  await joined
  return {
    id,
    hellos,
    sendHello: async (to, hello) => { sc.send(to, await seal(keys.seal, { room: keys.room, from: id, to, body: hello })) },
    close: () => sc.close(),
  }
}

describe('mesh hellos and relay addresses, in any order', () => {
  it('an address change before the peer\'s hello arrived still reaches it, in order; the peer\'s updated hello replaces its older one', async () => {
    const token: MemberToken = { kind: 'member', signaling: signaling.url, secret: newSecret() }
    const b = await handPeer(token)
    const a = new Mesh({ token, name: 'a', createPeerConnection, iceServers: () => [], connectTimeoutMs: 60_000 })
    try {
      await a.start()
      // a sees b in its welcome and says hello (no relay yet); b has not answered: a knows no peer
      await until(() => b.hellos.length >= 1, 5000, 'a\'s first hello at b')
      expect(b.hellos[0]?.relay).toBeUndefined()
      expect(a.peers.size).toBe(0)
      // a's relay client starts ([]), then reservations come and go quickly
      a.setRelay({ peer: RELAY_A, addrs: [] })
      for (let i = 1; i <= 20; i++) a.setRelay({ peer: RELAY_A, addrs: [`/circuit/a/${i}`] })
      await until(() => b.hellos.at(-1)?.relay?.addrs[0] === '/circuit/a/20', 5000, 'a\'s last relay address at b')
      // every update arrived, in the order a made them
      const seen = b.hellos.map(h => h.relay?.addrs[0]).filter(x => x !== undefined)
      expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `/circuit/a/${i + 1}`))

      // now b's hellos arrive: first without addresses, then with
      const bHello: Hello = { type: 'hello', name: 'b', role: 'agent', caps: ['tcp/1'] }
      await b.sendHello(a.id, { ...bHello, relay: { peer: RELAY_B, addrs: [] } })
      await b.sendHello(a.id, { ...bHello, relay: { peer: RELAY_B, addrs: ['/circuit/b/1'] } })
      await until(() => a.peers.get(b.id)?.relay?.addrs[0] === '/circuit/b/1', 5000, 'b\'s relay address at a')
      // a already sent b its current hello: b's hello does not make a repeat it
      const count = b.hellos.length
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(b.hellos.length).toBe(count)
    } finally {
      await a.close()
      b.close()
    }
  })

  it('a change before joining: a peer that joins later gets the current hello', async () => {
    const token: MemberToken = { kind: 'member', signaling: signaling.url, secret: newSecret() }
    const a = new Mesh({ token, name: 'a', createPeerConnection, iceServers: () => [], connectTimeoutMs: 60_000 })
    try {
      // a changes its relay addresses before it joined: nobody to tell yet
      await a.start()
      a.setRelay({ peer: RELAY_A, addrs: ['/circuit/a/1'] })
      await until(() => a.signaling?.state === 'joined', 5000, 'a to join')
      const b = await handPeer(token)
      try {
        await until(() => b.hellos.at(-1)?.relay?.addrs[0] === '/circuit/a/1', 5000, 'a\'s hello at b (on b joining)')
      } finally { b.close() }
    } finally {
      await a.close()
    }
  })
})
