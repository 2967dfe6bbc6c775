/**
 * The order of an extra association's signals (agent/tunnel/associations.ts), with a stand-in
 * peer connection that reports a candidate before the description it belongs to, as an engine
 * may (node-datachannel delivers the two on separate native callbacks): the peer must get the
 * description first, or the answerer ignores the candidate (no association yet) and the offerer
 * fails the association (no remote description). Also: each side offers only its share.
 */
import { describe, expect, it } from 'vitest'
import { Associations } from '../../agent/tunnel/associations.ts'
import type { RemotePeer } from '../../peer/mesh.ts'
import type { PeerSession } from '../../peer/peer-session.ts'

type Sent = { type: 'assoc', i: number, of: string, description?: { type: string }, candidate?: unknown }

/** A peer connection whose offer/answer report a candidate first, then resolve. */
function fakePc (): RTCPeerConnection {
  const pc = {
    onicecandidate: null as ((ev: { candidate: { candidate: string, sdpMid: string, sdpMLineIndex: number } | null }) => void) | null,
    localDescription: null as { type: string, sdp: string } | null,
    async describe (type: string) {
      pc.onicecandidate?.({ candidate: { candidate: `candidate:1 1 UDP 1 198.18.0.1 ${type === 'offer' ? 1000 : 2000} typ host`, sdpMid: '0', sdpMLineIndex: 0 } })
      await new Promise(resolve => setTimeout(resolve, 5))
      return { type, sdp: `v=0 ${type}` }
    },
    async createOffer () { return await pc.describe('offer') },
    async createAnswer () { return await pc.describe('answer') },
    async setLocalDescription (d: { type: string, sdp: string }) { pc.localDescription = d },
    async setRemoteDescription () {},
    async addIceCandidate () {},
    createDataChannel: () => ({}),
    close () {},
  }
  return pc as unknown as RTCPeerConnection
}

function side (polite: boolean, total: number): { assocs: Associations, peer: RemotePeer, session: PeerSession, sent: Sent[] } {
  const sent: Sent[] = []
  const session = { polite, control: { readyState: 'open' }, state: 'connected', pc: fakePc(), sendControl: (m: Sent) => { sent.push(m) } } as unknown as PeerSession
  const peer = { id: polite ? 'b' : 'a', name: polite ? 'b' : 'a', role: 'agent', present: true, deadSids: new Set(), session } as unknown as RemotePeer
  const noop = (): void => {}
  const assocs = new Associations({ total, create: fakePc, onDataChannel: noop, log: { debug: noop, info: noop, warn: noop } })
  assocs.attach(peer, session)
  return { assocs, peer, session, sent }
}

const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 50)) }

describe('extra association signals', () => {
  it('sends each description before the candidates reported ahead of it, both ways', async () => {
    const offerer = side(true, 4)
    const answerer = side(false, 1)
    offerer.assocs.ensure(offerer.peer, offerer.session)
    await settle()
    expect(offerer.sent.map(m => [m.i, m.description?.type ?? 'candidate'])).toEqual([[1, 'offer'], [1, 'candidate'], [2, 'offer'], [2, 'candidate']])
    for (const m of offerer.sent) answerer.assocs.handle(answerer.peer, answerer.session, m as never)
    await settle()
    expect(answerer.sent.map(m => [m.i, m.of, m.description?.type ?? 'candidate'])).toEqual([[1, 'yours', 'answer'], [1, 'yours', 'candidate'], [2, 'yours', 'answer'], [2, 'yours', 'candidate']])
  })

  it('offers only its share of the pair total: ceil((N-1)/2) when polite, floor((N-1)/2) when not', async () => {
    for (const [polite, total, offers] of [[true, 4, 2], [false, 4, 1], [true, 2, 1], [false, 2, 0], [true, 1, 0], [true, 8, 4], [false, 8, 3]] as const) {
      const s = side(polite, total)
      s.assocs.ensure(s.peer, s.session)
      await settle()
      expect([polite, total, s.sent.filter(m => m.description?.type === 'offer').length]).toEqual([polite, total, offers])
    }
  })
})
