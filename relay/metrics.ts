/**
 * Prometheus metrics of the relay (prom-client, one registry per relay so several relays can
 * run in one process), and a tiny HTTP endpoint serving them.
 *
 * | metric | type | meaning |
 * |---|---|---|
 * | `causeway_relay_reservations` | gauge | reservations currently held |
 * | `causeway_relay_reservations_total` | counter | reservations granted (new and refreshed) |
 * | `causeway_relay_circuits_total` | counter | relayed connections (hops) allowed |
 * | `causeway_relay_denied_total{what="reservation"\|"reservation_limit"\|"hop"}` | counter | reservations / hops refused by admission; reservations refused because the credential (or address) holds its limit |
 * | `causeway_relay_released_total{reason="disconnect"\|"revoked"}` | counter | reservations freed before their lifetime ended: the holder's last connection closed, or its credential was revoked |
 * | `causeway_relay_admissions_total{result="ok"\|"denied"\|"bad"}` | counter | admission proofs: accepted, not verifying, malformed |
 * | `causeway_relay_admitted_peers` | gauge | peers currently admitted |
 * | `causeway_relay_connections` | gauge | open libp2p connections |
 *
 * Relayed byte counts are not exported: the circuit-relay server pipes streams internally and
 * only reports bytes through a libp2p metrics implementation, which this relay does not load.
 */
import { createServer, type Server } from 'node:http'
import { Counter, Gauge, Registry } from 'prom-client'

export interface RelayMetrics {
  registry: Registry
  reservationsMade: Counter
  circuits: Counter
  denied: Counter<'what'>
  admissions: Counter<'result'>
  released: Counter<'reason'>
  /** Wires the gauges to live values (read on each scrape). */
  observe: (sources: { reservations: () => number, connections: () => number, admitted: () => number }) => void
}

export function createRelayMetrics (): RelayMetrics {
  const registry = new Registry()
  const sources = { reservations: () => 0, connections: () => 0, admitted: () => 0 }
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [registry], collect () { this.set(read()) } })
  }
  gauge('causeway_relay_reservations', 'Reservations currently held', () => sources.reservations())
  gauge('causeway_relay_connections', 'Open libp2p connections', () => sources.connections())
  gauge('causeway_relay_admitted_peers', 'Peers currently admitted', () => sources.admitted())
  return {
    registry,
    reservationsMade: new Counter({ name: 'causeway_relay_reservations_total', help: 'Reservations granted (new and refreshed)', registers: [registry] }),
    circuits: new Counter({ name: 'causeway_relay_circuits_total', help: 'Relayed connections allowed', registers: [registry] }),
    denied: new Counter({ name: 'causeway_relay_denied_total', help: 'Reservations and hops refused by admission', labelNames: ['what'], registers: [registry] }),
    admissions: new Counter({ name: 'causeway_relay_admissions_total', help: 'Admission proofs by result', labelNames: ['result'], registers: [registry] }),
    released: new Counter({ name: 'causeway_relay_released_total', help: 'Reservations freed before their lifetime ended (holder disconnected, credential revoked)', labelNames: ['reason'], registers: [registry] }),
    observe: s => { Object.assign(sources, s) },
  }
}

/** Serves `GET /metrics` from the registry on host:port; resolves once listening. */
export async function serveMetrics (registry: Registry, host: string, port: number): Promise<{ url: string, close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') { res.writeHead(404).end('not found\n'); return }
    registry.metrics().then(body => { res.writeHead(200, { 'content-type': registry.contentType }).end(body) },
      () => { res.writeHead(500).end('metrics unavailable\n') })
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => { server.off('error', reject); resolve() }) })
  const addr = server.address()
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`,
    close: async () => { await new Promise<void>(resolve => server.close(() => resolve())) },
  }
}
