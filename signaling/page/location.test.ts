import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { packageRoot, pageDirectory } from '../node/assets.ts'
import { PAGE_DIST } from './build.ts'
import { PAGE_DIR } from './location.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

describe('the built page has one location', () => {
  it('the build writes where the Node adapter serves from', () => {
    expect(pageDirectory()).toBe(join(ROOT, PAGE_DIR))
    expect(PAGE_DIST).toBe(join(ROOT, PAGE_DIR))
  })

  it('the package root is found from the sources and from the bundle directory alike', () => {
    expect(packageRoot(join(ROOT, 'signaling', 'node'))).toBe(ROOT.replace(/\/$/, ''))
    expect(packageRoot(join(ROOT, 'dist', 'cli'))).toBe(ROOT.replace(/\/$/, ''))
  })

  it("wrangler.toml's [assets] directory is the same directory", async () => {
    const toml = await readFile(join(ROOT, 'wrangler.toml'), 'utf8')
    const section = /^\[assets\]\n([\s\S]*?)(?=^\[)/m.exec(toml)?.[1] ?? ''
    const dir = /^directory\s*=\s*"([^"]+)"/m.exec(section)?.[1]
    expect(dir).toBeDefined()
    expect(join(ROOT, dir ?? '')).toBe(join(ROOT, PAGE_DIR))
  })
})
