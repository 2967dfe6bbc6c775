/**
 * Caps on sockets that have not joined yet ("pre-join"): per client address and in total.
 * A socket takes a slot at the upgrade and gives it back when its join is verified or when it
 * closes; over a cap the upgrade is refused (TOO_MANY_CONNECTIONS, HTTP 429) before any socket
 * or room state exists. Runtime-independent; the Node adapter keeps one for the instance, the
 * Worker's room object counts its own sockets (see worker/room.ts).
 */
import { CausewayError } from '../protocol/errors.ts'

export interface PrejoinCaps {
  /** Pre-join sockets in total. */
  maxPrejoin: number
  /** Pre-join sockets per client address (IPv6: per /64). */
  maxPrejoinPerAddress: number
}

/** The key a client address is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64. */
export function addressKey (address: string): string {
  const a = address.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/%.*$/, '')
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a)
  if (mapped?.[1] !== undefined) return mapped[1]
  if (!a.includes(':')) return a
  const [head = '', tail = ''] = a.split('::', 2)
  const h = head === '' ? [] : head.split(':')
  const t = a.includes('::') ? (tail === '' ? [] : tail.split(':')) : []
  const groups = a.includes('::') ? [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h
  return `${groups.slice(0, 4).map(g => (g.replace(/^0+(?=.)/, '') || '0')).join(':')}::/64`
}

/** Throws the error of a full cap. */
export function prejoinRefusal (perAddress: boolean, caps: PrejoinCaps): CausewayError {
  return perAddress
    ? new CausewayError('TOO_MANY_CONNECTIONS', `more than ${caps.maxPrejoinPerAddress} sockets from this address have not joined yet`)
    : new CausewayError('TOO_MANY_CONNECTIONS', `more than ${caps.maxPrejoin} sockets have not joined yet`)
}

export class PrejoinLimiter {
  private readonly caps: PrejoinCaps
  private total = 0
  private readonly byAddress = new Map<string, number>()

  constructor (caps: PrejoinCaps) {
    this.caps = caps
  }

  /** Pre-join sockets held now. */
  get size (): number { return this.total }

  /** Takes a slot for a socket from `address`; returns its (idempotent) release. Throws TOO_MANY_CONNECTIONS. */
  acquire (address: string): () => void {
    const key = addressKey(address)
    const n = this.byAddress.get(key) ?? 0
    if (n >= this.caps.maxPrejoinPerAddress) throw prejoinRefusal(true, this.caps)
    if (this.total >= this.caps.maxPrejoin) throw prejoinRefusal(false, this.caps)
    this.byAddress.set(key, n + 1)
    this.total++
    let released = false
    return () => {
      if (released) return
      released = true
      this.total--
      const left = (this.byAddress.get(key) ?? 1) - 1
      if (left <= 0) this.byAddress.delete(key); else this.byAddress.set(key, left)
    }
  }
}
