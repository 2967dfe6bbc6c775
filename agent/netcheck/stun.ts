/**
 * A small STUN codec (RFC 5389 / 8489 messages, the RFC 5766 TURN attributes, RFC 5780's
 * OTHER-ADDRESS / RESPONSE-ORIGIN), enough for binding requests and a TURN Allocate with
 * long-term credentials. The one STUN codec of the agent: the engine's UDP probe and netcheck
 * both use it.
 *
 * `parseStun` never throws: anything that is not a well-formed STUN message (short, wrong
 * magic cookie, length not matching, an attribute running past the end, too many attributes)
 * is `null`, and callers count it and go on (fuzzed in stun.test.ts).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'

export const MAGIC_COOKIE = 0x2112a442
export const HEADER_BYTES = 20
/** Largest message accepted (a UDP datagram; TCP framing drops anything larger). */
export const MAX_STUN_BYTES = 4096
const MAX_ATTRS = 64

export const METHOD = { binding: 0x001, allocate: 0x003, refresh: 0x004 } as const
export type StunClass = 'request' | 'indication' | 'success' | 'error'

export const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  LIFETIME: 0x000d,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_TRANSPORT: 0x0019,
  XOR_MAPPED_ADDRESS: 0x0020,
  SOFTWARE: 0x8022,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
} as const

export interface StunAttr { type: number, value: Buffer }
export interface StunMessage { method: number, cls: StunClass, tid: Buffer, attrs: StunAttr[] }
export interface TransportAddress { family: 4 | 6, address: string, port: number }

const CLASS_BITS: Record<StunClass, number> = { request: 0x000, indication: 0x010, success: 0x100, error: 0x110 }

function messageType (method: number, cls: StunClass): number {
  return ((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | CLASS_BITS[cls]
}

export function newTransactionId (): Buffer { return randomBytes(12) }

/** Total length of the STUN message at the start of `buf` (header + body), or null when the header is not STUN. */
export function stunFrameLength (buf: Buffer): number | null {
  if (buf.length < HEADER_BYTES) return null
  if ((buf[0]! & 0xc0) !== 0 || buf.readUInt32BE(4) !== MAGIC_COOKIE) return null
  const len = buf.readUInt16BE(2)
  if (len % 4 !== 0 || HEADER_BYTES + len > MAX_STUN_BYTES) return null
  return HEADER_BYTES + len
}

/** Parses one whole STUN message; null for anything else (never throws). */
export function parseStun (buf: Buffer): StunMessage | null {
  const total = stunFrameLength(buf)
  if (total === null || total !== buf.length) return null
  const type = buf.readUInt16BE(0)
  const method = ((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f)
  const c = type & 0x0110
  const cls: StunClass = c === 0x000 ? 'request' : c === 0x010 ? 'indication' : c === 0x100 ? 'success' : 'error'
  const attrs: StunAttr[] = []
  let off = HEADER_BYTES
  while (off < total) {
    if (off + 4 > total || attrs.length >= MAX_ATTRS) return null
    const atype = buf.readUInt16BE(off)
    const alen = buf.readUInt16BE(off + 2)
    const end = off + 4 + alen
    if (end > total) return null
    attrs.push({ type: atype, value: buf.subarray(off + 4, end) })
    off = end + ((4 - (alen % 4)) % 4)
  }
  if (off !== total) return null
  return { method, cls, tid: Buffer.from(buf.subarray(8, 20)), attrs }
}

export function attr (msg: StunMessage, type: number): Buffer | undefined {
  return msg.attrs.find(a => a.type === type)?.value
}

/** Decodes a (XOR-)MAPPED-ADDRESS style value; null when malformed. */
export function decodeAddress (value: Buffer | undefined, xor: boolean, tid: Buffer): TransportAddress | null {
  if (value === undefined || value.length < 8) return null
  const fam = value[1]
  const port = value.readUInt16BE(2) ^ (xor ? MAGIC_COOKIE >>> 16 : 0)
  if (fam === 0x01 && value.length === 8) {
    const raw = value.readUInt32BE(4) ^ (xor ? MAGIC_COOKIE : 0)
    return { family: 4, address: [raw >>> 24, (raw >>> 16) & 255, (raw >>> 8) & 255, raw & 255].join('.'), port }
  }
  if (fam === 0x02 && value.length === 20) {
    const mask = Buffer.concat([Buffer.alloc(4), tid])
    mask.writeUInt32BE(MAGIC_COOKIE, 0)
    const bytes = Buffer.from(value.subarray(4, 20))
    if (xor) for (let i = 0; i < 16; i++) bytes[i] = bytes[i]! ^ mask[i]!
    const groups: string[] = []
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16))
    // WHATWG URL parsing gives the canonical (RFC 5952) text form.
    return { family: 6, address: new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1), port }
  }
  return null
}

