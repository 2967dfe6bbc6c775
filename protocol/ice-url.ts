/** ICE server URLs (RFC 7064 stun:, RFC 7065 turn:/turns:), parsed once for every engine and netcheck. */
export type IceTransport = 'udp' | 'tcp' | 'tls'

export interface IceUrl { scheme: 'stun' | 'turn' | 'turns', host: string, port: number, transport: IceTransport }

/** Parses a stun:/turn:/turns: URL (RFC 7064/7065); null when it is not one. */
export function parseIceUrl (url: string): IceUrl | null {
  const m = /^(stuns?|turns?):(?:\[([0-9a-fA-F:.]+)\]|([^\s[\]?:]+))(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/i.exec(url.trim())
  if (m === null) return null
  const scheme = m[1]!.toLowerCase()
  if (scheme === 'stuns') return null
  const secure = scheme === 'turns'
  const port = m[4] !== undefined ? Number(m[4]) : secure ? 5349 : 3478
  if (port < 1 || port > 65535) return null
  const transport: IceTransport = secure ? 'tls' : scheme === 'stun' ? 'udp' : (m[5]?.toLowerCase() === 'tcp' ? 'tcp' : 'udp')
  return { scheme: scheme as IceUrl['scheme'], host: m[2] ?? m[3]!, port, transport }
}
