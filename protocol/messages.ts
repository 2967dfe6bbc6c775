/**
 * # causeway signaling wire protocol
 *
 * A peer opens a WebSocket to `GET /v1/rooms/{room}` on the signaling service, where `{room}`
 * is the room id derived from the network secret (see keys.ts). All frames are UTF-8 JSON
 * text frames of at most `maxMessageBytes`; binary frames are refused.
 *
 * ```
 * peer                                   service
 *  | -- join {v, peer, ticket?} ------------> |   within joinTimeoutMs of the upgrade
 *  | <------------- welcome {v, peer, peers,  |   peers: the others already in the room
 *  |                        limits}           |
 *  | <------------- peer-joined {peer} ------ |   to everyone else
 *  | -- signal {to, sealed} ----------------> |   forwarded verbatim as
 *  |                  ...  signal {from, sealed} ---> to
 *  | -- ping {id} --------------------------> |
 *  | <------------- pong {id} --------------- |
 *  | <------------- peer-left {peer} -------- |   when a peer's socket closes
 *  | <------------- error {code, message} --- |   then a close with the code's close code
 * ```
 *
 * `sealed` is opaque to the service: an AEAD envelope only peers can open (seal.ts). The
 * service authenticates a join by the ticket (ticket.ts) when it is configured with an access
 * secret, and otherwise admits any join (development mode). A second join with a peer id that
 * is already in the room replaces the older connection, which is closed with REPLACED; that is
 * how a reconnecting peer whose old socket has not died yet gets back in.
 *
 * Every message is parsed with the schemas below; an unknown `type` is BAD_MESSAGE.
 *
 * ## Version history
 * - 1 (2026-11): first version.
 */
import * as z from 'zod'
import { MAX_PEER_ID_LENGTH, MAX_TICKET_LENGTH } from './limits.ts'

export const PROTOCOL_VERSION = 1

export const PeerId = z.string().regex(/^[A-Za-z0-9_-]+$/).min(8).max(MAX_PEER_ID_LENGTH)
export const RoomId = z.string().regex(/^[A-Za-z0-9_-]+$/).min(16).max(64)
const Sealed = z.string().regex(/^[A-Za-z0-9_-]+$/).min(1)
const PingId = z.union([z.string().max(64), z.number()])

export const JoinMessage = z.object({
  type: z.literal('join'),
  v: z.number().int(),
  peer: PeerId,
  ticket: z.string().max(MAX_TICKET_LENGTH).optional(),
}).strict()

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

export const WelcomeMessage = z.object({ type: z.literal('welcome'), v: z.number().int(), peer: PeerId, peers: z.array(PeerId), limits: LimitsInfo })
export const PeerJoinedMessage = z.object({ type: z.literal('peer-joined'), peer: PeerId })
export const PeerLeftMessage = z.object({ type: z.literal('peer-left'), peer: PeerId })
export const SignalIn = z.object({ type: z.literal('signal'), from: PeerId, sealed: Sealed })
export const PongMessage = z.object({ type: z.literal('pong'), id: PingId })
export const ErrorMessage = z.object({ type: z.literal('error'), code: z.string().max(64), message: z.string().max(1024) })

/** Messages the service sends to a peer. */
export const ServerMessage = z.discriminatedUnion('type', [WelcomeMessage, PeerJoinedMessage, PeerLeftMessage, SignalIn, PongMessage, ErrorMessage])
export type ServerMessage = z.infer<typeof ServerMessage>
export type WelcomeMessage = z.infer<typeof WelcomeMessage>

/** The `/v1/ice` response: ICE servers for RTCPeerConnection plus relay multiaddrs. */
export const IceServer = z.object({
  urls: z.union([z.string(), z.array(z.string())]),
  username: z.string().optional(),
  credential: z.string().optional(),
})
export const IceConfig = z.object({
  iceServers: z.array(IceServer),
  relays: z.array(z.string()).default([]),
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

/** Parses one text frame from the service; returns null for anything that is not a protocol message. */
export function parseServerMessage (text: string): ServerMessage | null {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return null }
  const result = ServerMessage.safeParse(raw)
  return result.success ? result.data : null
}
