/**
 * Fuzzing helpers shared by the fuzz suites: a seeded PRNG (failures reproduce with the same
 * seed) and structured / textual mutations of valid messages.
 */

/** mulberry32: small deterministic PRNG. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class Gen {
  readonly r: () => number
  constructor (seed: number) { this.r = prng(seed) }
  int (n: number): number { return Math.floor(this.r() * n) }
  pick<T> (xs: readonly T[]): T { return xs[this.int(xs.length)] as T }
  bytes (n: number): Uint8Array<ArrayBuffer> { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = this.int(256); return b }
  unicode (n: number): string {
    const pool = ['\u0000', '\u202e', '\u200b', '\ufeff', '\ud83d\ude00', '\ud800', '\udfff', 'é', '中', '"', '\\', '{', '}', '[', ']', ':', ',', 'null', 'true', '1e999', '-0', '__proto__', 'constructor']
    let s = ''
    for (let i = 0; i < n; i++) s += this.r() < 0.5 ? this.pick(pool) : String.fromCharCode(this.int(0x10000))
    return s
  }
}

/**
 * A structured mutation of a valid message: drops, adds or replaces fields with odd values,
 * recursively. `words` are protocol words worth trying as values and field names.
 */
export function mutateValue (g: Gen, v: unknown, words: readonly string[] = [], depth = 0): unknown {
  const weird: unknown[] = [null, true, 0, -1, 1e308, -1e308, 0.5, '', 'x'.repeat(g.int(200)), [], {}, g.unicode(8), { $ref: '#' }, [[[]]], ...words]
  if (depth > 3 || g.r() < 0.15) return g.pick(weird)
  if (Array.isArray(v)) return g.r() < 0.2 ? [...v, g.pick(weird)] : v.map(x => mutateValue(g, x, words, depth + 1))
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = { ...(v as Record<string, unknown>) }
    const keys = Object.keys(out)
    const op = g.int(5)
    if (op === 0 && keys.length > 0) delete out[g.pick(keys)]
    else if (op === 1) out[g.pick(['extra', '__proto__', 'constructor', 'type', g.unicode(3), ...words])] = g.pick(weird)
    else if (keys.length > 0) { const k = g.pick(keys); out[k] = mutateValue(g, out[k], words, depth + 1) }
    return out
  }
  return g.pick(weird)
}

/** A textual mutation: flips, cuts, inserts, repeats. */
export function mutateText (g: Gen, s: string): string {
  const chars = [...s]
  const ops = 1 + g.int(4)
  for (let i = 0; i < ops; i++) {
    const at = g.int(chars.length + 1)
    switch (g.int(5)) {
      case 0: chars.splice(at, 1); break
      case 1: chars.splice(at, 0, g.unicode(1 + g.int(3))); break
      case 2: chars.length = at; break
      case 3: if (chars[at] !== undefined) chars[at] = String.fromCharCode((chars[at]?.charCodeAt(0) ?? 0) ^ (1 << g.int(7))); break
      default: chars.splice(at, 0, ...chars.slice(0, g.int(20)))
    }
  }
  return chars.join('')
}
