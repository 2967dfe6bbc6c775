/**
 * Every command exits (issue 22). Once in about 40 runs on a fresh install, `causeway demo`
 * printed its result and never exited (only the stdio pipes were live JS handles; the WebRTC
 * engine's native threads were up): the CLI relied on the event loop draining. Now every command
 * exits explicitly once it has closed what it opened (cli/main.ts).
 *
 * - `causeway demo` 30 times in a row: every run exits 0 within 5 s of its last line;
 * - `causeway agent` under load (a transfer through it running) gets SIGTERM, 10 times: each
 *   exits 0 within its documented bound, --drain + 2 s.
 * Run inside scripts/netns-run.sh.
 */
import { spawn } from 'node:child_process'
import { createServer, connect, type Socket } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { encodeToken, newSecret } from '../../protocol/token.ts'
import { until } from '../until.ts'
import { CAUSEWAY, freePort, start, stopAll, type Proc } from './causeway.ts'

afterAll(() => { stopAll() })

/** Runs `causeway demo`: exit code, and the time from its last stdout line to its exit. */
async function demoRun (): Promise<{ code: number | null, afterLastLineMs: number, out: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(CAUSEWAY, ['demo', '--mib', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let last = performance.now()
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); last = performance.now() })
    child.stderr.on('data', (b: Buffer) => { out += b.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
    child.on('error', reject)
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, afterLastLineMs: performance.now() - last, out }) })
  })
}

// Measured 2026-12-07 on a shared 2-core machine (load average 2.5-3.5): 30 runs took 16.5 s
// (about 0.55 s each: bundle start, signaling, two agents, 1 MiB; the exit came 20-26 ms after the
// last line), within this suite's budget, so all 30 the issue asks for run.
const RUNS = 30

describe('every command exits', () => {
  it(`causeway demo, ${RUNS} times: each exits 0 within 5 s of its last line`, async () => {
    const waits: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const r = await demoRun()
      expect(r.code, `run ${i + 1}:\n${r.out}`).toBe(0)
      expect(r.out).toMatch(/demo ok/)
      expect(r.afterLastLineMs, `run ${i + 1}:\n${r.out}`).toBeLessThan(5000)
      waits.push(r.afterLastLineMs)
    }
    waits.sort((a, b) => a - b)
    console.log(`demo x${RUNS}: exit after the last line p50 ${Math.round(waits[RUNS >> 1]!)} ms, max ${Math.round(waits[RUNS - 1]!)} ms`)
  }, 300_000)

  it('causeway agent, SIGTERM under load 10 times: each exits 0 within --drain + 2 s', async () => {
    const DRAIN = 1000
    // a source that never stops sending: the stream through the exporter is live at every SIGTERM
    const block = Buffer.alloc(256 * 1024, 7)
    const src = createServer(s => {
      const pump = (): void => { while (s.write(block)) { /* until the buffer is full */ } }
      s.on('drain', pump)
      s.on('error', () => {})
      pump()
    })
    await new Promise<void>(resolve => src.listen(0, '127.0.0.1', resolve))
    const srcPort = (src.address() as { port: number }).port
    const signaling = start(['signaling', '--listen', `127.0.0.1:${await freePort()}`])
    const url = (await signaling.waitFor(/signaling listening on (http:\S+)/))[1]!
    const token = encodeToken({ kind: 'member', signaling: url, secret: newSecret() })
    const [statusB, listen] = [await freePort(), await freePort()]
    start(['agent', '--name', 'imp', '--status', `127.0.0.1:${statusB}`, '--connect', `src@exp=127.0.0.1:${listen}`], { CAUSEWAY_TOKEN: token })
    const took: number[] = []
    try {
      for (let i = 0; i < 10; i++) {
        const exp: Proc = start(['agent', '--name', 'exp', '--status', 'off', '--drain', String(DRAIN), '--share', `src=127.0.0.1:${srcPort}`], { CAUSEWAY_TOKEN: token })
        await until(async () => {
          const st = await fetch(`http://127.0.0.1:${statusB}/status`).then(async r => await r.json() as { peers: Array<{ name: string, state: string }> }, () => undefined)
          return st?.peers.some(p => p.name === 'exp' && p.state === 'connected') === true
        }, 30_000, () => `run ${i + 1}: the importer to connect to the exporter\n${exp.output().slice(-2000)}`)
        // load: a client reading the endless stream through the tunnel
        let bytes = 0
        const client: Socket = connect({ host: '127.0.0.1', port: listen })
        client.on('data', (d: Buffer) => { bytes += d.length })
        client.on('error', () => {})
        await until(() => bytes > 1 << 20, 20_000, `run ${i + 1}: bytes through the tunnel`)
        const t0 = performance.now()
        const exited = new Promise<number | null>(resolve => exp.child.once('exit', code => resolve(code)))
        exp.child.kill('SIGTERM')
        const code = await exited
        const ms = performance.now() - t0
        client.destroy()
        expect(code, exp.output().slice(-2000)).toBe(0)
        expect(ms).toBeLessThan(DRAIN + 2000)
        took.push(ms)
      }
    } finally {
      src.close()
    }
    took.sort((a, b) => a - b)
    console.log(`agent SIGTERM under load x10 (--drain ${DRAIN}): exit after p50 ${Math.round(took[5]!)} ms, max ${Math.round(took[9]!)} ms (bound ${DRAIN + 2000} ms)`)
  }, 300_000)
})
