/**
 * What peers say to each other.
 *
 * ## Inside sealed envelopes (through the signaling service)
 * - `hello {name, role, caps, grants?, grantSig?}`: sent to every peer on `welcome`/`peer-joined`;
 *   a viewer proves its grants with the signature from its token. An agent with a libp2p relay
 *   client adds `relay {peer, addrs}`: its relay PeerId (the only identity a relayed tunnel
 *   stream is accepted from for this peer) and its relayed multiaddrs
 *   (`…/p2p-circuit/p2p/<peer>`, empty while it holds no reservation); it sends the hello again
 *   whenever they change.
 *   Agents with an identity (agent tokens) add `cred` (their credential), `proof {ts, sig}`
 *   (protocol/identity-proof.ts: signed with the credential's key over room, sender and
 *   recipient ids, time, name, role and relay PeerId) and, when they know one, `crl` (the
 *   network's newest signed revocation list). A peer holding the issuer key (every agent or
 *   viewer token made from an agent token) accepts an agent only with a credential the issuer
 *   signed for that name, unexpired and unrevoked, and a fresh proof by its key; anything else
 *   is refused and never displaces the agent already known under that name.
 *   Agents announce their *instance* in `caps`: `instances/1`, `i=<label>` and, while
 *   draining, `draining` (in caps, not in fields of their own: the hello schema is strict, and
 *   agents of the previous release must keep accepting these hellos during a rolling upgrade).
 *   Several agent processes may run under one credential, each an instance of the site named
 *   by the credential, told apart by their signaling peer id; the label is the instance's name
 *   (e.g. the pod name) when it fits (30 characters), else its first 21 characters, `~` and 8
 *   hex digits of its FNV-1a hash (instanceCaps()). A receiver keeps every instance of a site (a
 *   session to each; streams to `share@site` go to one of them) and sets no session up to
 *   instances of its own site. A hello of an instance whose label is already known under
 *   another peer id replaces that one (the same instance restarted); a hello without
 *   `instances/1` (an agent before instances) replaces every other agent of its name, as
 *   before. `draining`: the instance is shutting down; peers open no new streams to it (its
 *   open streams finish).
 *   Every member (agent or shared token) adds to the hello it seals for viewers `mproof {ts, sig}`: its member proof
 *   (protocol/member-proof.ts: Ed25519 with the network's member key over room, both peer ids,
 *   time, name and role). A viewer whose token carries the member key accepts an agent only with
 *   a valid one: viewers hold the viewer seal key all viewers share, so without it a viewer could
 *   seal an agent hello to another viewer.
 * - `description {sid, description: {type, sdp}}`: SDP offer/answer (perfect negotiation; the
 *   peer with the lower id is polite). `sid` names the sender's RTCPeerConnection instance: a
 *   new sid means the sender started over, and the receiver replaces its session too.
 *   An agent with an identity adds `proof {ts, sig}` to every offer and answer: its signature
 *   over the SDP's DTLS fingerprints, both peer ids, the sid and the time. The receiver checks
 *   it against the fingerprints of the SDP it is about to apply and drops the description
 *   otherwise: nobody between two agents can swap in its own certificate.
 * - `candidate {sid, candidate}`: a trickled ICE candidate (null = end of candidates).
 * - `bye`: the sender is leaving on purpose.
 *
 * ## On the `control` data channel (JSON text messages)
 * - `catalog {shares}`: the shares the sender exports that the receiver may use (name, protocol,
 *   description?, port?, namespace?; port and namespace tell a Kubernetes importer how to name
 *   and number the imported Service).
 * - `ping {id, t}` / `pong {id, t}`: health, RTT and keepalive (every second; a peer not
 *   heard from — no control message and no stream bytes — for 3 s is *unresponsive*: new
 *   streams go to another instance of its site; after 15 s its session fails).
 * - `drain`: the sender (an instance) is draining: open no new streams to it. Sent on the
 *   direct session at once (the hello's `instance.draining` tells peers that connect later).
 * - `status {…}`: an agent's view of its own connections, for viewers (debug page); agents
 *   that ran netcheck at start add `netcheck {…}` (`NetcheckView`: its verdict and findings;
 *   addresses only for a viewer granted `*`).
 *
 * ## On a UDP share's data channel (label `udp:<share>`): see protocol/udp.ts.
 *
 * ## On a stream data channel (label `tcp:<share>`) or a relayed stream
A relayed stream (libp2p protocol `/causeway/tunnel/1.0.0`, see
`agent/relay-path/stream-channel.ts` for its framing) carries the same messages after an
`open` frame with the label.
 * Binary messages are stream bytes. Text messages are stream control (`StreamControl`):
 * `ok` (the acceptor dialed the target), `err {code, message}` (refused), `fin` (no more bytes
 * in this direction; the other may go on), `rst {code}` (abort both ways), `credit {n}` (the
 * receiver consumed n more bytes: flow control). A sender starts with STREAM_INITIAL_WINDOW
 * (1 MiB) of credit per direction and never sends more bytes than the credit it was given, so a
 * slow reader bounds memory on both sides; a receiver may grant more than it consumed (window
 * growth) and resets a stream whose peer sends past its credit (FLOW_CONTROL_VIOLATION).
 *
 * ### Striped streams (cap `stripe/1`, stream version 2)
 * Between two agents whose hellos both carry STRIPE_CAP, the acceptor answers
 * `ok {v: 2, id}`: `id` (u32, unique among the streams the acceptor accepted from this peer)
 * names the stream on the lanes, and both directions of the stream may be striped. An acceptor
 * answers the plain `ok` to a peer without the cap (or with striping off), and the stream is
 * exactly a version-1 stream. On a version-2 stream:
 * - `credit {n, stripe: true}`: the receiver's window is what limits the stream (the window
 *   growth rule: a whole window consumed in under 4 RTT); the sender may stripe from then on.
 *   A sender also stripes, unasked, once it sent a whole initial window and its association
 *   (its channel's or the association's send queue is full) or the credit holds it back: a
 *   bulk stream.
 *   Either way small request/response streams stay on their channel.
 * - Striped bytes go over *lanes*: one data channel labelled `lane` that each agent opens on
 *   each association (peer connection) of the pair, shared by all its striped streams. A lane
 *   message is binary: flags (u8: 1 = sent by the stream's opener, 2 = by its acceptor), the
 *   stream `id` (u32 BE), the offset of its first byte in the stream (u48 BE), then the
 *   bytes. Bytes sent on the stream's own channel before striping started are offsets 0..k;
 *   the sender sends no raw bytes on it after its first lane message. The receiver reassembles
 *   by offset; what it holds out of order counts against the stream's window (a lane message
 *   past the credit, or more held than the window: FLOW_CONTROL_VIOLATION), so the reorder
 *   buffer is bounded like the stream's receive buffer. Lane messages for a stream the
 *   receiver does not know (already ended) are dropped.
 * - `blocked`: the sender of a bulk stream (a whole initial window sent) has bytes to send and no credit left (as QUIC's
 *   STREAM_DATA_BLOCKED): striped bytes sit in several associations' send buffers at once, so
 *   the window must cover all of them; the receiver grows the window at its next grant (within
 *   the same maximum and per-peer budget) instead of waiting for the 4-RTT rule. At most one per
 *   credit message received.
 * - `credit {n, max}`: `max` is the absolute credit (the sender may send bytes up to that
 *   offset); a sender of a version-2 stream goes by `max` (n is then informational). The same
 *   absolute credit may also come on a lane: flags | 4 (CREDIT), no payload, the offset field
 *   is `max`. Credit on a lane is what keeps a stream going while the association that carries
 *   its own channel is stalled (loss recovery, retransmission timeouts); duplicates change nothing.
 * - `fin {n}`: no more bytes in this direction, `n` bytes in all (the fin may overtake lane
 *   bytes: the direction ends once all `n` arrived).
 * - A lane that closes (its association failed) resets every stream that sent bytes over it
 *   which may not have arrived (STREAM_RESET): bytes are never silently lost.
 *
 * ## Version history
 * - 2026-12 (issue 20): striped streams: hello cap `stripe/1`, `ok {v: 2, id}`,
 *   `credit {max, stripe}`, `blocked`, `fin {n}`, `lane` channels and lane credit. Sent only to peers with the cap; a peer
 *   without it (or with `--stripe off`) sees version-1 streams only.
 * - 2026-12 (issue 19): agent instances: hello `instance {name, draining?}` (cap `instances/1`),
 *   control `drain`, pings every second as keepalive; ShareInfo `balance`, `weight`, `priority`
 *   (between the sites that export one share name). Older peers ignore them (a hello without
 *   `instance` still replaces every agent of its name at the receiver).
 * - 2026-12 (issue 22): `mproof` in the hellos agents seal for viewers (member proof). Viewers
 *   whose token carries the member key refuse agent hellos without it; a debug page older than
 *   the agents refuses the field (its schema is strict): update the signaling service, which
 *   serves the page, with the agents. Hellos between agents are unchanged.
 */
