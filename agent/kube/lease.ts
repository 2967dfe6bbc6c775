/**
 * Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's `leaderelection`
 * package does it, so that exactly one instance of a site's agents writes the shared objects
 * (imported Services, status annotations, Events, RemoteManifests, MCS objects).
 *
 * Every `renewPeriodMs` (default a third of the lease duration) each instance reads the Lease:
 * - no Lease: it creates one naming itself (`409 AlreadyExists`: another instance won the race);
 * - `spec.holderIdentity` is itself: it renews (`renewTime` = now);
 * - empty holder (released), or a record that has not changed for `leaseDurationSeconds` as
 *   observed on this instance's own clock (client-go's rule: no clock comparison between
 *   machines): it takes the Lease over (`leaseTransitions` + 1);
 * - otherwise somebody else leads.
 * Writes are replaces carrying the `resourceVersion` read (optimistic concurrency): of two
 * instances taking over at once, one gets `409 Conflict` and stays a follower.
 *
 * A leader that has not renewed for `renewDeadlineMs` (default two thirds of the lease duration)
 * stops leading at once (`isLeader()` turns false even while its renew call hangs), so it has
 * stopped writing before anybody else can take the Lease over. `release()` (on drain) clears
 * `holderIdentity` and sets `leaseDurationSeconds` to 1, as client-go's `ReleaseOnCancel`
 * does, so the next instance takes over at its next poll instead of after the lease duration.
 *
 * Bounds (defaults: lease 15 s, renew every 5 s): after the holder is killed a follower leads
 * within lease duration + renew period (20 s: the follower saw the last renew at most a period
 * after it happened, and tries again exactly when that record expires, `nextRoundInMs`); after
 * the holder drains, within one renew period.
 */
import * as k8s from '@kubernetes/client-node'
import { silentLog, type LogLike } from '../../peer/log.ts'
import { apiCode } from './kubeutil.ts'

export const DEFAULT_LEASE_DURATION_MS = 15_000

/** A Lease as the elector sees it. */
export interface LeaseRecord {
  holder?: string
  leaseDurationSeconds: number
  acquireTime?: string
  renewTime?: string
  transitions: number
  resourceVersion: string
}

export type LeaseWrite = Omit<LeaseRecord, 'resourceVersion'>

/** The seam to the API server (Kubernetes below; an in-memory one in the unit tests). */
export interface LeaseStore {
  /** The Lease, or undefined when there is none. */
  get(): Promise<LeaseRecord | undefined>
  /** Creates it; throws an error with `code` 409 when it exists. */
  create(rec: LeaseWrite): Promise<LeaseRecord>
  /** Replaces it if its resourceVersion is still `resourceVersion`; else throws `code` 409. */
  replace(rec: LeaseWrite, resourceVersion: string): Promise<LeaseRecord>
}

export class LeaseConflictError extends Error {
  override name = 'LeaseConflictError'
  readonly code = 409
}

const timeText = (t: unknown): string | undefined => (t instanceof Date ? t.toISOString() : typeof t === 'string' && t !== '' ? t : undefined)

function recordOf(l: k8s.V1Lease): LeaseRecord {
  const holder = l.spec?.holderIdentity
  return {
    ...(holder !== undefined && holder !== null && holder !== '' ? { holder } : {}),
    leaseDurationSeconds: l.spec?.leaseDurationSeconds ?? 0,
    // client-node hands MicroTime fields back as strings (the type is not in its serializer's map)
    ...(timeText(l.spec?.acquireTime) !== undefined ? { acquireTime: timeText(l.spec?.acquireTime) } : {}),
    ...(timeText(l.spec?.renewTime) !== undefined ? { renewTime: timeText(l.spec?.renewTime) } : {}),
    transitions: l.spec?.leaseTransitions ?? 0,
    resourceVersion: l.metadata?.resourceVersion ?? '',
  }
}

/** MicroTime as the API server wants it (six fractional digits: RFC3339Micro). */
const micro = (iso: string | undefined): k8s.V1MicroTime | undefined => (iso === undefined ? undefined : new k8s.V1MicroTime(Date.parse(iso)))

