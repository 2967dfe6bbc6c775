/**
 * Durable revocation (issue 22): revoke mallory, give the list to site-a only
 * (`--revocations-file`), then restart site-a without the flag. With `--state-dir` it loaded the
 * list it kept before joining: a fresh mallory (holding no list to pass on) is refused at its
 * first hello and never becomes a peer. The control: the same restart with an empty state
 * directory accepts mallory, which is the hole this closes. And a list only moves forward: an
 * older list given later neither replaces the kept one nor takes effect.
 *
 * site-a runs as `bin/causeway agent` (restarts are process restarts); mallory is an in-process
 * agent with its own agent token.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { revocationList, revoke } from '../../protocol/identity-owner.ts'
import { verifyRevocationList, importVerifyKey } from '../../protocol/identity.ts'
import { fromBase64Url } from '../../protocol/encoding.ts'
import { deriveRoomId } from '../../protocol/keys.ts'
import type { Agent } from '../../agent/agent.ts'
import type { MemberToken } from '../../protocol/token.ts'
import { start, stopAll, type Proc } from '../smoke/causeway.ts'
import { startNet, tokenString, type Net } from './harness.ts'

describe('a revoked agent after a restart', () => {
  let net: Net
  let dir: string
  let tokenFile: string
  let listFile: string
  let mallorySeq = 0
  let malloryToken: MemberToken

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'causeway-state-'))
    net = await startNet()
    tokenFile = join(dir, 'site-a.token')
    writeFileSync(tokenFile, tokenString(await net.issue('site-a')), { mode: 0o600 })
    malloryToken = await net.issue('mallory') // the credential every mallory below uses
    revoke(net.owner, 'mallory')
    listFile = join(dir, 'revoked')
    const list = await revocationList(net.owner)
    writeFileSync(listFile, list)
    mallorySeq = (await verifyRevocationList(await importVerifyKey(fromBase64Url(net.owner.issuer.pub)), list, await deriveRoomId(fromBase64Url(net.owner.secret)))).seq
  }, 30_000)

  afterAll(async () => {
    stopAll()
    await net?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  const siteA = (args: string[]): Proc => start(['agent', '--token-file', tokenFile, '--status', 'off', ...args])

  /** A fresh mallory (no list to pass on: it never saw one); what the running site-a did with its first hello. */
  async function malloryMeets (a: Proc): Promise<'refused' | 'accepted'> {
    const mallory: Agent = await net.agent('mallory', { token: malloryToken })
    try {
      const m = await a.waitFor(/"peer":"mallory"[^\n]*"msg":"peer discovered"|"code":"CREDENTIAL_REVOKED"/, 20_000)
      return m[0].includes('CREDENTIAL_REVOKED') ? 'refused' : 'accepted'
    } finally {
      await mallory.stop()
    }
  }

  it('restarted without --revocations-file, site-a keeps refusing mallory from its state directory', async () => {
    const state = join(dir, 'state')
    const first = siteA(['--revocations-file', listFile, '--state-dir', state])
    await first.waitFor(/"msg":"revocation list adopted"/)
    expect(await first.stop()).toBe(0)
    expect(readFileSync(join(state, 'revocations.cwr'), 'utf8').trim()).toBe(readFileSync(listFile, 'utf8').trim())

    const again = siteA(['--state-dir', state])
    await again.waitFor(new RegExp(`"seq":${mallorySeq}[^\\n]*"msg":"revocation list adopted"`))
    expect(await malloryMeets(again)).toBe('refused')
    expect(again.output()).not.toMatch(/"peer":"mallory"[^\n]*"msg":"peer discovered"/)
    expect(await again.stop()).toBe(0)
  }, 90_000)

  it('control: the same restart with an empty state directory accepts mallory', async () => {
    const bare = siteA(['--state-dir', join(dir, 'empty')])
    expect(await malloryMeets(bare)).toBe('accepted')
    expect(await bare.stop()).toBe(0)
  }, 60_000)

  it('a list only moves forward: an older list given later does not replace the kept one', async () => {
    const state = join(dir, 'forward')
    const newer = await revocationList(net.owner) // seq mallorySeq + 1, still revoking mallory
    const newerFile = join(dir, 'newer')
    writeFileSync(newerFile, newer)
    const one = siteA(['--revocations-file', newerFile, '--state-dir', state])
    await one.waitFor(new RegExp(`"seq":${mallorySeq + 1}[^\\n]*"msg":"revocation list adopted"`))
    expect(await one.stop()).toBe(0)
    // restarted with the older list as its flag: the kept (newer) one stays in force and on disk
    const two = siteA(['--revocations-file', listFile, '--state-dir', state])
    await two.waitFor(new RegExp(`"seq":${mallorySeq + 1}[^\\n]*"msg":"revocation list adopted"`))
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(two.output()).not.toMatch(new RegExp(`"seq":${mallorySeq}[,}][^\\n]*"msg":"revocation list adopted"`))
    expect(readFileSync(join(state, 'revocations.cwr'), 'utf8').trim()).toBe(newer.trim())
    expect(await malloryMeets(two)).toBe('refused')
    expect(await two.stop()).toBe(0)
  }, 90_000)
})
