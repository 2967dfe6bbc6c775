/**
 * One end of the raw data-channel measurement across a WAN link (bench/wan-dc.ts), run inside
 * a link namespace with an IPC channel to the bench, which relays offer/answer/candidates.
 *   wan-dc-peer.ts ENGINE offer BYTES SECONDS [PCS]  opens channel `bulk` on each of PCS peer
 *                                               connections (default 1: several SCTP associations
 *                                               between the same two processes), sends BYTES in all
 *                                               (64 KiB messages, 1 MiB high / 256 KiB low water
 *                                               mark per channel) or until SECONDS
 *   wan-dc-peer.ts ENGINE answer [PCS]          counts what arrives; reports {bytes, seconds} when
 *                                               every sender said it is done
 * ENGINE: one of agent/engine's ENGINE_NAMES (wrtc, datachannel), with its default settings.
 */
import { createPeerConnection, ENGINE_NAMES, type EngineName } from '../agent/engine/index.ts'

const [engine = 'wrtc', role = 'answer', ...rest] = process.argv.slice(2)
const [bytesText = '0', secondsText = '5', pcsText = '1'] = role === 'answer' ? ['0', '0', rest[0] ?? '1'] : rest
if (!(ENGINE_NAMES as readonly string[]).includes(engine)) throw new Error(`unknown engine ${engine}`)
const PCS = Math.max(1, Number(pcsText))
const send = (m: Record<string, unknown>): void => { process.send?.(m) }
const pcs = Array.from({ length: PCS }, (_, i) => {
  const pc = createPeerConnection(engine as EngineName, { iceServers: [] })
  pc.onicecandidate = (e) => { if (e.candidate !== null) send({ i, candidate: { candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } }) }
  return pc
})
setTimeout(() => process.exit(0), 120_000).unref()

process.on('message', (m: { i?: number, sdp?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit }) => {
  void (async () => {
    const i = m.i ?? 0
    const pc = pcs[i]
    if (pc === undefined) return
    if (m.sdp !== undefined) {
      await pc.setRemoteDescription(m.sdp)
      if (m.sdp.type === 'offer') {
        await pc.setLocalDescription(await pc.createAnswer())
        send({ i, sdp: { type: 'answer', sdp: pc.localDescription?.sdp } })
      }
    } else if (m.candidate !== undefined) {
      await pc.addIceCandidate(m.candidate).catch(() => {})
    }
  })()
})

if (role === 'answer') {
  let bytes = 0
  let t0 = 0
  let done = 0
  for (const pc of pcs) {
    pc.ondatachannel = (ev) => {
      const dc = ev.channel
      dc.binaryType = 'arraybuffer'
      dc.onmessage = (msg: MessageEvent) => {
        if (typeof msg.data === 'string') {
          if (++done === PCS) send({ result: { bytes, seconds: (performance.now() - t0) / 1000 } })
          return
        }
        if (t0 === 0) t0 = performance.now()
        bytes += (msg.data as ArrayBuffer).byteLength
      }
    }
  }
} else {
  const total = Number(bytesText)
  const deadline = { at: 0 }
  let sent = 0
  let opened = 0
  const chunk = new Uint8Array(64 << 10).fill(0x5a)
  for (const [i, pc] of pcs.entries()) {
    const dc = pc.createDataChannel('bulk')
    dc.binaryType = 'arraybuffer'
    dc.bufferedAmountLowThreshold = 256 << 10
    dc.onopen = () => {
      if (++opened === 1) { send({ open: true }); deadline.at = performance.now() + Number(secondsText) * 1000 }
      let finished = false
      // woken by bufferedamountlow, and by a 5 ms timer in case the engine does not fire it
      const pump = (): void => {
        if (finished) return
        while (sent < total && performance.now() < deadline.at && dc.bufferedAmount <= (1 << 20)) {
          dc.send(chunk)
          sent += chunk.byteLength
        }
        if (sent >= total || performance.now() >= deadline.at) {
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
    send({ i, sdp: { type: 'offer', sdp: pc.localDescription?.sdp } })
  }
}
