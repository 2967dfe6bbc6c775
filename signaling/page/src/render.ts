/**
 * Renders the viewer model: notices, the agent cards (this page's own connection to each
 * agent, and each agent's own view of its connections, shares, connects and imports), and the
 * share picker of the HTTP panel.
 */
import type { NetcheckView, PathKind, PeerStatus } from '../../../protocol/peer.ts'
import { ago, bytes, h, ms } from './dom.ts'
import type { HttpResponse } from './http.ts'
import { STALE_MS, type AgentView, type Notice, type OwnLink, type ViewerModel } from './viewer.ts'

export function pathPill (path: PathKind, state?: string): HTMLElement {
  if (path === 'none') return h('span', { class: 'pill pill-none' }, state !== undefined && state !== 'connected' ? state : 'down')
  return h('span', { class: `pill pill-${path}` }, path === 'turn' ? 'TURN' : path)
}

function statePill (state: string): HTMLElement {
  const cls = state === 'connected' ? 'ok' : state === 'connecting' || state === 'new' ? 'wait' : 'bad'
  return h('span', { class: `pill pill-${cls}` }, state)
}

export function renderNotices (el: HTMLElement, notices: Notice[], fatal?: Notice): void {
  el.replaceChildren(...[...(fatal !== undefined ? [fatal] : []), ...notices].map(n =>
    h('div', { class: `notice notice-${n.level}`, role: n.level === 'error' ? 'alert' : 'status' },
      h('div', { class: 'notice-title' }, n.code !== undefined ? h('code', { class: 'code' }, n.code) : null, n.title),
      n.detail !== undefined ? h('div', { class: 'notice-detail' }, n.detail) : null)))
}

function linkRow (link: OwnLink): HTMLElement {
  return h('div', { class: 'own-link' },
    h('div', { class: 'kv' }, h('span', { class: 'k' }, 'path'), pathPill(link.path, link.state)),
    h('div', { class: 'kv' }, h('span', { class: 'k' }, 'RTT'), h('span', { class: 'v num' }, ms(link.rttMs))),
    h('div', { class: 'kv' }, h('span', { class: 'k', title: 'bytes received on this connection (DTLS transport)' }, 'bytes in'), h('span', { class: 'v num' }, bytes(link.bytesIn))),
    h('div', { class: 'kv' }, h('span', { class: 'k', title: 'bytes sent on this connection (DTLS transport)' }, 'bytes out'), h('span', { class: 'v num' }, bytes(link.bytesOut))),
    h('div', { class: 'kv kv-wide' }, h('span', { class: 'k' }, 'candidate pair (this browser ↔ agent)'), h('span', { class: 'v mono' }, link.pair?.replace(' <-> ', '  ↔  ') ?? '—')))
}

/** "local <-> remote" on two lines. */
function pairLines (pair: string | undefined): Array<HTMLElement | string> {
  if (pair === undefined) return ['—']
  const [local, remote] = pair.split(' <-> ')
  if (remote === undefined) return [pair]
  return [h('div', {}, local ?? ''), h('div', { class: 'dim' }, '↔ ', remote)]
}

function peersTable (peers: PeerStatus[]): HTMLElement {
  if (peers.length === 0) return h('p', { class: 'muted small' }, 'No other agent connected to it.')
  return h('div', {}, h('table', { class: 'peers' },
    h('thead', {}, h('tr', {}, ...['peer', 'path', 'engine', 'candidate pair (local ↔ remote)', 'RTT', 'in', 'out', 'goodput in / out', 'streams'].map(t => h('th', {}, t)))),
    h('tbody', {}, ...peers.map(p => h('tr', { 'data-peer': p.name },
      h('td', {}, h('strong', {}, p.name), p.instance !== undefined ? h('div', { class: 'mono' }, `instance ${p.instance}${p.draining === true ? ' (draining)' : ''}`) : null, h('div', { class: 'mono dim' }, p.peer)),
      h('td', {}, pathPill(p.path, p.state)),
      h('td', { class: 'mono' }, p.engine ?? '—', p.associations !== undefined && p.associations > 1 ? ` ×${p.associations}` : ''),
      h('td', { class: 'mono pair' }, ...pairLines(p.pair)),
      h('td', { class: 'num' }, ms(p.rttMs)),
      h('td', { class: 'num' }, bytes(p.bytesIn)),
      h('td', { class: 'num' }, bytes(p.bytesOut)),
      h('td', { class: 'num' }, p.goodput === undefined ? '—' : `${bytes(p.goodput.in)}/s / ${bytes(p.goodput.out)}/s`),
      h('td', { class: 'num' }, String(p.streams)))))),
  h('p', { class: 'dim note' }, 'in / out: bytes carried by tunnels over that connection; goodput: tunnelled bytes per second over the last 2 s; engine: the WebRTC engine (×N: N SCTP associations); streams: open tunnelled connections.'))
}

