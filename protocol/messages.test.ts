import { describe, expect, it } from 'vitest'
import { ERROR_CODES, ERRORS } from './errors.ts'
import { otherJoinVersion, parseClientMessage, parseServerMessage, PROTOCOL_VERSION } from './messages.ts'
import { ControlMessage, parseJson, PeerSignal, StreamControl } from './peer.ts'

describe('signaling schemas', () => {
  it('accepts the messages of the protocol', () => {
    expect(parseClientMessage(JSON.stringify({ type: 'join', v: PROTOCOL_VERSION, peer: 'abcdefgh12', role: 'agent', key: 'AQID', sig: 'BAUG' }))).not.toBeNull()
    expect(parseServerMessage(JSON.stringify({ type: 'challenge', v: PROTOCOL_VERSION, nonce: 'AQIDBA' }))).not.toBeNull()
    expect(parseClientMessage(JSON.stringify({ type: 'signal', to: 'abcdefgh12', sealed: 'AQID' }))).not.toBeNull()
    expect(parseClientMessage(JSON.stringify({ type: 'ping', id: 3 }))).not.toBeNull()
    expect(parseServerMessage(JSON.stringify({ type: 'peer-left', peer: 'abcdefgh12' }))).not.toBeNull()
  })

  it('rejects unknown types, extra fields, bad ids and non-JSON', () => {
    for (const bad of [
      '', 'null', '[]', '{"type":"nope"}', '{"type":"join","v":1,"peer":"short"}',
      '{"type":"join","v":1,"peer":"abcdefgh12","extra":1}', '{"type":"signal","to":"abcdefgh12","sealed":"a b"}',
      '{"type":"join","v":1,"peer":"../../etc/passwd"}', '{"__proto__":{"type":"ping"},"id":1}',
      '{"type":"join","v":2,"peer":"abcdefgh12","role":"admin","key":"AQID","sig":"BAUG"}',
      '{"type":"join","v":2,"peer":"abcdefgh12","role":"agent","key":"AQID"}',
    ]) expect(parseClientMessage(bad)).toBeNull()
  })

  it('recognises a join of another version (answered VERSION_MISMATCH), not one of this version', () => {
    expect(otherJoinVersion('{"type":"join","v":1,"peer":"abcdefgh12","ticket":"x.y"}')).toBe(1)
    expect(otherJoinVersion(`{"type":"join","v":${PROTOCOL_VERSION},"peer":"abcdefgh12"}`)).toBeUndefined()
    expect(otherJoinVersion('{"type":"ping","id":1}')).toBeUndefined()
    expect(otherJoinVersion('not json')).toBeUndefined()
  })

  it('has a distinct close code for every fatal error', () => {
    const closes = ERROR_CODES.map(c => ERRORS[c].close).filter(c => c !== 0)
    expect(new Set(closes).size).toBe(closes.length)
  })
})

describe('peer schemas', () => {
  it('parses hello, descriptions, candidates and stream control', () => {
    expect(PeerSignal.safeParse({ type: 'candidate', sid: 'abcdef', candidate: null }).success).toBe(true)
    expect(PeerSignal.safeParse({ type: 'hello', name: 'cluster-a', role: 'agent', caps: [] }).success).toBe(true)
    expect(PeerSignal.safeParse({ type: 'candidate', candidate: null }).success).toBe(false)
    expect(PeerSignal.safeParse({ type: 'description', sid: 'abcdef', description: { type: 'offer', sdp: 'v=0' } }).success).toBe(true)
    expect(PeerSignal.safeParse({ type: 'hello', name: 'bad name!', role: 'agent' }).success).toBe(false)
    expect(parseJson(StreamControl, '{"t":"fin"}')).toEqual({ t: 'fin' })
    expect(parseJson(StreamControl, '{"t":"rst"}')).toBeNull()
    expect(parseJson(ControlMessage, '{"type":"catalog","shares":[{"name":"Web"}]}')).toBeNull()
  })
})
