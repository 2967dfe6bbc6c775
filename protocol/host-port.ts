/**
 * The one HOST:PORT parser (flags of every command: --listen, --status, --share, --connect).
 * IPv6 addresses go in brackets (`[::1]:53`). A bare port takes `defaultHost`; with
 * `defaultHost` null a host is required.
 */
export function parseHostPort (text: string, defaultHost: string | null = '127.0.0.1'): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim())
  if (m === null) {
    if (defaultHost !== null && /^\d{1,5}$/.test(text.trim())) return { host: defaultHost, port: checkPort(Number(text)) }
    throw new Error(`expected HOST:PORT, got "${text}"`)
  }
  const host = m[1] ?? m[2] ?? ''
  if (host === '' && defaultHost === null) throw new Error(`expected HOST:PORT, got "${text}"`)
  return { host: host === '' ? defaultHost ?? '' : host, port: checkPort(Number(m[3])) }
}

function checkPort (port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${port}`)
  return port
}
