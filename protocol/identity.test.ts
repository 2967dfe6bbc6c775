import { describe, expect, it } from 'vitest'
import { CausewayError } from './errors.ts'
import { fromBase64Url } from './encoding.ts'
import { importSigningKey, importVerifyKey, issueCredential, parseCredential, verifyCredential, verifyRevocationList } from './identity.ts'
import { decodeOwner, encodeOwner, issueAgentToken, newNetwork, revocationList, revoke } from './identity-owner.ts'
import { sdpFingerprints, signDtls, signHello, verifyDtls, verifyHello } from './identity-proof.ts'
import { deriveRoomId } from './keys.ts'
import { decodeToken, encodeToken, viewerTokenFor } from './token.ts'

const code = async (p: Promise<unknown>): Promise<string | undefined> => await p.then(() => undefined, (e: unknown) => e instanceof CausewayError ? e.code : String(e))

async function network () {
  const owner = await newNetwork('https://sig.example')
  const room = await deriveRoomId(fromBase64Url(owner.secret))
  const issuerPub = await importVerifyKey(fromBase64Url(owner.issuer.pub))
  return { owner, room, issuerPub }
}

const SDP = 'v=0\r\na=fingerprint:SHA-256 ab:cd:EF:01\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 AB:CD:EF:01\r\n'

describe('agent credentials', () => {
  it('issues an agent token that round-trips and verifies for its name and network', async () => {
    const { owner, room, issuerPub } = await network()
    const token = await issueAgentToken(owner, 'site-a', { ttlSeconds: 60 })
    const text = encodeToken(token)
    expect(text.length).toBeLessThan(2000)
    expect(decodeToken(text)).toEqual(token)
    const cred = await verifyCredential(issuerPub, token.identity?.credential ?? '', { network: room })
    expect(cred.name).toBe('site-a')
    expect(owner.issued.map(e => e.name)).toEqual(['site-a'])
    expect(decodeOwner(encodeOwner(owner))).toEqual(owner)
  })

  it('refuses a credential that is expired, revoked, of another network or not signed by the issuer', async () => {
    const { owner, room, issuerPub } = await network()
    const old = await issueAgentToken(owner, 'old', { ttlSeconds: 60, now: Date.now() - 120_000 })
    expect(await code(verifyCredential(issuerPub, old.identity?.credential ?? '', { network: room }))).toBe('CREDENTIAL_EXPIRED')
    const b = await issueAgentToken(owner, 'site-b', { ttlSeconds: 60 })
    const serial = parseCredential(b.identity?.credential ?? '').serial
    expect(revoke(owner, 'site-b')).toEqual([serial])
    const list = await verifyRevocationList(issuerPub, await revocationList(owner), room)
    expect(list.serials).toEqual([serial])
    expect(await code(verifyCredential(issuerPub, b.identity?.credential ?? '', { network: room, revoked: new Set(list.serials) }))).toBe('CREDENTIAL_REVOKED')
    expect(await code(verifyCredential(issuerPub, b.identity?.credential ?? '', { network: 'another-room' }))).toBe('IDENTITY_REJECTED')
    // A member signs a credential for "site-b" with its own agent key instead of the issuer's.
    const rogue = await issueCredential(await importSigningKey(b.identity?.key ?? new Uint8Array()), { network: room, name: 'site-b', publicKey: new Uint8Array(65), ttlSeconds: 60 })
    expect(await code(verifyCredential(issuerPub, rogue, { network: room }))).toBe('IDENTITY_REJECTED')
    // A revocation list signed by anyone but the issuer is refused.
    const other = await network()
    expect(await code(verifyRevocationList(issuerPub, await revocationList(other.owner), room))).toBe('IDENTITY_REJECTED')
    for (const bad of ['', 'cwc1.', 'cwc1.a.b', 'cwc1.e30.AAAA', 'x'.repeat(5000)]) expect(await code(verifyCredential(issuerPub, bad, { network: room }))).toBe('IDENTITY_REJECTED')
  })

  it('carries the issuer key into viewer tokens made from an agent token', async () => {
    const { owner } = await network()
    const a = await issueAgentToken(owner, 'site-a', { ttlSeconds: 60 })
    const v = decodeToken(encodeToken(await viewerTokenFor(a, ['web'])))
    expect(v.kind === 'viewer' && v.issuer).toEqual(a.identity?.issuer)
  })
})

describe('identity proofs', () => {
  it('normalizes SDP fingerprints', () => {
    expect(sdpFingerprints(SDP)).toEqual(['sha-256 AB:CD:EF:01'])
  })

  it('verifies a hello only for the sender, recipient, name and relay it was signed for, and only while fresh', async () => {
    const { owner } = await network()
    const t = await issueAgentToken(owner, 'site-a', { ttlSeconds: 60 })
    const key = await importSigningKey(t.identity?.key ?? new Uint8Array())
    const pub = await importVerifyKey(parseCredential(t.identity?.credential ?? '').publicKey)
    const claims = { room: 'r', from: 'A', to: 'B', ts: Date.now(), name: 'site-a', role: 'agent', relayPeer: '12D3KooW' }
    const sig = await signHello(key, claims)
    await verifyHello(pub, claims, sig)
    for (const swap of [{ to: 'C' }, { from: 'X' }, { name: 'site-b' }, { relayPeer: '12D3Other' }]) {
      expect(await code(verifyHello(pub, { ...claims, ...swap }, sig))).toBe('IDENTITY_REJECTED')
    }
    expect(await code(verifyHello(pub, claims, sig, Date.now() + 10 * 60_000))).toBe('IDENTITY_REJECTED')
  })

  it('refuses an SDP whose fingerprint differs from the signed one', async () => {
    const { owner } = await network()
    const t = await issueAgentToken(owner, 'site-a', { ttlSeconds: 60 })
    const key = await importSigningKey(t.identity?.key ?? new Uint8Array())
    const pub = await importVerifyKey(parseCredential(t.identity?.credential ?? '').publicKey)
    const claims = { room: 'r', from: 'A', to: 'B', sid: 'sid1', ts: Date.now(), type: 'offer', sdp: SDP }
    const sig = await signDtls(key, claims)
    await verifyDtls(pub, claims, sig)
    expect(await code(verifyDtls(pub, { ...claims, sdp: SDP.replace(/ab:cd/gi, '00:11') }, sig))).toBe('IDENTITY_REJECTED')
    expect(await code(verifyDtls(pub, { ...claims, sdp: 'v=0\r\n' }, sig))).toBe('IDENTITY_REJECTED')
    expect(await code(verifyDtls(pub, { ...claims, sid: 'sid2' }, sig))).toBe('IDENTITY_REJECTED')
  })
})
