/**
 * UDP shares on the wire.
 *
 * The connecting agent opens one data channel labelled `udp:<share>` per connect listener and
 * peer, unordered and unreliable (`ordered: false, maxRetransmits: 0`: a lost datagram is lost,
 * as on any UDP path, and never holds up the others). The acceptor answers with the same text
 * control messages as a TCP stream (`ok`, or `err {code, message}` and a close; see
 * protocol/peer.ts); after that every binary message is one datagram:
 *
 *     | flow id: uint32, big-endian | payload: 0..UDP_MAX_PAYLOAD bytes |
 *
 * A flow is one client address (IP and port) on the connecting side; the connecting side picks
 * its id, the acceptor gives each new id its own UDP socket to the share's target, so replies go
 * back under the same id to the right client. One channel per listener with a flow id, rather
 * than one channel per flow: a DNS client uses a new source port per query, and a channel per
 * flow would cost a DCEP round trip before the first datagram and one of the association's 1024
 * SCTP stream ids (shared with TCP streams) per query; a flow id costs four bytes.
 *
 * Nothing is fragmented by causeway: a datagram whose payload exceeds UDP_MAX_PAYLOAD is dropped
 * and counted (reason `oversize`) on whichever side sees it first.
 */

export const UDP_LABEL_PREFIX = 'udp:'

/** Capability an agent announces in its hello when it understands UDP shares (catalogs list them only to such peers). */
export const UDP_CAP = 'udp/1'

export const UDP_FLOW_HEADER = 4

/**
 * Largest datagram payload carried, bytes: one datagram must fit one SCTP DATA chunk in one
 * packet, so SCTP never splits it (a split datagram on an unreliable channel is lost whenever
 * any piece is, and grows the loss rate silently). The smaller of the two engines' SCTP packet
 * budgets sets it: libdatachannel (node-datachannel) leaves 1280 (IPv6 minimum MTU) - 40 (IPv6)
 * - 8 (UDP) - 48 (DTLS) - 12 (SCTP common header) = 1172 bytes for chunks; libwebrtc's dcSCTP
 * (@roamhq/wrtc) uses 1191-byte SCTP packets (1179 for chunks). Minus the DATA chunk header
 * (16 bytes) and the flow id (4): 1152.
 */
export const UDP_MAX_PAYLOAD = 1172 - 16 - UDP_FLOW_HEADER

/** One datagram as a channel message. */
export function encodeDatagram (flow: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(UDP_FLOW_HEADER + payload.byteLength)
  new DataView(out.buffer).setUint32(0, flow >>> 0)
  out.set(payload, UDP_FLOW_HEADER)
  return out
}

export type DecodedDatagram = { flow: number, payload: Uint8Array } | { error: 'bad_frame' | 'oversize' }

/** A channel message as a datagram; an error for a frame too short or a payload too large. */
export function decodeDatagram (data: ArrayBuffer | Uint8Array): DecodedDatagram {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
  if (bytes.byteLength < UDP_FLOW_HEADER) return { error: 'bad_frame' }
  if (bytes.byteLength - UDP_FLOW_HEADER > UDP_MAX_PAYLOAD) return { error: 'oversize' }
  const flow = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)
  return { flow, payload: bytes.subarray(UDP_FLOW_HEADER) }
}
