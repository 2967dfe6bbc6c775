/**
 * Serves the built debug page (signaling/page/dist) on Node. The page is built by
 * `npm run build:page`; without a build, /debug answers NOT_FOUND.
 */
import { readFile } from 'node:fs/promises'
import { join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PAGE_HEADERS } from '../page/assets.ts'

const DIST = fileURLToPath(new URL('../page/dist/', import.meta.url))
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.map': 'application/json' }

export async function pageAssets (): Promise<(path: string) => Promise<Response | undefined>> {
  return async (path) => {
    const rel = normalize(path === '/' ? '/index.html' : path).replace(/^(\.\.[/\\])+/, '')
    if (rel.includes('..') || /[/\\]\./.test(rel)) return undefined // no dotfiles
    try {
      const body = await readFile(join(DIST, rel))
      const ext = rel.slice(rel.lastIndexOf('.'))
      return new Response(body, { headers: { ...PAGE_HEADERS, 'content-type': TYPES[ext] ?? 'application/octet-stream' } })
    } catch {
      return undefined
    }
  }
}
