/**
 * TURN REST credentials in coturn's `use-auth-secret` format:
 * `username = "<unix expiry>:<id>"`, `credential = base64(HMAC-SHA1(secret, username))`.
 */
import { utf8 } from './encoding.ts'

export async function mintTurnCredential (secret: string, init: { ttlSeconds: number, id: string, now?: number }): Promise<{ username: string, credential: string, expires: number }> {
  const expires = Math.floor((init.now ?? Date.now()) / 1000) + init.ttlSeconds
  const username = `${expires}:${init.id}`
  const key = await crypto.subtle.importKey('raw', utf8(secret), { name: 'HMAC', hash: 'SHA-1' }, false, ['sign'])
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, utf8(username)))
  let binary = ''
  for (const b of mac) binary += String.fromCharCode(b)
  return { username, credential: btoa(binary), expires }
}
