import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { toBase64Url, utf8 } from './encoding.ts'
import { deriveRelayKey } from './keys.ts'
import { encodeToken, newSecret } from './token.ts'
import { admissionPrivateKey, admitKeyFromRelayKey, admitKeyFromToken, admitVerifier, parseAdmitKey, verifyProof } from './relay-admission.ts'
import { issueAgentToken, newNetwork, revoke } from './identity-owner.ts'
import { importSigningKey, sign } from './identity.ts'
import { fromBase64Url } from './encoding.ts'

async function peer (): Promise<ReturnType<typeof peerIdFromPrivateKey>> { return peerIdFromPrivateKey(await generateKeyPair('Ed25519')) }

async function proof (relayKey: Uint8Array<ArrayBuffer>, client: string, relay: string, ts: number): Promise<Uint8Array> {
  const key = await admissionPrivateKey(relayKey)
  const sig = await key.sign(utf8(`causeway/relay-admission/v1\n${client}\n${relay}\n${ts}`))
  return utf8(JSON.stringify({ v: 1, ts, sig: toBase64Url(sig) }))
}

describe('relay admission', () => {
  it('derives the same admit key from a token and from its relay key, and it holds only a public key', async () => {
    const secret = newSecret()
    const relayKey = await deriveRelayKey(secret)
    const fromKey = await admitKeyFromRelayKey(relayKey)
    expect(await admitKeyFromToken(encodeToken({ kind: 'member', signaling: 'http://127.0.0.1:8787', secret }))).toBe(fromKey)
    expect(fromKey).toMatch(/^cwak1\.[A-Za-z0-9_-]{43}$/)
    expect(parseAdmitKey(fromKey).key.raw.byteLength).toBe(32)
    expect(parseAdmitKey(fromKey).issuer).toBeUndefined()
    expect(() => parseAdmitKey('cwak1.AAAA')).toThrow(/32-byte/)
    expect(() => parseAdmitKey(`${fromKey}.AAAA`)).toThrow(/malformed/)
    expect(() => parseAdmitKey('nope')).toThrow(/must start/)
  })

  it('accepts a fresh proof bound to the client and relay, under the right key only', async () => {
    const relayKey = await deriveRelayKey(newSecret())
    const other = await deriveRelayKey(newSecret())
    const keys = await Promise.all([parseAdmitKey(await admitKeyFromRelayKey(other)), parseAdmitKey(await admitKeyFromRelayKey(relayKey))].map(admitVerifier))
    const [client, relay, stranger] = [await peer(), await peer(), await peer()]
    const now = Date.now()
    const good = await proof(relayKey, client.toString(), relay.toString(), now)
    expect(await verifyProof(good, client, relay, keys, { now })).toEqual({ ok: true, keyIndex: 1 })
    // replayed by another peer, or against another relay
    expect(await verifyProof(good, stranger, relay, keys, { now })).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    expect(await verifyProof(good, client, stranger, keys, { now })).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    // too old, or wrong network
    expect(await verifyProof(good, client, relay, keys, { now: now + 6 * 60_000 })).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    const wrong = await proof(await deriveRelayKey(newSecret()), client.toString(), relay.toString(), now)
    expect(await verifyProof(wrong, client, relay, keys, { now })).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
  })

  it('rejects malformed proofs without throwing', async () => {
    const relayKey = await deriveRelayKey(newSecret())
    const keys = [await admitVerifier(parseAdmitKey(await admitKeyFromRelayKey(relayKey)))]
    const [client, relay] = [await peer(), await peer()]
    for (const bad of ['', 'not json', '{"v":3,"ts":1,"sig":"AA"}', '{"v":2,"ts":1,"sig":"AA","cred":1}', '{"v":1,"ts":1,"sig":"A","extra":1}', '{"v":1,"ts":-1,"sig":"AA"}', '{"v":1,"ts":1,"sig":"!!"}']) {
      expect(await verifyProof(utf8(bad), client, relay, keys)).toMatchObject({ ok: false, code: 'BAD_MESSAGE' })
    }
    expect(await verifyProof(utf8(JSON.stringify({ v: 1, ts: Date.now(), sig: 'AAAA' })), client, relay, keys)).toMatchObject({ ok: false })
  })

  it('with the issuer in the admit key (cwak2), admits only a valid credential signed for by its own key', async () => {
    const owner = await newNetwork('http://127.0.0.1:8787')
    const alice = await issueAgentToken(owner, 'alice', { ttlSeconds: 3600 })
    const bob = await issueAgentToken(owner, 'bob', { ttlSeconds: 3600 })
    const text = await admitKeyFromToken(encodeToken(alice))
    expect(text).toMatch(/^cwak2\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{87}$/)
    const keys = [await admitVerifier(parseAdmitKey(text))]
    const relayKey = await deriveRelayKey(alice.secret)
    const [client, relay] = [await peer(), await peer()]
    const now = Date.now()
    const v1 = await proof(relayKey, client.toString(), relay.toString(), now)
    const { sig } = JSON.parse(new TextDecoder().decode(v1)) as { sig: string }
    const textToSign = `causeway/relay-admission/v1\n${client.toString()}\n${relay.toString()}\n${now}`
    const v2 = async (cred: string, key: Uint8Array<ArrayBuffer>): Promise<Uint8Array> => utf8(JSON.stringify({ v: 2, ts: now, sig, cred, csig: await sign(await importSigningKey(key), textToSign) }))
    // the network proof alone is not enough here
    expect(await verifyProof(v1, client, relay, keys, { now })).toMatchObject({ ok: false, code: 'IDENTITY_REJECTED' })
    const ok = await verifyProof(await v2(alice.identity!.credential, alice.identity!.key), client, relay, keys, { now })
    expect(ok).toMatchObject({ ok: true, keyIndex: 0, credential: { name: 'alice' } })
    // bob's credential (seen in a hello) with alice's key: refused
    expect(await verifyProof(await v2(bob.identity!.credential, alice.identity!.key), client, relay, keys, { now })).toMatchObject({ ok: false, code: 'IDENTITY_REJECTED' })
    // another network's credential
    const stranger = await issueAgentToken(await newNetwork('http://127.0.0.1:8787'), 'alice', { ttlSeconds: 3600 })
    expect(await verifyProof(await v2(stranger.identity!.credential, stranger.identity!.key), client, relay, keys, { now })).toMatchObject({ ok: false, code: 'IDENTITY_REJECTED' })
    // revoked
    const serial = revoke(owner, 'alice')[0]!
    expect(await verifyProof(await v2(alice.identity!.credential, alice.identity!.key), client, relay, keys, { now, revoked: () => new Set([serial]) })).toMatchObject({ ok: false, code: 'CREDENTIAL_REVOKED' })
    expect(fromBase64Url(text.split('.')[2]!).byteLength).toBe(65)
  })
})
