/** Parses durations like `90s`, `15m`, `24h`, `7d` (or bare seconds) into seconds. */
export function parseDuration (text: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(text.trim())
  if (m?.[1] === undefined) throw new Error(`invalid duration "${text}" (use e.g. 90s, 15m, 24h, 7d)`)
  const n = Number(m[1])
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd' | undefined ?? 's']
  if (n <= 0) throw new Error('duration must be positive')
  return n * unit
}

export { parseHostPort } from '../protocol/host-port.ts'

/** Parses `--drain MS`: a whole number of milliseconds, 0 or more. */
export function drainFlag (text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0 || n > 3_600_000) throw new Error('--drain must be a number of milliseconds (0-3600000)')
  return n
}
