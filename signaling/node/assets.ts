/**
 * Serves the built debug page on Node from <package root>/dist/page (signaling/page/location.ts).
 * The package root is the nearest directory above this module holding package.json, which is the
 * same directory whether this code runs from its source file (signaling/node/) or from the CLI
 * bundle (dist/cli/). The page is built by `npm run build`; without a build, /debug answers
 * NOT_FOUND and the server warns once at start.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PAGE_HEADERS } from '../page/assets.ts'
import { PAGE_DIR } from '../page/location.ts'

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.map': 'application/json' }

/** The nearest directory at or above `start` that holds a package.json. */
export function packageRoot (start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) throw new Error(`no package.json above ${start}`)
  }
}

/** The built page's directory for the package this module belongs to. */
export function pageDirectory (): string {
  return join(packageRoot(dirname(fileURLToPath(import.meta.url))), PAGE_DIR)
}

export async function pageAssets (dir: string = pageDirectory()): Promise<(path: string) => Promise<Response | undefined>> {
  return async (path) => {
    const rel = normalize(path === '/' ? '/index.html' : path).replace(/^(\.\.[/\\])+/, '')
    if (rel.includes('..') || /[/\\]\./.test(rel)) return undefined // no dotfiles
    try {
      const body = await readFile(join(dir, rel))
      const ext = rel.slice(rel.lastIndexOf('.'))
      return new Response(body, { headers: { ...PAGE_HEADERS, 'content-type': TYPES[ext] ?? 'application/octet-stream' } })
    } catch {
      return undefined
    }
  }
}
