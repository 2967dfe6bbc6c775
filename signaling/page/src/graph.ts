/**
 * The picture of the mesh: agents as nodes, this browser as one more node, links colored by
 * path (direct / TURN / relay / down) and labelled with their RTT. Agent-to-agent links come
 * from the agents' own `status` reports; browser links from this page's own connections.
 */
import type { PathKind } from '../../../protocol/peer.ts'
import { ms, s } from './dom.ts'
import type { ViewerModel } from './viewer.ts'

export const PATH_COLORS: Record<PathKind, string> = { direct: '#3fb950', turn: '#d29922', relay: '#a371f7', none: '#6e7681' }

/** `instance`: agents with several instances per site are one node each, labelled site · instance. */
interface GraphNode { id: string, name: string, instance?: string, reachable: boolean, shares: number, x: number, y: number }
interface GraphEdge { a: string, b: string, path: PathKind, rttMs: number | null, viewer: boolean, state: string }

const W = 640
const H = 380
const SELF = '__browser__'

export function topology (model: ViewerModel): { nodes: Map<string, GraphNode>, edges: GraphEdge[] } {
  const nodes = new Map<string, GraphNode>()
  for (const a of model.agents.values()) {
    nodes.set(a.id, { id: a.id, name: a.name, ...(a.instance !== undefined ? { instance: a.instance } : {}), reachable: a.link.state === 'connected', shares: a.status?.shares.length ?? a.catalog.length, x: 0, y: 0 })
  }
  for (const a of model.agents.values()) {
    for (const p of a.status?.peers ?? []) {
      if (p.role !== 'agent' || nodes.has(p.peer)) continue
      nodes.set(p.peer, { id: p.peer, name: p.name, ...(p.instance !== undefined ? { instance: p.instance } : {}), reachable: false, shares: p.shares.length, x: 0, y: 0 })
    }
  }
  const edges = new Map<string, GraphEdge>()
  for (const a of model.agents.values()) {
    for (const p of a.status?.peers ?? []) {
      if (p.role !== 'agent') continue
      const key = [a.id, p.peer].sort().join('|')
      const prev = edges.get(key)
      // Both ends report the link; keep the report that knows more (a path, then an RTT).
      const better = prev === undefined || (prev.path === 'none' && p.path !== 'none') || (prev.rttMs === null && p.rttMs !== null && p.path !== 'none')
      if (better) edges.set(key, { a: a.id, b: p.peer, path: p.path, rttMs: p.rttMs, viewer: false, state: p.state })
    }
  }
  const list = [...edges.values()]
  for (const a of model.agents.values()) list.push({ a: SELF, b: a.id, path: a.link.path, rttMs: a.link.rttMs, viewer: true, state: a.link.state })
  return { nodes, edges: list }
}

function layout (nodes: GraphNode[]): void {
  const cx = W / 2
  const cy = H * 0.4
  const rx = W * 0.34
  const ry = H * 0.26
  const n = nodes.length
  nodes.sort((p, q) => p.name.localeCompare(q.name) || (p.instance ?? '').localeCompare(q.instance ?? ''))
  nodes.forEach((node, i) => {
    const angle = n === 1 ? -Math.PI / 2 : n === 2 ? Math.PI * (1 - i) : -Math.PI / 2 + (2 * Math.PI * i) / n
    node.x = cx + rx * Math.cos(angle)
    node.y = cy + (n === 2 ? 0 : ry * Math.sin(angle))
  })
}

/** A small server-rack glyph centered on (x, y). */
function serverGlyph (x: number, y: number, live: boolean): SVGElement[] {
  const color = live ? '#58a6ff' : '#6e7681'
  return [-7, 3].map(dy => s('g', {},
    s('rect', { x: x - 12, y: y + dy - 1, width: 24, height: 8, rx: 2, fill: 'none', stroke: color, 'stroke-width': 1.6 }),
    s('circle', { cx: x + 7, cy: y + dy + 3, r: 1.6, fill: live ? '#3fb950' : color })))
}

