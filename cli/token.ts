/**
 * `causeway token`: makes a network (owner file), issues agent tokens, revokes them, makes
 * viewer tokens and, for quick starts, a shared token.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { parseCredential } from '../protocol/identity.ts'
import { decodeOwner, encodeOwner, issueAgentToken, newNetwork, revocationList, revoke, sharedToken, type NetworkOwner } from '../protocol/identity-owner.ts'
import { deriveRoomId } from '../protocol/keys.ts'
import { signTicket, ticketSubject } from '../protocol/ticket.ts'
import { fromBase64Url } from '../protocol/encoding.ts'
import { decodeToken, encodeToken, viewerTokenFor, type ViewerSource } from '../protocol/token.ts'
import { parseDuration } from './duration.ts'

export const TOKEN_HELP = `causeway token --signaling URL [--owner FILE] [--network-name N]
    makes a network: a random secret and the network's issuer key pair, kept in the owner file
    (default ./causeway-owner.json, mode 0600, never overwritten). Keep it off the agents.
causeway token --name NAME [--owner FILE] [--ttl DURATION] [--access-secret S] [--out FILE]
    issues the agent token of NAME (network secret + the agent's own key + a credential binding
    NAME to that key, signed by the issuer, valid for --ttl, default 30d). One per agent/cluster.
causeway token --revoke NAME|SERIAL [--owner FILE] [--out FILE]
    revokes NAME's credentials and prints the network's signed revocation list: give it to any
    agent (--revocations-file); agents pass it on to each other in their hellos.
causeway token --revocations [--owner FILE]     prints the current signed revocation list
causeway token --viewer (--from-file F | env CAUSEWAY_TOKEN) [--grant SHARE,...] [--ttl D]
    a viewer token for the debug page, from an agent token (or --owner FILE), that may reach
    only the --grant shares (default none; * = every share not limited by peers=)
causeway token --shared --signaling URL
    a single shared token for quick starts: every agent uses the same one, names are claims
    (any holder can run under any name), and shares with peers= are refused.

--access-secret (or CAUSEWAY_ACCESS_SECRET) adds an access ticket for the room valid for --ttl;
with --name it names the agent (an opaque subject), so the service gives its instances their own
seats in the room (needs a signaling service of this version or newer).
--from TOKEN works too but puts the secret in argv (visible in ps); prefer --from-file.`

const DEFAULT_OWNER = 'causeway-owner.json'

export async function tokenCommand (argv: string[]): Promise<string | undefined> {
  const { values } = parseArgs({
    args: argv,
    options: {
      signaling: { type: 'string' },
      owner: { type: 'string' },
      'network-name': { type: 'string' },
      ttl: { type: 'string', default: '30d' },
      'access-secret': { type: 'string' },
      name: { type: 'string' },
      out: { type: 'string' },
      revoke: { type: 'string' },
      revocations: { type: 'boolean', default: false },
      shared: { type: 'boolean', default: false },
      viewer: { type: 'boolean', default: false },
      from: { type: 'string' },
      'from-file': { type: 'string' },
      grant: { type: 'string', default: '' },
    },
    strict: true,
  })
  const accessSecret = values['access-secret'] ?? process.env.CAUSEWAY_ACCESS_SECRET
  const ttl = parseDuration(values.ttl)
  const ownerFile = values.owner ?? process.env.CAUSEWAY_OWNER_FILE ?? DEFAULT_OWNER
  const ticketFor = async (secretRoom: string, role: 'agent' | 'viewer', subject?: string): Promise<string | undefined> =>
    accessSecret !== undefined ? await signTicket(accessSecret, { room: secretRoom, role, ttlSeconds: ttl, ...(subject !== undefined ? { subject } : {}) }) : undefined
  const output = (text: string): string | undefined => {
    if (values.out === undefined) return text
    writeFileSync(values.out, `${text}\n`, { mode: 0o600 })
    process.stderr.write(`written to ${values.out}\n`)
    return undefined
  }

  if (values.viewer) {
    if (values.from !== undefined) process.stderr.write('warning: --from puts the token in argv, visible to local users (ps); use --from-file or CAUSEWAY_TOKEN\n')
    const text = values.from ?? (values['from-file'] !== undefined ? readFileSync(values['from-file'], 'utf8') : process.env.CAUSEWAY_TOKEN)
    const decoded = text !== undefined ? decodeToken(text) : undefined
    if (decoded?.kind === 'viewer') throw new Error('the source must be an agent or shared token, not a viewer token')
    const member: ViewerSource | undefined = decoded ?? (values.owner !== undefined ? ownerSource(loadOwner(ownerFile)) : undefined)
    if (member === undefined) throw new Error('--viewer needs --from-file FILE (an agent token), CAUSEWAY_TOKEN or --owner FILE')
    const grants = values.grant.split(',').map(s => s.trim()).filter(Boolean)
    const ticket = await ticketFor(await deriveRoomId(member.secret), 'viewer')
    const viewer = await viewerTokenFor(member, grants, ticket)
    const encoded = encodeToken(viewer)
    process.stderr.write(`debug page: ${member.signaling.replace(/\/$/, '')}/debug/#token=${encoded}\n`)
    return output(encoded)
  }

  if (values.shared) {
    if (values.signaling === undefined) throw new Error('--shared needs --signaling URL')
    const owner = await newNetwork(signalingUrl(values.signaling), values['network-name'])
    const token = sharedToken(owner)
    const ticket = await ticketFor(await deriveRoomId(token.secret), 'agent')
    process.stderr.write('shared token: names are not proven (any holder can run under any name) and peers= is refused; use `causeway token --signaling URL` then `--name NAME` for per-agent identity\n')
    return output(encodeToken({ ...token, ...(ticket !== undefined ? { ticket } : {}) }))
  }

  if (values.revoke !== undefined || values.revocations) {
    const owner = loadOwner(ownerFile)
    if (values.revoke !== undefined) {
      const serials = revoke(owner, values.revoke)
      process.stderr.write(`revoked ${serials.length} credential(s) of "${values.revoke}": ${serials.join(', ')}\n`)
    }
    const list = await revocationList(owner)
    writeFileSync(ownerFile, encodeOwner(owner), { mode: 0o600 })
    return output(list)
  }

  if (values.name !== undefined) {
    const owner = loadOwner(ownerFile)
    const { secret } = sharedToken(owner)
    // The ticket names the agent (an opaque subject), so the service caps and seats its instances as one agent.
    const ticket = await ticketFor(await deriveRoomId(secret), 'agent', await ticketSubject(secret, values.name))
    const token = await issueAgentToken(owner, values.name, { ttlSeconds: ttl, ...(ticket !== undefined ? { ticket } : {}) })
    writeFileSync(ownerFile, encodeOwner(owner), { mode: 0o600 })
    const cred = parseCredential(token.identity?.credential ?? '')
    process.stderr.write(`agent token for "${cred.name}", serial ${cred.serial}, expires ${new Date(cred.expiresAt * 1000).toISOString()}\n`)
    return output(encodeToken(token))
  }

  if (values.signaling === undefined) throw new Error('give --signaling URL (new network), --name NAME (agent token), --revoke, --viewer or --shared; see --help')
  const owner = await newNetwork(signalingUrl(values.signaling), values['network-name'])
  try {
    writeFileSync(ownerFile, encodeOwner(owner), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'EEXIST') throw new Error(`${ownerFile} exists: a network is already made there (use --owner to make another)`)
    throw err
  }
  process.stderr.write(`network created; its owner key is in ${ownerFile} (keep it safe, off the agents).\nissue agent tokens with: causeway token --owner ${ownerFile} --name NAME --out NAME.token\n`)
  return undefined
}

function signalingUrl (text: string): string {
  const url = new URL(text)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('--signaling must be an http(s) URL')
  return url.toString().replace(/\/$/, '')
}

function loadOwner (file: string): NetworkOwner {
  let text: string
  try { text = readFileSync(file, 'utf8') } catch { throw new Error(`cannot read the owner file ${file}: make a network first (causeway token --signaling URL), or pass --owner FILE`) }
  return decodeOwner(text)
}

function ownerSource (owner: NetworkOwner): ViewerSource {
  return { ...sharedToken(owner), identity: { issuer: fromBase64Url(owner.issuer.pub) } }
}
