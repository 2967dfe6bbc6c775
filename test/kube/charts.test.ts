/**
 * Helm charts: `helm lint` and `helm template` (real Helm, installed by test/kube/install-helm.sh)
 * for default values and for `ci/*-values.yaml` (every option on), then
 * - structural checks of every rendered object (known kinds, DNS names, hardened pods, probes on
 *   a declared port, least-privilege RBAC, the agent's CLI flags), and
 * - `kubectl apply --dry-run=server` of the whole render against the API test server (real
 *   kubectl parses and maps every object; the server validates names and stores nothing).
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiServer, type ApiServer } from './apiserver.ts'
import { RESOURCES } from './resources.ts'
import { runCommand } from './exec.ts'
import { prerequisite } from '../prereq.ts'

const root = new URL('../../', import.meta.url).pathname
const charts = join(root, 'charts')

function findHelm(): string | undefined {
  const candidates = [process.env.HELM, join(root, 'node_modules/.cache/causeway-helm/helm')]
  for (const c of candidates) if (c && existsSync(c)) return c
  const which = spawnSync('sh', ['-c', 'command -v helm'], { encoding: 'utf8' })
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : undefined
}

const helm = findHelm()

type Obj = Record<string, any>

const template = (chart: string, args: string[]): string =>
  execFileSync(helm ?? 'helm', ['template', 'east', join(charts, chart), '--namespace', 'causeway', '--include-crds', ...args], { encoding: 'utf8', timeout: 60_000 })

function render(chart: string, args: string[]): Obj[] {
  return parseAllDocuments(template(chart, args))
    .map((d) => d.toJSON() as Obj | null)
    .filter((o): o is Obj => o !== null)
}

const KNOWN = new Set([
  'v1/ServiceAccount',
  'v1/Secret',
  'v1/Service',
  'apps/v1/Deployment',
  'rbac.authorization.k8s.io/v1/ClusterRole',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding',
  'rbac.authorization.k8s.io/v1/Role',
  'rbac.authorization.k8s.io/v1/RoleBinding',
  'networking.k8s.io/v1/Ingress',
  'policy/v1/PodDisruptionBudget',
  'apiextensions.k8s.io/v1/CustomResourceDefinition',
])
const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

function checkObject(o: Obj): void {
  const id = `${o.kind}/${o.metadata?.name}`
  expect(KNOWN.has(`${o.apiVersion}/${o.kind}`), `${id}: unknown apiVersion/kind ${o.apiVersion} ${o.kind}`).toBe(true)
  expect(o.metadata?.name, id).toMatch(DNS1123)
  expect(String(o.metadata?.name).length, id).toBeLessThanOrEqual(63)
  if (o.kind === 'Service') expect(o.metadata.name, id).toMatch(DNS1035)
  for (const [k, v] of Object.entries((o.metadata?.labels ?? {}) as Record<string, unknown>)) {
    expect(typeof v, `${id} label ${k}`).toBe('string')
    expect(String(v), `${id} label ${k}`).toMatch(LABEL_VALUE)
    expect(String(v).length, `${id} label ${k}`).toBeLessThanOrEqual(63)
  }
  if (o.kind === 'Deployment') checkDeployment(o)
  if (o.kind === 'ClusterRole' || o.kind === 'Role') {
    for (const r of o.rules as Obj[]) {
      expect(r.verbs, `${id}: wildcard verb`).not.toContain('*')
      expect(r.resources, `${id}: wildcard resource`).not.toContain('*')
      expect(r.apiGroups, `${id}: wildcard group`).not.toContain('*')
      if ((r.verbs as string[]).includes('impersonate') || (r.resources as string[]).includes('serviceaccounts/token')) {
        expect((r.resourceNames as string[] | undefined)?.length ?? 0, `${id}: impersonate/token rules must name their targets`).toBeGreaterThan(0)
      }
    }
  }
}

function checkDeployment(d: Obj): void {
  const id = `Deployment/${d.metadata.name}`
  const pod = d.spec.template.spec as Obj
  for (const [k, v] of Object.entries(d.spec.selector.matchLabels as Obj)) expect(d.spec.template.metadata.labels[k], `${id} selector ${k}`).toBe(v)
  expect(pod.securityContext?.runAsNonRoot, id).toBe(true)
  expect(pod.securityContext?.seccompProfile?.type, id).toBe('RuntimeDefault')
  expect(pod.hostNetwork ?? false, id).toBe(false)
  const volumes = new Set((pod.volumes ?? []).map((v: Obj) => v.name))
  for (const c of pod.containers as Obj[]) {
    const sc = c.securityContext as Obj
    expect(sc, `${id}/${c.name}`).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    })
    expect(sc.privileged ?? false, id).toBe(false)
    expect(sc.capabilities.add ?? [], id).toEqual([])
    expect(c.resources?.requests?.memory, `${id}: memory request`).toBeTruthy()
    expect(c.resources?.limits?.memory, `${id}: memory limit`).toBeTruthy()
    const ports = new Set((c.ports ?? []).map((p: Obj) => p.name))
    for (const probe of ['livenessProbe', 'readinessProbe']) {
      const p = c[probe] as Obj | undefined
      const port = p?.httpGet?.port ?? p?.tcpSocket?.port
      if (p?.httpGet) expect(p.httpGet.path, `${id}: ${probe}`).toMatch(/^\//)
      expect(ports.has(port), `${id}: ${probe} on a declared port (${String(port)})`).toBe(true)
    }
    for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${id}: mount ${m.name} has a volume`).toBe(true)
    expect(c.image, id).toMatch(/^[^:]+:[^:]+$/)
  }
}

let server: ApiServer
let dir: string

/** Runs kubectl asynchronously: the API test server lives in this process's event loop. */
async function kubectl(args: string[], input = ''): Promise<string> {
  const r = await runCommand('/usr/bin/kubectl', args, { HOME: dir, KUBECONFIG: join(dir, 'kubeconfig') }, input)
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r.stdout
}

