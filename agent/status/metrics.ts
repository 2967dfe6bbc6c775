/** Prometheus metrics of an agent (prom-client, own registry), read from the agent at scrape time. */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Agent } from '../agent.ts'
import type { ShareSeries } from '../audit.ts'

export function agentMetrics (agent: Agent): Registry {
  const registry = new Registry()
  // One scrape runs every collect() below back to back: build the agent's status once for them.
  let cached: { at: number, value: ReturnType<Agent['status']> } | undefined
  const status = (): ReturnType<Agent['status']> => {
    const now = Date.now()
    if (cached === undefined || now - cached.at > 100) cached = { at: now, value: agent.status() }
    return cached.value
  }
  collectDefaultMetrics({ register: registry, prefix: 'causeway_agent_' })
  new Gauge({
    name: 'causeway_agent_peer_connected',
    help: 'Peer connections by peer (site), instance and path (direct, turn, relay); 1 when connected',
    labelNames: ['peer', 'instance', 'path'],
    registers: [registry],
    collect () {
      this.reset()
      for (const p of status().peers) this.set({ peer: p.name, instance: p.instance ?? '', path: p.path }, p.state === 'connected' ? 1 : 0)
    },
  })
  new Gauge({
    name: 'causeway_agent_peer_instance_ready',
    help: 'Instances of each peer site that new streams may go to (connected, answering keepalives, not draining): 1 ready, 0 not',
    labelNames: ['peer', 'instance'],
    registers: [registry],
    collect () {
      this.reset()
      for (const p of status().peers) if (p.role === 'agent') this.set({ peer: p.name, instance: p.instance ?? '' }, p.state === 'connected' && p.responsive && !p.draining ? 1 : 0)
    },
  })
  new Gauge({
    name: 'causeway_agent_draining',
    help: '1 while this instance drains (after SIGTERM)',
    labelNames: ['instance'],
    registers: [registry],
    collect () { this.reset(); this.set({ instance: status().instance }, status().draining ? 1 : 0) },
  })
  new Gauge({
    name: 'causeway_agent_peer_rtt_seconds',
    help: 'Round-trip time to each peer over the control channel',
    labelNames: ['peer', 'instance'],
    registers: [registry],
    collect () { this.reset(); for (const p of status().peers) if (p.rttMs !== null) this.set({ peer: p.name, instance: p.instance ?? '' }, p.rttMs / 1000) },
  })
  new Gauge({
    name: 'causeway_agent_streams',
    help: 'Open tunnelled streams per peer',
    labelNames: ['peer', 'instance'],
    registers: [registry],
    collect () { this.reset(); for (const p of status().peers) this.set({ peer: p.name, instance: p.instance ?? '' }, p.streams) },
  })
  new Gauge({
    name: 'causeway_agent_peer_bytes',
    help: 'Bytes moved through tunnels per peer and direction since the peer connected',
    labelNames: ['peer', 'instance', 'direction'],
    registers: [registry],
    collect () {
      this.reset()
      for (const p of status().peers) { const i = p.instance ?? ''; this.set({ peer: p.name, instance: i, direction: 'in' }, p.bytesIn); this.set({ peer: p.name, instance: i, direction: 'out' }, p.bytesOut) }
    },
  })
  new Gauge({
    name: 'causeway_agent_peer_goodput_bytes_per_second',
    help: 'Tunnelled bytes per second per peer and direction, measured over the last 2 s',
    labelNames: ['peer', 'instance', 'direction'],
    registers: [registry],
    collect () {
      this.reset()
      for (const p of status().peers) { const i = p.instance ?? ''; this.set({ peer: p.name, instance: i, direction: 'in' }, p.goodput.in); this.set({ peer: p.name, instance: i, direction: 'out' }, p.goodput.out) }
    },
  })
  new Gauge({
    name: 'causeway_agent_peer_associations',
    help: 'SCTP associations (peer connections) per peer, by WebRTC engine (wrtc, datachannel; relay: libp2p relay path)',
    labelNames: ['peer', 'instance', 'engine'],
    registers: [registry],
    collect () { this.reset(); for (const p of status().peers) this.set({ peer: p.name, instance: p.instance ?? '', engine: p.engine }, p.associations) },
  })
  new Gauge({
    name: 'causeway_agent_engine',
    help: 'The WebRTC engine new peer connections use (1 for the current one), and the --engine choice',
    labelNames: ['engine', 'choice'],
    registers: [registry],
    collect () { this.reset(); const e = status().engine; this.set({ engine: e.engine, choice: e.choice }, 1) },
  })
  const totals = [
    ['causeway_agent_bytes_in_total', 'Bytes received through tunnels', () => agent.tunnels.totals.bytesIn],
    ['causeway_agent_bytes_out_total', 'Bytes sent through tunnels', () => agent.tunnels.totals.bytesOut],
    ['causeway_agent_streams_opened_total', 'Streams opened (both directions)', () => agent.tunnels.totals.opened],
    ['causeway_agent_streams_refused_total', 'Streams refused (unknown share, not granted, limit, unreachable)', () => agent.tunnels.totals.refused],
    ['causeway_agent_flow_control_violations_total', 'Streams reset because the peer sent past its flow-control credit', () => agent.tunnels.totals.flowViolations],
    ['causeway_agent_streams_striped_total', 'Streams that sent bytes over several associations (striped, stream version 2)', () => agent.tunnels.totals.striped],
    ['causeway_agent_stripe_reordered_chunks_total', 'Chunks of striped streams that arrived out of order and were held for reassembly', () => agent.tunnels.totals.reordered],
  ] as const
  for (const [name, help, read] of totals) {
    let last = 0
    new Counter({ name, help, registers: [registry], collect () { const v = read(); if (v > last) { this.inc(v - last); last = v } } })
  }
  const udp = agent.udp.stats
  const labelled = [
    ['causeway_agent_udp_datagrams_total', 'UDP datagrams through UDP shares and connects (in: received from peers; out: sent to peers)', 'direction', () => ({ in: udp.datagramsIn, out: udp.datagramsOut })],
    ['causeway_agent_udp_bytes_total', 'UDP payload bytes through UDP shares and connects (in: received from peers; out: sent to peers)', 'direction', () => ({ in: udp.bytesIn, out: udp.bytesOut })],
    ['causeway_agent_udp_drops_total', 'UDP datagrams dropped, by reason (oversize, flow_limit, congestion, no_path, unknown_flow, bad_frame, target_error)', 'reason', () => udp.drops],
  ] as const
  for (const [name, help, label, read] of labelled) {
    const last = new Map<string, number>()
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect () {
        for (const [k, v] of Object.entries(read() as Record<string, number>)) {
          const prev = last.get(k) ?? 0
          this.inc({ [label]: k }, v - prev)
          last.set(k, v)
        }
      },
    })
  }
  let evicted = 0
  new Counter({ name: 'causeway_agent_udp_flows_evicted_total', help: 'UDP flows closed at the flow cap to admit a new one (the least recently active, silent for at least 2 s)', registers: [registry], collect () { if (udp.evicted > evicted) { this.inc(udp.evicted - evicted); evicted = udp.evicted } } })
  new Gauge({
    name: 'causeway_agent_udp_flows',
    help: 'Live UDP flows (client addresses) by side: connect (local clients), share (sockets to share targets)',
    labelNames: ['side'],
    registers: [registry],
    collect () { this.set({ side: 'connect' }, udp.flows.connect); this.set({ side: 'share' }, udp.flows.share) },
  })
  new Gauge({
    name: 'causeway_agent_connect_site_streams',
    help: 'Streams a share@* connect (or merged import) sent to each site exporting the share, since start; with live (1: can take streams) and ejected (1: kept failing) per site in causeway_agent_connect_site_state',
    labelNames: ['share', 'site'],
    registers: [registry],
    collect () { this.reset(); for (const [share, split] of agent.splits) for (const [site, n] of split) this.set({ share, site }, n) },
  })
  new Gauge({
    name: 'causeway_agent_connect_site_state',
    help: 'Per share exported by several sites and site: 1 when it can take streams (state=live) / is ejected for failing (state=ejected)',
    labelNames: ['share', 'site', 'state'],
    registers: [registry],
    collect () {
      this.reset()
      for (const share of agent.splits.keys()) for (const x of agent.siteSplit(share)) { this.set({ share, site: x.site, state: 'live' }, x.live ? 1 : 0); this.set({ share, site: x.site, state: 'ejected' }, x.ejected ? 1 : 0) }
    },
  })
  // Per share and peer (agent/audit.ts bounds both labels).
  type Values = (s: ShareSeries) => Array<[Record<string, string>, number]>
  const shareCounters: Array<[string, string, string[], Values]> = [
    ['causeway_agent_share_streams_total', 'Streams peers opened to a share, by result (accepted, refused); share _other: a name that is none of this agent\'s shares', ['share', 'peer', 'result'], s => [[{ result: 'accepted' }, s.accepted], [{ result: 'refused' }, s.refused]]],
    ['causeway_agent_share_bytes_total', 'Bytes through a share\'s streams (in: from the peer to the share; out: back), counted when a stream ends', ['share', 'peer', 'direction'], s => [[{ direction: 'in' }, s.bytesIn], [{ direction: 'out' }, s.bytesOut]]],
    ['causeway_agent_share_stream_seconds_total', 'Time streams to a share were open, summed, counted when a stream ends', ['share', 'peer'], s => [[{}, s.seconds]]],
  ]
  for (const [name, help, labelNames, values] of shareCounters) {
    const last = new Map<string, number>()
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect () {
        for (const s of agent.audit.all()) {
          for (const [extra, v] of values(s)) {
            const labels = { share: s.share, peer: s.peer, ...extra }
            const key = JSON.stringify(labels)
            const prev = last.get(key) ?? 0
            if (v > prev) { this.inc(labels, v - prev); last.set(key, v) }
          }
        }
      },
    })
  }
  new Gauge({ name: 'causeway_agent_signaling_joined', help: '1 when joined to the signaling service', registers: [registry], collect () { this.set(status().signaling === 'joined' ? 1 : 0) } })
  return registry
}
