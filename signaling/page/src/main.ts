/**
 * The debug page's entry point: reads the token (pasted, or from the `#token=` fragment, which
 * is cleared from the address bar at once), turns a member token into a viewer token locally,
 * joins the mesh as a viewer and renders what it sees; sends HTTP requests through tunnels.
 */
import './jitless.ts'
import { CausewayError } from '../../../protocol/errors.ts'
import { decodeToken, viewerTokenFor, type ViewerToken } from '../../../protocol/token.ts'
import { byId, h } from './dom.ts'
import { meshSvg } from './graph.ts'
import { httpOverChannel, StreamError } from './http.ts'
import { renderAgents, renderNotices, renderRequestError, renderResponse, renderTargets } from './render.ts'
import { Viewer, type Notice } from './viewer.ts'

let viewer: Viewer | undefined
let renderQueued = false
let joinNotices: Notice[] = []

const els = {
  join: byId('join'),
  joinForm: byId<HTMLFormElement>('join-form'),
  tokenInput: byId<HTMLTextAreaElement>('token-input'),
  notices: byId('notices'),
  joinNotices: byId('join-notices'),
  dash: byId('dash'),
  conn: byId('conn'),
  graph: byId('graph'),
  meshSummary: byId('mesh-summary'),
  agents: byId('agents'),
  agentsSummary: byId('agents-summary'),
  httpForm: byId<HTMLFormElement>('http-form'),
  httpTarget: byId<HTMLSelectElement>('http-target'),
  httpMethod: byId<HTMLSelectElement>('http-method'),
  httpPath: byId<HTMLInputElement>('http-path'),
  httpBody: byId<HTMLTextAreaElement>('http-body'),
  httpBodyLabel: byId('http-body-label'),
  httpSend: byId<HTMLButtonElement>('http-send'),
  httpState: byId('http-state'),
  httpResult: byId('http-result'),
}

function scheduleRender (): void {
  if (renderQueued) return
  renderQueued = true
  requestAnimationFrame(() => { renderQueued = false; render() })
}

function render (): void {
  const v = viewer
  if (v === undefined) {
    renderNotices(els.joinNotices, joinNotices)
    els.notices.replaceChildren()
    return
  }
  els.joinNotices.replaceChildren()
  const m = v.model
  renderNotices(els.notices, [...joinNotices, ...m.notices], m.fatal)
  const state = m.fatal !== undefined ? 'refused' : v.signalingState
  const cls = state === 'joined' ? 'ok' : state === 'refused' || state === 'closed' ? 'bad' : 'wait'
  const pill = els.conn.querySelector('.sig-state')
  if (pill !== null) { pill.className = `pill pill-${cls} sig-state`; pill.textContent = `signaling ${state}` }
  els.graph.replaceChildren(meshSvg(m, state === 'refused' || state === 'closed' ? 'not joined' : 'waiting for agents…'))
  const agents = [...m.agents.values()]
  const connected = agents.filter(a => a.link.state === 'connected').length
  const links = new Set<string>()
  for (const a of agents) for (const p of a.status?.peers ?? []) if (p.role === 'agent' && p.path !== 'none') links.add([a.id, p.peer].sort().join('|'))
  els.meshSummary.textContent = `${agents.length} agent${agents.length === 1 ? '' : 's'} · ${links.size} agent link${links.size === 1 ? '' : 's'} up · ${connected} connected to this browser`
  els.agentsSummary.textContent = 'as each agent reports itself every 2 s, and as this browser measures its own connection'
  renderAgents(els.agents, m, state)
  renderTargets(els.httpTarget, m)
}

function headerFor (token: ViewerToken, derived: boolean): void {
  const grants = token.grants.includes('*') ? 'all shares' : token.grants.join(', ') || 'no shares'
  els.conn.replaceChildren(
    h('span', { class: 'conn-item' }, h('span', { class: 'k' }, 'network'), h('strong', {}, token.name ?? 'unnamed')),
    h('span', { class: 'conn-item' }, h('span', { class: 'k' }, 'room'), h('span', { class: 'mono', title: token.room }, `${token.room.slice(0, 10)}…`)),
    h('span', { class: 'conn-item' }, h('span', { class: 'k' }, 'signaling'), h('span', { class: 'mono' }, new URL(token.signaling).host)),
    h('span', { class: 'conn-item' }, h('span', { class: 'k' }, 'grants'), h('span', {}, grants), derived ? h('span', { class: 'tag' }, 'derived') : null),
    h('span', { class: 'pill pill-wait sig-state' }, 'signaling connecting'),
    h('button', { type: 'button', class: 'ghost', onclick: () => { void leave() } }, 'Leave'))
}