function sharesList (a: AgentView): HTMLElement {
  const granted = new Set(a.catalog.map(s => s.name))
  const all = a.status?.shares ?? a.catalog
  if (all.length === 0) return h('p', { class: 'muted small' }, 'Shares nothing.')
  return h('div', { class: 'chips' }, ...all.map(s => h('span', { class: `chip${granted.has(s.name) ? ' chip-granted' : ' chip-denied'}`, title: granted.has(s.name) ? 'granted to this viewer' : 'not granted to this viewer' },
    h('strong', {}, s.name), h('span', { class: 'chip-proto' }, s.protocol), granted.has(s.name) ? '✓' : 'not granted')))
}

/** The agent's netcheck at start: verdict, findings, the path it expects to each kind of site. */
function netcheckBlock (n: NetcheckView | undefined): HTMLElement {
  if (n === undefined) return h('p', { class: 'muted small' }, 'No netcheck reported (yet).')
  const tri = (v: boolean | null): string => v === null ? 'unknown' : v ? 'yes' : 'no'
  const untested = n.udp === null && n.turn.length === 0 && n.relays.length === 0
  const rows: Array<[string, string]> = [
    ['UDP', n.udp === null ? 'untested' : n.udp ? 'works' : 'blocked'],
    ['NAT mapping', n.mapping],
    ...(n.publicAddress !== undefined ? [['public address', n.publicAddress ?? '—'] as [string, string]] : []),
    ['hairpinning', tri(n.hairpinning)],
    ['IPv6', n.ipv6 ? 'yes' : 'no'],
    ['signaling', ms(n.signalingMs)],
    ['TURN', n.turn.length === 0 ? 'none offered' : n.turn.map(t => `${t.url ?? t.transport} ${t.allocated ? '✓' : '✗'}`).join(', ')],
    ['relays', n.relays.length === 0 ? 'none offered' : n.relays.map(r => `${r.addr ?? r.transport} ${r.reserved ? '✓' : '✗'}`).join(', ')],
    ['expects', untested ? '— (nothing offered to test)' : Object.entries(n.expect).map(([k, v]) => `${v} to ${k}`).join(', ')],
  ]
  return h('div', { class: 'netcheck', 'data-site': n.site },
    h('p', { class: `small${n.ok ? '' : ' bad'}` }, n.verdict),
    h('table', { class: 'kvtable' }, h('tbody', {}, ...rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', { class: 'mono' }, v))))))
}

function agentCard (a: AgentView, now: number): HTMLElement {
  const st = a.status
  const stale = a.statusAt !== undefined && now - a.statusAt > STALE_MS
  const imports = st?.imports ?? []
  const connects = st?.connects ?? []
  return h('article', { class: 'card agent', 'data-agent': a.name, ...(a.instance !== undefined ? { 'data-instance': a.instance } : {}) },
    h('div', { class: 'agent-head' },
      h('div', {}, h('h3', {}, a.name, a.instance !== undefined ? h('span', { class: 'dim' }, ` · instance ${a.instance}`) : null, a.draining === true ? h('span', { class: 'pill pill-wait' }, 'draining') : null), h('div', { class: 'mono dim' }, a.id)),
      h('div', { class: 'agent-badges' }, statePill(a.link.state), h('span', { class: `updated${stale ? ' stale' : ''}` }, st === undefined ? 'no status yet' : `status ${ago(a.statusAt, now)}`))),
    h('div', { class: 'agent-body' },
      h('div', { class: 'agent-side' },
        h('h4', {}, 'This browser ↔ ', a.name),
        linkRow(a.link),
        h('h4', {}, 'Shares'),
        sharesList(a),
        h('h4', {}, 'Its network (netcheck at start)'),
        netcheckBlock(st?.netcheck),
        connects.length + imports.length > 0 ? h('h4', {}, 'Connects and imports') : null,
        connects.length + imports.length > 0
          ? h('ul', { class: 'plain' },
            ...connects.map(c => h('li', {}, h('span', { class: 'mono' }, c.listen), ' → ', h('strong', {}, c.share), ' @ ', c.peer)),
            ...imports.map(i => h('li', {}, h('span', { class: 'mono' }, i.service), ' → ', h('strong', {}, i.share), ' @ ', i.peer)))
          : null),
      h('div', { class: 'agent-main' },
        h('h4', {}, 'Its connections, as ', a.name, ' reports them'),
        st === undefined ? h('p', { class: 'muted small' }, 'Waiting for its first status report…') : peersTable(st.peers.filter(p => p.role === 'agent')))))
}

/** `signaling` is the signaling client state, or `refused` after a fatal error. */
export function renderAgents (el: HTMLElement, model: ViewerModel, signaling: string): void {
  const now = Date.now()
  // a site's instances side by side
  const agents = [...model.agents.values()].sort((p, q) => p.name.localeCompare(q.name) || (p.instance ?? '').localeCompare(q.instance ?? ''))
  if (agents.length === 0) {
    const refused = signaling === 'refused' || signaling === 'closed'
    const text = refused ? 'Not joined: see the error above, then leave and try another token.' : signaling === 'joined' ? 'Joined the room; waiting for agents to say hello…' : 'Connecting to the signaling service…'
    el.replaceChildren(h('div', { class: 'card empty-card' }, refused ? null : h('div', { class: 'spinner' }), text))
    return
  }
  el.replaceChildren(...agents.map(a => agentCard(a, now)))
}

/** Fills the share picker: granted shares first, then shares the agents list but did not grant. UDP shares carry no HTTP: not listed. */
export function renderTargets (select: HTMLSelectElement, model: ViewerModel): void {
  const current = select.value
  const granted: HTMLOptionElement[] = []
  const denied: HTMLOptionElement[] = []
  for (const a of [...model.agents.values()].sort((p, q) => p.name.localeCompare(q.name))) {
    if (a.link.state !== 'connected') continue
    const ok = new Set(a.catalog.map(s => s.name))
    for (const s of a.catalog) if (s.protocol !== 'udp') granted.push(h('option', { value: `${a.id}|${s.name}` }, `${s.name} @ ${a.name} (${s.protocol})`))
    for (const s of a.status?.shares ?? []) {
      if (!ok.has(s.name) && s.protocol !== 'udp') denied.push(h('option', { value: `${a.id}|${s.name}` }, `${s.name} @ ${a.name} (${s.protocol}) — not granted`))
    }
  }
  const sig = `${granted.length}/${denied.length}:${[...granted, ...denied].map(o => o.value + o.text).join(',')}`
  if (select.dataset.sig === sig) return
  select.dataset.sig = sig
  const groups: HTMLElement[] = []
  if (granted.length > 0) groups.push(h('optgroup', { label: 'granted to this viewer' }, ...granted))
  if (denied.length > 0) groups.push(h('optgroup', { label: 'listed by agents, not granted (the agent will refuse)' }, ...denied))
  if (groups.length === 0) groups.push(h('option', { value: '' }, 'no connected agent offers a share yet'))
  select.replaceChildren(...groups)
  if ([...granted, ...denied].some(o => o.value === current)) select.value = current
}

const SHOW_BYTES = 64 << 10

function isText (res: HttpResponse): boolean {
  const ct = res.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? ''
  if (/^(text\/|application\/(json|xml|javascript|yaml|x-www-form-urlencoded)|image\/svg)/i.test(ct) || /\+(json|xml)/i.test(ct)) return true
  const probe = res.body.subarray(0, 512)
  let ctl = 0
  for (const b of probe) if (b === 0 || (b < 9) || (b > 13 && b < 32)) ctl++
  return ctl === 0
}

export function renderResponse (el: HTMLElement, res: HttpResponse, target: string): void {
  const cls = res.status < 300 ? 'ok' : res.status < 400 ? 'wait' : 'bad'
  let body: HTMLElement
  if (res.body.length === 0) body = h('p', { class: 'muted small' }, 'Empty body.')
  else if (isText(res)) {
    const text = new TextDecoder().decode(res.body.subarray(0, SHOW_BYTES))
    body = h('pre', { class: 'body', id: 'http-body-text' }, text, res.body.length > SHOW_BYTES || res.truncated ? `\n… (${bytes(res.received)} received, first ${bytes(Math.min(SHOW_BYTES, res.body.length))} shown)` : '')
  } else {
    const hex = [...res.body.subarray(0, 256)].map(b => b.toString(16).padStart(2, '0')).join(' ')
    body = h('pre', { class: 'body' }, `${bytes(res.body.length)} of binary data; first bytes:\n${hex}`)
  }
  el.replaceChildren(
    h('div', { class: 'resp-head' }, h('span', { class: `pill pill-${cls} big` }, String(res.status)), h('span', { class: 'mono status-line' }, res.statusLine)),
    h('div', { class: 'muted small' }, `${target} · ${bytes(res.received)} in ${res.ms.toFixed(0)} ms`),
    h('details', { class: 'headers' }, h('summary', {}, `${res.headers.length} headers`),
      h('table', { class: 'kvtable' }, ...res.headers.map(([k, v]) => h('tr', {}, h('th', { class: 'mono' }, k), h('td', { class: 'mono' }, v))))),
    body)
}

export function renderRequestError (el: HTMLElement, code: string, message: string, target: string): void {
  el.replaceChildren(h('div', { class: 'notice notice-error', role: 'alert' },
    h('div', { class: 'notice-title' }, h('code', { class: 'code', id: 'http-error-code' }, code), 'Request refused or failed'),
    h('div', { class: 'notice-detail' }, `${target}: ${message}`)))
}
