/**
 * `causeway kubeconfig --peer NAME`: a kubeconfig for peer NAME's API server through the tunnel.
 * Asks the local running agent (its status API, loopback only) for a connect listener to
 * `kube-apiserver@NAME` on 127.0.0.1, then writes a kubeconfig whose server is that listener
 * (plain HTTP on loopback; the tunnel is end-to-end encrypted, and the exporting agent talks
 * TLS to its API server with the identity its operator configured — the kubeconfig carries no
 * credentials, and any it carried would be dropped).
 */
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import * as z from 'zod'
import { stringify } from 'yaml'
import { PeerName } from '../protocol/peer.ts'
import { APISERVER_SHARE } from '../agent/kube/agent-port.ts'
import { parseHostPort } from './duration.ts'

export const KUBECONFIG_HELP = `causeway kubeconfig --peer NAME [options]

  Writes a kubeconfig that reaches peer NAME's Kubernetes API server (shared with
  --share-apiserver there) through the local agent.
  --peer NAME                    the cluster's agent name
  --status-addr HOST:PORT        the local agent's status API (default 127.0.0.1:7777)
  --listen HOST:PORT             local listener (loopback only; default 127.0.0.1:0 = any port)
  --out FILE                     write here (default: stdout)
  --context NAME                 context/cluster name in the file (default causeway-<peer>)
  --namespace NS                 default namespace of the context`

const Answer = z.object({ share: z.string(), peer: z.string(), listen: z.string().max(64) })

/** Asks the local agent for a loopback connect listener to `share@peer`; returns `host:port`. */
export async function requestConnect (statusAddr: string, peer: string, listen = '127.0.0.1:0', share = APISERVER_SHARE): Promise<string> {
  const { host, port } = parseHostPort(statusAddr)
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/v1/connects`
  let res: Response
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ share, peer, listen }), signal: AbortSignal.timeout(10_000) })
  } catch (e) {
    throw new Error(`cannot reach the local agent's status API at ${statusAddr} (is \`causeway agent\` running?): ${e instanceof Error ? e.message : String(e)}`)
  }
  const body: unknown = await res.json().catch(() => null)
  if (!res.ok) {
    const msg = z.object({ error: z.object({ message: z.string() }) }).safeParse(body)
    throw new Error(`the local agent refused: ${msg.success ? msg.data.error.message : `HTTP ${res.status}`}`)
  }
  const a = Answer.safeParse(body)
  if (!a.success) throw new Error('unexpected answer from the local agent')
  return a.data.listen
}

/** The kubeconfig YAML for a server at `http://<listen>`. */
export function kubeconfigYaml (listen: string, name: string, namespace?: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: `http://${listen}` } }],
    users: [{ name, user: {} }],
    contexts: [{ name, context: { cluster: name, user: name, ...(namespace !== undefined ? { namespace } : {}) } }],
    'current-context': name,
    preferences: {},
  })
}

export async function kubeconfigCommand (argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      peer: { type: 'string' },
      'status-addr': { type: 'string', default: '127.0.0.1:7777' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      out: { type: 'string' },
      context: { type: 'string' },
      namespace: { type: 'string' },
    },
    strict: true,
  })
  const peer = PeerName.safeParse(values.peer)
  if (!peer.success) throw new Error('--peer NAME is required')
  const listen = await requestConnect(values['status-addr'], peer.data, values.listen)
  const yaml = kubeconfigYaml(listen, values.context ?? `causeway-${peer.data}`, values.namespace)
  if (values.out !== undefined) {
    writeFileSync(values.out, yaml, { mode: 0o600 })
    process.stderr.write(`wrote ${values.out}: ${APISERVER_SHARE}@${peer.data} at http://${listen} (valid while the local agent runs)\n`)
  } else process.stdout.write(yaml)
  return 0
}
