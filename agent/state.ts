/**
 * What an agent keeps across restarts in its state directory (`--state-dir DIR`; in the agent
 * chart a writable volume, an emptyDir by default or a PersistentVolumeClaim).
 *
 * | file | what | written |
 * |---|---|---|
 * | `revocations.cwr` | the newest signed revocation list the agent has adopted (`cwr1.…`, protocol/identity.ts) | each time a newer list (higher `seq`) is adopted: from `--revocations-file` or a peer's hello |
 *
 * The agent loads the list at start, before it joins the room, so a restart without
 * `--revocations-file` still refuses the agents it names. A list only moves forward: the mesh
 * adopts a list only when its `seq` is higher than the one in force, and only an adopted list
 * is written, so an older file given later never replaces the kept one. The list is signed by
 * the issuer and holds no secret; a kept file that does not verify (another network, damaged)
 * is ignored with a warning, and the next adopted list replaces it. Writes go to a temporary
 * file renamed over the old one (mode 0600), so a crash leaves the old list or the new one, and
 * replicas sharing the directory (a ReadWriteMany claim) never write into each other's temporary
 * file; of two replicas adopting different lists at once the last rename wins, possibly the
 * older list, which the next peer hello replaces again in memory and on disk.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CausewayError } from '../protocol/errors.ts'

const REVOCATIONS = 'revocations.cwr'

export class StateDir {
  readonly dir: string

  /** Opens (creating it if missing, mode 0700) a state directory; throws CausewayError BAD_CONFIG when it is not writable. */
  constructor (dir: string) {
    this.dir = dir
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const probe = join(dir, `.probe-${process.pid}`)
      writeFileSync(probe, '', { mode: 0o600 })
      renameSync(probe, join(dir, '.probe'))
    } catch (err) {
      throw new CausewayError('BAD_CONFIG', `--state-dir ${dir} is not a writable directory: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  /** The kept revocation list, if any. */
  revocations (): string | undefined {
    try {
      return readFileSync(join(this.dir, REVOCATIONS), 'utf8')
    } catch (err) {
      if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return undefined
      throw err
    }
  }

  /** Keeps `text` as the revocation list (atomically; nothing is written when it is already the kept one). */
  keepRevocations (text: string): void {
    if (this.revocations()?.trim() === text.trim()) return
    // a random name: replicas sharing one volume all run as PID 1 of their containers
    const tmp = join(this.dir, `.${REVOCATIONS}.${randomBytes(6).toString('hex')}.tmp`)
    writeFileSync(tmp, `${text.trim()}\n`, { mode: 0o600 })
    renameSync(tmp, join(this.dir, REVOCATIONS))
  }
}
