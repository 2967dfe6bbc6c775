import { describe, expect, it } from 'vitest'
import { isReady, READY_GRACE_MS } from './server.ts'

const agent = (state: string) => ({ role: 'agent' as const, state })
const viewer = { role: 'viewer' as const, state: 'connected' }

describe('/readyz (isReady)', () => {
  it('ready once joined with no other agent known, or connected to one of the agents it knows', () => {
    expect(isReady({ draining: false, signaling: 'joined', peers: [] }, 0)).toBe(true)
    expect(isReady({ draining: false, signaling: 'joined', peers: [agent('connecting'), agent('connected')] }, 0)).toBe(true)
    // signaling away, a live peer connection: still in the mesh
    expect(isReady({ draining: false, signaling: 'connecting', peers: [agent('connected')] }, 0)).toBe(true)
  })

  it('not ready while it knows agents but reaches none (a browser viewer does not count), until the grace ends', () => {
    const s = { draining: false, signaling: 'joined', peers: [agent('connecting'), viewer] }
    expect(isReady(s, 0)).toBe(false)
    expect(isReady(s, READY_GRACE_MS - 1)).toBe(false)
    expect(isReady(s, READY_GRACE_MS)).toBe(true)
    expect(isReady({ draining: false, signaling: 'connecting', peers: [] }, READY_GRACE_MS)).toBe(false)
  })

  it('never while draining', () => {
    expect(isReady({ draining: true, signaling: 'joined', peers: [agent('connected')] }, 0)).toBe(false)
  })
})