import * as z from 'zod'
import { MAX_CREDENTIAL_LENGTH, MAX_CRL_LENGTH } from './identity.ts'

export const SHARE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/
export const ShareName = z.string().regex(SHARE_NAME, 'share names are lowercase DNS labels (a-z, 0-9, ., -)')
export const PeerName = z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/, 'peer names are 1-64 letters, digits, ., _ or -')

const Proof = z.object({ ts: z.number().int().nonnegative(), sig: z.string().regex(/^[A-Za-z0-9_-]{80,90}$/) }).strict()

const Hello = z.object({
  type: z.literal('hello'),
  name: PeerName,
  role: z.enum(['agent', 'viewer']),
  caps: z.array(z.string().max(32)).max(32).default([]),
  grants: z.array(z.string().max(64)).max(256).optional(),
  grantSig: z.string().max(128).optional(),
  relay: z.object({
    peer: z.string().regex(/^[1-9A-HJ-NP-Za-km-z]{32,128}$/),
    addrs: z.array(z.string().max(512)).max(8),
  }).strict().optional(),
  cred: z.string().max(MAX_CREDENTIAL_LENGTH).optional(),
  proof: Proof.optional(),
  crl: z.string().max(MAX_CRL_LENGTH).optional(),
  mproof: Proof.optional(),
}).strict()

