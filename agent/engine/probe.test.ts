/** The UDP probe of `--engine auto`: an early STUN answer must not leave resends that hit the closed socket. */
import { createSocket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { expect, it } from 'vitest'
import { udpReachable } from './index.ts'

it('an answer before the resends: true, and the pending resends do not throw on the closed socket', async () => {
  const server = createSocket('udp4')
  server.on('message', (msg, from) => {
    const res = Buffer.from(msg)
    res.writeUInt16BE(0x0101, 0) // binding success, same transaction id
    server.send(res, from.port, from.address)
  })
  await new Promise<void>(resolve => server.bind(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  try {
    expect(await udpReachable([{ host: '127.0.0.1', port }], 1500)).toBe(true)
    await new Promise(resolve => setTimeout(resolve, 1000)) // past the resends at 400 and 800 ms
    expect(uncaught).toEqual([])
  } finally {
    process.off('uncaughtException', onUncaught)
    server.close()
  }
})
