#!/usr/bin/env bash
# End-to-end on a machine with Docker, kind, helm and kubectl (it cannot run where no Docker
# engine runs). Two kind clusters, "east" and "west":
#   1. build the causeway image and load it into both clusters;
#   2. run the Node signaling service as a container on the kind Docker network;
#   3. make a network (owner file) and one agent token per cluster, and `helm install` the agent
#      in each cluster with its own token;
#   4. in east, run an HTTP server behind Service "web" and annotate it causeway.dev/share=true;
#   5. in west, wait for the imported Service "web-east" and curl it from a pod.
# Every wait is bounded. KEEP=1 keeps the clusters and the signaling container afterwards.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${IMAGE:-causeway:e2e}"
east="${EAST_CLUSTER:-causeway-east}"
west="${WEST_CLUSTER:-causeway-west}"
signaling_name="causeway-e2e-signaling"
ns=causeway
keep="${KEEP:-0}"

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "diagnostics (exit $rc)"
    for c in "$east" "$west"; do
      kubectl --context "kind-$c" -n "$ns" logs deploy/"${c#causeway-}"-causeway-agent --tail=80 2>/dev/null || true
      kubectl --context "kind-$c" get svc,endpointslices -A -l app.kubernetes.io/managed-by=causeway 2>/dev/null || true
    done
    docker logs --tail 50 "$signaling_name" 2>/dev/null || true
  fi
  rm -rf "$work"
  if [ "$keep" != 1 ]; then
    docker rm -f "$signaling_name" >/dev/null 2>&1 || true
    kind delete cluster --name "$east" >/dev/null 2>&1 || true
    kind delete cluster --name "$west" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
work="$(mktemp -d)" # the network's owner file and the agent tokens (never in a cluster)

# wait_for DESCRIPTION TRIES SLEEP COMMAND... : runs COMMAND until it succeeds, at most TRIES times.
wait_for() {
  local what=$1 tries=$2 pause=$3
  shift 3
  local i
  for ((i = 1; i <= tries; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep "$pause"
  done
  die "timed out waiting for $what"
}

log "building $image"
docker build -t "$image" "$root"

for c in "$east" "$west"; do
  if ! kind get clusters 2>/dev/null | grep -qx "$c"; then
    log "creating kind cluster $c"
    kind create cluster --name "$c" --wait 180s
  fi
  kind load docker-image "$image" --name "$c"
done

log "starting signaling on the kind network"
docker rm -f "$signaling_name" >/dev/null 2>&1 || true
docker run -d --name "$signaling_name" --network kind "$image" signaling --listen 0.0.0.0:8787 >/dev/null
signaling_ip="$(docker inspect -f '{{ (index .NetworkSettings.Networks "kind").IPAddress }}' "$signaling_name")"
[ -n "$signaling_ip" ] || die "no IP for the signaling container"
signaling_url="http://$signaling_ip:8787"
wait_for "signaling /healthz" 30 1 docker run --rm --network kind --entrypoint node "$image" \
  -e "fetch('$signaling_url/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"

# the network (owner file, kept here, never in a cluster), then one agent token per cluster
token() { docker run --rm --user "$(id -u):$(id -g)" -v "$work:/work" -w /work "$image" token "$@" >/dev/null; }
token --signaling "$signaling_url" --owner /work/owner.json
for c in "$east" "$west"; do
  name="${c#causeway-}"
  token --name "$name" --owner /work/owner.json --out "/work/$name.token"
  [ -s "$work/$name.token" ] || die "no agent token for $name"
done

for c in "$east" "$west"; do
  name="${c#causeway-}"
  log "installing the agent in $c as $name"
  helm upgrade --install "$name" "$root/charts/causeway-agent" \
    --kube-context "kind-$c" --namespace "$ns" --create-namespace \
    --set clusterName="$name" \
    --set-file token.value="$work/$name.token" \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
    --wait --timeout 300s
done

log "serving 'web' in east and sharing it"
kubectl --context "kind-$east" apply -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: web
          image: causeway:e2e
          imagePullPolicy: Never
          command: ["node", "-e", "require('node:http').createServer((q, s) => s.end('hello from east\\n')).listen(8080)"]
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: 8080}
EOF
if [ "$image" != causeway:e2e ]; then
  kubectl --context "kind-$east" set image deploy/web web="$image"
fi
kubectl --context "kind-$east" rollout status deploy/web --timeout=180s
kubectl --context "kind-$east" annotate --overwrite service web causeway.dev/share=true

log "waiting for the import in west"
wait_for "Service web-east in west" 90 2 kubectl --context "kind-$west" get service web-east
wait_for "EndpointSlice of web-east" 60 2 sh -c \
  "kubectl --context kind-$west get endpointslices -l kubernetes.io/service-name=web-east -o jsonpath='{.items[0].endpoints[0].conditions.ready}' | grep -qx true"
kubectl --context "kind-$west" get service web-east -o jsonpath='{.metadata.annotations.causeway\.dev/status}{"\n"}'

log "curling web-east from a pod in west"
kubectl --context "kind-$west" delete pod e2e-client --ignore-not-found >/dev/null
kubectl --context "kind-$west" run e2e-client --image="$image" --image-pull-policy=Never --restart=Never \
  --command -- node -e "
    const tryOnce = (n) => fetch('http://web-east.default.svc/').then(r => r.text()).then(t => { process.stdout.write(t); process.exit(t.includes('hello from east') ? 0 : 1) },
      e => { if (n <= 0) { console.error(String(e)); process.exit(1) } setTimeout(() => tryOnce(n - 1), 2000) });
    tryOnce(30)"
wait_for "the client pod to finish" 60 2 sh -c \
  "kubectl --context kind-$west get pod e2e-client -o jsonpath='{.status.phase}' | grep -Eqx 'Succeeded|Failed'"
out="$(kubectl --context "kind-$west" logs e2e-client)"
phase="$(kubectl --context "kind-$west" get pod e2e-client -o jsonpath='{.status.phase}')"
printf '%s\n' "$out"
[ "$phase" = Succeeded ] && grep -q 'hello from east' <<<"$out" || die "west could not reach east's web through causeway"
log "PASS: west reached east's Service through the tunnel"