/** The capability of agents that run as several instances per site (hello caps `i=<label>`, `draining`; control `drain`). */
export const INSTANCES_CAP = 'instances/1'
const INSTANCE_CAP_PREFIX = 'i='
const DRAINING_CAP = 'draining'

/** FNV-1a, 32 bits, as 8 hex digits (labels of long instance names; not a security property). */
function fnv1a (text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0 }
  return h.toString(16).padStart(8, '0')
}

/** The label of an instance name as announced (see the module comment): the name itself up to 30 characters. */
export function instanceLabel (name: string): string {
  return name.length <= 30 ? name : `${name.slice(0, 21)}~${fnv1a(name)}`
}

/** The caps that announce an instance (and its drain). */
export function instanceCaps (name: string, draining = false): string[] {
  return [INSTANCES_CAP, `${INSTANCE_CAP_PREFIX}${instanceLabel(name)}`, ...(draining ? [DRAINING_CAP] : [])]
}

/** The instance a hello's caps announce; undefined for agents before instances. */
export function instanceOf (caps: readonly string[]): { label: string, draining: boolean } | undefined {
  if (!caps.includes(INSTANCES_CAP)) return undefined
  const label = caps.find(c => c.startsWith(INSTANCE_CAP_PREFIX))?.slice(INSTANCE_CAP_PREFIX.length)
  if (label === undefined || !/^[A-Za-z0-9._~-]{1,30}$/.test(label)) return undefined
  return { label, draining: caps.includes(DRAINING_CAP) }
}

const Sid = z.string().regex(/^[A-Za-z0-9_-]{4,32}$/)

const Description = z.object({
  type: z.literal('description'),
  sid: Sid,
  description: z.object({ type: z.enum(['offer', 'answer', 'pranswer', 'rollback']), sdp: z.string().max(60_000).default('') }),
  proof: Proof.optional(),
}).strict()

const IceCandidate = z.object({
  candidate: z.string().max(2048),
  sdpMid: z.string().max(64).nullable().optional(),
  sdpMLineIndex: z.number().int().min(0).max(64).nullable().optional(),
  usernameFragment: z.string().max(256).nullable().optional(),
})

const Candidate = z.object({
  type: z.literal('candidate'),
  sid: Sid,
  candidate: IceCandidate.nullable(),
}).strict()

const Bye = z.object({ type: z.literal('bye') }).strict()

