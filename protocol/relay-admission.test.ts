import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { toBase64Url, utf8 } from './encoding.ts'
import { deriveRelayKey } from './keys.ts'
import { encodeToken, newSecret } from './token.ts'
import { admissionPrivateKey, admitKeyFromRelayKey, admitKeyFromToken, parseAdmitKey, verifyProof } from './relay-admission.ts'

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
    expect(parseAdmitKey(fromKey).raw.byteLength).toBe(32)
    expect(() => parseAdmitKey('cwak1.AAAA')).toThrow(/32-byte/)
    expect(() => parseAdmitKey('nope')).toThrow(/must start/)
  })

  it('accepts a fresh proof bound to the client and relay, under the right key only', async () => {
    const relayKey = await deriveRelayKey(newSecret())
    const other = await deriveRelayKey(newSecret())
    const keys = [parseAdmitKey(await admitKeyFromRelayKey(other)), parseAdmitKey(await admitKeyFromRelayKey(relayKey))]
    const [client, relay, stranger] = [await peer(), await peer(), await peer()]
    const now = Date.now()
    const good = await proof(relayKey, client.toString(), relay.toString(), now)
    expect(await verifyProof(good, client, relay, keys, now)).toEqual({ ok: true, keyIndex: 1 })
    // replayed by another peer, or against another relay
    expect(await verifyProof(good, stranger, relay, keys, now)).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    expect(await verifyProof(good, client, stranger, keys, now)).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    // too old, or wrong network
    expect(await verifyProof(good, client, relay, keys, now + 6 * 60_000)).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    const wrong = await proof(await deriveRelayKey(newSecret()), client.toString(), relay.toString(), now)
    expect(await verifyProof(wrong, client, relay, keys, now)).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
  })

  it('rejects malformed proofs without throwing', async () => {
    const relayKey = await deriveRelayKey(newSecret())
    const keys = [parseAdmitKey(await admitKeyFromRelayKey(relayKey))]
    const [client, relay] = [await peer(), await peer()]
    for (const bad of ['', 'not json', '{"v":2,"ts":1,"sig":"AA"}', '{"v":1,"ts":1,"sig":"A","extra":1}', '{"v":1,"ts":-1,"sig":"AA"}', '{"v":1,"ts":1,"sig":"!!"}']) {
      expect(await verifyProof(utf8(bad), client, relay, keys)).toMatchObject({ ok: false, code: 'BAD_MESSAGE' })
    }
    expect(await verifyProof(utf8(JSON.stringify({ v: 1, ts: Date.now(), sig: 'AAAA' })), client, relay, keys)).toMatchObject({ ok: false })
  })
})
