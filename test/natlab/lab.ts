/**
 * The NAT lab: two sites behind real NAT routers and a fake Internet, built with `ip netns`,
 * veth pairs and iptables (see /work/shared/natlab-notes.md for the measurements behind it).
 *
 * ```
 * [a] 10.0.1.2 ─lan─ [ra] 203.0.113.2/28  ─┐
 *                                          ├─ [pub] routes between the uplinks; ip_forward=1
 * [b] 10.0.2.2 ─lan─ [rb] 203.0.113.18/28 ─┘   198.51.100.1,.2 coturn (3478 udp+tcp; tcp 443 → 3478;
 *                                               TLS on 5349 with a lab certificate: `lab.turnCert`)
 *                                               198.51.100.3:443 signaling, 198.51.100.4 relay
 *                                               (tcp 4001, ws on 443), private ranges → a sink
 * ```
 *
 * Site routers (`NatType`): `eim` endpoint-independent mapping (MASQUERADE), `symmetric`
 * (MASQUERADE --random-fully), `udpblock` (eim, UDP dropped), `tcp443` (only TCP to port 443
 * leaves the LAN). Every router drops unsolicited WAN input (pitfall 1 of the notes).
 *
 * Names: every namespace and interface starts with `cwl<pid>` (the test process), so several
 * runs can coexist and teardown removes exactly what this run made. Processes started in the
 * lab are tracked and killed by PID; `teardown()` also kills by PID whatever `ip netns pids`
 * still finds in the lab's namespaces before deleting them. `cleanupStale()` removes the labs
 * of test processes that no longer exist.
 *
 * Needs root, iproute2 with netns support, iptables and coturn; `labAvailability()` installs
 * the Debian packages when missing and says why the lab cannot run otherwise.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mintTurnCredential } from '../../protocol/turn.ts'
import { must, sh, type ExecResult } from '../../scripts/run-command.ts'
import { NODE, ROOT } from './relay-helpers.ts'

export type { ExecResult }

export type NatType = 'eim' | 'symmetric' | 'udpblock' | 'tcp443'
export const NAT_TYPES: readonly NatType[] = ['eim', 'symmetric', 'udpblock', 'tcp443']

export const LAB_ADDRS = {
  a: '10.0.1.2',
  b: '10.0.2.2',
  raWan: '203.0.113.2',
  rbWan: '203.0.113.18',
  turn: '198.51.100.1',
  turnAlt: '198.51.100.2',
  signaling: '198.51.100.3',
  relay: '198.51.100.4',
} as const

export type Site = 'a' | 'b'
export type LabNs = 'pub' | 'ra' | 'rb' | 'a' | 'b'

export interface LabOptions {
  a: NatType
  b: NatType
  /** Shared secret of coturn's use-auth-secret (REST credentials). Default: random. */
  turnSecret?: string
  /**
   * Bring `lo` up in the LAN namespaces a and b. Default false. Measured here: with `lo` up,
   * @roamhq/wrtc gathers 127.0.0.1 host candidates, its first checks go out from the loopback
   * socket toward LAN/WAN addresses and never complete, and ICE stalls in `checking` even for
   * eim/eim (with `lo` down the same pair connects srflx↔srflx in ~1 s). Anything the agent
   * serves in the lab must then bind the LAN address, not 127.0.0.1.
   */
  lanLoopback?: boolean
}

export interface LabProcess {
  child: ChildProcess
  output: () => string
  /** Resolves once `pattern` appears in stdout+stderr, or throws after `ms`. */
  waitFor: (pattern: RegExp, ms: number) => Promise<RegExpMatchArray>
  kill: () => Promise<void>
}

const BASE = 'cwl'

const hasCmd = async (name: string): Promise<boolean> => (await sh(['sh', '-c', `command -v ${name}`])).code === 0

/**
 * Whether the lab can run here. Installs iptables/coturn/iproute2 with apt-get when missing
 * (bounded). Returns the reason when it cannot.
 */