export const PeerSignal = z.discriminatedUnion('type', [Hello, Description, Candidate, Bye])
export type PeerSignal = z.infer<typeof PeerSignal>
export type Hello = z.infer<typeof Hello>

export const ShareInfo = z.object({
  name: ShareName,
  protocol: z.enum(['tcp', 'http', 'udp']).default('tcp'),
  description: z.string().max(256).optional(),
  /** The port the share is meant to be reached on (a Kubernetes import's Service port). */
  port: z.number().int().min(1).max(65535).optional(),
  /** The exporting Service's namespace (imports go to the same namespace when it exists). */
  namespace: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/).optional(),
  /**
   * How the exporter asks importers to pick between the sites that export the same share name
   * (agent/instances.ts SitePolicy): the balance mode, this site's weight (default 1) and
   * priority (lower first, default 0). An importer's own `--connect …@*` options win.
   */
  balance: z.enum(['least-loaded', 'nearest', 'round-robin']).optional(),
  weight: z.number().int().min(0).max(1000).optional(),
  priority: z.number().int().min(0).max(100).optional(),
  /** The exporting Kubernetes Service's own name (merged imports take it where they can). */
  service: z.string().regex(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/).optional(),
  /** When the export began (ms since epoch; a ServiceExport's or Service's creation): the oldest export wins conflicts (KEP-1645). */
  since: z.number().int().min(0).max(8.64e15).optional(),
  /** false: withdrawn for now (its Service has no ready endpoint): importers send no new stream there. Absent: available. */
  available: z.boolean().optional(),
  /** `local-first`: an importing cluster where the same Service has ready endpoints uses those, remote sites only when it has none. */
  failover: z.enum(['local-first']).optional(),
  /** Per-pod addressing: this share reaches only pod `pod` of the share `parent` (a headless Service exported with causeway.dev/pods). */
  pod: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/).optional(),
  parent: ShareName.optional(),
  /** true: exported with per-pod addressing (its pods come as sub-shares naming it `parent`), imported as a headless Service. */
  pods: z.boolean().optional(),
})
export type ShareInfo = z.infer<typeof ShareInfo>

export const PathKind = z.enum(['direct', 'turn', 'relay', 'none'])
export type PathKind = z.infer<typeof PathKind>

export const PeerStatus = z.object({
  peer: z.string().max(64),
  name: z.string().max(64),
  /** The instance of its site (agents with instances). */
  instance: z.string().max(64).optional(),
  /** The instance is draining: it gets no new streams. */
  draining: z.boolean().optional(),
  role: z.enum(['agent', 'viewer']),
  state: z.string().max(32),
  path: PathKind,
  pair: z.string().max(256).optional(),
  rttMs: z.number().nullable(),
  bytesIn: z.number(),
  bytesOut: z.number(),
  streams: z.number().int(),
  /** WebRTC engine of the connection (`wrtc`, `datachannel`), `relay`, or `none`. */
  engine: z.string().max(32).optional(),
  /** SCTP associations (peer connections) carrying this peer's streams. */
  associations: z.number().int().min(0).optional(),
  /** Tunnelled bytes/s over the last sampling interval, per direction. */
  goodput: z.object({ in: z.number().min(0), out: z.number().min(0) }).optional(),
  shares: z.array(ShareInfo).max(256).default([]),
})
export type PeerStatus = z.infer<typeof PeerStatus>

const ExpectedPath = z.enum(['direct', 'turn', 'relay', 'none'])
/** An agent's netcheck summary (agent/netcheck): what its network allows and the path it expects to each kind of site. */
export const NetcheckView = z.object({
  ok: z.boolean(),
  verdict: z.string().max(512),
  site: z.enum(['eim', 'symmetric', 'udp', 'udpblock', 'tcp443', 'unknown', 'offline']),
  at: z.string().max(40),
  udp: z.boolean().nullable(),
  mapping: z.enum(['endpoint-independent', 'endpoint-dependent', 'unknown']),
  publicAddress: z.string().max(64).nullable().optional(),
  hairpinning: z.boolean().nullable(),
  ipv6: z.boolean(),
  signalingMs: z.number().nullable(),
  turn: z.array(z.object({ url: z.string().max(256).optional(), transport: z.enum(['udp', 'tcp', 'tls']), allocated: z.boolean(), rttMs: z.number().nullable() }).strict()).max(32),
  relays: z.array(z.object({ addr: z.string().max(256).optional(), transport: z.enum(['tcp', 'ws', 'wss']), reserved: z.boolean() }).strict()).max(32),
  expect: z.object({ eim: ExpectedPath, symmetric: ExpectedPath, udpblock: ExpectedPath, tcp443: ExpectedPath }).strict(),
}).strict()
export type NetcheckView = z.infer<typeof NetcheckView>

