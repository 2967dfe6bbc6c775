/**
 * Explicit limits of the signaling protocol and their defaults. Every one is configurable on
 * the service (flags / environment, see the README's configuration reference); clients learn
 * the values in force from the `welcome` message.
 */
export interface SignalingLimits {
  /** Largest WebSocket frame accepted, in bytes (UTF-8). Default 65536. */
  maxMessageBytes: number
  /** Peers per room. Default 64. */
  maxPeersPerRoom: number
  /** Rooms one Node instance holds at once (the Worker has one Durable Object per room). Default 10000. */
  maxRooms: number
  /** Sustained messages per second per connection (token bucket refill). Default 200. */
  ratePerSecond: number
  /** Burst size of the per-connection token bucket. Default 400. */
  rateBurst: number
  /** Milliseconds a new socket has to send `join`. Default 10000. */
  joinTimeoutMs: number
  /** Sockets that have not joined yet, in total (Node: per instance; Worker: per room). Default 1024. */
  maxPrejoin: number
  /** Sockets that have not joined yet per client address (IPv6: per /64). Default 32. */
  maxPrejoinPerAddress: number
  /**
   * Seats in one room per client address (IPv6: per /64), for joins whose ticket names no
   * subject (open mode, old tickets, viewer tickets). Default 16.
   */
  maxSeatsPerAddress: number
  /** Seats in one room per ticket subject (the instances of one agent). Default 8. */
  maxSeatsPerSubject: number
  /** Viewers in one room. Default 16. */
  maxViewersPerRoom: number
  /** Viewers in one room per client address, for joins whose ticket names no subject. Default 8. */
  maxViewersPerAddress: number
  /** Open mode only: live rooms charged to one client address (the one whose join created them), across replicas. Default 16. */
  maxRoomsPerAddress: number
}

export const DEFAULT_LIMITS: Readonly<SignalingLimits> = Object.freeze({
  maxMessageBytes: 64 * 1024,
  maxPeersPerRoom: 64,
  maxRooms: 10_000,
  ratePerSecond: 200,
  rateBurst: 400,
  joinTimeoutMs: 10_000,
  maxPrejoin: 1024,
  maxPrejoinPerAddress: 32,
  maxSeatsPerAddress: 16,
  maxSeatsPerSubject: 8,
  maxViewersPerRoom: 16,
  maxViewersPerAddress: 8,
  maxRoomsPerAddress: 16,
})

/** Largest peer id: 22 base64url characters of 16 random bytes, with room to spare. */
export const MAX_PEER_ID_LENGTH = 64
/** Largest access ticket accepted, in characters. */
export const MAX_TICKET_LENGTH = 2048
/** Largest network token accepted, in characters. */
export const MAX_TOKEN_LENGTH = 8192
/** How far a sealed envelope's timestamp may be from the receiver's clock, in milliseconds. */
export const SEAL_MAX_SKEW_MS = 120_000
/**
 * Unexpired envelope nonces remembered for replay detection, in total; each sender holds at most
 * an eighth of it. Past a bound the oldest nonces of that sender (or of the sender holding the
 * most) are forgotten and its older envelopes refused (protocol/seal.ts Opener).
 */
export const SEAL_REPLAY_CACHE = 50_000
