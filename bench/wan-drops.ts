/**
 * Where packets were dropped on an emulated WAN link (scripts/wan/link.ts) during a transfer:
 * the link's own counters (random loss, drop-tail queue full, delay-line ring full, both
 * directions) and each namespace's UDP receive-buffer drops (`RcvbufErrors` in /proc/net/snmp:
 * the receiving process did not read its socket in time). `withDrops(link, transfer)` runs a
 * transfer and says where its packets were dropped.
 */
import type { WanLink } from '../scripts/wan/link.ts'

interface Drops { random: number, queue: number, ring: number, udpLeft: number, udpRight: number }

/** The link's and both namespaces' drop counters so far. */
async function drops (link: WanLink): Promise<Drops> {
  const { ab, ba } = await link.stats()
  const udp = async (side: 'left' | 'right'): Promise<number> => {
    const lines = (await link.exec(side, ['cat', '/proc/net/snmp'])).stdout.split('\n').filter(l => l.startsWith('Udp:'))
    const [names, values] = lines.map(l => l.trim().split(/\s+/))
    const i = names?.indexOf('RcvbufErrors') ?? -1
    return i > 0 ? Number(values?.[i] ?? 0) : 0
  }
  return { random: ab.lost + ba.lost, queue: ab.dropped + ba.dropped, ring: ab.overflow + ba.overflow, udpLeft: await udp('left'), udpRight: await udp('right') }
}

const dropsSince = (a: Drops, b: Drops): string => {
  const d = (k: keyof Drops): number => b[k] - a[k]
  const parts = [['random', d('random')], ['queue', d('queue')], ['ring', d('ring')], ['UDP rcvbuf left', d('udpLeft')], ['UDP rcvbuf right', d('udpRight')]] as const
  const nonzero = parts.filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`)
  return nonzero.length === 0 ? 'none' : nonzero.join(', ')
}

/** Runs `transfer` and returns its result with the drops during it (`none` or e.g. `queue 12, UDP rcvbuf left 3`). */
export async function withDrops<T> (link: WanLink, transfer: () => Promise<T>): Promise<[T, string]> {
  const before = await drops(link)
  const result = await transfer()
  return [result, dropsSince(before, await drops(link))]
}
