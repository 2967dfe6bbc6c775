/**
 * The one module that imports the WebRTC engine (@roamhq/wrtc: libwebrtc, does TURN over TCP).
 * Swap the engine here and nowhere else.
 */
import wrtc from '@roamhq/wrtc'

export const ENGINE = '@roamhq/wrtc'

/** Creates an RTCPeerConnection. ICE servers always come from the caller: never a public default. */
export function createPeerConnection (config: RTCConfiguration): RTCPeerConnection {
  return new wrtc.RTCPeerConnection({ ...config, iceServers: config.iceServers ?? [] }) as unknown as RTCPeerConnection
}