export async function labAvailability (): Promise<{ ok: true } | { ok: false, reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `not Linux (${process.platform})` }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root: network namespaces and iptables need root' }
  const missing = []
  for (const [cmd, pkg] of [['ip', 'iproute2'], ['iptables', 'iptables'], ['turnserver', 'coturn'], ['turnutils_natdiscovery', 'coturn'], ['openssl', 'openssl']] as const) {
    if (!(await hasCmd(cmd))) missing.push(pkg)
  }
  if (missing.length > 0) {
    const pkgs = [...new Set(missing)]
    const env = 'DEBIAN_FRONTEND=noninteractive'
    const r = await sh(['sh', '-c', `(${env} apt-get install -y -q ${pkgs.join(' ')} || (apt-get update -q && ${env} apt-get install -y -q ${pkgs.join(' ')})) >/dev/null 2>&1`], 600_000)
    if (r.code !== 0) return { ok: false, reason: `cannot install ${pkgs.join(', ')} with apt-get` }
  }
  const probe = `${BASE}${process.pid}probe`
  const made = await sh(['ip', 'netns', 'add', probe])
  if (made.code !== 0) return { ok: false, reason: `cannot create a network namespace: ${made.stderr.trim()}` }
  const ipt = await sh(['ip', 'netns', 'exec', probe, 'iptables', '-t', 'nat', '-L', '-n'])
  await sh(['ip', 'netns', 'del', probe])
  if (ipt.code !== 0) return { ok: false, reason: `iptables does not work in a namespace: ${ipt.stderr.trim()}` }
  return { ok: true }
}

/** Removes labs left by test processes that are gone (their PID no longer exists). */
export async function cleanupStale (): Promise<string[]> {
  const list = (await sh(['ip', 'netns', 'list'])).stdout
  const removed: string[] = []
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = /^cwl(\d+)(pub|ra|rb|a|b|probe)$/.exec(name)
    if (m === null || Number(m[1]) === process.pid) continue
    try { process.kill(Number(m[1]), 0); continue } catch { /* the owner is gone */ }
    await killNsPids(name)
    await sh(['ip', 'netns', 'del', name])
    removed.push(name)
  }
  return removed
}

