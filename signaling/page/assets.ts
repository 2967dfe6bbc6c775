/**
 * Serving the built debug page (dist/page, signaling/page/location.ts), shared by both signaling adapters.
 * Node reads it itself (signaling/node/assets.ts); the Worker gets it from Workers Static
 * Assets (wrangler.toml `[assets]`, binding ASSETS) through `assetsFromFetcher`. Either way the
 * page's responses carry PAGE_HEADERS: the page loads only its own script and style, talks only
 * to its own origin and WebSockets, and sends no referrer.
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-cache',
}

/** Anything with a fetch, like a Workers `Fetcher` binding. */
export interface AssetFetcher { fetch: (request: Request) => Promise<Response> }

/**
 * The `assets` dependency of createApp over a static-assets fetcher: `path` is relative to
 * /debug (`/` is index.html); answers undefined for a missing asset.
 */
export function assetsFromFetcher (fetcher: AssetFetcher): (path: string) => Promise<Response | undefined> {
  return async (path) => {
    if (path.includes('..') || path.includes('\\')) return undefined
    const res = await fetcher.fetch(new Request(new URL(path === '/' ? '/index.html' : path, 'https://assets.invalid/')))
    if (!res.ok) return undefined
    const out = new Response(res.body, res)
    for (const [k, v] of Object.entries(PAGE_HEADERS)) out.headers.set(k, v)
    return out
  }
}
