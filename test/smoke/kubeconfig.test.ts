/**
 * The README's "kubectl to another cluster", through bin/causeway: an agent `east` sharing its
 * API server (`--share-apiserver`, requests run with a dedicated bearer token), an agent
 * `laptop` in the same network, `causeway kubeconfig --peer east --out FILE`, and the real
 * kubectl with that file. The API server is the suite's Kubernetes API test server
 * (test/kube/apiserver.ts). Run inside scripts/netns-run.sh.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiServer } from '../kube/apiserver.ts'
import { prerequisite, onPath } from '../prereq.ts'
import { until } from '../until.ts'
import { freePort, run, start, stopAll } from './causeway.ts'

const exec = promisify(execFile)
const hasKubectl = prerequisite('kubectl', onPath('kubectl'))
let dir = ''
let api: ApiServer | undefined

afterAll(async () => {
  stopAll()
  await api?.close()
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

describe.skipIf(!hasKubectl)('causeway kubeconfig, as the README shows it', () => {
  it('writes a kubeconfig that reaches east\'s API server through the tunnel, as the share identity', async () => {
    dir = await mkdtemp(join(tmpdir(), 'causeway-smoke-kube-'))
    api = await startApiServer({ tokens: { 'share-token': { user: 'causeway-share', groups: ['system:authenticated'] } } })
    await writeFile(join(dir, 'east-kubeconfig'), api.kubeconfig())
    await writeFile(join(dir, 'share-token'), 'share-token\n')
    const sig = start(['signaling', '--listen', `127.0.0.1:${await freePort()}`])
    const url = (await sig.waitFor(/signaling listening on (http:\/\/\S+)/))[1] ?? ''
    for (const args of [['--signaling', url], ['--name', 'east', '--out', 'east.token'], ['--name', 'laptop', '--out', 'laptop.token']]) {
      const tok = await run(['token', ...args], { cwd: dir })
      expect(tok.code, tok.stderr).toBe(0)
    }

    start(['agent', '--token-file', join(dir, 'east.token'), '--status', 'off',
      '--kubeconfig', join(dir, 'east-kubeconfig'), '--share-apiserver', '--apiserver-token-file', join(dir, 'share-token')])
    const status = await freePort()
    start(['agent', '--token-file', join(dir, 'laptop.token'), '--status', `127.0.0.1:${status}`])

    const out = join(dir, 'east.kubeconfig')
    type View = { peers: Array<{ name: string, state: string, shares?: Array<{ name: string }> }> }
    await until(async () => ((await (await fetch(`http://127.0.0.1:${status}/status`)).json()) as View).peers
      .some(p => p.name === 'east' && p.state === 'connected' && p.shares?.some(s => s.name === 'kube-apiserver') === true), 45_000, 'laptop to see east sharing kube-apiserver')
    const r = await run(['kubeconfig', '--peer', 'east', '--status-addr', `127.0.0.1:${status}`, '--out', out])
    expect(r.code, r.stderr).toBe(0)
    expect(await readFile(out, 'utf8')).toMatch(/server: http:\/\/127\.0\.0\.1:\d+/)
    const before = api.audit.length
    const ns = await exec('kubectl', ['get', 'namespaces', '-o', 'name'], { env: { ...process.env, KUBECONFIG: out }, timeout: 60_000 })
    expect(ns.stdout).toContain('namespace/kube-system')
    expect(api.audit.slice(before).some(e => e.user === 'causeway-share')).toBe(true)
  })
})
