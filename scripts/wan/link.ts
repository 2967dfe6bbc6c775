/**
 * An emulated WAN link for tests and benchmarks: two network namespaces, `left` (10.77.0.1)
 * and `right` (10.77.0.2), joined only by `delayline.c` (userspace, over TUN: the kernel here
 * has no netem) with a round-trip time, an optional rate limit with a drop-tail queue, and
 * optional random loss, the same in both directions. Each namespace has `lo` up and its own
 * TCP congestion control.
 *
 *   const link = await WanLink.create({ rttMs: 40, rateMbit: 100, lossPct: 0.2, cc: 'cubic' })
 *   const p = link.spawn('right', ['iperf3', '-s', '-B', link.addr('right')])
 *   await link.exec('left', ['ping', '-c', '3', link.addr('right')])
 *   await link.close()            // kills every process it started (by PID), deletes the namespaces
 *
 * The delay line is compiled with gcc on first use into node_modules/.cache/causeway-wan/ (keyed
 * by the hash of its source). Names start with `cww<pid>n<k>` (k counts links of this process),
 * so parallel runs never collide; `cleanupStaleLinks()` (called by create) removes the links of
 * processes that no longer exist. Needs root, iproute2, gcc and /dev/net/tun.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { must, sh, type ExecResult } from '../run-command.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SOURCE = fileURLToPath(new URL('./delayline.c', import.meta.url))
const PREFIX = 'cww'

export type { ExecResult }
export type Side = 'left' | 'right'
export type CongestionControl = 'cubic' | 'bbr' | 'reno'

export interface LinkOptions {
  /** Round-trip time in ms (each direction delays RTT/2). */
  rttMs: number
  /** Bottleneck rate in Mbit/s, each direction; 0 or absent: no limit. */
  rateMbit?: number
  /** Drop-tail queue in front of the bottleneck, bytes. Default: one bandwidth-delay product, at least 64 KiB. */
  queueBytes?: number
  /** Random loss per packet and direction, percent. */
  lossPct?: number
  /** TCP congestion control of both namespaces, or of each. Default cubic. */
  cc?: CongestionControl | { left: CongestionControl, right: CongestionControl }
  /** Seed of the loss generator (default: random). */
  seed?: number
}

export interface LinkProcess {
  child: ChildProcess
  output: () => string
  /** Resolves once `pattern` appears in stdout+stderr; throws when the process exits first or after `ms`. */
  waitFor: (pattern: RegExp, ms: number) => Promise<RegExpMatchArray>
  /** Resolves with the exit code (null when killed by a signal). */
  exited: () => Promise<number | null>
  kill: () => Promise<void>
}

export interface DirectionStats { packets: number, bytes: number, lost: number, dropped: number, overflow: number, writeErrors: number }

const ADDRS: Record<Side, string> = { left: '10.77.0.1', right: '10.77.0.2' }

/** Compiles the delay line once per source version; returns the binary's path. */
export async function buildDelayline (): Promise<string> {
  const src = readFileSync(SOURCE)
  const dir = join(ROOT, 'node_modules/.cache/causeway-wan')
  const bin = join(dir, `delayline-${createHash('sha256').update(src).digest('hex').slice(0, 12)}`)
  if (existsSync(bin)) return bin
  mkdirSync(dir, { recursive: true })
  const tmp = `${bin}.${process.pid}.tmp`
  await must(['gcc', '-O2', '-Wall', '-o', tmp, SOURCE], 60_000)
  renameSync(tmp, bin) // atomic: a parallel build of the same source writes the same file
  return bin
}

/** Why the emulator cannot run here, or ok. */
export async function wanAvailability (): Promise<{ ok: true } | { ok: false, reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `not Linux (${process.platform})` }
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root: network namespaces and TUN devices need root' }
  if (!existsSync('/dev/net/tun')) return { ok: false, reason: 'no /dev/net/tun' }
  for (const cmd of ['ip', 'gcc']) {
    if ((await sh(['sh', '-c', `command -v ${cmd}`])).code !== 0) return { ok: false, reason: `${cmd} is not installed (scripts/setup-system.sh installs it)` }
  }
  return { ok: true }
}

