/**
 * An agent's start-up probes UDP once: the engine choice (`--engine auto`) takes netcheck's
 * first STUN answer instead of sending its own binding request from a second socket. A STUN
 * server on loopback records every binding request and the port it came from.
 */
import { createSocket, type Socket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ATTR, encodeAddress, encodeStun, METHOD, parseStun } from '../../agent/netcheck/stun.ts'
import { startNet, until, type Net } from './harness.ts'

let net: Net
let stun: Socket
const requests: number[] = []

beforeAll(async () => {
  stun = createSocket('udp4')
  stun.on('message', (msg, from) => {
    const req = parseStun(msg)
    if (req === null || req.cls !== 'request') return
    requests.push(from.port)
    stun.send(encodeStun({ method: METHOD.binding, cls: 'success', tid: req.tid, attrs: [[ATTR.XOR_MAPPED_ADDRESS, encodeAddress(from.address, from.port, true)]] }), from.port, from.address)
  })
  await new Promise<void>(resolve => stun.bind(0, '127.0.0.1', resolve))
  net = await startNet()
})

afterAll(async () => {
  await net?.close()
  stun?.close()
})

describe('start-up STUN', () => {
  it('one socket probes: netcheck\'s answer also picks the engine', async () => {
    const port = (stun.address() as AddressInfo).port
    const a = await net.agent('site-a', { iceServers: [{ urls: `stun:127.0.0.1:${port}` }] })
    // start() returned: the engine is decided, from an answer that came.
    expect(a.engines.describe()).toMatchObject({ choice: 'auto', engine: 'datachannel', udp: true })
    const nc = await until(() => a.netcheck ?? undefined, 15_000, 'the agent\'s netcheck')
    expect(nc.udp).toBe(true)
    expect(requests.length).toBeGreaterThan(0)
    expect(new Set(requests).size).toBe(1)
  })
})
