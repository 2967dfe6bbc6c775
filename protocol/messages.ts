/**
 * # causeway signaling wire protocol
 *
 * A peer opens a WebSocket to `GET /v1/rooms/{room}` on the signaling service, where `{room}`
 * is the room id derived from the network secret (see keys.ts). It offers the subprotocol
 * `causeway.2` and, when the deployment requires tickets, a second one that carries the access
 * ticket: `causeway.ticket.<ticket>` (browsers cannot set headers on a WebSocket, and a query
 * string ends up in access logs). The service answers with `causeway.2`. All frames are UTF-8
 * JSON text frames of at most `maxMessageBytes`; binary frames are refused.
 *
 * ```
 * peer                                   service
 *  | == upgrade, Sec-WebSocket-Protocol: ===> |   ticket checked here (signature, expiry, room):
 *  |    causeway.2, causeway.ticket.<t>       |   refused -> error + close (UNAUTHORIZED, ...)
 *  | <------------- challenge {v, nonce} ---- |   first frame, one per socket
 *  | -- join {v, peer, role, key, sig} -----> |   within joinTimeoutMs of the upgrade
 *  | <------------- welcome {v, peer, role,   |   peers: the others already in the room that
 *  |                      peers, limits}      |   this peer may see
 *  | <------------- peer-joined {peer} ------ |   to everyone else who may see it
 *  | -- signal {to, sealed} ----------------> |   forwarded verbatim as
 *  |                  ...  signal {from, sealed} ---> to
 *  | -- ping {id} --------------------------> |
 *  | <------------- pong {id} --------------- |
 *  | <------------- peer-left {peer} -------- |   when a peer's socket closes
 *  | <------------- error {code, message} --- |   then a close with the code's close code
 * ```
 *
 * Join proof (join-proof.ts): `peer` must be the id derived from the public key `key`, and
 * `sig` the key's signature over the room, peer id, role and this socket's challenge. A join
 * that fails is UNAUTHORIZED. So a peer id can only be used by the holder of its private key:
 * a second join with an id already in the room (a reconnecting peer whose old socket has not
 * died yet) replaces the older connection, which is closed with REPLACED, and nobody else can
 * do that.
 *
 * Roles: `role` is `agent` or `viewer`. With an access secret, the ticket's role bounds it: an
 * agent ticket may join as either, a viewer ticket only as `viewer` (else FORBIDDEN). Without
 * one (development mode) the role is as claimed. Viewers see only agents: a viewer's
 * `welcome.peers` lists agents, viewers are announced (peer-joined/peer-left) to agents only,
 * and a signal from a viewer to a viewer is UNKNOWN_PEER.
 *
 * Admission limits (signaling/prejoin.ts): sockets that have not joined yet are capped per
 * client address and in total; over a cap the upgrade is refused with HTTP 429
 * TOO_MANY_CONNECTIONS. A room exists only once a peer's join has been verified.
 *
 * Seats (signaling/seats.ts): every seat of a room is charged to a sender, the subject its
 * ticket names (one agent and its instances, ticket.ts) or else its client address (IPv6 per
 * /64). A join past its sender's share is refused with SEAT_LIMIT (close 4431): per subject
 * `maxSeatsPerSubject` (8), per address `maxSeatsPerAddress` (16) of which
 * `maxViewersPerAddress` (8) viewers; a viewer past the room's `maxViewersPerRoom` (16) and any
 * peer past `maxPeersPerRoom` (64) is ROOM_FULL (4409). In a full room a join as `agent` whose
 * ticket names a subject still gets a seat: the newest viewer, or else the newest seat of the
 * address holding the most seats without a subject, is evicted: that joined socket gets
 * `error {code: ROOM_FULL, message: "evicted: ..."}` and close 4409, and the room hears
 * `peer-left` for it. In open mode a room is charged to the address of the join that created
 * it while it lives: past `maxRoomsPerAddress` (16) such rooms a join that would create one is
 * TOO_MANY_ROOMS (4415), as is one past the instance's `maxRooms`. None of these is fatal:
 * clients reconnect with backoff.
 *
 * `sealed` is opaque to the service: an AEAD envelope only peers can open (seal.ts). Every
 * message is parsed with the schemas below; an unknown `type` is BAD_MESSAGE.
 *
 * ## Version history
 * - 2, amended (2026-12): seats per sender (SEAT_LIMIT, eviction of a joined socket with
 *   ROOM_FULL, rooms per address with TOO_MANY_ROOMS) and tickets that name a subject
 *   (ticket.ts version 2); the frames are unchanged, so clients of version 2 need no change.
 * - 2 (2026-12): joins prove the peer id (challenge, `key`, `sig`); `role` in join and
 *   welcome, enforced against the ticket; the ticket moves from `join` to the WebSocket
 *   subprotocol `causeway.ticket.<t>` so that it is checked before a socket reaches a room;
 *   viewers see only agents. A version-1 join is VERSION_MISMATCH.
 * - 1 (2026-11): first version.
 */
