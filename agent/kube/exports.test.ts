/** Unit tests of the pure parts of the Kubernetes controller: share naming, label/name sanitizing. */
import type { V1Service, V1ServicePort } from '@kubernetes/client-node'
import { describe, expect, it } from 'vitest'
import { EXTERNAL_NAME_REFUSED, sharesOfService } from './exports.ts'
import { labelValue } from './imports.ts'
import { dnsLabel } from './kubeutil.ts'

const svc = (name: string, namespace: string, annotations: Record<string, string>, ports: V1ServicePort[]): V1Service => ({
  metadata: { name, namespace, annotations },
  spec: { selector: { app: name }, ports },
})

describe('share naming rule', () => {
  it('one share per port: <publish-name> alone, <publish-name>-<port name> when several', () => {
    const one = sharesOfService(svc('web', 'default', { 'causeway.dev/share': 'true' }, [{ name: 'http', port: 80 }]))
    expect(one.shares).toEqual([{ name: 'web', host: 'web.default.svc', port: 80, namespace: 'default', announce: { service: 'web' } }])
    const two = sharesOfService(
      svc('api', 'shop', { 'causeway.dev/share': 'true', 'causeway.dev/peers': 'east, west' }, [
        { name: 'http', port: 80 },
        { port: 9090 },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ]),
    )
    expect(two.shares).toEqual([
      { name: 'shop-api-http', host: 'api.shop.svc', port: 80, namespace: 'shop', peers: ['east', 'west'], announce: { service: 'api' } },
      { name: 'shop-api-9090', host: 'api.shop.svc', port: 9090, namespace: 'shop', peers: ['east', 'west'], announce: { service: 'api' } },
      { name: 'shop-api-dns', host: 'api.shop.svc', port: 53, namespace: 'shop', peers: ['east', 'west'], protocol: 'udp', announce: { service: 'api' } },
    ])
    // UDP ports: the bare publish name only without a TCP port; a TCP port keeps it.
    const udpOnly = sharesOfService(svc('syslog', 'default', { 'causeway.dev/share': 'true' }, [{ port: 514, protocol: 'UDP' }]))
    expect(udpOnly.shares).toEqual([{ name: 'syslog', host: 'syslog.default.svc', port: 514, namespace: 'default', protocol: 'udp', announce: { service: 'syslog' } }])
    const dns = sharesOfService(svc('dns', 'default', { 'causeway.dev/share': 'true' }, [{ name: 'dns-tcp', port: 53 }, { name: 'dns', port: 53, protocol: 'UDP' }]))
    expect(dns.shares.map((s) => `${s.name}/${s.protocol ?? 'tcp'}`)).toEqual(['dns/tcp', 'dns-dns/udp'])
    expect(sharesOfService(svc('sctp', 'default', { 'causeway.dev/share': 'true' }, [{ port: 5060, protocol: 'SCTP' }])).error).toBe('no TCP or UDP port to share')
    const picked = sharesOfService(svc('api', 'shop', { 'causeway.dev/share': 'true', 'causeway.dev/name': 'store', 'causeway.dev/ports': 'http,7' }, [{ name: 'http', port: 80 }, { port: 9090 }]))
    expect(picked.shares).toEqual([{ name: 'store', host: 'api.shop.svc', port: 80, namespace: 'shop', announce: { service: 'api' } }])
    expect(picked.error).toBe('no TCP or UDP port named or numbered 7')
    expect(sharesOfService(svc('x', 'default', { 'causeway.dev/share': 'false' }, [{ port: 1 }])).shares).toEqual([])
  })

  it('never exports an ExternalName Service (its DNS name could point anywhere, the agent\'s loopback included)', () => {
    const ext: V1Service = { metadata: { name: 'evil', namespace: 'default', annotations: { 'causeway.dev/share': 'true' } }, spec: { type: 'ExternalName', externalName: 'localhost', ports: [{ port: 7777 }] } }
    expect(sharesOfService(ext)).toEqual({ shares: [], error: EXTERNAL_NAME_REFUSED })
  })
})

describe('names', () => {
  it('makes DNS-1035 Service names and label values', () => {
    expect(dnsLabel('DB_Main-east')).toBe('db-main-east')
    expect(dnsLabel('9lives-x')).toBe('lives-x')
    const long = dnsLabel(`${'a'.repeat(70)}-east`)
    expect(long.length).toBeLessThanOrEqual(63)
    expect(long).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/)
    expect(labelValue('shop/api:80')).toBe('shop-api-80')
    expect(labelValue('-x-')).toBe('x')
  })
})
