import { describe, expect, it } from 'vitest'
import type { RemotePeer } from '../peer/mesh.ts'
import { MAX_PEER_LABELS, ShareAudit } from './audit.ts'

const peer = (name: string, role: 'agent' | 'viewer' = 'agent'): RemotePeer => ({ id: `id-${name}`, name, role, present: true, deadSids: new Set() })
const rec = { protocol: 'tcp' as const, bytesIn: 10, bytesOut: 20, durationMs: 1500, reason: 'done' }

describe('share audit', () => {
  it('writes one line per stream and keeps metric labels bounded whatever peers ask for', () => {
    const lines: Array<{ obj: object, msg?: string }> = []
    const audit = new ShareAudit({ debug () {}, warn () {}, info (obj, msg) { lines.push({ obj, ...(msg !== undefined ? { msg } : {}) }) } }, name => name === 'web')
    audit.record({ ...rec, peer: { ...peer('east'), instance: 'east-1' }, share: 'web', result: 'accepted' })
    expect(lines[0]).toEqual({ msg: 'share stream', obj: { audit: 'stream', peer: 'east', role: 'agent', peerId: 'id-east', instance: 'east-1', share: 'web', protocol: 'tcp', result: 'accepted', bytesIn: 10, bytesOut: 20, durationMs: 1500, reason: 'done' } })
    // a peer asking for 500 share names that do not exist, under 500 names, and 500 viewers
    for (let i = 0; i < 500; i++) {
      audit.record({ ...rec, peer: peer(`agent${i}`), share: `nope${i}`, result: 'refused', code: 'SHARE_NOT_FOUND', bytesIn: 0, bytesOut: 0 })
      audit.record({ ...rec, peer: peer(`viewer${i}`, 'viewer'), share: 'web', result: 'accepted' })
    }
    expect(lines).toHaveLength(1001)
    const series = audit.all()
    expect(new Set(series.map(s => s.share))).toEqual(new Set(['web', '_other']))
    const peers = new Set(series.map(s => s.peer))
    expect(peers.size).toBeLessThanOrEqual(MAX_PEER_LABELS + 2)
    expect(peers.has('viewer')).toBe(true)
    expect(peers.has('_other')).toBe(true)
    expect(series.find(s => s.peer === 'viewer')).toMatchObject({ share: 'web', accepted: 500, bytesIn: 5000, bytesOut: 10000, seconds: 750 })
    expect(series.reduce((n, s) => n + s.refused, 0)).toBe(500)
  })
})
