/**
 * UDP shares through bin/causeway, as the README starts them: a real resolver (dnsmasq, a few
 * records, no upstream) shared with `--share dns=…,protocol=udp`, reached through
 * `--connect dns@site-a=…,protocol=udp` by real `dig` and by hundreds of concurrent clients
 * (one socket each: one flow each). Then the limits under attack: oversize datagrams both ways
 * and a flood of new source ports against a share with a small flow cap, while a flow in use
 * keeps working; refusals (`peers=`, a TCP connect to a UDP share) and bad flags. site-b runs
 * @roamhq/wrtc (it creates the channels), site-a and site-c the default engine (auto: node-datachannel
 * here, which accepts them); test/engine/unreliable.test.ts covers every engine pairing. Run inside scripts/netns-run.sh.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createSocket, type Socket } from 'node:dgram'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UDP_MAX_PAYLOAD } from '../../protocol/udp.ts'
import { until } from '../until.ts'
import { freePort, run, start, stopAll, type Proc } from './causeway.ts'

const exec = promisify(execFile)
const NAMES = 50
const ip = (i: number): string => `10.2.${i >> 8}.${i & 255}`
let dir: string
let dnsmasq: ChildProcess | undefined
let dnsPort: number
let echo: Socket
let echoPort: number
const status: Record<string, number> = {}
const listen: Record<string, number> = {}
let siteB: Proc

/** A DNS query for an A record. */
function query (id: number, name: string): Buffer {
  const labels = name.split('.').flatMap(l => [Buffer.from([l.length]), Buffer.from(l)])
  return Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])])
}

/** Sends one datagram from a fresh socket (a new flow) and resolves with the first reply; resends every `everyMs`, up to `tries` times. */
async function ask (port: number, payload: Buffer, tries = 4, everyMs = 1500, from?: Socket): Promise<Buffer | undefined> {
  const sock = from ?? createSocket('udp4')
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      let n = 0
      let timer: ReturnType<typeof setTimeout> | undefined
      const onMsg = (msg: Buffer): void => { clearTimeout(timer); sock.off('message', onMsg); resolve(msg) }
      sock.on('message', onMsg)
      const send = (): void => {
        if (n++ >= tries) { sock.off('message', onMsg); resolve(undefined); return }
        sock.send(payload, port, '127.0.0.1')
        timer = setTimeout(send, everyMs)
      }
      send()
    })
  } finally {
    if (from === undefined) sock.close()
  }
}

async function resolveA (port: number, i: number, from?: Socket): Promise<string | undefined> {
  const id = (i * 7919) & 0xffff
  const reply = await ask(port, query(id, `name-${i % NAMES}.causeway.test`), 4, 1500, from)
  if (reply === undefined || reply.readUInt16BE(0) !== id || reply.readUInt16BE(6) < 1) return undefined
  return [...reply.subarray(reply.length - 4)].join('.')
}

