/** Parses durations like `90s`, `15m`, `24h`, `7d` (or bare seconds) into seconds. */
export function parseDuration (text: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(text.trim())
  if (m?.[1] === undefined) throw new Error(`invalid duration "${text}" (use e.g. 90s, 15m, 24h, 7d)`)
  const n = Number(m[1])
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd' | undefined ?? 's']
  if (n <= 0) throw new Error('duration must be positive')
  return n * unit
}

/** Parses HOST:PORT (IPv6 in brackets). */
export function parseHostPort (text: string, defaultHost = '127.0.0.1'): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim())
  if (m === null) {
    if (/^\d{1,5}$/.test(text.trim())) return { host: defaultHost, port: checkPort(Number(text)) }
    throw new Error(`expected HOST:PORT, got "${text}"`)
  }
  const host = m[1] ?? m[2] ?? ''
  return { host: host === '' ? defaultHost : host, port: checkPort(Number(m[3])) }
}

function checkPort (port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${port}`)
  return port
}