/** A LeaseStore on one Lease of the API server. */
export function kubeLeaseStore(api: k8s.CoordinationV1Api, namespace: string, name: string, labels: Record<string, string> = {}): LeaseStore {
  const body = (rec: LeaseWrite, resourceVersion?: string): k8s.V1Lease => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, labels, ...(resourceVersion !== undefined ? { resourceVersion } : {}) },
    spec: {
      ...(rec.holder !== undefined ? { holderIdentity: rec.holder } : {}),
      leaseDurationSeconds: rec.leaseDurationSeconds,
      ...(rec.acquireTime !== undefined ? { acquireTime: micro(rec.acquireTime) } : {}),
      ...(rec.renewTime !== undefined ? { renewTime: micro(rec.renewTime) } : {}),
      leaseTransitions: rec.transitions,
    },
  })
  const conflicting = (e: unknown): never => {
    if (apiCode(e) === 409) throw new LeaseConflictError(`lease ${namespace}/${name} changed meanwhile`)
    throw e
  }
  return {
    async get() {
      try {
        return recordOf(await api.readNamespacedLease({ namespace, name }))
      } catch (e) {
        if (apiCode(e) === 404) return undefined
        throw e
      }
    },
    async create(rec) {
      return recordOf(await api.createNamespacedLease({ namespace, body: body(rec) }).catch(conflicting))
    },
    async replace(rec, resourceVersion) {
      return recordOf(await api.replaceNamespacedLease({ namespace, name, body: body(rec, resourceVersion) }).catch(conflicting))
    },
  }
}

export interface LeaderElectorInit {
  store: LeaseStore
  /** This instance's identity (its instance name). */
  identity: string
  /** `leaseDurationSeconds` written (rounded up to whole seconds). Default 15 s. */
  leaseDurationMs?: number
  /** How often the Lease is read and renewed or tried. Default a third of the lease duration. */
  renewPeriodMs?: number
  /** A leader that could not renew for this long steps down. Default two thirds of the lease duration. */
  renewDeadlineMs?: number
  /** Called when this instance starts or stops leading. */
  onChange?: (leading: boolean) => void
  now?: () => number
  log?: LogLike
}

export class LeaderElector {
  readonly identity: string
  readonly leaseDurationMs: number
  readonly renewPeriodMs: number
  readonly renewDeadlineMs: number
  private readonly store: LeaseStore
  private readonly now: () => number
  private readonly log: LogLike
  private readonly onChange: (leading: boolean) => void
  /** The last record seen and when (this clock) it was first seen in that state. */
  private observed: { key: string; at: number; record: LeaseRecord } | undefined
  private renewedAt: number | undefined
  private leading = false
  private released = false
  private queue: Promise<void> = Promise.resolve()

  constructor(init: LeaderElectorInit) {
    this.store = init.store
    this.identity = init.identity
    this.leaseDurationMs = Math.max(1000, Math.ceil((init.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS) / 1000) * 1000)
    this.renewPeriodMs = init.renewPeriodMs ?? Math.floor(this.leaseDurationMs / 3)
    this.renewDeadlineMs = init.renewDeadlineMs ?? Math.floor((this.leaseDurationMs * 2) / 3)
    if (this.renewPeriodMs >= this.renewDeadlineMs || this.renewDeadlineMs >= this.leaseDurationMs) {
      throw new RangeError('lease: renew period < renew deadline < lease duration is required')
    }
    this.now = init.now ?? Date.now
    this.log = init.log ?? silentLog
    this.onChange = init.onChange ?? (() => {})
  }

  /** Leading now: the last renew is younger than the renew deadline (and not released). */
  isLeader(): boolean {
    return this.leading && this.renewedAt !== undefined && this.now() - this.renewedAt < this.renewDeadlineMs
  }

  /** The holder last seen in the Lease (undefined: none or unknown). */
  holder(): string | undefined {
    return this.observed?.record.holder
  }

  /** One round: read the Lease, then renew, take over or follow (serialized). */
  tick(): Promise<void> {
    this.queue = this.queue.then(() => this.round()).catch((e: unknown) => this.log.warn({ err: String(e) }, 'lease: round failed'))
    return this.queue
  }

