/** Baseline: one raw data channel of the same engine (@roamhq/wrtc) between two processes. */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { whenOpen } from '../peer/channel.ts'
import { createPeerConnection } from '../agent/wrtc.ts'
import { BLOCK, percentile } from './lib.ts'

export async function rawDataChannel (mib: number, ttfbSamples: number): Promise<{ mibps: number, ttfbP50: number, ttfbP99: number }> {
  const peer = fork(fileURLToPath(new URL('./raw-dc-peer.ts', import.meta.url)), [], { execArgv: ['--disable-warning=ExperimentalWarning'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const pc = createPeerConnection({ iceServers: [] })
  const waiters: Array<(m: Record<string, unknown>) => boolean> = []
  peer.on('message', (m: Record<string, unknown>) => {
    if (m.answer !== undefined) void pc.setRemoteDescription(m.answer as RTCSessionDescriptionInit)
    if (m.candidate !== undefined) void pc.addIceCandidate(m.candidate as RTCIceCandidateInit).catch(() => {})
    for (let i = 0; i < waiters.length; i++) if (waiters[i]!(m)) { waiters.splice(i, 1); i-- }
  })
  const next = async (key: string, ms = 120_000): Promise<Record<string, unknown>> => await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`raw-dc: no ${key}`)), ms)
    waiters.push(m => { if (m[key] === undefined) return false; clearTimeout(t); resolve(m); return true })
  })
  pc.onicecandidate = (e) => { if (e.candidate !== null) peer.send({ candidate: { candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } }) }
  const bulk = pc.createDataChannel('bulk')
  bulk.binaryType = 'arraybuffer'
  await pc.setLocalDescription(await pc.createOffer())
  peer.send({ offer: { type: 'offer', sdp: pc.localDescription?.sdp } })
  await whenOpen(bulk, undefined, 20_000)
  try {
    // throughput: the same chunking and high/low water marks as the tunnel
    bulk.send(String(mib << 20))
    const done = next('done')
    const t0 = performance.now()
    const chunk = BLOCK.subarray(0, 64 << 10)
    let sent = 0
    while (sent < (mib << 20)) {
      if (bulk.bufferedAmount > (1 << 20)) {
        for (let i = 0; i < 100_000 && bulk.bufferedAmount > (256 << 10); i++) await new Promise(resolve => setTimeout(resolve, 2))
      }
      bulk.send(chunk as Uint8Array<ArrayBuffer>)
      sent += chunk.length
    }
    await done
    const mibps = mib / ((performance.now() - t0) / 1000)
    // new channel -> first byte back
    const samples: number[] = []
    for (let i = 0; i < ttfbSamples; i++) {
      const t = performance.now()
      const dc = pc.createDataChannel(`ping-${i}`)
      await whenOpen(dc, undefined, 10_000)
      await new Promise<void>((resolve) => { dc.onmessage = () => resolve(); dc.send('?') })
      samples.push(performance.now() - t)
      dc.close()
    }
    return { mibps, ttfbP50: percentile(samples, 50), ttfbP99: percentile(samples, 99) }
  } finally {
    pc.close()
    if (peer.pid !== undefined) process.kill(peer.pid, 'SIGKILL')
  }
}
