/**
 * Per-sender fairness of a room's seats and of room creation, portable. The memory and
 * Durable Object stores call `decideSeat` inside their (synchronous, hence atomic) join;
 * the Redis store runs the same rules in its JOIN script (node/redis-scripts.ts); the contract
 * suite (store.contract.ts) holds all three to them.
 *
 * Every seat is charged to a sender: the subject of its access ticket when the ticket names
 * one (one agent and its instances, see protocol/ticket.ts), else its client address (IPv4,
 * IPv6 per /64). For a peer not yet in the room (a peer joining again is checked the same way,
 * its own seat set aside, so that moving seats between addresses gains nothing):
 *
 * 1. a subject holds at most `maxSeatsPerSubject` seats; a join without a subject counts
 *    against its address: at most `maxSeatsPerAddress` seats, of which at most
 *    `maxViewersPerAddress` viewers (SEAT_LIMIT). Seats with a subject never count against an
 *    address, so agents behind one NAT with their own tickets are not capped together;
 * 2. a viewer needs one of the room's `maxViewers` viewer seats (ROOM_FULL);
 * 3. a full room (`maxPeers`) is ROOM_FULL, except for an agent whose ticket names a subject
 *    (its subject being under its cap): it takes the seat of the newest viewer or, with no
 *    viewer left, the newest seat of the address holding the most seats without a subject;
 *    that socket is evicted with ROOM_FULL. Seats with a subject are never evicted.
 *
 * So in a room of 64 with the defaults one address holds at most 16 seats, viewers at most 16,
 * one agent at most 8, and an agent with its own ticket always finds a seat unless proven
 * agents (8 of them or more) hold every seat.
 */
import { CausewayError, type ErrorCode } from '../protocol/errors.ts'
import { addressKey } from './prejoin.ts'

/** A peer's role in a room (protocol/messages.ts). */
export type Role = 'agent' | 'viewer'

/** Whom a seat is charged to. */
export interface Seat {
  /** The client address's key (`seatAddress`). */
  address: string
  /** The subject of the access ticket, when it names one. */
  subject?: string
}

export interface SeatLimits {
  /** Peers the room may hold. */
  maxPeers: number
  /** Seats per address, for joins without a subject. */
  maxSeatsPerAddress: number
  /** Seats per ticket subject. */
  maxSeatsPerSubject: number
  /** Viewers in the room. */
  maxViewers: number
  /** Viewers per address, for joins without a subject. */
  maxViewersPerAddress: number
}

/** A seat in a room: its peer, role, sender and join order (higher is newer). */
export interface HeldSeat extends Seat {
  peer: string
  role: Role
  seq: number
}

/** Why a seat was refused. */
export type SeatReason = 'room_full' | 'viewers_full' | 'address' | 'viewers_address' | 'subject'
/** Why a join was refused (the label of the refusal metric): a seat, or a room it would create. */
export type RefusalReason = SeatReason | 'rooms_address' | 'rooms_instance'

export type SeatDecision = { ok: true, evict?: HeldSeat } | { ok: false, reason: SeatReason }

/** A join refused by a seat or room cap: its code, and the reason for metrics. */
export class JoinRefused extends CausewayError {
  readonly reason: RefusalReason
  constructor (reason: RefusalReason, code: ErrorCode, message: string) {
    super(code, message)
    this.reason = reason
  }
}

/** The text of the error an evicted socket gets (ROOM_FULL). */
export const EVICTED_MESSAGE = 'evicted: the room is full and an agent of the network took this seat; try again later'

const REFUSALS: Record<RefusalReason, { code: ErrorCode, text: (n: number) => string }> = {
  room_full: { code: 'ROOM_FULL', text: n => `room holds ${n} peers` },
  viewers_full: { code: 'ROOM_FULL', text: n => `room holds ${n} viewers` },
  address: { code: 'SEAT_LIMIT', text: n => `this client address holds ${n} seats in this room` },
  viewers_address: { code: 'SEAT_LIMIT', text: n => `this client address holds ${n} viewer seats in this room` },
  subject: { code: 'SEAT_LIMIT', text: n => `this agent (the subject of its ticket) holds ${n} seats in this room` },
  rooms_address: { code: 'TOO_MANY_ROOMS', text: n => `this client address created ${n} rooms that are still live` },
  rooms_instance: { code: 'TOO_MANY_ROOMS', text: n => `this instance holds ${n} rooms` },
}