/** Encodes an IPv4 (XOR-)MAPPED-ADDRESS style value (the inverse of decodeAddress; test STUN servers use it). */
export function encodeAddress (host: string, port: number, xor: boolean): Buffer {
  const b = Buffer.alloc(8)
  b[1] = 0x01
  b.writeUInt16BE(port ^ (xor ? MAGIC_COOKIE >>> 16 : 0), 2)
  const ip = host.split('.').reduce((n, x) => (n << 8) | Number(x), 0) >>> 0
  b.writeUInt32BE((ip ^ (xor ? MAGIC_COOKIE : 0)) >>> 0, 4)
  return b
}

/** The reflexive address of a binding response: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS. */
export function mappedAddress (msg: StunMessage): TransportAddress | null {
  return decodeAddress(attr(msg, ATTR.XOR_MAPPED_ADDRESS), true, msg.tid) ?? decodeAddress(attr(msg, ATTR.MAPPED_ADDRESS), false, msg.tid)
}

export function errorCode (msg: StunMessage): { code: number, reason: string } | null {
  const v = attr(msg, ATTR.ERROR_CODE)
  if (v === undefined || v.length < 4) return null
  return { code: (v[2]! & 0x07) * 100 + (v[3]! % 100), reason: v.subarray(4, 4 + 256).toString('utf8') }
}

export function textAttr (msg: StunMessage, type: number): string | undefined {
  return attr(msg, type)?.subarray(0, 763).toString('utf8')
}

/** The long-term credential key of RFC 5389 §15.4: MD5(username ":" realm ":" password). */
export function longTermKey (username: string, realm: string, password: string): Buffer {
  return createHash('md5').update(`${username}:${realm}:${password}`).digest()
}

export interface EncodeInit {
  method: number
  cls: StunClass
  tid: Buffer
  attrs?: Array<[number, Buffer]>
  /** Adds MESSAGE-INTEGRITY (HMAC-SHA1) with this key. */
  integrityKey?: Buffer
}

export function encodeStun (init: EncodeInit): Buffer {
  const parts: Buffer[] = []
  for (const [type, value] of init.attrs ?? []) {
    const head = Buffer.alloc(4)
    head.writeUInt16BE(type, 0)
    head.writeUInt16BE(value.length, 2)
    parts.push(head, value, Buffer.alloc((4 - (value.length % 4)) % 4))
  }
  const body = Buffer.concat(parts)
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt16BE(messageType(init.method, init.cls), 0)
  header.writeUInt32BE(MAGIC_COOKIE, 4)
  init.tid.copy(header, 8, 0, 12)
  if (init.integrityKey === undefined) {
    header.writeUInt16BE(body.length, 2)
    return Buffer.concat([header, body])
  }
  // The HMAC covers the message up to MESSAGE-INTEGRITY, with the length already counting it.
  header.writeUInt16BE(body.length + 24, 2)
  const mac = createHmac('sha1', init.integrityKey).update(header).update(body).digest()
  const miHead = Buffer.alloc(4)
  miHead.writeUInt16BE(ATTR.MESSAGE_INTEGRITY, 0)
  miHead.writeUInt16BE(20, 2)
  return Buffer.concat([header, body, miHead, mac])
}

/** Attribute values used by the clients here. */
export const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0, 0); return b }
export const utf8Attr = (s: string): Buffer => Buffer.from(s, 'utf8')

/**
 * Splits a TCP/TLS byte stream into STUN messages (RFC 5389 §7.2.2: self-delimiting). `push`
 * returns the whole messages that arrived; `broken` turns true (and stays) once the stream
 * carries something that is not STUN or a message is too large: the caller closes it.
 */
export class StunFramer {
  private buf: Buffer = Buffer.alloc(0)
  broken = false

  push (chunk: Buffer): Buffer[] {
    if (this.broken) return []
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const out: Buffer[] = []
    while (this.buf.length >= HEADER_BYTES) {
      const n = stunFrameLength(this.buf)
      if (n === null) { this.broken = true; this.buf = Buffer.alloc(0); return out }
      if (this.buf.length < n) break
      out.push(this.buf.subarray(0, n))
      this.buf = this.buf.subarray(n)
    }
    if (this.buf.length > MAX_STUN_BYTES) { this.broken = true; this.buf = Buffer.alloc(0) }
    return out
  }
}
