/**
 * Relay reservations under attack (issue 22), with a real relay (relay/server.ts) and real
 * relay clients (agent/relay-transport) on loopback. The relay's admit key carries the
 * network's issuer (`cwak2`, what `--admit-token-file` with an agent token gives), so it tells
 * agents apart by their credentials.
 *
 * - mallory, an admitted member, starts as many libp2p identities as the relay has reservations
 *   (each proving admission with its credential): only `maxReservationsPerCredential` of them
 *   get one, and alice, a real agent, still reserves;
 * - the same without a credential (the network proof alone), and with alice's credential but
 *   mallory's key: refused at admission;
 * - churn (reserve, disconnect, again with a new identity) does not pile up reservations: they
 *   are released when their holder's connection closes;
 * - revoking mallory: alice passes the new list to the relay, which releases mallory's
 *   reservations and closes its connections; mallory is refused from then on
 *   (CREDENTIAL_REVOKED).
 * - a relay admitting a network without its issuer (`cwak1`: shared tokens) cannot tell members
 *   apart, and caps reservations per client address instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { importSigningKey } from '../../protocol/identity.ts'
import { issueAgentToken, newNetwork, revocationList, revoke, type NetworkOwner } from '../../protocol/identity-owner.ts'
import { deriveRelayKey } from '../../protocol/keys.ts'
import { admitKeyFromRelayKey, admitKeyFromToken, type AdmissionIdentity } from '../../protocol/relay-admission.ts'
import { encodeToken, type MemberToken } from '../../protocol/token.ts'
import { startRelayClient, type RelayClient } from '../../agent/relay-transport/index.ts'
import { startRelay, type Relay } from '../../relay/server.ts'
import { until } from '../until.ts'

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
const TOTAL = 16
const PER_CREDENTIAL = 2

describe('relay reservations: one credential cannot take them all', () => {
  let owner: NetworkOwner
  let alice: MemberToken
  let mallory: MemberToken
  let relay: Relay
  let addr: string
  let crl: string | undefined
  const clients: RelayClient[] = []

  const identity = async (t: MemberToken, credential = t.identity!.credential): Promise<AdmissionIdentity> =>
    ({ key: await importSigningKey(t.identity!.key), credential, crl: () => crl })
  const client = async (t: MemberToken, id?: AdmissionIdentity): Promise<RelayClient> => {
    const c = await startRelayClient({ relayKey: await deriveRelayKey(t.secret), relays: [addr], log, refusedRetryMs: 60_000, ...(id !== undefined ? { identity: id } : {}) })
    clients.push(c)
    return c
  }
  /** Whether `c` gets a reservation within `ms`, and its last error otherwise. */
  const reserves = async (c: RelayClient, ms = 3000): Promise<string> => {
    try { await c.waitForReservation({ signal: AbortSignal.timeout(ms) }); return 'reserved' } catch { return c.status()[0]?.lastError ?? 'no reservation' }
  }
  const held = (): number => relay.node.services.relay.reservations.size

  beforeAll(async () => {
    owner = await newNetwork('http://127.0.0.1:1')
    alice = await issueAgentToken(owner, 'alice', { ttlSeconds: 3600 })
    mallory = await issueAgentToken(owner, 'mallory', { ttlSeconds: 3600 })
    relay = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0'], admission: { keys: [await admitKeyFromToken(encodeToken(alice))] }, limits: { maxReservations: TOTAL, maxReservationsPerCredential: PER_CREDENTIAL }, log })
    addr = relay.multiaddrs[0]!.toString()
  }, 30_000)

  afterAll(async () => {
    await Promise.allSettled(clients.map(async c => await c.close()))
    await relay?.close()
  })

  it('mallory with as many identities as there are reservations holds only its share; alice still reserves', async () => {
    const id = await identity(mallory)
    const hordes = await Promise.all(Array.from({ length: TOTAL }, async () => await client(mallory, id)))
    const results = await Promise.all(hordes.map(async c => await reserves(c)))
    expect(results.filter(r => r === 'reserved')).toHaveLength(PER_CREDENTIAL)
    expect(held()).toBe(PER_CREDENTIAL)
    // no credential, or alice's credential with mallory's key: refused at admission
    expect(await reserves(await client(mallory))).toMatch(/IDENTITY_REJECTED: .*credential/)
    expect(await reserves(await client(mallory, await identity(mallory, alice.identity!.credential)))).toMatch(/IDENTITY_REJECTED: .*not signed by the key/)
    // the real agent reserves
    expect(await reserves(await client(alice, await identity(alice)))).toBe('reserved')
    expect(held()).toBe(PER_CREDENTIAL + 1)
    // churn: mallory drops its holders and comes back with new identities; nothing piles up
    for (const c of hordes) await c.close()
    await until(() => held() === 1, 10_000, 'the relay to release the reservations of closed connections')
    const again = await Promise.all(Array.from({ length: 4 }, async () => await client(mallory, id)))
    expect((await Promise.all(again.map(async c => await reserves(c)))).filter(r => r === 'reserved')).toHaveLength(PER_CREDENTIAL)
    expect(held()).toBe(PER_CREDENTIAL + 1)
  }, 60_000)

  it('revoking mallory releases its reservations and refuses it; alice keeps hers', async () => {
    revoke(owner, 'mallory')
    crl = await revocationList(owner)
    const aliceClient = clients.find(c => c.multiaddrs().length > 0 && c.status()[0]?.reserved === true && clients.indexOf(c) >= TOTAL)
    expect(aliceClient).toBeDefined()
    await aliceClient!.pushRevocations() // what an agent does when it adopts a newer list
    await until(() => held() === 1, 10_000, 'the relay to release mallory\'s reservations')
    expect(relay.node.services.relay.reservations.has(aliceClient!.peerId)).toBe(true)
    expect(await reserves(await client(mallory, await identity(mallory)))).toMatch(/CREDENTIAL_REVOKED/)
    // an older list changes nothing
    expect(await relay.adoptRevocations(crl)).toBe(false)
  }, 30_000)

  it('without the issuer key (cwak1) the cap applies per client address', async () => {
    const relayKey = await deriveRelayKey(mallory.secret)
    const open = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0'], admission: { keys: [await admitKeyFromRelayKey(relayKey)] }, limits: { maxReservations: TOTAL, maxReservationsPerAddress: 3 }, log })
    try {
      const horde = await Promise.all(Array.from({ length: 6 }, async () => {
        const c = await startRelayClient({ relayKey, relays: [open.multiaddrs[0]!.toString()], log })
        clients.push(c)
        return c
      }))
      expect((await Promise.all(horde.map(async c => await reserves(c)))).filter(r => r === 'reserved')).toHaveLength(3)
      expect(open.node.services.relay.reservations.size).toBe(3)
    } finally {
      await open.close()
    }
  }, 30_000)
})