  private async round(): Promise<void> {
    if (this.released) return
    this.checkDeadline()
    let cur: LeaseRecord | undefined
    try {
      cur = await this.store.get()
    } catch (e) {
      this.log.warn({ err: String(e) }, 'lease: read failed')
      return this.checkDeadline()
    }
    const now = this.now()
    const rec: LeaseWrite = { holder: this.identity, leaseDurationSeconds: this.leaseDurationMs / 1000, renewTime: new Date(now).toISOString(), transitions: 0 }
    try {
      if (cur === undefined) {
        const made = await this.store.create({ ...rec, acquireTime: rec.renewTime })
        this.observe(made)
        return this.lead(now)
      }
      this.observe(cur)
      if (this.released) return
      if (cur.holder === this.identity) {
        const renewed = await this.store.replace({ ...rec, acquireTime: cur.acquireTime ?? rec.renewTime, transitions: cur.transitions }, cur.resourceVersion)
        this.observe(renewed)
        return this.lead(now)
      }
      if (cur.holder !== undefined && !this.expired(now)) return this.follow()
      const taken = await this.store.replace({ ...rec, acquireTime: rec.renewTime, transitions: cur.transitions + 1 }, cur.resourceVersion)
      this.observe(taken)
      this.log.info({ previous: cur.holder ?? null, transitions: taken.transitions }, 'lease: took over')
      return this.lead(now)
    } catch (e) {
      if (!(e instanceof LeaseConflictError) && apiCode(e) !== 409) this.log.warn({ err: String(e) }, 'lease: write failed')
      this.checkDeadline()
    }
  }

  /** Whether the observed record has stood still for its lease duration (this clock). */
  private expired(now: number): boolean {
    const o = this.observed
    if (o === undefined) return true
    return now - o.at >= o.record.leaseDurationSeconds * 1000
  }

  private observe(rec: LeaseRecord): void {
    const key = `${rec.holder ?? ''}|${rec.renewTime ?? ''}|${rec.resourceVersion}`
    if (this.observed?.key !== key) this.observed = { key, at: this.now(), record: rec }
  }

  private lead(at: number): void {
    this.renewedAt = at
    if (!this.leading) {
      this.leading = true
      this.log.info({ identity: this.identity }, 'lease: leading')
      this.onChange(true)
    }
  }

  private follow(): void {
    if (!this.leading) return
    this.leading = false
    this.log.info({ holder: this.holder() ?? null }, 'lease: another instance leads')
    this.onChange(false)
  }

  private checkDeadline(): void {
    if (this.leading && !this.isLeader()) {
      this.leading = false
      this.log.warn({ renewDeadlineMs: this.renewDeadlineMs }, 'lease: not renewed in time, stepping down')
      this.onChange(false)
    }
  }

  /**
   * When the next round is due: a renew period from now, or sooner when the record a follower
   * watches expires before that (so a dead holder is replaced within lease duration + one renew
   * period of its last renew, not a period later).
   */
  nextRoundInMs(): number {
    const o = this.observed
    if (this.leading || o === undefined || o.record.holder === undefined) return this.renewPeriodMs
    const expiresIn = o.at + o.record.leaseDurationSeconds * 1000 - this.now()
    return Math.max(0, Math.min(this.renewPeriodMs, expiresIn))
  }

  /** Runs rounds (see nextRoundInMs) until `signal` aborts. */
  run(signal: AbortSignal): void {
    if (signal.aborted) return
    let timer: NodeJS.Timeout | undefined
    const loop = (): void => {
      void this.tick().then(() => {
        if (signal.aborted || this.released) return
        timer = setTimeout(loop, this.nextRoundInMs())
        timer.unref()
      })
    }
    // Checks the deadline between rounds too: a hanging renew must not keep the leader writing.
    const deadline = setInterval(() => this.checkDeadline(), Math.max(100, Math.floor(this.renewPeriodMs / 4)))
    deadline.unref()
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      clearInterval(deadline)
    }, { once: true })
    loop()
  }

  /**
   * Stops taking part (draining) and, when leading, hands the Lease back: holder cleared, lease
   * duration 1 s, so another instance takes over at its next round.
   */
  release(): Promise<void> {
    this.released = true
    this.queue = this.queue.then(async () => {
      const wasLeading = this.leading
      this.leading = false
      if (wasLeading) this.onChange(false)
      const cur = await this.store.get()
      if (cur?.holder !== this.identity) return
      const now = new Date(this.now()).toISOString()
      await this.store.replace({ leaseDurationSeconds: 1, renewTime: now, acquireTime: now, transitions: cur.transitions }, cur.resourceVersion)
      this.log.info({}, 'lease: released')
    }).catch((e: unknown) => this.log.warn({ err: String(e) }, 'lease: release failed (the Lease expires instead)'))
    return this.queue
  }
}