import * as z from 'zod'
import { MAX_PEER_ID_LENGTH } from './limits.ts'

export const PROTOCOL_VERSION = 2

/** The WebSocket subprotocol of this version; the service selects it. */
export const SUBPROTOCOL = `causeway.${PROTOCOL_VERSION}`
/** Prefix of the subprotocol that carries the access ticket. */
export const TICKET_SUBPROTOCOL_PREFIX = 'causeway.ticket.'

export const PeerId = z.string().regex(/^[A-Za-z0-9_-]+$/).min(8).max(MAX_PEER_ID_LENGTH)
export const RoomId = z.string().regex(/^[A-Za-z0-9_-]+$/).min(16).max(64)
const Sealed = z.string().regex(/^[A-Za-z0-9_-]+$/).min(1)
const PingId = z.union([z.string().max(64), z.number()])

export const Role = z.enum(['agent', 'viewer'])
const B64 = z.string().regex(/^[A-Za-z0-9_-]+$/)

export const JoinMessage = z.object({
  type: z.literal('join'),
  v: z.number().int(),
  peer: PeerId,
  role: Role,
  /** base64url raw P-256 public key (65 bytes). */
  key: B64.max(128),
  /** base64url P1363 ECDSA-SHA-256 signature (64 bytes) of the join proof. */
  sig: B64.max(128),
}).strict()
/** A version-1 join (ticket inside): recognised only to answer VERSION_MISMATCH. */
const LegacyJoin = z.object({ type: z.literal('join'), v: z.number().int() }).loose()

export const SignalOut = z.object({ type: z.literal('signal'), to: PeerId, sealed: Sealed }).strict()
export const PingMessage = z.object({ type: z.literal('ping'), id: PingId }).strict()

/** Messages a peer sends to the service. */
export const ClientMessage = z.discriminatedUnion('type', [JoinMessage, SignalOut, PingMessage])
export type ClientMessage = z.infer<typeof ClientMessage>

export const LimitsInfo = z.object({
  maxMessageBytes: z.number().int(),
  maxPeersPerRoom: z.number().int(),
  ratePerSecond: z.number(),
  rateBurst: z.number(),
})

export const ChallengeMessage = z.object({ type: z.literal('challenge'), v: z.number().int(), nonce: B64.max(64) })
export const WelcomeMessage = z.object({ type: z.literal('welcome'), v: z.number().int(), peer: PeerId, role: Role, peers: z.array(PeerId), limits: LimitsInfo })
export const PeerJoinedMessage = z.object({ type: z.literal('peer-joined'), peer: PeerId })
export const PeerLeftMessage = z.object({ type: z.literal('peer-left'), peer: PeerId })
export const SignalIn = z.object({ type: z.literal('signal'), from: PeerId, sealed: Sealed })
export const PongMessage = z.object({ type: z.literal('pong'), id: PingId })
export const ErrorMessage = z.object({ type: z.literal('error'), code: z.string().max(64), message: z.string().max(1024) })

/** Messages the service sends to a peer. */
export const ServerMessage = z.discriminatedUnion('type', [ChallengeMessage, WelcomeMessage, PeerJoinedMessage, PeerLeftMessage, SignalIn, PongMessage, ErrorMessage])
export type ServerMessage = z.infer<typeof ServerMessage>
export type WelcomeMessage = z.infer<typeof WelcomeMessage>

/**
 * The `/v1/ice` response: ICE servers for RTCPeerConnection plus relay multiaddrs (bounded: 64
 * servers of at most 16 URLs, 64 relays, 1 KiB a string). What an agent uses of it is further
 * limited by its ICE policy (agent/ice-policy.ts).
 */
const IceText = z.string().max(1024)
export const IceServer = z.object({
  urls: z.union([IceText, z.array(IceText).max(16)]),
  username: IceText.optional(),
  credential: IceText.optional(),
})
export const IceConfig = z.object({
  iceServers: z.array(IceServer).max(64),
  relays: z.array(IceText).max(64).default([]),
  ttlSeconds: z.number().int().optional(),
})
export type IceConfig = z.infer<typeof IceConfig>
export type IceServer = z.infer<typeof IceServer>

/** Parses one text frame from a peer; returns null for anything that is not a protocol message. */
export function parseClientMessage (text: string): ClientMessage | null {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return null }
  const result = ClientMessage.safeParse(raw)
  return result.success ? result.data : null
}

/** The `v` of a frame that is a join of another protocol version (answered VERSION_MISMATCH), else undefined. */
export function otherJoinVersion (text: string): number | undefined {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return undefined }
  const r = LegacyJoin.safeParse(raw)
  return r.success && r.data.v !== PROTOCOL_VERSION ? r.data.v : undefined
}

/** Parses one text frame from the service; returns null for anything that is not a protocol message. */
export function parseServerMessage (text: string): ServerMessage | null {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return null }
  const result = ServerMessage.safeParse(raw)
  return result.success ? result.data : null
}
