/**
 * One end of the raw data-channel measurement across a WAN link (bench/wan-dc.ts), run inside
 * a link namespace with an IPC channel to the bench, which relays offer/answer/candidates.
 *   wan-dc-peer.ts ENGINE offer BYTES SECONDS   opens channel `bulk`, sends BYTES (64 KiB messages,
 *                                               1 MiB high / 256 KiB low water mark) or until SECONDS
 *   wan-dc-peer.ts ENGINE answer                counts what arrives; reports {bytes, seconds} when
 *                                               the sender says it is done
 * ENGINE: one of agent/engine's ENGINE_NAMES (wrtc, datachannel), with its default settings.
 */
import { createPeerConnection, ENGINE_NAMES, type EngineName } from '../agent/engine/index.ts'

const [engine = 'wrtc', role = 'answer', bytesText = '0', secondsText = '5'] = process.argv.slice(2)
if (!(ENGINE_NAMES as readonly string[]).includes(engine)) throw new Error(`unknown engine ${engine}`)
const send = (m: Record<string, unknown>): void => { process.send?.(m) }
const pc = createPeerConnection(engine as EngineName, { iceServers: [] })
pc.onicecandidate = (e) => { if (e.candidate !== null) send({ candidate: { candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } }) }
setTimeout(() => process.exit(0), 120_000).unref()

process.on('message', (m: { sdp?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit }) => {
  void (async () => {
    if (m.sdp !== undefined) {
      await pc.setRemoteDescription(m.sdp)
      if (m.sdp.type === 'offer') {
        await pc.setLocalDescription(await pc.createAnswer())
        send({ sdp: { type: 'answer', sdp: pc.localDescription?.sdp } })
      }
    } else if (m.candidate !== undefined) {
      await pc.addIceCandidate(m.candidate).catch(() => {})
    }
  })()
})

if (role === 'answer') {
  pc.ondatachannel = (ev) => {
    const dc = ev.channel
    dc.binaryType = 'arraybuffer'
    let bytes = 0
    let t0 = 0
    dc.onmessage = (msg: MessageEvent) => {
      if (typeof msg.data === 'string') { send({ result: { bytes, seconds: (performance.now() - t0) / 1000 } }); return }
      if (t0 === 0) t0 = performance.now()
      bytes += (msg.data as ArrayBuffer).byteLength
    }
  }
} else {
  const total = Number(bytesText)
  const dc = pc.createDataChannel('bulk')
  dc.binaryType = 'arraybuffer'
  dc.bufferedAmountLowThreshold = 256 << 10
  const chunk = new Uint8Array(64 << 10).fill(0x5a)
  dc.onopen = () => {
    send({ open: true })
    const deadline = performance.now() + Number(secondsText) * 1000
    let sent = 0
    let finished = false
    // woken by bufferedamountlow, and by a 5 ms timer in case the engine does not fire it
    const pump = (): void => {
      if (finished) return
      while (sent < total && performance.now() < deadline && dc.bufferedAmount <= (1 << 20)) {
        dc.send(chunk)
        sent += chunk.byteLength
      }
      if (sent >= total || performance.now() >= deadline) {
        finished = true
        clearInterval(timer)
        // ordered after the data: the receiver reports when everything before it arrived
        dc.send('done')
      }
    }
    dc.onbufferedamountlow = pump
    const timer = setInterval(pump, 5)
    pump()
  }
  await pc.setLocalDescription(await pc.createOffer())
  send({ sdp: { type: 'offer', sdp: pc.localDescription?.sdp } })
}