const Catalog = z.object({ type: z.literal('catalog'), shares: z.array(ShareInfo).max(256) }).strict()
const Ping = z.object({ type: z.literal('ping'), id: z.number().int(), t: z.number() }).strict()
const Pong = z.object({ type: z.literal('pong'), id: z.number().int(), t: z.number() }).strict()
const Status = z.object({
  type: z.literal('status'),
  name: z.string().max(64),
  peers: z.array(PeerStatus).max(256),
  shares: z.array(ShareInfo).max(256),
  connects: z.array(z.object({ share: z.string().max(64), peer: z.string().max(64), listen: z.string().max(128) })).max(256),
  imports: z.array(z.object({ share: z.string().max(64), peer: z.string().max(64), service: z.string().max(256) })).max(1024).default([]),
  netcheck: NetcheckView.optional(),
}).strict()

/** Largest number of SCTP associations (peer connections) one peer pair may use, the session's own included. */
export const MAX_ASSOCIATIONS = 8

/**
 * An extra SCTP association between two peers (agent/tunnel/associations.ts), negotiated in-band
 * over the session's control channel (already end-to-end authenticated, so the DTLS fingerprint
 * in the SDP is the peer's). `i` numbers the associations the *offerer* made; `of: 'mine'` is
 * sent by the offerer (offer, its candidates), `of: 'yours'` by the answerer (answer, its
 * candidates). `close` ends one.
 */
const Assoc = z.object({
  type: z.literal('assoc'),
  i: z.number().int().min(1).max(MAX_ASSOCIATIONS - 1),
  of: z.enum(['mine', 'yours']),
  description: z.object({ type: z.enum(['offer', 'answer']), sdp: z.string().max(60_000) }).strict().optional(),
  candidate: IceCandidate.optional(),
  close: z.literal(true).optional(),
}).strict()

const Drain = z.object({ type: z.literal('drain') }).strict()

export const ControlMessage = z.discriminatedUnion('type', [Catalog, Ping, Pong, Status, Assoc, Drain])
export type ControlMessage = z.infer<typeof ControlMessage>
export type StatusMessage = z.infer<typeof Status>

/** Largest stream offset a lane message can carry (u48). */
export const MAX_STREAM_OFFSET = 2 ** 48 - 1

export const StreamControl = z.discriminatedUnion('t', [
  z.object({ t: z.literal('ok'), v: z.literal(2).optional(), id: z.number().int().min(0).max(0xffffffff).optional() }).strict(),
  z.object({ t: z.literal('err'), code: z.string().max(64), message: z.string().max(512) }).strict(),
  z.object({ t: z.literal('fin'), n: z.number().int().min(0).max(MAX_STREAM_OFFSET).optional() }).strict(),
  z.object({ t: z.literal('rst'), code: z.string().max(64) }).strict(),
  z.object({ t: z.literal('credit'), n: z.number().int().positive().max(1 << 30), max: z.number().int().min(0).max(MAX_STREAM_OFFSET).optional(), stripe: z.literal(true).optional() }).strict(),
  z.object({ t: z.literal('blocked') }).strict(),
])
export type StreamControl = z.infer<typeof StreamControl>

/** Credit every stream direction starts with, bytes (both sides must agree: part of the protocol). */
export const STREAM_INITIAL_WINDOW = 1 << 20

export const STREAM_LABEL_PREFIX = 'tcp:'
/** The hello cap of agents that stripe streams over the associations (stream version 2). */
export const STRIPE_CAP = 'stripe/1'
/** Label of the lane channel an agent opens on each association for its striped streams. */
export const LANE_LABEL = 'lane'
export const CONTROL_LABEL = 'control'

/** Parses JSON text against a schema; null when it is not JSON or does not match. */
export function parseJson<T> (schema: z.ZodType<T>, text: string): T | null {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return null }
  const r = schema.safeParse(raw)
  return r.success ? r.data : null
}
