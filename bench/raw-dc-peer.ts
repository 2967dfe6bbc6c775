/**
 * The far end of the raw data-channel baseline, in its own process (like a second agent):
 * answers an offer over IPC, counts bytes on the `bulk` channel, echoes on `ping-*` channels.
 */
import { createPeerConnection } from '../agent/wrtc.ts'

const pc = createPeerConnection({ iceServers: [] })
let bytes = 0
let target = 0
pc.onicecandidate = (e) => { if (e.candidate !== null) process.send?.({ candidate: { candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } }) }
pc.ondatachannel = (ev) => {
  const dc = ev.channel
  dc.binaryType = 'arraybuffer'
  dc.onmessage = (m: MessageEvent) => {
    if (dc.label === 'bulk') {
      if (typeof m.data === 'string') { target = Number(m.data); bytes = 0; return }
      bytes += (m.data as ArrayBuffer).byteLength
      if (bytes >= target && target > 0) { process.send?.({ done: bytes }); target = 0 }
    } else {
      dc.send('!')
    }
  }
}
process.on('message', (msg: { offer?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit, rss?: boolean }) => {
  void (async () => {
    if (msg.offer !== undefined) {
      await pc.setRemoteDescription(msg.offer)
      const answer = await pc.createAnswer()
      await pc.setLocalDescription(answer)
      process.send?.({ answer: { type: 'answer', sdp: pc.localDescription?.sdp } })
    } else if (msg.candidate !== undefined) {
      await pc.addIceCandidate(msg.candidate).catch(() => {})
    } else if (msg.rss === true) {
      process.send?.({ rss: process.memoryUsage().rss })
    }
  })()
})
setTimeout(() => process.exit(0), 10 * 60_000).unref()
