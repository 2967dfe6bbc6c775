/**
 * `npm run demo` is `./bin/causeway demo`: the whole system on this machine, from the bundle.
 * Run inside scripts/netns-run.sh.
 */
import { describe, expect, it } from 'vitest'
import { run } from './causeway.ts'

describe('causeway demo (README quick start)', () => {
  it('starts signaling, two agents and a service, tunnels it directly and exits 0', async () => {
    const r = await run(['demo', '--mib', '8'], { ms: 90_000 })
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
    expect(r.stdout).toMatch(/\bdirect\b/)
    expect(r.stdout).toMatch(/MiB\/s/)
  })
})
