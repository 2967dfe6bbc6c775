/**
 * StatusWriter's failures reach the one logger interface (peer/log.ts) at warn with the object
 * they concern; a 404 (the Service is gone) is routine and not logged. A real HTTP server stands
 * in for the API server and fails every write.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as k8s from '@kubernetes/client-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { LogLike } from '../../peer/log.ts'
import { StatusWriter } from './status.ts'

let server: Server
let core: k8s.CoreV1Api

beforeAll(async () => {
  server = createServer((req, res) => {
    const gone = req.url?.includes('/services/gone') === true
    res.writeHead(gone ? 404 : 500, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: gone ? 'not found' : 'etcd is down', code: gone ? 404 : 500 }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const kc = new k8s.KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  core = kc.makeApiClient(k8s.CoreV1Api)
})

afterAll(async () => { await new Promise((resolve) => server.close(resolve)) })

function recorder(): { log: LogLike; lines: Array<{ level: string; obj: object; msg?: string }> } {
  const lines: Array<{ level: string; obj: object; msg?: string }> = []
  const at = (level: string) => (obj: object, msg?: string): void => { lines.push({ level, obj, ...(msg !== undefined ? { msg } : {}) }) }
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn') }, lines }
}

describe('StatusWriter logging', () => {
  it('a failed annotation write or Event is logged at warn with the Service; a vanished Service is not', async () => {
    const { log, lines } = recorder()
    const w = new StatusWriter({ core, log })
    await w.setStatus({ namespace: 'default', name: 'web' }, { role: 'export', shares: ['web'] })
    await w.event({ namespace: 'default', name: 'web' }, 'Warning', 'Broken', 'it broke')
    await w.setStatus({ namespace: 'default', name: 'gone' }, { role: 'export', shares: ['web'] })
    expect(lines.map((l) => l.level)).toEqual(['warn', 'warn'])
    expect(lines[0]?.obj).toMatchObject({ service: 'default/web' })
    expect(JSON.stringify(lines[0]?.obj)).toContain('500')
    expect(lines[1]?.obj).toMatchObject({ event: expect.stringMatching(/^default\/web\./) })
  })
})
