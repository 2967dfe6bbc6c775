/**
 * Stable error codes of causeway, in one place.
 *
 * Every rejection a client can see carries one of these codes. Codes are strings that never
 * change meaning; `close` is the WebSocket close code the signaling service uses when the
 * error ends the connection (4000-4999 is the application range of RFC 6455), and `http` is
 * the status of an HTTP response carrying it. Error bodies are `{"error":{"code","message"}}`
 * over HTTP and `{"type":"error","code","message"}` over the signaling WebSocket. No stack
 * trace ever reaches a client.
 *
 * | code | close | http | meaning |
 * |---|---|---|---|
 * | BAD_MESSAGE | 4400 | 400 | not JSON, or not a message of the protocol (schema failure, unknown type), or a request body the route does not take |
 * | UNAUTHORIZED | 4401 | 401 | no ticket, or its signature does not verify; or the join proof (peer id, key, signature over the challenge) does not verify |
 * | NOT_JOINED | 4402 | 400 | a message other than `join` before joining |
 * | FORBIDDEN | 4403 | 403 | valid ticket, wrong room or scope, or a role it does not grant (a viewer ticket joining as agent); a status API change from a non-loopback client |
 * | NOT_FOUND | 4404 | 404 | no such route or room |
 * | JOIN_TIMEOUT | 4408 | 408 | no `join` within the join timeout |
 * | ROOM_FULL | 4409 | 409 | the room already holds `maxPeersPerRoom` peers, or `maxViewersPerRoom` viewers (a viewer's join); or this socket was evicted from a full room for an agent whose ticket names it (a viewer first, else the newest seat of the address holding the most): reconnect later |
 * | TICKET_EXPIRED | 4410 | 401 | ticket past its expiry |
 * | MESSAGE_TOO_LARGE | 4413 | 413 | a frame over `maxMessageBytes` |
 * | TOO_MANY_ROOMS | 4415 | 503 | the instance holds `maxRooms` rooms, or (open mode) the joining address already created `maxRoomsPerAddress` live rooms |
 * | VERSION_MISMATCH | 4426 | 426 | the client speaks another protocol version |
 * | RATE_LIMITED | 4429 | 429 | messages faster than the per-connection rate limit |
 * | TOO_MANY_CONNECTIONS | 4430 | 429 | too many sockets that have not joined yet, from this address or in total; the upgrade is refused with HTTP 429 |
 * | SEAT_LIMIT | 4431 | 429 | the sender holds its share of the room's seats: `maxSeatsPerSubject` for the agent its ticket names, else `maxSeatsPerAddress` for its client address (`maxViewersPerAddress` for viewers); other senders still join |
 * | UNKNOWN_PEER | — | — | a signal addressed to a peer not in the room (connection stays open) |
 * | REPLACED | 4001 | — | the same peer joined again on a newer connection; the older one is closed |
 * | SLOW_CONSUMER | 4008 | — | the socket's send buffer passed its bound (the client does not read) |
 * | STORE_UNAVAILABLE | 4503 | 503 | the service cannot reach its room store (Node on Redis: the Redis connection is down): joins are refused and joined sockets are closed with it; clients reconnect with backoff (their tunnels are untouched) |
 * | SHUTTING_DOWN | 1001 | 503 | the service is stopping |
 * | INTERNAL | 1011 | 500 | an unexpected failure (details only in the server log) |
 *
 * Agent-side codes (tunnels, shares) are in the same table so that logs, the status API and
 * stream resets use one vocabulary:
 *
 * | code | meaning |
 * |---|---|
 * | SHARE_NOT_FOUND | a connect named a share the peer does not export |
 * | SHARE_FORBIDDEN | the share exists but is not granted to the asking peer |
 * | TOO_MANY_STREAMS | the per-peer concurrent stream limit is reached |
 * | TARGET_UNREACHABLE | the agent could not dial the share's declared target |
 * | STREAM_RESET | the other side or the path reset the stream |
 * | FLOW_CONTROL_VIOLATION | the peer sent more stream bytes than the credit it was given; the stream is reset |
 * | PEER_UNAVAILABLE | no connection to that peer right now |
 * | SEAL_REJECTED | a sealed envelope failed to open (tampered, misaddressed, stale, replayed) |
 * | BAD_TOKEN | a network token or ticket could not be parsed |
 * | PING_TIMEOUT | the signaling service did not answer a ping in time: the client drops the socket and reconnects |
 * | BAD_CONFIG | a flag or setting is invalid (e.g. an empty identity for the API-server share) |
 * | IDENTITY_REJECTED | a credential, hello proof or DTLS fingerprint proof does not verify (forged name, other network, swapped fingerprint, stale proof) |
 * | CREDENTIAL_EXPIRED | an agent's credential is past its expiry (`causeway token --name` issues a new one) |
 * | CREDENTIAL_REVOKED | an agent's credential is on the network's revocation list |
 * | SHARED_TOKEN | an option that needs proven names (`peers=`) with a shared token that has no per-agent identity |
 * | PROTOCOL_MISMATCH | a TCP stream opened to a UDP share, or a UDP channel to a TCP share |
 *
 * Status API codes (agent/status/server.ts; BAD_MESSAGE, FORBIDDEN, NOT_FOUND, MESSAGE_TOO_LARGE
 * and INTERNAL above are used there too):
 *
 * | code | http | meaning |
 * |---|---|---|
 * | HOST_NOT_ALLOWED | 403 | the Host header names neither loopback nor the server's bound address and port (DNS rebinding) |
 * | ORIGIN_NOT_ALLOWED | 403 | a request from a web page (cross-origin `Origin`, or any `Origin` on a state-changing route) |
 * | UNSUPPORTED_MEDIA_TYPE | 415 | a state-changing request without `content-type: application/json` |
 * | LISTEN_FAILED | 409 | the agent could not open the requested connect listener |
 */