async function killNsPids (ns: string): Promise<void> {
  const pids = (await sh(['ip', 'netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean).map(Number)
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ } }
}

function routerRules (nat: NatType, lan: string, wan: string): string[][] {
  const ipt = (...a: string[]): string[] => ['iptables', '-w', ...a]
  const base = [
    ipt('-P', 'FORWARD', 'DROP'),
    ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'),
    ipt('-P', 'INPUT', 'DROP'),
    ipt('-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT'),
    ipt('-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'),
    ipt('-A', 'INPUT', '-i', lan, '-j', 'ACCEPT'),
    ipt('-A', 'INPUT', '-p', 'icmp', '-j', 'ACCEPT'),
  ]
  const masq = nat === 'symmetric'
    ? ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', wan, '-j', 'MASQUERADE', '--random-fully')
    : ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', wan, '-j', 'MASQUERADE')
  switch (nat) {
    case 'eim':
    case 'symmetric':
      return [...base, ipt('-A', 'FORWARD', '-i', lan, '-o', wan, '-j', 'ACCEPT'), masq]
    case 'udpblock':
      return [...base, ipt('-A', 'FORWARD', '-i', lan, '-o', wan, '-p', 'udp', '-j', 'DROP'), ipt('-A', 'FORWARD', '-i', lan, '-o', wan, '-j', 'ACCEPT'), masq]
    case 'tcp443':
      return [...base, ipt('-A', 'FORWARD', '-i', lan, '-o', wan, '-p', 'tcp', '--dport', '443', '-j', 'ACCEPT'), masq]
  }
}

export class Lab {
  readonly prefix: string
  readonly options: Required<LabOptions>
  readonly addrs = LAB_ADDRS
  readonly #procs = new Set<LabProcess>()
  #dir = ''

  constructor (options: LabOptions, prefix = `${BASE}${process.pid}`) {
    this.prefix = prefix
    this.options = { turnSecret: `lab-${Math.random().toString(36).slice(2)}`, lanLoopback: false, ...options }
  }

  /** The namespace name of a lab node. */
  ns (node: LabNs): string { return `${this.prefix}${node}` }

  /**
   * coturn's TLS certificate (self-signed, for 198.51.100.1): clients trust it with
   * NODE_EXTRA_CA_CERTS. Set by startTurn.
   */
  get turnCert (): string { return join(this.#dir, 'turn.pem') }

  /** A scratch directory that teardown removes. */
  get dir (): string { return this.#dir }

  /** Builds the topology (after removing anything left under this prefix). */
  async setup (): Promise<void> {
    await this.teardown()
    this.#dir = await mkdtemp(join(tmpdir(), `${this.prefix}-`))
    const p = this.prefix
    const all: LabNs[] = ['pub', 'ra', 'rb', 'a', 'b']
    for (const n of all) {
      await must(['ip', 'netns', 'add', this.ns(n)])
      await must(['ip', 'netns', 'exec', this.ns(n), 'sh', '-c',
        'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0'])
      if (n === 'pub' || n === 'ra' || n === 'rb' || this.options.lanLoopback) await must(['ip', '-n', this.ns(n), 'link', 'set', 'lo', 'up'])
    }
    const veth = async (n1: LabNs, if1: string, n2: LabNs, if2: string): Promise<void> => {
      await must(['ip', 'link', 'add', if1, 'netns', this.ns(n1), 'type', 'veth', 'peer', 'name', if2, 'netns', this.ns(n2)])
    }
    const ip = async (n: LabNs, ...args: string[]): Promise<void> => { await must(['ip', '-n', this.ns(n), ...args]) }
    // uplinks and LANs
    await veth('pub', `${p}pa`, 'ra', `${p}ra`)
    await veth('pub', `${p}pb`, 'rb', `${p}rb`)
    await veth('ra', `${p}la`, 'a', `${p}a0`)
    await veth('rb', `${p}lb`, 'b', `${p}b0`)
    await veth('pub', `${p}s0`, 'pub', `${p}s1`)
    const addr = async (n: LabNs, dev: string, cidr: string): Promise<void> => {
      await ip(n, 'addr', 'add', cidr, 'dev', dev)
      await ip(n, 'link', 'set', dev, 'up')
    }
    await addr('pub', `${p}pa`, '203.0.113.1/28')
    await addr('pub', `${p}pb`, '203.0.113.17/28')
    await addr('ra', `${p}ra`, '203.0.113.2/28')
    await addr('rb', `${p}rb`, '203.0.113.18/28')
    await addr('ra', `${p}la`, '10.0.1.1/24')
    await addr('rb', `${p}lb`, '10.0.2.1/24')
    await addr('a', `${p}a0`, '10.0.1.2/24')
    await addr('b', `${p}b0`, '10.0.2.2/24')
    // fake Internet: the service addresses, and private ranges into a sink (pitfall 2)
    for (const host of ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4']) await ip('pub', 'addr', 'add', `${host}/32`, 'dev', 'lo')
    await addr('pub', `${p}s0`, '192.0.2.1/30')
    await ip('pub', 'link', 'set', `${p}s1`, 'up')
    await ip('pub', 'neigh', 'replace', '192.0.2.2', 'lladdr', '02:00:00:00:00:01', 'nud', 'permanent', 'dev', `${p}s0`)
    for (const net of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10']) await ip('pub', 'route', 'add', net, 'via', '192.0.2.2', 'dev', `${p}s0`)
    await ip('ra', 'route', 'add', 'default', 'via', '203.0.113.1')
    await ip('rb', 'route', 'add', 'default', 'via', '203.0.113.17')
    await ip('a', 'route', 'add', 'default', 'via', '10.0.1.1')
    await ip('b', 'route', 'add', 'default', 'via', '10.0.2.1')
    for (const n of ['pub', 'ra', 'rb'] as const) {
      await must(['ip', 'netns', 'exec', this.ns(n), 'sh', '-c',
        'sysctl -qw net.ipv4.ip_forward=1 && for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done'])
    }
    // TURN over TCP on 443 reaches coturn's 3478 (one coturn serves both)
    await must(['ip', 'netns', 'exec', this.ns('pub'), 'iptables', '-w', '-t', 'nat', '-A', 'PREROUTING', '-d', LAB_ADDRS.turn, '-p', 'tcp', '--dport', '443', '-j', 'DNAT', '--to-destination', `${LAB_ADDRS.turn}:3478`])
    for (const [router, site] of [['ra', 'a'], ['rb', 'b']] as const) {
      const lan = `${p}l${site}`
      const wan = `${p}r${site}`
      for (const rule of routerRules(this.options[site], lan, wan)) await must(['ip', 'netns', 'exec', this.ns(router), ...rule])
    }
  }

  /**
   * Switches a site router to another NAT type (its filter and nat rules are replaced; existing
   * conntrack entries, e.g. an open TCP connection, keep flowing). Processes started afterwards
   * with new sockets see the new behaviour.
   */
  async setNat (site: Site, nat: NatType): Promise<void> {
    const router = site === 'a' ? 'ra' : 'rb'
    await must(['ip', 'netns', 'exec', this.ns(router), 'iptables', '-w', '-F'])
    await must(['ip', 'netns', 'exec', this.ns(router), 'iptables', '-w', '-t', 'nat', '-F'])
    for (const rule of routerRules(nat, `${this.prefix}l${site}`, `${this.prefix}r${site}`)) await must(['ip', 'netns', 'exec', this.ns(router), ...rule])
    this.options[site] = nat
  }

  /** Runs a command in a lab namespace and waits for it (bounded). */
  async exec (node: LabNs, argv: string[], timeoutMs = 20_000): Promise<ExecResult> {
    return await sh(['ip', 'netns', 'exec', this.ns(node), ...argv], timeoutMs)
  }

  /** Starts a long-running command in a lab namespace; teardown kills it by PID. */
  spawn (node: LabNs, argv: string[], env: Record<string, string> = {}): LabProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns(node), ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let out = ''
    child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
    const proc: LabProcess = {
      child,
      output: () => out,
      waitFor: async (pattern, ms) => {
        const deadline = Date.now() + ms
        while (true) {
          const m = pattern.exec(out)
          if (m !== null) return m
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${argv.join(' ')} exited (${child.exitCode ?? child.signalCode}): ${out.slice(-2000)}`)
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${String(pattern)} from ${argv.join(' ')}: ${out.slice(-2000)}`)
          await new Promise(resolve => setTimeout(resolve, 50))
        }
      },
      kill: async () => {
        this.#procs.delete(proc)
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
        const exited = new Promise(resolve => child.once('exit', resolve))
        child.kill('SIGTERM')
        const t = setTimeout(() => { child.kill('SIGKILL') }, 2000)
        await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
        clearTimeout(t)
      },
    }
    this.#procs.add(proc)
    return proc
  }

  /** Starts coturn on the fake Internet (STUN/TURN, use-auth-secret, RFC 5780 on two addresses, TLS on 5349). */
  async startTurn (): Promise<LabProcess> {
    const key = join(this.#dir, 'turn.key')
    await must(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', this.turnCert,
      '-days', '2', '-subj', `/CN=${LAB_ADDRS.turn}`, '-addext', `subjectAltName=IP:${LAB_ADDRS.turn}`])
    const proc = this.spawn('pub', ['turnserver', '-n', '--no-cli', '--no-dtls', '--log-file=stdout', '--simple-log',
      `--cert=${this.turnCert}`, `--pkey=${key}`, '--tls-listening-port=5349',
      `--listening-ip=${LAB_ADDRS.turn}`, `--listening-ip=${LAB_ADDRS.turnAlt}`, `--relay-ip=${LAB_ADDRS.turn}`,
      '--listening-port=3478', '--min-port=49152', '--max-port=65535', '--realm=causeway.lab',
      '--use-auth-secret', `--static-auth-secret=${this.options.turnSecret}`,
      `--pidfile=${join(this.#dir, 'turnserver.pid')}`, `--userdb=${join(this.#dir, 'turndb')}`,
      '--denied-peer-ip=10.0.0.0-10.255.255.255', '--denied-peer-ip=172.16.0.0-172.31.255.255',
      '--denied-peer-ip=192.168.0.0-192.168.255.255', '--denied-peer-ip=100.64.0.0-100.127.255.255'])
    const deadline = Date.now() + 15_000
    while (true) {
      const r = await this.exec('pub', ['timeout', '3', 'turnutils_stunclient', LAB_ADDRS.turn], 5000)
      if (r.code === 0 && /UDP reflexive addr/.test(r.stdout)) break
      if (Date.now() > deadline) throw new Error(`coturn did not answer STUN: ${proc.output().slice(-2000)}`)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    return proc
  }

  /**
   * Starts `causeway signaling` on 198.51.100.3:443, serving the lab's STUN/TURN and relays.
   * `turn: false` hands out STUN only (no TURN credentials); `turns: true` adds TURN over TLS
   * (`turns:198.51.100.1:5349`; @roamhq/wrtc refuses the lab's self-signed certificate).
   */
  async startSignaling (relays: string[] = [], opts: { turn?: boolean, turns?: boolean } = {}): Promise<{ proc: LabProcess, url: string }> {
    const turn = opts.turn ?? true
    const proc = this.spawn('pub', [`${ROOT}bin/causeway`, 'signaling', '--listen', `${LAB_ADDRS.signaling}:443`], {
      CAUSEWAY_TURN_SECRET: turn ? this.options.turnSecret : '',
      CAUSEWAY_STUN_URLS: `stun:${LAB_ADDRS.turn}:3478`,
      CAUSEWAY_TURN_URLS: !turn ? '' : [`turn:${LAB_ADDRS.turn}:3478?transport=udp`, `turn:${LAB_ADDRS.turn}:3478?transport=tcp`, `turn:${LAB_ADDRS.turn}:443?transport=tcp`,
        ...(opts.turns === true ? [`turns:${LAB_ADDRS.turn}:5349?transport=tcp`] : [])].join(','),
      CAUSEWAY_RELAYS: relays.join(','),
    })
    await proc.waitFor(/signaling listening on/, 20_000)
    return { proc, url: `http://${LAB_ADDRS.signaling}:443` }
  }

  /** Starts `causeway relay` on 198.51.100.4 (tcp 4001, WebSockets on 443). */
  async startRelay (admitKeys: string[]): Promise<{ proc: LabProcess, addrs: string[] }> {
    const proc = this.spawn('pub', [`${ROOT}bin/causeway`, 'relay', '--listen', `/ip4/${LAB_ADDRS.relay}/tcp/4001`, '--listen', `/ip4/${LAB_ADDRS.relay}/tcp/443/ws`,
      ...admitKeys.flatMap(k => ['--admit-key', k]), '--metrics', `${LAB_ADDRS.relay}:9464`, '--identity-file', join(this.#dir, 'relay-identity')],
    { CAUSEWAY_LOG_LEVEL: 'warn' })
    await proc.waitFor(/relay listening on .*\/ws\//, 20_000)
    return { proc, addrs: [...proc.output().matchAll(/relay listening on (\S+)/g)].map(m => m[1] ?? '') }
  }

  /** ICE servers of the lab, with fresh REST credentials for TURN. Never a public server. */
  async iceServers (kind: 'stun' | 'turn' | 'turn-tcp' | 'turn-443'): Promise<RTCIceServer[]> {
    const stun = { urls: `stun:${LAB_ADDRS.turn}:3478` }
    if (kind === 'stun') return [stun]
    const { username, credential } = await mintTurnCredential(this.options.turnSecret, { ttlSeconds: 3600, id: 'lab' })
    const url = { turn: `turn:${LAB_ADDRS.turn}:3478?transport=udp`, 'turn-tcp': `turn:${LAB_ADDRS.turn}:3478?transport=tcp`, 'turn-443': `turn:${LAB_ADDRS.turn}:443?transport=tcp` }[kind]
    return [stun, { urls: url, username, credential }]
  }

  /** Kills every process the lab started (by PID), deletes its namespaces and scratch dir. */
  async teardown (): Promise<void> {
    await Promise.all([...this.#procs].map(async p => { await p.kill() }))
    const names = (await sh(['ip', 'netns', 'list'])).stdout.split('\n').map(l => l.split(' ')[0] ?? '')
      .filter(n => n.startsWith(this.prefix) && /^(pub|ra|rb|a|b)$/.test(n.slice(this.prefix.length)))
    for (const n of names) await killNsPids(n)
    for (const n of names) await sh(['ip', 'netns', 'del', n])
    if (this.#dir !== '') { await rm(this.#dir, { recursive: true, force: true }); this.#dir = '' }
  }

  /** Namespaces currently present with this lab's prefix (for tests of teardown). */
  async leftovers (): Promise<string[]> {
    const out = (await sh(['ip', 'netns', 'list'])).stdout
    return out.split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(this.prefix))
  }

  /** Runs a TypeScript file of this repository with Node 22 inside a lab namespace. */
  async node (node: LabNs, file: string, args: string[], timeoutMs: number): Promise<ExecResult> {
    return await this.exec(node, [NODE, '--disable-warning=ExperimentalWarning', file, ...args], timeoutMs)
  }
}
