/**
 * Debian's Chromium driven by playwright-core (never a downloaded browser), for the suites that
 * load the debug page. scripts/setup-system.sh installs it; a missing browser fails the test.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
/** Headless, no sandbox (root), no QUIC or background traffic, real host candidates (no mDNS). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-features=WebRtcHideLocalIpsWithMdns']

export interface Browser { ctx: BrowserContext, close: () => Promise<void> }

export async function launchChromium (viewport = { width: 1440, height: 1000 }): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup-system.sh as root (apt-get install chromium); the tests never download a browser`)
  const profile = await mkdtemp(join(tmpdir(), 'causeway-chromium-'))
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport, timeout: 30_000 })
  return {
    ctx,
    close: async () => {
      await ctx.close().catch(() => {})
      await rm(profile, { recursive: true, force: true })
    },
  }
}
