/** Errors of the relay transport. `code` is one of the stable codes of `protocol/errors.ts`. */
export class RelayDialError extends Error {
  override name = 'RelayDialError'
  readonly code = 'PEER_UNAVAILABLE'
}

/**
 * A relayed stream ended because its path (the relay, or the connection to it) went away
 * before both ends had closed their writable ends. Delivered as the stream's `'close'` event
 * error and thrown by its async iterator, so a tunnel never mistakes it for a clean end.
 */
export class RelayPathLostError extends Error {
  override name = 'RelayPathLostError'
  readonly code = 'STREAM_RESET'
}
