/**
 * A minimal WebRTC peer for the NAT lab (not the agent): run in a lab namespace as
 * `node wrtc-peer.ts offer|answer DIR ICE_SERVERS_JSON TIMEOUT_MS`. The two peers exchange one
 * complete (non-trickle) offer and answer through files in DIR, open a data channel, send
 * ping/pong, and print one JSON line: `{"connected":bool,"local":type,"remote":type,"ms":n}`
 * with the candidate types of the selected pair (from getStats), or `{"connected":false,...}`
 * when no path came up within TIMEOUT_MS (libwebrtc may sit in `checking` for minutes).
 */
import { existsSync } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createPeerConnection } from '../../agent/wrtc.ts'

const [role, dir, iceJson, timeoutText] = process.argv.slice(2)
if ((role !== 'offer' && role !== 'answer') || dir === undefined || iceJson === undefined) {
  process.stderr.write('usage: wrtc-peer.ts offer|answer DIR ICE_SERVERS_JSON [TIMEOUT_MS]\n')
  process.exit(2)
}
const iceServers = JSON.parse(iceJson) as RTCIceServer[]
const timeoutMs = Number(timeoutText ?? 20_000)
const started = Date.now()
const deadline = started + timeoutMs
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function waitFile (name: string): Promise<RTCSessionDescriptionInit> {
  const file = join(dir ?? '', name)
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`no ${name} within the timeout`)
    await sleep(50)
  }
  return JSON.parse(await readFile(file, 'utf8')) as RTCSessionDescriptionInit
}

async function writeAtomic (name: string, value: unknown): Promise<void> {
  const file = join(dir ?? '', name)
  await writeFile(`${file}.tmp`, JSON.stringify(value))
  await rename(`${file}.tmp`, file)
}

/**
 * Waits for ICE gathering (non-trickle exchange), bounded: until complete, or as soon as the
 * best candidate type this configuration can give is there (a relay candidate with TURN, a
 * server-reflexive one with STUN only), since blocked STUN/TURN transports only finish
 * gathering after their retransmissions time out.
 */
async function gathered (pc: RTCPeerConnection, types: Set<string>): Promise<void> {
  const withTurn = iceServers.some(s => String(s.urls).startsWith('turn'))
  const until = Math.min(deadline, Date.now() + 10_000)
  while (pc.iceGatheringState !== 'complete' && Date.now() < until) {
    if (types.has('relay') || (!withTurn && types.has('srflx'))) { await sleep(200); return }
    await sleep(50)
  }
}

async function selectedPair (pc: RTCPeerConnection): Promise<{ local?: string, remote?: string, localAddr?: string, remoteAddr?: string }> {
  const stats = await pc.getStats()
  const byId = new Map<string, Record<string, unknown>>()
  stats.forEach((s: Record<string, unknown>) => { byId.set(String(s.id), s) })
  let pair: Record<string, unknown> | undefined
  for (const s of byId.values()) {
    if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') pair = byId.get(s.selectedCandidatePairId)
  }
  pair ??= [...byId.values()].find(s => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated === true)
  const local = byId.get(String(pair?.localCandidateId))
  const remote = byId.get(String(pair?.remoteCandidateId))
  const addr = (c: Record<string, unknown> | undefined): string | undefined => c === undefined ? undefined : `${String(c.address ?? c.ip)}:${String(c.port)}`
  return { local: local?.candidateType as string | undefined, remote: remote?.candidateType as string | undefined, localAddr: addr(local), remoteAddr: addr(remote) }
}

/** The candidate pairs tried, for diagnosing a failed connection. */
async function pairSummary (pc: RTCPeerConnection): Promise<string[]> {
  const stats = await pc.getStats()
  const byId = new Map<string, Record<string, unknown>>()
  stats.forEach((s: Record<string, unknown>) => { byId.set(String(s.id), s) })
  const name = (id: unknown): string => {
    const c = byId.get(String(id))
    return c === undefined ? '?' : `${String(c.candidateType)}:${String(c.address ?? c.ip)}:${String(c.port)}`
  }
  return [...byId.values()].filter(s => s.type === 'candidate-pair')
    .map(s => `${name(s.localCandidateId)}->${name(s.remoteCandidateId)} ${String(s.state)} req=${String(s.requestsSent)} resp=${String(s.responsesReceived)}`)
}

async function main (): Promise<Record<string, unknown>> {
  const pc = createPeerConnection({ iceServers })
  const types = new Set<string>()
  pc.onicecandidate = evt => { const t = / typ (\w+)/.exec(evt.candidate?.candidate ?? '')?.[1]; if (t !== undefined) types.add(t) }
  try {
    // The message handler goes on at once: an engine may deliver the first message before the
    // channel's open event (or open it before ondatachannel, with no open event at all).
    let gotMessage: (ok: boolean) => void = () => {}
    const echoed = new Promise<boolean>(resolve => { gotMessage = resolve })
    const listen = (dc: RTCDataChannel): RTCDataChannel => {
      dc.onmessage = evt => {
        if (evt.data === 'ping') dc.send('pong')
        gotMessage(true)
      }
      return dc
    }
    const opened = new Promise<RTCDataChannel>(resolve => {
      const whenOpen = (dc: RTCDataChannel): void => {
        if (dc.readyState === 'open') resolve(dc)
        else dc.onopen = () => { resolve(dc) }
      }
      if (role === 'offer') whenOpen(listen(pc.createDataChannel('lab')))
      else pc.ondatachannel = evt => { whenOpen(listen(evt.channel)) }
    })
    if (role === 'offer') {
      await pc.setLocalDescription(await pc.createOffer())
      await gathered(pc, types)
      await writeAtomic('offer.json', pc.localDescription)
      await pc.setRemoteDescription(await waitFile('answer.json'))
    } else {
      await pc.setRemoteDescription(await waitFile('offer.json'))
      await pc.setLocalDescription(await pc.createAnswer())
      await gathered(pc, types)
      await writeAtomic('answer.json', pc.localDescription)
    }
    const timeout = new Promise<undefined>(resolve => setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now())))
    const dc = await Promise.race([opened, timeout])
    if (dc === undefined) return { connected: false, state: pc.iceConnectionState, ms: Date.now() - started, pairs: await pairSummary(pc) }
    if (role === 'offer') dc.send('ping')
    const ok = await Promise.race([echoed, timeout])
    const pair = await selectedPair(pc)
    // let the other side read its message and stats before the connection goes away
    await sleep(500)
    return { connected: ok === true, ...pair, ms: Date.now() - started }
  } finally {
    pc.close()
  }
}

main().then(result => {
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(0)
}, (err: unknown) => {
  process.stdout.write(`${JSON.stringify({ connected: false, error: err instanceof Error ? err.message : String(err) })}\n`)
  process.exit(1)
})