function label (x: number, y: number, text: string, color: string): SVGElement {
  const w = text.length * 7 + 12
  return s('g', { class: 'edge-label' },
    s('rect', { x: x - w / 2, y: y - 10, width: w, height: 20, rx: 10, fill: '#0d1117', stroke: color, 'stroke-width': 1 }),
    s('text', { x, y: y + 4, 'text-anchor': 'middle', fill: color }, text))
}

/** Renders the mesh as an SVG element. */
export function meshSvg (model: ViewerModel, emptyText = 'waiting for agents…'): SVGElement {
  const { nodes, edges } = topology(model)
  const list = [...nodes.values()]
  layout(list)
  const self: GraphNode = { id: SELF, name: 'this browser', reachable: true, shares: 0, x: W / 2, y: H - 52 }
  const at = (id: string): GraphNode | undefined => id === SELF ? self : nodes.get(id)
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'mesh', role: 'img', 'aria-label': `mesh of ${list.length} agents` })
  const edgeLayer = s('g', {})
  const labelLayer = s('g', {})
  for (const e of edges) {
    const a = at(e.a)
    const b = at(e.b)
    if (a === undefined || b === undefined) continue
    const color = PATH_COLORS[e.path]
    const up = e.path !== 'none'
    edgeLayer.append(s('line', {
      x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: color,
      'stroke-width': e.viewer ? 2 : 4,
      'stroke-dasharray': !up ? '3 6' : e.viewer ? '8 6' : undefined,
      'stroke-linecap': 'round',
      opacity: e.viewer ? 0.75 : 1,
      class: `edge edge-${e.path}${e.viewer ? ' edge-viewer' : ''}`,
      'data-a': e.a === SELF ? 'browser' : a.name,
      'data-b': b.name,
      'data-path': e.path,
    }))
    const mx = (a.x + b.x) / 2
    const my = (a.y + b.y) / 2
    const text = up ? `${e.path} · ${ms(e.rttMs)}` : e.state
    labelLayer.append(label(mx, my - (e.viewer ? 0 : 14), text, color))
  }
  svg.append(edgeLayer, labelLayer)
  for (const node of list) {
    svg.append(s('g', { class: `node${node.reachable ? '' : ' node-unreachable'}`, 'data-name': node.name, 'data-instance': node.instance },
      s('circle', { cx: node.x, cy: node.y, r: 30, fill: '#161b22', stroke: node.reachable ? '#58a6ff' : '#6e7681', 'stroke-width': 3 }),
      ...serverGlyph(node.x, node.y, node.reachable),
      s('text', { x: node.x, y: node.y + 50, 'text-anchor': 'middle', class: 'node-name' }, node.instance !== undefined ? `${node.name} · ${node.instance}` : node.name),
      s('text', { x: node.x, y: node.y + 66, 'text-anchor': 'middle', class: 'node-sub' }, node.reachable ? `${node.shares} share${node.shares === 1 ? '' : 's'}` : 'not connected to this browser')))
  }
  svg.append(s('g', { class: 'node node-self' },
    s('rect', { x: self.x - 62, y: self.y - 17, width: 124, height: 34, rx: 17, fill: '#1f2937', stroke: '#8b949e', 'stroke-width': 2 }),
    s('text', { x: self.x, y: self.y + 5, 'text-anchor': 'middle', class: 'node-name' }, 'this browser')))
  const legend = s('g', { class: 'legend', transform: `translate(14 ${H - 86})` })
  const kinds: PathKind[] = ['direct', 'turn', 'relay', 'none']
  kinds.forEach((k, i) => {
    legend.append(s('line', { x1: 0, y1: i * 18, x2: 22, y2: i * 18, stroke: PATH_COLORS[k], 'stroke-width': 4, 'stroke-linecap': 'round', 'stroke-dasharray': k === 'none' ? '3 6' : undefined }),
      s('text', { x: 30, y: i * 18 + 4 }, k === 'none' ? 'down' : k === 'turn' ? 'TURN' : k))
  })
  svg.append(legend)
  if (list.length === 0) svg.append(s('text', { x: W / 2, y: H * 0.4, 'text-anchor': 'middle', class: 'empty' }, emptyText))
  return svg
}
