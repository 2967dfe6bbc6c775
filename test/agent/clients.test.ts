import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import { promisify } from 'node:util'
import { WebSocketServer } from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Agent } from '../../agent/agent.ts'
import { listen, startNet, type Net } from './harness.ts'

const run = promisify(execFile)

describe('real clients through the tunnel', () => {
  let net: Net
  let importer: Agent
  const servers: Array<{ close: () => void }> = []

  beforeAll(async () => {
    const http = createServer((req, res) => {
      if (req.method === 'POST') {
        const chunks: Buffer[] = []
        req.on('data', (c: Buffer) => chunks.push(c))
        req.on('end', () => { res.writeHead(201, { 'content-type': 'text/plain' }); res.end(`posted ${Buffer.concat(chunks).length} bytes`) })
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-served-by': 'exporter' })
      res.end(`hello ${req.url}`)
    })
    const httpPort = await listen(http)
    const wsHttp = createServer()
    const wss = new WebSocketServer({ server: wsHttp })
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`)))
    const wsPort = await listen(wsHttp)
    servers.push(http, wsHttp, wss)
    net = await startNet()
    await net.agent('exporter', { shares: [{ name: 'web', host: '127.0.0.1', port: httpPort, protocol: 'http' }, { name: 'ws', host: '127.0.0.1', port: wsPort }] })
    importer = await net.agent('importer', { connects: [{ share: 'web', peer: 'exporter', host: '127.0.0.1', port: 0 }, { share: 'ws', peer: 'exporter', host: '127.0.0.1', port: 0 }] })
    await importer.peerByName('exporter')
  })

  afterAll(async () => {
    await net?.close()
    for (const s of servers) s.close()
  })

  const local = (share: string): number => importer.listeners.find(l => l.spec.share === share)!.port

  it('curl GET and POST, with keep-alive across requests', async () => {
    const url = `http://127.0.0.1:${local('web')}`
    const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-D', '-', `${url}/a`, `${url}/b`], { timeout: 30_000 })
    expect(stdout).toContain('x-served-by: exporter')
    expect(stdout).toContain('hello /a')
    expect(stdout).toContain('hello /b')
    const post = await run('curl', ['-sS', '--max-time', '20', '-X', 'POST', '--data-binary', 'x'.repeat(5000), '-o', '-', '-w', '%{http_code}', `${url}/up`], { timeout: 30_000 }).catch((e: unknown) => { throw e })
    expect(post.stdout).toBe('posted 5000 bytes201')
  })

  it('a long-lived WebSocket connection keeps exchanging messages', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${local('ws')}/`)
    ws.binaryType = 'arraybuffer'
    await new Promise<void>((resolve, reject) => { ws.onopen = () => resolve(); ws.onerror = () => reject(new Error('ws error')) })
    const replies: string[] = []
    ws.onmessage = (ev) => { replies.push(typeof ev.data === 'string' ? ev.data : `bin:${(ev.data as ArrayBuffer).byteLength}`) }
    // 40 messages over ~4 s on one connection, with a 256 KiB binary one in the middle
    for (let i = 0; i < 40; i++) {
      ws.send(i === 20 ? new Uint8Array(256 << 10) : `m${i}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const deadline = Date.now() + 5000
    while (replies.length < 40 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
    expect(replies).toHaveLength(40)
    expect(replies[0]).toBe('echo:m0')
    expect(replies[20]).toBe(`bin:${256 << 10}`)
    expect(replies[39]).toBe('echo:m39')
    ws.close()
  })
})
