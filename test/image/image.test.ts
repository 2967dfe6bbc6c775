/**
 * The container image, built here without Docker (scripts/image/build.sh: buildah from scratch)
 * and run with podman (scripts/image/run.sh) as the charts run it: its own user 10001, a
 * read-only root filesystem, no capabilities. The signaling service in the image serves the
 * debug page; an agent in the image carries a tunnel to an agent outside it (bin/causeway on
 * this machine). Build time is bounded by a content-hash cache (a fresh machine builds once).
 * Run inside scripts/netns-run.sh (host network = the test's namespace).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type Server } from 'node:http'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { onPath, prerequisite } from '../prereq.ts'
import { freePort, ROOT, run, start, stopAll } from '../smoke/causeway.ts'
import { until } from '../until.ts'

const exec = promisify(execFile)
const ready = prerequisite('root, buildah, podman and runc (scripts/setup-system.sh)', process.getuid?.() === 0 && onPath('buildah') && onPath('podman') && onPath('runc'))

const RUN = `${ROOT}scripts/image/run.sh`
const tag = `${process.pid}-${Date.now().toString(36)}`
let image = ''
const containers: Array<{ name: string, proc: ChildProcess, out: () => string }> = []

function runImage (name: string, args: string[], podmanArgs: string[] = []): { name: string, proc: ChildProcess, out: () => string } {
  const full = `causeway-test-${name}-${tag}`
  const proc = spawn(RUN, ['--name', full, '--env', 'CAUSEWAY_LOG_LEVEL=info', ...podmanArgs, image, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  proc.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  const c = { name: full, proc, out: () => out }
  containers.push(c)
  return c
}

async function pidOf (name: string): Promise<number> {
  return await until(async () => Number((await exec('podman', ['inspect', '--format', '{{.State.Pid}}', name])).stdout.trim()) || undefined, 20_000, `container ${name} running`)
}

describe.skipIf(!ready)('the container image (buildah from scratch, run with podman)', () => {
  let service: Server
  let servicePort: number

  beforeAll(async () => {
    const r = await exec(`${ROOT}scripts/image/build.sh`, [], { maxBuffer: 16 << 20, timeout: 600_000 })
    image = r.stdout.trim().split('\n').pop() ?? ''
    service = createServer((_req, res) => { res.end('from outside the container\n') })
    await new Promise<void>(resolve => service.listen(0, '127.0.0.1', resolve))
    servicePort = (service.address() as { port: number }).port
  }, 600_000)

  afterAll(async () => {
    for (const c of containers) {
      if (c.proc.exitCode === null) c.proc.kill('SIGTERM')
      await exec('podman', ['rm', '--force', '--time', '5', c.name]).catch(() => {})
    }
    stopAll()
    await new Promise<void>(resolve => service?.close(() => resolve()))
  }, 60_000)

  it('is the image the charts reference, configured to run as 10001 from /app/bin/causeway', async () => {
    const values = readFileSync(`${ROOT}charts/causeway-agent/values.yaml`, 'utf8')
    const chart = readFileSync(`${ROOT}charts/causeway-agent/Chart.yaml`, 'utf8')
    const repo = /^ {2}repository: *(\S+)/m.exec(values)?.[1]
    const version = /^appVersion: *"?([^"\s]+)"?/m.exec(chart)?.[1]
    expect(image).toBe(`${repo}:${version}`)
    const [cfg] = JSON.parse((await exec('podman', ['image', 'inspect', image])).stdout) as Array<{ Config: { User: string, Entrypoint: string[], Cmd: string[], WorkingDir: string, Env: string[] } }>
    expect(cfg?.Config).toMatchObject({ User: '10001:10001', Entrypoint: ['/app/bin/causeway'], Cmd: ['--help'], WorkingDir: '/app' })
    expect(cfg?.Config.Env).toContain('NODE_ENV=production')
    // The Dockerfile (for people with Docker) builds the same: its runtime stage says the same.
    const runtime = readFileSync(`${ROOT}Dockerfile`, 'utf8').split(/^FROM /m).pop() ?? ''
    expect(runtime).toMatch(/^USER 10001:10001$/m)
    expect(runtime).toMatch(/^WORKDIR \/app$/m)
    expect(runtime).toMatch(/^ENTRYPOINT \["\/app\/bin\/causeway"\]$/m)
    expect(runtime).toMatch(/^CMD \["--help"\]$/m)
    expect(runtime).toMatch(/NODE_ENV=production/)
    const exposed = (/^EXPOSE (.+)$/m.exec(runtime)?.[1] ?? '').split(' ').sort()
    expect(Object.keys((cfg?.Config as { ExposedPorts?: Record<string, unknown> }).ExposedPorts ?? {}).map(p => p.replace(/\/tcp$/, '')).sort()).toEqual(exposed)
  })

  it('holds the one build and no sources: bin/causeway, dist/ (CLI bundle and page), production dependencies', async () => {
    const ls = await exec(RUN, ['--entrypoint', '/bin/bash', image, '-c',
      'cd /app && for f in bin/causeway dist/cli/causeway.mjs dist/cli/causeway.mjs.map dist/page/index.html dist/page/app.js node_modules/hono node_modules/@roamhq/wrtc; do [ -e "$f" ] && echo "have $f"; done; ' +
      'for f in cli agent peer protocol signaling relay node_modules/node node_modules/esbuild node_modules/vitest node_modules/.bin/node; do [ -e "$f" ] && echo "unexpected $f"; done; echo done'])
    for (const f of ['bin/causeway', 'dist/cli/causeway.mjs', 'dist/cli/causeway.mjs.map', 'dist/page/index.html', 'dist/page/app.js', 'node_modules/hono', 'node_modules/@roamhq/wrtc']) expect(ls.stdout).toContain(`have ${f}\n`)
    expect(ls.stdout).not.toContain('unexpected')
    expect(ls.stdout).toContain('done')
  })

  it('signaling in the image serves the API and the debug page', async () => {
    const port = await freePort()
    const sig = runImage('signaling', ['signaling', '--listen', `127.0.0.1:${port}`])
    await until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok, 30_000, () => `signaling in the image (output: ${sig.out().slice(-2000)})`)
    const page = await fetch(`http://127.0.0.1:${port}/debug/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toMatch(/<script[^>]+app\.js/)
    expect((await fetch(`http://127.0.0.1:${port}/debug/app.js`)).status).toBe(200)
    expect(sig.out()).not.toMatch(/debug page not built/)
  })

  it('an agent in the image runs as 10001 on a read-only root and carries a tunnel to an agent outside', async () => {
    const sigPort = await freePort()
    const sig = runImage('signaling-2', ['signaling', '--listen', `127.0.0.1:${sigPort}`])
    await until(async () => (await fetch(`http://127.0.0.1:${sigPort}/healthz`).catch(() => undefined))?.ok, 30_000, () => `signaling (output: ${sig.out().slice(-2000)})`)
    const dir = await mkdtemp(join(tmpdir(), 'causeway-image-'))
    for (const args of [['--signaling', `http://127.0.0.1:${sigPort}`], ['--name', 'outside', '--out', 'outside.token'], ['--name', 'inside', '--out', 'inside.token']]) {
      const tok = await run(['token', ...args], { cwd: dir })
      expect(tok.code, tok.stderr).toBe(0)
    }
    const token = (name: string): string => readFileSync(join(dir, `${name}.token`), 'utf8').trim()
    const outside = start(['agent', '--share', `web=127.0.0.1:${servicePort}`, '--status', `127.0.0.1:${await freePort()}`], { CAUSEWAY_TOKEN: token('outside') })
    const [local, statusPort] = [await freePort(), await freePort()]
    const inside = runImage('agent', ['agent', '--connect', `web@outside=127.0.0.1:${local}`, '--status', `127.0.0.1:${statusPort}`], ['--env', `CAUSEWAY_TOKEN=${token('inside')}`])
    await rm(dir, { recursive: true, force: true })

    const pid = await pidOf(inside.name)
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    expect(/^Uid:\s+(\d+)\s+(\d+)/m.exec(status)?.slice(1)).toEqual(['10001', '10001'])
    expect(/^CapEff:\s+(\S+)/m.exec(status)?.[1]).toBe('0000000000000000')
    const rootMount = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find(l => l.split(' ')[4] === '/')
    expect(rootMount?.split(' ')[5]?.split(',')).toContain('ro')

    const body = await until(async () => {
      const r = await fetch(`http://127.0.0.1:${local}/`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined)
      return r?.ok === true ? await r.text() : undefined
    }, 60_000, () => `the tunnel from the image (inside: ${inside.out().slice(-1500)}; outside: ${outside.output().slice(-1500)})`)
    expect(body).toBe('from outside the container\n')
    const st = await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json() as { peers: Array<{ name: string, state: string }> }
    expect(st.peers.find(p => p.name === 'outside')?.state).toBe('connected')
  })
})