async function nsPids (ns: string): Promise<number[]> {
  return (await sh(['ip', 'netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean).map(Number)
}

async function removeNamespaces (names: string[]): Promise<void> {
  for (const n of names) for (const pid of await nsPids(n)) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
  for (const n of names) await sh(['ip', 'netns', 'del', n])
}

/** Removes the links of processes that no longer exist; returns the namespaces removed. */
export async function cleanupStaleLinks (): Promise<string[]> {
  const stale: string[] = []
  for (const line of (await sh(['ip', 'netns', 'list'])).stdout.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = /^cww(\d+)n\d+[lr]$/.exec(name)
    if (m === null || Number(m[1]) === process.pid) continue
    try { process.kill(Number(m[1]), 0); continue } catch { /* its owner is gone */ }
    stale.push(name)
  }
  await removeNamespaces(stale)
  return stale
}

/**
 * Sets a namespace's TCP congestion control. A namespace may only pick algorithms in the
 * host's `net.ipv4.tcp_allowed_congestion_control`, which can be extended only from the
 * initial network namespace (scripts/netns-run.sh does it before it enters its namespace);
 * from here we try, and otherwise say what to run.
 */
async function setNsCongestionControl (ns: string, cc: CongestionControl): Promise<void> {
  const set = async (): Promise<ExecResult> => await sh(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', `net.ipv4.tcp_congestion_control=${cc}`])
  if ((await set()).code === 0) return
  const file = '/proc/sys/net/ipv4/tcp_allowed_congestion_control'
  const allowed = readFileSync(file, 'utf8').trim().split(/\s+/)
  await sh(['sysctl', '-qw', `net.ipv4.tcp_allowed_congestion_control=${[...new Set([...allowed, cc])].join(' ')}`])
  const r = await set()
  if (r.code !== 0) {
    throw new Error(`cannot use TCP congestion control ${cc} in a namespace (${r.stderr.trim()}): run ` +
      `\`sysctl -w net.ipv4.tcp_allowed_congestion_control="reno cubic bbr"\` in the host's network namespace (scripts/netns-run.sh does)`)
  }
}

let linkCount = 0

export class WanLink {
  readonly options: Required<Omit<LinkOptions, 'cc'>> & { cc: { left: CongestionControl, right: CongestionControl } }
  readonly prefix: string
  readonly #procs = new Set<LinkProcess>()
  #delayline: LinkProcess | undefined

  private constructor (options: LinkOptions) {
    this.prefix = `${PREFIX}${process.pid}n${linkCount++}`
    const rateMbit = options.rateMbit ?? 0
    const bdp = Math.round((rateMbit * 1e6 / 8) * (options.rttMs / 1000))
    const cc = options.cc ?? 'cubic'
    this.options = {
      rttMs: options.rttMs,
      rateMbit,
      queueBytes: options.queueBytes ?? Math.max(64 << 10, bdp),
      lossPct: options.lossPct ?? 0,
      seed: options.seed ?? Math.floor(Math.random() * 2 ** 31),
      cc: typeof cc === 'string' ? { left: cc, right: cc } : cc,
    }
    const o = this.options
    if (!(o.rttMs >= 0) || !(o.rateMbit >= 0) || !(o.lossPct >= 0 && o.lossPct <= 100) || !(o.queueBytes >= 1500)) {
      throw new Error(`bad link options ${JSON.stringify(options)}`)
    }
  }

  /** Builds the two namespaces and starts the delay line between them. */
  static async create (options: LinkOptions): Promise<WanLink> {
    const link = new WanLink(options)
    try {
      await link.#setup()
    } catch (err) {
      await link.close()
      throw err
    }
    return link
  }

  /** The namespace name of a side. */
  ns (side: Side): string { return `${this.prefix}${side === 'left' ? 'l' : 'r'}` }
  /** The address of a side on the link (the other side reaches it there). */
  addr (side: Side): string { return ADDRS[side] }
  /** One line describing the link, e.g. `40 ms RTT, 100 Mbit/s (queue 500 KiB), 0.2 % loss`. */
  describe (): string {
    const o = this.options
    const rate = o.rateMbit > 0 ? `${o.rateMbit} Mbit/s (queue ${Math.round(o.queueBytes / 1024)} KiB)` : 'no rate limit'
    return `${o.rttMs} ms RTT, ${rate}, ${o.lossPct} % loss`
  }

  async #setup (): Promise<void> {
    await cleanupStaleLinks()
    await removeNamespaces([this.ns('left'), this.ns('right')].filter(n => existsSync(`/run/netns/${n}`)))
    const bin = await buildDelayline()
    for (const side of ['left', 'right'] as const) {
      await must(['ip', 'netns', 'add', this.ns(side)])
      await must(['ip', 'netns', 'exec', this.ns(side), 'sh', '-c', 'ip link set lo up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1'])
    }
    const o = this.options
    this.#delayline = this.#start([bin, `/run/netns/${this.ns('left')}`, `/run/netns/${this.ns('right')}`,
      String(Math.round(o.rttMs * 500)), String(Math.round(o.rateMbit * 1000)), String(o.queueBytes), String(Math.round(o.lossPct * 10_000)), String(o.seed)], {})
    await this.#delayline.waitFor(/^ready$/m, 10_000)
    for (const side of ['left', 'right'] as const) {
      const other: Side = side === 'left' ? 'right' : 'left'
      const ns = this.ns(side)
      await must(['ip', '-n', ns, 'addr', 'add', this.addr(side), 'peer', this.addr(other), 'dev', 'wan0'])
      await must(['ip', '-n', ns, 'link', 'set', 'wan0', 'up', 'mtu', '1500', 'txqueuelen', '10000'])
      // Socket buffers large enough for the bandwidth-delay products of the links we emulate.
      await must(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0',
        'net.ipv4.tcp_rmem=4096 131072 33554432', 'net.ipv4.tcp_wmem=4096 16384 33554432'])
      await setNsCongestionControl(ns, o.cc[side])
    }
  }

  /** Changes a side's TCP congestion control (new connections use it). */
  async setCongestionControl (side: Side | 'both', cc: CongestionControl): Promise<void> {
    for (const s of side === 'both' ? ['left', 'right'] as const : [side]) {
      await setNsCongestionControl(this.ns(s), cc)
      this.options.cc[s] = cc
    }
  }

  /** Runs a command in a side's namespace and waits for it (bounded). */
  async exec (side: Side, argv: string[], timeoutMs = 20_000): Promise<ExecResult> {
    return await sh(['ip', 'netns', 'exec', this.ns(side), ...argv], timeoutMs)
  }

  /** Starts a long-running command in a side's namespace; close() kills it by PID. */
  spawn (side: Side, argv: string[], env: Record<string, string> = {}): LinkProcess {
    return this.#start(['ip', 'netns', 'exec', this.ns(side), ...argv], env)
  }

  #start (argv: string[], env: Record<string, string>): LinkProcess {
    const [cmd, ...args] = argv as [string, ...string[]]
    // `ip netns exec` execs the command: the child's PID is the command's PID.
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let out = ''
    const keep = (b: Buffer): void => { out += b.toString(); if (out.length > 4 << 20) out = out.slice(-(1 << 20)) }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    child.on('error', (err) => { out += `\nspawn error: ${err.message}\n` })
    const exit = new Promise<number | null>(resolve => child.once('close', (code: number | null) => resolve(code)))
    const gone = (): boolean => child.exitCode !== null || child.signalCode !== null
    const proc: LinkProcess = {
      child,
      output: () => out,
      exited: async () => await exit,
      waitFor: async (pattern, ms) => {
        const deadline = Date.now() + ms
        for (let i = 0; i < 1_000_000; i++) {
          const m = pattern.exec(out)
          if (m !== null) return m
          if (gone()) throw new Error(`${argv.join(' ')} exited (${child.exitCode ?? child.signalCode}): ${out.slice(-2000)}`)
          if (Date.now() > deadline) break
          await new Promise(resolve => setTimeout(resolve, 50))
        }
        throw new Error(`timed out after ${ms} ms waiting for ${String(pattern)} from ${argv.join(' ')}: ${out.slice(-2000)}`)
      },
      kill: async () => {
        this.#procs.delete(proc)
        if (gone() || child.pid === undefined) return
        child.kill('SIGTERM')
        const t = setTimeout(() => { if (!gone()) child.kill('SIGKILL') }, 2000)
        await Promise.race([exit, new Promise(resolve => setTimeout(resolve, 5000))])
        clearTimeout(t)
      },
    }
    this.#procs.add(proc)
    return proc
  }

  /** The delay line's counters per direction (`ab` = left to right). */
  async stats (): Promise<{ ab: DirectionStats, ba: DirectionStats }> {
    const d = this.#delayline
    if (d?.child.pid === undefined) throw new Error('the link is down')
    const before = d.output().length
    d.child.kill('SIGUSR1')
    const deadline = Date.now() + 5000
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const lines = d.output().slice(before).split('\n').filter(l => l.startsWith('{'))
      if (lines.length >= 2) {
        const parsed = lines.slice(0, 2).map(l => JSON.parse(l) as DirectionStats & { dir: string })
        const pick = (dir: string): DirectionStats => { const { dir: _d, ...s } = parsed.find(p => p.dir === dir)!; return s }
        return { ab: pick('ab'), ba: pick('ba') }
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    throw new Error('the delay line did not report its counters')
  }

  /** Kills every process started on the link (by PID), stops the delay line, deletes the namespaces. */
  async close (): Promise<void> {
    await Promise.all([...this.#procs].filter(p => p !== this.#delayline).map(async p => { await p.kill() }))
    if (this.#delayline !== undefined) await this.#delayline.kill()
    this.#delayline = undefined
    await removeNamespaces([this.ns('left'), this.ns('right')].filter(n => existsSync(`/run/netns/${n}`)))
  }
}
