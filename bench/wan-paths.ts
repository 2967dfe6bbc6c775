/**
 * The baselines of the WAN benchmark, set up across a link (scripts/wan/link.ts):
 * - `ssh -L`: Debian's sshd on the right (throwaway keys), an `ssh -N -L` client on the left;
 * - WireGuard: Debian's wireguard-go (userspace) in both namespaces, 10.78.0.1 <-> 10.78.0.2
 *   through the link's addresses.
 */
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { LinkProcess, WanLink } from '../scripts/wan/link.ts'
import { sshdFiles, sshForwardArgs } from './baselines.ts'

const SSHD_PORT = 2222
export const WG_ADDRS = { left: '10.78.0.1', right: '10.78.0.2' } as const

async function accepting (link: WanLink, host: string, port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  let last = ''
  for (let i = 0; i < 1000; i++) {
    const r = await link.exec('left', ['bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`], 3000)
    if (r.code === 0) return
    last = r.stderr.trim().split('\n').at(-1) || `exit ${r.code}, no output`
    if (Date.now() > deadline) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`nothing accepts on ${host}:${port} in the left namespace within ${ms} ms (last try: ${last})`)
}

export interface SshOnLink {
  /** Opens a new `ssh -L` (a new TCP connection: it takes the congestion control set now) to `target` on the right; returns the local port. */
  forward: (target: number, localPort: number) => Promise<LinkProcess>
  close: () => Promise<void>
}

export async function sshOnLink (link: WanLink): Promise<SshOnLink | string> {
  if (!existsSync('/usr/sbin/sshd') || !existsSync('/usr/bin/ssh')) return 'n/a (openssh-server not installed)'
  const files = sshdFiles(link.addr('right'), SSHD_PORT)
  const sshd = link.spawn('right', ['/usr/sbin/sshd', '-D', '-e', '-f', files.config])
  await accepting(link, link.addr('right'), SSHD_PORT, 10_000)
  const clients: LinkProcess[] = []
  return {
    forward: async (target, localPort) => {
      const p = link.spawn('left', ['/usr/bin/ssh', ...sshForwardArgs(files.userKey, link.addr('right'), SSHD_PORT, localPort, target)])
      clients.push(p)
      await accepting(link, '127.0.0.1', localPort, 15_000)
      return p
    },
    close: async () => {
      for (const p of [...clients, sshd]) await p.kill()
      await rm(files.dir, { recursive: true, force: true })
    },
  }
}

/** One device's handshake and byte counters, e.g. `cww1n0wl: handshake never, rx 0 B, tx 444 B`. */
async function wgState (link: WanLink, dev: string): Promise<string> {
  const field = async (what: string): Promise<string[]> => (await link.exec('left', ['wg', 'show', dev, what])).stdout.trim().split(/\s+/)
  const [, handshake] = await field('latest-handshakes')
  const [, rx, tx] = await field('transfer')
  if (handshake === undefined) return `${dev}: no peer (wg show ${dev} failed)`
  return `${dev}: handshake ${handshake === '0' ? 'never' : `${Math.round(Date.now() / 1000) - Number(handshake)} s ago`}, rx ${rx ?? '?'} B, tx ${tx ?? '?'} B`
}

/**
 * Brings up WireGuard (wireguard-go) between the namespaces and checks its data plane: a TCP
 * connection from the left to `probePort` (a listener on 0.0.0.0 in the right namespace) through
 * the tunnel. The check needs no tool beyond bash (an ICMP check needed `ping`, which the machine
 * image lacks: the 2026-12-07 run reported "no ping through WireGuard" on every link, with a
 * working tunnel). Returns its processes, `n/a (...)` when a tool is missing, or throws with the
 * devices' `wg show` when the tunnel carries nothing; on failure it leaves nothing running.
 */
export async function wireguardOnLink (link: WanLink, probePort: number): Promise<{ close: () => Promise<void> } | string> {
  for (const cmd of ['wireguard-go', 'wg', 'bash']) {
    if ((await link.exec('left', ['sh', '-c', `command -v ${cmd}`])).code !== 0) return `n/a (${cmd} not installed; scripts/setup-system.sh installs it)`
  }
  const keys: Record<'left' | 'right', { priv: string, pub: string }> = { left: { priv: '', pub: '' }, right: { priv: '', pub: '' } }
  for (const side of ['left', 'right'] as const) {
    const priv = (await link.exec(side, ['wg', 'genkey'])).stdout.trim()
    const pub = (await link.exec(side, ['sh', '-c', `echo ${priv} | wg pubkey`])).stdout.trim()
    if (priv === '' || pub === '') throw new Error(`wg genkey / wg pubkey gave no key in ${side}`)
    keys[side] = { priv, pub }
  }
  const procs: LinkProcess[] = []
  const devs: string[] = []
  const close = async (): Promise<void> => {
    for (const p of procs) await p.kill()
    await Promise.all(devs.map(async d => { await rm(`/var/run/wireguard/${d}.sock`, { force: true }) }))
  }
  try {
    for (const side of ['left', 'right'] as const) {
      const other = side === 'left' ? 'right' : 'left'
      // -f: stay in the foreground, so the process is ours to kill by PID
      // the UAPI socket (/var/run/wireguard/NAME.sock) is shared by all namespaces: unique names
      const dev = `${link.prefix}w${side[0]!}`
      devs.push(dev)
      const p = link.spawn(side, ['wireguard-go', '-f', dev], { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' })
      procs.push(p)
      const deadline = Date.now() + 10_000
      while ((await link.exec(side, ['ip', 'link', 'show', dev])).code !== 0) {
        if (Date.now() > deadline) throw new Error(`wireguard-go did not create ${dev}: ${p.output().replace(/[^\x20-\x7e\n]/g, '').slice(-500)}`)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      const keyFile = join('/tmp', `${link.prefix}-wg-${side}`)
      const script = [
        `umask 077; echo ${keys[side].priv} > ${keyFile}`,
        `wg set ${dev} private-key ${keyFile} listen-port 51820 peer ${keys[other].pub} allowed-ips ${WG_ADDRS[other]}/32 endpoint ${link.addr(other)}:51820`,
        `rm -f ${keyFile}`,
        `ip addr add ${WG_ADDRS[side]}/24 dev ${dev}`, `ip link set ${dev} mtu 1420 up`,
      ].join(' && ')
      const r = await link.exec(side, ['sh', '-c', script])
      if (r.code !== 0) throw new Error(`wireguard setup in ${side} failed (${r.code}): ${r.stderr.trim()}`)
    }
    try {
      await accepting(link, WG_ADDRS.right, probePort, 10_000)
    } catch (err) {
      throw new Error(`no TCP connection through WireGuard: ${err instanceof Error ? err.message : String(err)}; ${(await Promise.all(devs.map(async d => await wgState(link, d)))).join('; ')}`)
    }
  } catch (err) {
    await close()
    throw err
  }
  return { close }
}
