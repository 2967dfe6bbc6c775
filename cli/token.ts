/** `causeway token`: makes a network token (member, or viewer with --viewer). */
import { parseArgs } from 'node:util'
import { deriveRoomId } from '../protocol/keys.ts'
import { signTicket } from '../protocol/ticket.ts'
import { decodeToken, encodeToken, newSecret, viewerTokenFor } from '../protocol/token.ts'
import { parseDuration } from './duration.ts'

export const TOKEN_HELP = `causeway token --signaling URL [--ttl DURATION] [--access-secret S] [--name NAME]
causeway token --viewer --from TOKEN [--grant SHARE,...] [--ttl DURATION] [--access-secret S]

Prints a network token: the signaling URL, a fresh random secret and, when an access secret
is given (flag or CAUSEWAY_ACCESS_SECRET), an access ticket for the network's room valid for
--ttl (default 30d). With --viewer, derives from an existing token a viewer token for the
debug page that may reach only the --grant shares (default: none; * for all).`

export async function tokenCommand (argv: string[]): Promise<string> {
  const { values } = parseArgs({
    args: argv,
    options: {
      signaling: { type: 'string' },
      ttl: { type: 'string', default: '30d' },
      'access-secret': { type: 'string' },
      name: { type: 'string' },
      viewer: { type: 'boolean', default: false },
      from: { type: 'string' },
      grant: { type: 'string', default: '' },
    },
    strict: true,
  })
  const accessSecret = values['access-secret'] ?? process.env.CAUSEWAY_ACCESS_SECRET
  const ttl = parseDuration(values.ttl)
  if (values.viewer) {
    const from = values.from ?? process.env.CAUSEWAY_TOKEN
    if (from === undefined) throw new Error('--viewer needs --from TOKEN (or CAUSEWAY_TOKEN)')
    const member = decodeToken(from)
    if (member.kind !== 'member') throw new Error('--from must be a member token, not a viewer token')
    const grants = values.grant.split(',').map(s => s.trim()).filter(Boolean)
    const room = await deriveRoomId(member.secret)
    const ticket = accessSecret !== undefined ? await signTicket(accessSecret, { room, role: 'viewer', ttlSeconds: ttl }) : undefined
    const viewer = encodeToken(await viewerTokenFor(member, grants, ticket))
    process.stderr.write(`debug page: ${member.signaling.replace(/\/$/, '')}/debug/#token=${viewer}\n`)
    return viewer
  }
  if (values.signaling === undefined) throw new Error('--signaling URL is required')
  const url = new URL(values.signaling)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('--signaling must be an http(s) URL')
  const secret = newSecret()
  const room = await deriveRoomId(secret)
  const ticket = accessSecret !== undefined ? await signTicket(accessSecret, { room, role: 'agent', ttlSeconds: ttl }) : undefined
  return encodeToken({ kind: 'member', signaling: url.toString().replace(/\/$/, ''), secret, ...(ticket !== undefined ? { ticket } : {}), ...(values.name !== undefined ? { name: values.name } : {}) })
}