async function leave (): Promise<void> {
  const v = viewer
  viewer = undefined
  joinNotices = []
  await v?.close()
  els.dash.hidden = true
  els.join.hidden = false
  els.conn.replaceChildren()
  els.httpResult.replaceChildren()
  els.httpTarget.dataset.sig = ''
  scheduleRender()
}

async function join (text: string): Promise<void> {
  await leave()
  if (globalThis.crypto?.subtle === undefined) {
    joinNotices = [{ level: 'error', title: 'This page needs a secure context', detail: 'WebCrypto (crypto.subtle) is only available over https:// or on localhost. Serve the signaling service over TLS.' }]
    scheduleRender()
    return
  }
  if (typeof RTCPeerConnection === 'undefined') {
    joinNotices = [{ level: 'error', title: 'This browser has no WebRTC', detail: 'RTCPeerConnection is missing or disabled.' }]
    scheduleRender()
    return
  }
  let token: ViewerToken
  let derived = false
  try {
    if (text.trim() === '') throw new CausewayError('BAD_TOKEN', 'paste a token first')
    const t = decodeToken(text)
    if (t.kind === 'member') {
      token = await viewerTokenFor(t, ['*'])
      derived = true
    } else token = t
  } catch (err) {
    const code = err instanceof CausewayError ? err.code : 'BAD_TOKEN'
    const message = err instanceof Error ? err.message : String(err)
    joinNotices = [{ level: 'error', title: 'This is not a causeway token', code, detail: `${message}. A token starts with "cw1." and comes from "causeway token".` }]
    els.join.hidden = false
    scheduleRender()
    return
  }
  joinNotices = derived
    ? [{ level: 'info', title: 'Member token given: joined as a viewer', detail: 'The page derived a viewer token granting all shares, here in the browser. The network secret is never sent anywhere and is dropped when you leave; prefer a viewer token (causeway token --viewer) to share this page.' }]
    : []
  els.tokenInput.value = ''
  els.join.hidden = true
  els.dash.hidden = false
  headerFor(token, derived)
  const v = viewer = new Viewer(token)
  v.onChange = scheduleRender
  scheduleRender()
  try {
    await v.start()
  } catch (err) {
    v.model.fatal = { level: 'error', title: 'Could not join', detail: err instanceof Error ? err.message : String(err) }
  }
  scheduleRender()
}

async function sendHttp (): Promise<void> {
  const v = viewer
  const [agentId, share] = els.httpTarget.value.split('|')
  if (v === undefined || agentId === undefined || share === undefined || share === '') {
    renderRequestError(els.httpResult, 'NO_TARGET', 'pick a share of a connected agent first', 'request')
    return
  }
  const agent = v.model.agents.get(agentId)
  const target = `${share} @ ${agent?.name ?? agentId}`
  const session = v.session(agentId)
  if (session === undefined) { renderRequestError(els.httpResult, 'PEER_UNAVAILABLE', 'this browser has no live connection to that agent', target); return }
  const method = els.httpMethod.value
  els.httpSend.disabled = true
  els.httpState.textContent = `${method} ${els.httpPath.value} → ${target}…`
  els.httpResult.replaceChildren(h('div', { class: 'muted small' }, h('span', { class: 'spinner' }), 'opening a data channel…'))
  try {
    const res = await httpOverChannel(session.pc, {
      share,
      method,
      path: els.httpPath.value.trim() || '/',
      host: share,
      ...(method === 'POST' || method === 'PUT' ? { body: els.httpBody.value } : {}),
    })
    renderResponse(els.httpResult, res, target)
  } catch (err) {
    const code = err instanceof StreamError ? err.code : 'ERROR'
    renderRequestError(els.httpResult, code, err instanceof Error ? err.message : String(err), target)
  } finally {
    els.httpSend.disabled = false
    els.httpState.textContent = ''
  }
}

els.joinForm.addEventListener('submit', (ev) => { ev.preventDefault(); void join(els.tokenInput.value) })
els.tokenInput.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); void join(els.tokenInput.value) } })
els.httpForm.addEventListener('submit', (ev) => { ev.preventDefault(); void sendHttp() })
els.httpMethod.addEventListener('change', () => { els.httpBodyLabel.hidden = !(els.httpMethod.value === 'POST' || els.httpMethod.value === 'PUT') })
addEventListener('pagehide', () => { void viewer?.close() })

function tokenFromFragment (): string | undefined {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''))
  const t = params.get('token')
  // Never leave the token in the address bar, history or a bookmark.
  if (location.hash !== '') history.replaceState(null, '', location.pathname + location.search)
  return t ?? undefined
}

const fromHash = tokenFromFragment()
if (fromHash !== undefined) void join(fromHash)
addEventListener('hashchange', () => { const t = tokenFromFragment(); if (t !== undefined) void join(t) })
