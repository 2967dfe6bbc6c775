import { describe, expect, it } from 'vitest'
import { fromBase64Url, toBase64Url } from './encoding.ts'
import { generatePeerKey, peerIdOf, signJoin, verifyJoinProof } from './join-proof.ts'

describe('join proof', () => {
  it('a peer id is the hash of its key, and a proof verifies only for its room, id, role and challenge', async () => {
    const k = await generatePeerKey()
    expect(k.id).toMatch(/^[A-Za-z0-9_-]{22}$/)
    expect(await peerIdOf(fromBase64Url(k.publicKey))).toBe(k.id)
    const good = { room: 'room-0123456789abcdef', role: 'agent' as const, challenge: 'Y2hhbGxlbmdlLW5vbmNl' }
    const sig = await signJoin(k, good)
    const proof = { ...good, peer: k.id, key: k.publicKey, sig }
    expect(await verifyJoinProof(proof)).toBe(true)
    const other = await generatePeerKey()
    for (const bad of [
      { ...proof, challenge: 'b3RoZXItbm9uY2U' },
      { ...proof, room: 'room-fedcba9876543210' },
      { ...proof, role: 'viewer' as const },
      { ...proof, peer: other.id },
      { ...proof, key: other.publicKey },
      { ...proof, peer: other.id, key: other.publicKey },
      { ...proof, sig: toBase64Url(new Uint8Array(64)) },
      { ...proof, sig: 'not base64!' },
      { ...proof, key: toBase64Url(new Uint8Array(65)) },
      { ...proof, key: 'AQID' },
    ]) expect(await verifyJoinProof(bad)).toBe(false)
  })
})