const kubectlApplyDryRun = (yamlText: string): Promise<string> => kubectl(['apply', '--dry-run=server', '-n', 'causeway', '-f', '-'], yamlText)

beforeAll(async () => {
  server = await startApiServer()
  dir = mkdtempSync(join(tmpdir(), 'causeway-charts-'))
  writeFileSync(join(dir, 'kubeconfig'), server.kubeconfig())
  await kubectl(['create', '-f', '-'], '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"causeway"}}')
})

afterAll(async () => {
  await server?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const CASES: Array<{ chart: string; label: string; args: string[] }> = []
for (const chart of ['causeway-agent', 'causeway-relay', 'causeway-signaling']) {
  CASES.push({ chart, label: 'default values', args: chart === 'causeway-agent' ? ['--set', 'token.existingSecret=causeway-token'] : [] })
  for (const f of readdirSync(join(charts, chart, 'ci')).filter((x) => x.endsWith('-values.yaml')).sort()) {
    CASES.push({ chart, label: `ci/${f}`, args: ['-f', join(charts, chart, 'ci', f)] })
  }
}

describe.skipIf(!prerequisite('helm (test/kube/install-helm.sh)', helm !== undefined))('helm charts', () => {
  it.each(CASES)('$chart with $label: lint, render, checks, kubectl apply --dry-run=server', async ({ chart, args }) => {
    execFileSync(helm ?? 'helm', ['lint', '--strict', join(charts, chart), ...args], { encoding: 'utf8', timeout: 60_000 })
    const text = template(chart, args)
    const docs = parseAllDocuments(text).map((d) => d.toJSON() as Obj | null).filter((o): o is Obj => o !== null)
    expect(docs.length).toBeGreaterThan(0)
    for (const o of docs) checkObject(o)
    const out = await kubectlApplyDryRun(text)
    for (const o of docs) {
      const kind = String(o.kind).toLowerCase()
      const group = String(o.apiVersion).includes('/') ? `.${String(o.apiVersion).split('/')[0]}` : ''
      expect(out).toContain(`${kind}${group}/${o.metadata.name} created (server dry run)`)
    }
    expect(server.store.list(deployments(), undefined, () => true, () => true).items).toEqual([])
  })

  it('agent defaults: the controller RBAC, no apiserver share, hardened pod, in-cluster flags', () => {
    const docs = render('causeway-agent', ['--set', 'token.existingSecret=causeway-token'])
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()
    expect(kinds).toEqual([
      'ClusterRole/east-causeway-agent',
      'ClusterRoleBinding/east-causeway-agent',
      'CustomResourceDefinition/remotemanifests.causeway.dev',
      'Deployment/east-causeway-agent',
      'PodDisruptionBudget/east-causeway-agent',
      'Role/east-causeway-agent-leases',
      'RoleBinding/east-causeway-agent-leases',
      'ServiceAccount/east-causeway-agent',
    ])
    const role = docs.find((d) => d.kind === 'ClusterRole') as Obj
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
      { apiGroups: [''], resources: ['events'], verbs: ['get', 'create', 'patch'] },
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get'] },
      { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceexports'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceexports/status'], verbs: ['patch'] },
      { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceimports'], verbs: ['get', 'create', 'patch', 'delete'] },
      { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceimports/status'], verbs: ['patch'] },
      { apiGroups: ['causeway.dev'], resources: ['remotemanifests'], verbs: ['get', 'list', 'watch', 'patch'] },
      { apiGroups: ['causeway.dev'], resources: ['remotemanifests/status'], verbs: ['patch'] },
    ])
    const dep = docs.find((d) => d.kind === 'Deployment') as Obj
    const c = dep.spec.template.spec.containers[0] as Obj
    expect(c.args).toEqual(['agent', '--token-file', '/var/run/causeway/token/token', '--name', 'east', '--status', '0.0.0.0:9090', '--state-dir', '/var/lib/causeway', '--drain', '5000', '--kube'])
    // the state directory: a writable volume (the root filesystem is read-only), an emptyDir by default
    expect(c.volumeMounts.find((m: Obj) => m.name === 'state')).toEqual({ name: 'state', mountPath: '/var/lib/causeway' })
    expect(dep.spec.template.spec.volumes.find((v: Obj) => v.name === 'state')).toEqual({ name: 'state', emptyDir: { sizeLimit: '16Mi' } })
    expect(c.env.find((e: Obj) => e.name === 'POD_IP').valueFrom.fieldRef.fieldPath).toBe('status.podIP')
    expect(dep.spec.template.spec.volumes[0].secret.secretName).toBe('causeway-token')
  })

  it('agent HA defaults: 2 replicas, RollingUpdate maxUnavailable 0, a PDB, anti-affinity, instance from the pod name, leases RBAC', async () => {
    const docs = render('causeway-agent', ['--set', 'token.existingSecret=causeway-token'])
    const dep = docs.find((d) => d.kind === 'Deployment') as Obj
    expect(dep.spec.replicas).toBe(2)
    expect(dep.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } })
    const pod = dep.spec.template.spec as Obj
    const selector = dep.spec.selector.matchLabels as Obj
    expect(pod.affinity).toEqual({
      podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: selector } } }] },
    })
    const c = pod.containers[0] as Obj
    expect(c.env.find((e: Obj) => e.name === 'CAUSEWAY_INSTANCE').valueFrom.fieldRef.fieldPath).toBe('metadata.name')
    expect(c.env.find((e: Obj) => e.name === 'CAUSEWAY_LEASE_DURATION').value).toBe('15s')
    expect(c.env.map((e: Obj) => e.name)).not.toContain('CAUSEWAY_MERGED_ONLY')
    const mergedOnly = (render('causeway-agent', ['--set', 'token.existingSecret=t', '--set', 'kube.mergedOnly=true']).find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.containers[0] as Obj
    expect(mergedOnly.env.find((e: Obj) => e.name === 'CAUSEWAY_MERGED_ONLY').value).toBe('true')
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'status' })
    const drain = Number(c.args[c.args.indexOf('--drain') + 1])
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(drain + 2000) // the agent exits within --drain + 2 s
    const pdb = docs.find((d) => d.kind === 'PodDisruptionBudget') as Obj
    expect(pdb.spec).toEqual({ minAvailable: 1, selector: { matchLabels: selector } })
    const role = docs.find((d) => d.kind === 'Role' && d.metadata.name === 'east-causeway-agent-leases') as Obj
    expect(role.metadata.namespace).toBe('causeway')
    expect(role.rules).toEqual([{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] }])
    const binding = docs.find((d) => d.kind === 'RoleBinding' && d.metadata.name === 'east-causeway-agent-leases') as Obj
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'east-causeway-agent-leases' })
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'east-causeway-agent', namespace: 'causeway' }])
    // one replica: no PDB (minAvailable 1 of 1 would block every node drain); anti-affinity off or required on request
    const one = render('causeway-agent', ['--set', 'token.existingSecret=causeway-token', '--set', 'replicaCount=1', '--set', 'podAntiAffinity=required'])
    expect(one.some((d) => d.kind === 'PodDisruptionBudget')).toBe(false)
    expect((one.find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe('kubernetes.io/hostname')
    const none = render('causeway-agent', ['--set', 'token.existingSecret=causeway-token', '--set', 'podAntiAffinity=none'])
    expect((none.find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.affinity).toBeUndefined()
    // a grace period the drain does not fit in is refused
    expect(() => template('causeway-agent', ['--set', 'token.existingSecret=causeway-token', '--set', 'drainMs=20000'])).toThrow(/terminationGracePeriodSeconds must be longer than drainMs/)
    // the real kubectl maps the PDB and the Role like a cluster does
    const out = await kubectlApplyDryRun(template('causeway-agent', ['--set', 'token.existingSecret=causeway-token']))
    expect(out).toContain('poddisruptionbudget.policy/east-causeway-agent created (server dry run)')
    expect(out).toContain('role.rbac.authorization.k8s.io/east-causeway-agent-leases created (server dry run)')
  })

  it('agent all-on: shares, relays, TURN secret, apiserver share as a dedicated ServiceAccount', () => {
    const docs = render('causeway-agent', ['-f', join(charts, 'causeway-agent/ci/all-on-values.yaml')])
    const c = (docs.find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.containers[0] as Obj
    expect(c.args).toEqual(
      expect.arrayContaining(['--share', 'legacy-db=db.internal.example:5432,peers=west|north', 'wiki=10.0.0.8:80', '--relay', '--share-apiserver', '--apiserver-sa', 'causeway-apiserver-share']),
    )
    expect(c.args).toEqual(expect.arrayContaining(['--ice', 'stun:stun.example.org:3478', 'turn:turn.example.org:3478?transport=tcp,username=causeway,credential=$(CAUSEWAY_TURN_CREDENTIAL)']))
    expect(c.env.find((e: Obj) => e.name === 'CAUSEWAY_TURN_CREDENTIAL').valueFrom.secretKeyRef).toEqual({ name: 'causeway-turn', key: 'credential' })
    expect(c.env.find((e: Obj) => e.name === 'CAUSEWAY_APISERVER_PEERS').value).toBe('west')
    const sa = docs.find((d) => d.kind === 'ServiceAccount' && d.metadata.name === 'causeway-apiserver-share') as Obj
    expect(sa.automountServiceAccountToken).toBe(false)
    const binding = docs.find((d) => d.kind === 'ClusterRoleBinding' && d.metadata.name === 'east-causeway-agent-apiserver-share') as Obj
    expect(binding.roleRef.name).toBe('view')
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'causeway-apiserver-share', namespace: 'causeway' }])
    expect(docs.find((d) => d.kind === 'Secret')?.stringData?.token).toBe('cw1.test-token-value')
    // the revocation list: a ConfigMap mounted as a directory (updates arrive), read-only
    const dep = docs.find((d) => d.kind === 'Deployment') as Obj
    const at = (c.args as string[]).indexOf('--revocations-file')
    expect(c.args[at + 1]).toBe('/etc/causeway/revocations/revocations')
    expect(c.volumeMounts.find((m: Obj) => m.name === 'revocations')).toEqual({ name: 'revocations', mountPath: '/etc/causeway/revocations', readOnly: true })
    expect(dep.spec.template.spec.volumes.find((v: Obj) => v.name === 'revocations').configMap).toEqual({ name: 'causeway-revocations', items: [{ key: 'revocations', path: 'revocations' }] })
  })

  it('agent impersonation mode grants impersonation of exactly the configured user and groups', () => {
    const docs = render('causeway-agent', ['-f', join(charts, 'causeway-agent/ci/impersonate-values.yaml')])
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'east-causeway-agent-apiserver-share') as Obj
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['users'], resourceNames: ['causeway-remote'], verbs: ['impersonate'] },
      { apiGroups: [''], resources: ['groups'], resourceNames: ['causeway-viewers', 'auditors'], verbs: ['impersonate'] },
    ])
    const c = (docs.find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.containers[0] as Obj
    expect(c.args).toEqual(expect.arrayContaining(['--impersonate-user', 'causeway-remote', '--impersonate-group', 'causeway-viewers', 'auditors']))
    expect(docs.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === 'causeway-apiserver-share')).toBe(false)
  })

  it('agent per-peer impersonation: exactly causeway:<peer> for the listed peers and the group causeway:peers; state on a claim; ICE policy flags', () => {
    const docs = render('causeway-agent', ['-f', join(charts, 'causeway-agent/ci/impersonate-peers-values.yaml')])
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'east-causeway-agent-apiserver-share') as Obj
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['users'], resourceNames: ['causeway:west', 'causeway:north'], verbs: ['impersonate'] },
      { apiGroups: [''], resources: ['groups'], resourceNames: ['causeway:peers'], verbs: ['impersonate'] },
    ])
    const peers = docs.find((d) => d.kind === 'ClusterRoleBinding' && d.metadata.name === 'east-causeway-agent-apiserver-share-peers') as Obj
    expect(peers.roleRef.name).toBe('view')
    expect(peers.subjects).toEqual([{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'causeway:peers' }])
    const dep = docs.find((d) => d.kind === 'Deployment') as Obj
    const c = dep.spec.template.spec.containers[0] as Obj
    expect(c.args).toEqual(expect.arrayContaining(['--share-apiserver', '--impersonate-peers', '--ice-ports', '3478,443', '--ice-allow', '10.96.0.0/12']))
    expect(c.args).not.toContain('--impersonate-user')
    expect(dep.spec.template.spec.volumes.find((v: Obj) => v.name === 'state')).toEqual({ name: 'state', persistentVolumeClaim: { claimName: 'causeway-state' } })
    const r = spawnSync(helm ?? 'helm', ['template', 'east', join(charts, 'causeway-agent'), '--set', 'token.existingSecret=t', '--set', 'apiserverShare.enabled=true', '--set', 'apiserverShare.mode=impersonatePeers'], { encoding: 'utf8', timeout: 60_000 })
    expect(r.status).not.toBe(0)
    expect(r.stderr).toContain('impersonatePeers needs apiserverShare.peers')
  })

  it('the RemoteManifests CRD is served and its schema validates instances (kubectl apply --dry-run=server)', async () => {
    const crd = render('causeway-agent', ['--set', 'token.existingSecret=causeway-token']).find((d) => d.kind === 'CustomResourceDefinition') as Obj
    await kubectl(['apply', '-f', '-'], JSON.stringify(crd))
    const ok = await kubectl(['apply', '--dry-run=server', '-n', 'default', '-o', 'json', '-f', '-'], 'apiVersion: causeway.dev/v1alpha1\nkind: RemoteManifests\nmetadata: {name: cfg}\nspec:\n  peer: east\n  manifests:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: x}, data: {a: "1"}}\n')
    const obj = JSON.parse(ok) as Obj
    expect(obj.spec.prune).toBe(true) // the schema's default
    expect(obj.spec.manifests[0].data).toEqual({ a: '1' }) // embedded objects keep their fields
    const bad = await runCommand('/usr/bin/kubectl', ['apply', '--dry-run=server', '-n', 'default', '-f', '-'], { HOME: dir, KUBECONFIG: join(dir, 'kubeconfig') }, 'apiVersion: causeway.dev/v1alpha1\nkind: RemoteManifests\nmetadata: {name: bad}\nspec:\n  prune: "yes"\n  manifests: []\n')
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('RemoteManifests.causeway.dev "bad" is invalid')
    expect(bad.stderr).toContain('spec.peer: Required value')
    expect(bad.stderr).toContain('spec.prune in body must be of type boolean')
    const unknown = await runCommand('/usr/bin/kubectl', ['apply', '--dry-run=server', '-n', 'default', '-f', '-'], { HOME: dir, KUBECONFIG: join(dir, 'kubeconfig') }, 'apiVersion: causeway.dev/v1alpha1\nkind: RemoteManifests\nmetadata: {name: typo}\nspec:\n  peer: east\n  manifest: []\n  manifests: []\n')
    expect(unknown.stderr).toContain('unknown field "spec.manifest"')
  })

  it('signaling: replicas only with redis.url (rooms would split); with it every replica gets the store, the password from its Secret, /livez for liveness', () => {
    const split = spawnSync(helm ?? 'helm', ['template', 'east', join(charts, 'causeway-signaling'), '--set', 'replicaCount=2'], { encoding: 'utf8', timeout: 60_000 })
    expect(split.status).not.toBe(0)
    expect(split.stderr).toContain('replicaCount > 1 needs redis.url')
    const dep = render('causeway-signaling', ['-f', join(charts, 'causeway-signaling/ci/redis-values.yaml')]).find((d) => d.kind === 'Deployment') as Obj
    expect(dep.spec.replicas).toBe(3)
    const c = dep.spec.template.spec.containers[0] as Obj
    expect(c.env.find((e: Obj) => e.name === 'CAUSEWAY_STORE').value).toBe('rediss://redis.causeway.svc:6380/2')
    expect(c.env.find((e: Obj) => e.name === 'CAUSEWAY_REDIS_PASSWORD').valueFrom.secretKeyRef).toEqual({ name: 'causeway-redis', key: 'redis-password' })
    expect(c.livenessProbe.httpGet.path).toBe('/livez')
    expect(c.readinessProbe.httpGet.path).toBe('/healthz')
    const single = (render('causeway-signaling', []).find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.containers[0] as Obj
    expect((single.env ?? []).map((e: Obj) => e.name)).not.toContain('CAUSEWAY_STORE')
  })

  it('signaling replicas: rolling updates that keep one ready, a PDB and anti-affinity with replicas; a relay refuses replicas (a reservation lives on one pod)', () => {
    const docs = render('causeway-signaling', ['--set', 'replicaCount=2', '--set', 'redis.url=redis://redis:6379'])
    const dep = docs.find((d) => d.kind === 'Deployment') as Obj
    expect(dep.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } })
    expect(dep.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(7) // --drain 5 s + 2 s
    const term = dep.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm as Obj
    expect(term.topologyKey).toBe('kubernetes.io/hostname')
    expect(term.labelSelector.matchLabels).toEqual(dep.spec.selector.matchLabels)
    const pdb = docs.find((d) => d.kind === 'PodDisruptionBudget') as Obj
    expect(pdb.spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: dep.spec.selector.matchLabels } })
    const single = render('causeway-signaling', [])
    expect(single.map((d) => d.kind)).not.toContain('PodDisruptionBudget')
    expect((single.find((d) => d.kind === 'Deployment') as Obj).spec.template.spec.affinity).toBeUndefined()
    const relays = spawnSync(helm ?? 'helm', ['template', 'r', join(charts, 'causeway-relay'), '--set', 'replicaCount=2'], { encoding: 'utf8', timeout: 60_000 })
    expect(relays.status).not.toBe(0)
    expect(relays.stderr).toContain('install one release per relay')
  })

  it('agent refuses to render without a token', () => {
    const r = spawnSync(helm ?? 'helm', ['template', 'east', join(charts, 'causeway-agent')], { encoding: 'utf8', timeout: 60_000 })
    expect(r.status).not.toBe(0)
    expect(r.stderr).toContain('set token.existingSecret')
  })
})

function deployments(): (typeof RESOURCES)[number] {
  const rt = RESOURCES.find((r) => r.kind === 'Deployment')
  if (!rt) throw new Error('no Deployment resource')
  return rt
}
