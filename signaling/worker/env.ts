/** Bindings, vars and secrets of the signaling Worker (see wrangler.toml). */
import type { SignalingRoom } from './room.ts'

// A type alias (not an interface) so that it is assignable to configFromEnv's Record<string, unknown>.
export type WorkerEnv = {
  /** One SignalingRoom per room id (idFromName). */
  ROOMS: DurableObjectNamespace<SignalingRoom>
  /** The built debug page (dist/page, signaling/page/location.ts), wrangler.toml [assets]. */
  ASSETS?: Fetcher
  /** Secret: admits only joins with a ticket signed by it. Unset: open (development only). */
  CAUSEWAY_ACCESS_SECRET?: string
  /** Secret: coturn `static-auth-secret` for TURN REST credentials. */
  CAUSEWAY_TURN_SECRET?: string
  CAUSEWAY_TURN_URLS?: string
  CAUSEWAY_STUN_URLS?: string
  CAUSEWAY_TURN_TTL?: string
  CAUSEWAY_RELAYS?: string
  CAUSEWAY_MAX_MESSAGE_BYTES?: string
  CAUSEWAY_MAX_PEERS_PER_ROOM?: string
  CAUSEWAY_RATE_PER_SECOND?: string
  CAUSEWAY_RATE_BURST?: string
  CAUSEWAY_JOIN_TIMEOUT_MS?: string
  CAUSEWAY_MAX_PREJOIN?: string
  CAUSEWAY_MAX_PREJOIN_PER_ADDRESS?: string
  CAUSEWAY_MAX_SEATS_PER_ADDRESS?: string
  CAUSEWAY_MAX_SEATS_PER_AGENT?: string
  CAUSEWAY_MAX_VIEWERS_PER_ROOM?: string
  CAUSEWAY_MAX_VIEWERS_PER_ADDRESS?: string
}