/** The error of a refusal; `n` is the cap that was hit. */
export function refusal (reason: RefusalReason, n: number): JoinRefused {
  const r = REFUSALS[reason]
  return new JoinRefused(reason, r.code, r.text(n))
}

const CAPS: Record<SeatReason, keyof SeatLimits> = {
  room_full: 'maxPeers',
  viewers_full: 'maxViewers',
  address: 'maxSeatsPerAddress',
  viewers_address: 'maxViewersPerAddress',
  subject: 'maxSeatsPerSubject',
}

/** The error of a seat refusal, naming the cap that was hit. */
export function seatRefusal (reason: SeatReason, limits: SeatLimits): JoinRefused {
  return refusal(reason, limits[CAPS[reason]])
}

/**
 * The key a seat or a room is charged to for a client address: addressKey (IPv4, IPv6 per
 * /64), restricted to `[0-9a-z:._/-]` and 64 characters (it goes into Redis key names and
 * records; a proxy header can carry anything).
 */
export function seatAddress (address: string): string {
  const key = addressKey(address).replace(/[^0-9a-z:._/-]/g, '_').slice(0, 64)
  return key === '' ? 'unknown' : key
}

/** Decides a join of `joiner` into a room whose other seats are `others` (the joiner's own seat, if any, left out). */
export function decideSeat (others: Iterable<HeldSeat>, joiner: Seat & { role: Role }, limits: SeatLimits): SeatDecision {
  let total = 0
  let viewers = 0
  let ofSubject = 0
  let ofAddress = 0
  let viewersOfAddress = 0
  let newestViewer: HeldSeat | undefined
  /** Seats without a subject, by address: how many, and the newest. */
  const byAddress = new Map<string, { n: number, newest: HeldSeat }>()
  for (const s of others) {
    total++
    if (s.role === 'viewer') {
      viewers++
      if (newestViewer === undefined || s.seq > newestViewer.seq) newestViewer = s
    }
    if (s.subject !== undefined) {
      if (s.subject === joiner.subject) ofSubject++
      continue
    }
    const g = byAddress.get(s.address)
    if (g === undefined) byAddress.set(s.address, { n: 1, newest: s })
    else {
      g.n++
      if (s.seq > g.newest.seq) g.newest = s
    }
    if (joiner.subject === undefined && s.address === joiner.address) {
      ofAddress++
      if (s.role === 'viewer') viewersOfAddress++
    }
  }
  if (joiner.subject !== undefined) {
    if (ofSubject >= limits.maxSeatsPerSubject) return { ok: false, reason: 'subject' }
  } else {
    if (ofAddress >= limits.maxSeatsPerAddress) return { ok: false, reason: 'address' }
    if (joiner.role === 'viewer' && viewersOfAddress >= limits.maxViewersPerAddress) return { ok: false, reason: 'viewers_address' }
  }
  if (joiner.role === 'viewer' && viewers >= limits.maxViewers) return { ok: false, reason: 'viewers_full' }
  if (total < limits.maxPeers) return { ok: true }
  if (joiner.role !== 'agent' || joiner.subject === undefined) return { ok: false, reason: 'room_full' }
  if (newestViewer !== undefined) return { ok: true, evict: newestViewer }
  let most: { n: number, newest: HeldSeat } | undefined
  for (const g of byAddress.values()) {
    if (most === undefined || g.n > most.n || (g.n === most.n && g.newest.seq > most.newest.seq)) most = g
  }
  return most === undefined ? { ok: false, reason: 'room_full' } : { ok: true, evict: most.newest }
}