export const ERRORS = {
  BAD_MESSAGE: { close: 4400, http: 400 },
  UNAUTHORIZED: { close: 4401, http: 401 },
  NOT_JOINED: { close: 4402, http: 400 },
  FORBIDDEN: { close: 4403, http: 403 },
  NOT_FOUND: { close: 4404, http: 404 },
  JOIN_TIMEOUT: { close: 4408, http: 408 },
  ROOM_FULL: { close: 4409, http: 409 },
  TICKET_EXPIRED: { close: 4410, http: 401 },
  MESSAGE_TOO_LARGE: { close: 4413, http: 413 },
  TOO_MANY_ROOMS: { close: 4415, http: 503 },
  VERSION_MISMATCH: { close: 4426, http: 426 },
  RATE_LIMITED: { close: 4429, http: 429 },
  TOO_MANY_CONNECTIONS: { close: 4430, http: 429 },
  SEAT_LIMIT: { close: 4431, http: 429 },
  UNKNOWN_PEER: { close: 0, http: 404 },
  REPLACED: { close: 4001, http: 409 },
  SLOW_CONSUMER: { close: 4008, http: 503 },
  STORE_UNAVAILABLE: { close: 4503, http: 503 },
  SHUTTING_DOWN: { close: 1001, http: 503 },
  INTERNAL: { close: 1011, http: 500 },
  SHARE_NOT_FOUND: { close: 0, http: 404 },
  SHARE_FORBIDDEN: { close: 0, http: 403 },
  TOO_MANY_STREAMS: { close: 0, http: 429 },
  TARGET_UNREACHABLE: { close: 0, http: 502 },
  STREAM_RESET: { close: 0, http: 502 },
  FLOW_CONTROL_VIOLATION: { close: 0, http: 502 },
  PEER_UNAVAILABLE: { close: 0, http: 503 },
  SEAL_REJECTED: { close: 0, http: 400 },
  BAD_TOKEN: { close: 0, http: 400 },
  PING_TIMEOUT: { close: 0, http: 504 },
  HOST_NOT_ALLOWED: { close: 0, http: 403 },
  ORIGIN_NOT_ALLOWED: { close: 0, http: 403 },
  UNSUPPORTED_MEDIA_TYPE: { close: 0, http: 415 },
  LISTEN_FAILED: { close: 0, http: 409 },
  BAD_CONFIG: { close: 0, http: 400 },
  IDENTITY_REJECTED: { close: 0, http: 403 },
  CREDENTIAL_EXPIRED: { close: 0, http: 403 },
  CREDENTIAL_REVOKED: { close: 0, http: 403 },
  SHARED_TOKEN: { close: 0, http: 400 },
  PROTOCOL_MISMATCH: { close: 0, http: 400 },
} as const satisfies Record<string, { close: number; http: number }>

export type ErrorCode = keyof typeof ERRORS

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[]

export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value)
}

/** An error that carries a stable code; the only kind of error whose message reaches a client. */
export class CausewayError extends Error {
  readonly code: ErrorCode

  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CausewayError'
    this.code = code
  }

  get closeCode (): number {
    return ERRORS[this.code].close
  }

  get httpStatus (): number {
    return ERRORS[this.code].http
  }
}

/** The body to send to a client for any thrown value: known codes keep their message, the rest become INTERNAL. */
export function publicError (err: unknown): { code: ErrorCode, message: string } {
  if (err instanceof CausewayError) return { code: err.code, message: err.message }
  return { code: 'INTERNAL', message: 'internal error' }
}