async function metrics (site: string): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${status[site]}/metrics`)).text()
}

function metric (text: string, name: string, labels: string): number {
  const line = text.split('\n').find(l => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? Number.NaN : Number(line.split(' ').pop())
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'causeway-udp-'))
  dnsPort = await freePort()
  const records = Array.from({ length: NAMES }, (_, i) => `host-record=name-${i}.causeway.test,${ip(i)}`).join('\n')
  await writeFile(join(dir, 'dnsmasq.conf'), `port=${dnsPort}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nno-poll\npid-file=\nlocal=/causeway.test/\n${records}\n`)
  dnsmasq = spawn('/usr/sbin/dnsmasq', ['--keep-in-foreground', `--conf-file=${join(dir, 'dnsmasq.conf')}`, '--user=root', '--log-facility=-'], { stdio: 'ignore' })
  // The echo target answers each datagram with itself, or with 2000 bytes when it starts with "B" (a reply too large to carry).
  echo = createSocket('udp4')
  echo.on('message', (msg, from) => { echo.send(msg[0] === 0x42 ? Buffer.alloc(2000, 0x42) : msg, from.port, from.address) })
  await new Promise<void>(resolve => echo.bind(0, '127.0.0.1', resolve))
  echoPort = echo.address().port
  await until(async () => (await exec('dig', ['@127.0.0.1', '-p', String(dnsPort), '+short', '+tries=1', '+timeout=1', 'name-1.causeway.test']).catch(() => ({ stdout: '' }))).stdout.trim() === ip(1) || undefined, 10_000, 'dnsmasq to answer')

  const port = await freePort()
  const signaling = start(['signaling', '--listen', `127.0.0.1:${port}`])
  const url = (await signaling.waitFor(/signaling listening on (http:\/\/\S+)/))[1] ?? ''
  expect((await run(['token', '--signaling', url], { cwd: dir })).code).toBe(0)
  for (const name of ['site-a', 'site-b', 'site-c']) {
    expect((await run(['token', '--name', name, '--out', `${name}.token`], { cwd: dir })).code).toBe(0)
    status[name] = await freePort()
  }
  for (const l of ['dns', 'echo', 'private', 'tcp', 'small']) listen[l] = await freePort()
  start(['agent', '--token-file', join(dir, 'site-a.token'), '--status', `127.0.0.1:${status['site-a']}`, '--udp-max-flows', '1024',
    '--share', `dns=127.0.0.1:${dnsPort},protocol=udp`, '--share', `echo=127.0.0.1:${echoPort},protocol=udp`,
    '--share', `private=127.0.0.1:${dnsPort},protocol=udp,peers=site-c`])
  start(['agent', '--token-file', join(dir, 'site-c.token'), '--status', `127.0.0.1:${status['site-c']}`, '--udp-max-flows', '8',
    '--share', `small=127.0.0.1:${dnsPort},protocol=udp`])
  siteB = start(['agent', '--token-file', join(dir, 'site-b.token'), '--status', `127.0.0.1:${status['site-b']}`, '--udp-max-flows', '1024', '--engine', 'wrtc',
    '--connect', `dns@site-a=127.0.0.1:${listen.dns},protocol=udp`, '--connect', `echo@site-a=127.0.0.1:${listen.echo},protocol=udp`,
    '--connect', `private@site-a=127.0.0.1:${listen.private},protocol=udp`, '--connect', `dns@site-a=127.0.0.1:${listen.tcp}`,
    '--connect', `small@site-c=127.0.0.1:${listen.small},protocol=udp`])
  await until(async () => await resolveA(listen.dns!, 1, undefined).catch(() => undefined) === ip(1) || undefined, 30_000, 'a DNS answer through the tunnel')
}, 90_000)

afterAll(async () => {
  stopAll()
  if (dnsmasq?.pid !== undefined && dnsmasq.exitCode === null) process.kill(dnsmasq.pid, 'SIGKILL')
  echo?.close()
  await rm(dir, { recursive: true, force: true })
})

describe('a UDP share carries DNS', () => {
  it('dig resolves through the tunnel, one by one and in batches (-f) from parallel processes', async () => {
    const one = await exec('dig', ['@127.0.0.1', '-p', String(listen.dns), '+short', '+tries=3', '+timeout=2', 'name-7.causeway.test'])
    expect(one.stdout.trim()).toBe(ip(7))
    const batch = Array.from({ length: 25 }, (_, i) => `name-${i}.causeway.test`).join('\n')
    await writeFile(join(dir, 'batch.txt'), `${batch}\n`)
    const runs = await Promise.all(Array.from({ length: 4 }, async () => await exec('dig', ['@127.0.0.1', '-p', String(listen.dns), '+short', '+tries=3', '+timeout=2', '-f', join(dir, 'batch.txt')])))
    for (const r of runs) expect(r.stdout.trim().split('\n')).toEqual(Array.from({ length: 25 }, (_, i) => ip(i)))
    const nx = await exec('dig', ['@127.0.0.1', '-p', String(listen.dns), '+tries=3', '+timeout=2', 'absent.causeway.test'])
    expect(nx.stdout).toMatch(/status: NXDOMAIN/)
  }, 60_000)

  it('answers 300 concurrent clients, each on its own source port (its own flow)', async () => {
    const before = await metrics('site-a')
    const answers = await Promise.all(Array.from({ length: 300 }, async (_, i) => await resolveA(listen.dns!, i)))
    expect(answers.filter((a, i) => a === ip(i % NAMES)).length).toBe(300)
    const after = await metrics('site-a')
    // site-a received at least the 300 queries from site-b, and sent as many answers
    expect(metric(after, 'causeway_agent_udp_datagrams_total', 'direction="in"') - metric(before, 'causeway_agent_udp_datagrams_total', 'direction="in"')).toBeGreaterThanOrEqual(300)
    expect(metric(after, 'causeway_agent_udp_datagrams_total', 'direction="out"') - metric(before, 'causeway_agent_udp_datagrams_total', 'direction="out"')).toBeGreaterThanOrEqual(300)
    expect(metric(after, 'causeway_agent_udp_flows', 'side="share"')).toBeGreaterThanOrEqual(300)
  }, 60_000)

  it('status JSON lists the UDP shares, connects and counters', async () => {
    const b = JSON.parse((await run(['status', '--status-addr', `127.0.0.1:${status['site-b']}`, '--json'])).stdout) as { connects: Array<{ share: string, protocol: string, listen: string }>, udp: { datagramsOut: number, flows: { connect: number } } }
    expect(b.connects).toContainEqual({ share: 'dns', peer: 'site-a', listen: `127.0.0.1:${listen.dns}`, protocol: 'udp' })
    expect(b.connects).toContainEqual({ share: 'dns', peer: 'site-a', listen: `127.0.0.1:${listen.tcp}`, protocol: 'tcp' })
    expect(b.udp.datagramsOut).toBeGreaterThan(300)
    const a = JSON.parse((await run(['status', '--status-addr', `127.0.0.1:${status['site-a']}`, '--json'])).stdout) as { shares: Array<{ name: string, protocol: string }>, peers: Array<{ name: string, shares: unknown[] }> }
    expect(a.shares).toContainEqual({ name: 'dns', target: `127.0.0.1:${dnsPort}`, peers: 'all', protocol: 'udp' })
    const table = await run(['status', '--status-addr', `127.0.0.1:${status['site-b']}`])
    expect(table.stdout).toMatch(new RegExp(`^dns +udp +site-a +127\\.0\\.0\\.1:${listen.dns}$`, 'm'))
    // site-b's catalog for site-a lists the UDP shares it may use, and not the one limited to site-c
    const bPeers = (JSON.parse((await run(['status', '--status-addr', `127.0.0.1:${status['site-b']}`, '--json'])).stdout) as { peers: Array<{ name: string, shares: Array<{ name: string, protocol: string }> }> }).peers
    expect(bPeers.find(p => p.name === 'site-a')?.shares.map(s => `${s.name}/${s.protocol}`).sort()).toEqual(['dns/udp', 'echo/udp'])
  })
})

describe('limits, attacked', () => {
  it('datagrams of up to 1152 bytes pass both ways; larger ones are dropped and counted on either side, and the flow goes on', async () => {
    expect(UDP_MAX_PAYLOAD).toBe(1152)
    const sock = createSocket('udp4')
    await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', resolve))
    try {
      const max = Buffer.alloc(UDP_MAX_PAYLOAD, 0x61)
      expect((await ask(listen.echo!, max, 4, 1500, sock))?.equals(max)).toBe(true)
      const b0 = await metrics('site-b')
      const a0 = await metrics('site-a')
      // A hostile client: 20 datagrams of 1153 to 3053 bytes from the same flow (small enough in sum for the listener's socket buffer).
      for (let i = 0; i < 20; i++) sock.send(Buffer.alloc(UDP_MAX_PAYLOAD + 1 + 100 * i, 0x62), listen.echo!, '127.0.0.1')
      // A reply too large: the target answers "B…" with 2000 bytes, dropped at site-a.
      expect(await ask(listen.echo!, Buffer.from('Big please'), 1, 1000, sock)).toBeUndefined()
      const small = Buffer.from('still here')
      expect((await ask(listen.echo!, small, 4, 1500, sock))?.equals(small)).toBe(true)
      const b1 = await metrics('site-b')
      const a1 = await metrics('site-a')
      expect(metric(b1, 'causeway_agent_udp_drops_total', 'reason="oversize"') - metric(b0, 'causeway_agent_udp_drops_total', 'reason="oversize"')).toBe(20)
      expect(metric(a1, 'causeway_agent_udp_drops_total', 'reason="oversize"') - metric(a0, 'causeway_agent_udp_drops_total', 'reason="oversize"')).toBe(1)
    } finally {
      sock.close()
    }
  }, 30_000)

  it('a flood of new source ports fills the share side\'s flow cap (8) and is dropped there, while a flow in use keeps resolving', async () => {
    const legit = createSocket('udp4')
    await new Promise<void>(resolve => legit.bind(0, '127.0.0.1', resolve))
    const attackers: Socket[] = []
    try {
      expect(await resolveA(listen.small!, 3, legit)).toBe(ip(3))
      const c0 = await metrics('site-c')
      for (let i = 0; i < 100; i++) {
        const s = createSocket('udp4')
        s.on('error', () => {})
        await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
        attackers.push(s)
      }
      let flooding = true
      const flood = (async () => {
        for (let round = 0; round < 200 && flooding; round++) {
          for (const s of attackers) s.send(query(round, 'name-9.causeway.test'), listen.small!, '127.0.0.1')
          await new Promise(resolve => setTimeout(resolve, 100))
        }
      })()
      await new Promise(resolve => setTimeout(resolve, 500))
      const during: Array<string | undefined> = []
      for (let i = 0; i < 10; i++) during.push(await resolveA(listen.small!, i, legit))
      flooding = false
      await flood
      expect(during).toEqual(Array.from({ length: 10 }, (_, i) => ip(i)))
      const c1 = await metrics('site-c')
      expect(metric(c1, 'causeway_agent_udp_drops_total', 'reason="flow_limit"') - metric(c0, 'causeway_agent_udp_drops_total', 'reason="flow_limit"')).toBeGreaterThan(100)
      expect(metric(c1, 'causeway_agent_udp_flows', 'side="share"')).toBeLessThanOrEqual(8)
    } finally {
      legit.close()
      for (const s of attackers) s.close()
    }
  }, 60_000)
})

describe('refusals and bad input', () => {
  it('a UDP share limited by peers= is refused to another agent (SHARE_FORBIDDEN); a TCP connect to a UDP share gets PROTOCOL_MISMATCH', async () => {
    expect(await ask(listen.private!, query(1, 'name-1.causeway.test'), 1, 1000)).toBeUndefined()
    await siteB.waitFor(/"code":"SHARE_FORBIDDEN"[^\n]*UDP connect failed|UDP connect failed[^\n]*"code":"SHARE_FORBIDDEN"/, 10_000)
    const sock = connect(listen.tcp!, '127.0.0.1')
    sock.on('error', () => {})
    await new Promise<void>(resolve => sock.once('close', () => resolve()))
    await siteB.waitFor(/PROTOCOL_MISMATCH/, 10_000)
  }, 30_000)

  it('bad --share / --connect flags exit 1 with BAD_CONFIG', async () => {
    const token = join(dir, 'site-b.token')
    const bad = await run(['agent', '--token-file', token, '--status', 'off', '--share', 'dns=127.0.0.1:53,protocol=sctp'], { ms: 20_000 })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/BAD_CONFIG: unknown --share option "protocol=sctp"/)
    const noHost = await run(['agent', '--token-file', token, '--status', 'off', '--connect', 'dns@site-a=5353,protocol=udp'], { ms: 20_000 })
    expect(noHost.code).toBe(1)
    expect(noHost.stderr).toMatch(/BAD_CONFIG: --connect: expected HOST:PORT/)
  }, 45_000)
})
