#!/usr/bin/env bash
# Builds the causeway container image without a Docker engine: `buildah from scratch`, filled
# with what the Dockerfile's image holds (the Dockerfile stays for people with Docker):
#   /app: package.json, bin/causeway, dist/ (the one build: CLI bundle + debug page) and the
#         production npm dependencies (`npm ci --omit=dev`, without the `node` package);
#   Node 22 from the project's own `node` npm package, at /usr/local/bin/node;
#   bash, env, readlink and dirname (bin/causeway is a bash script) and the shared libraries
#   these and Node's native addons (@roamhq/wrtc) load, copied from this machine;
#   /etc/passwd + group with the user causeway (10001), an empty /tmp.
# Config: user 10001:10001, workdir /app, entrypoint /app/bin/causeway, cmd --help.
# Tags: the name the charts use (<repository>:<appVersion> from charts/causeway-agent) and
# localhost/causeway:cache-<content hash>; a build whose inputs hash the same reuses that image.
# The production dependencies are cached by the lock file's hash under $CAUSEWAY_IMAGE_CACHE
# (default /var/tmp/causeway-image). Prints the image name on stdout. Needs root and buildah
# (scripts/setup-system.sh installs it).
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
cd "$root"
cache="${CAUSEWAY_IMAGE_CACHE:-/var/tmp/causeway-image}"
log() { echo "image: $*" >&2; }

repo="$(sed -n 's/^  repository: *//p' charts/causeway-agent/values.yaml | head -1)"
version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/causeway-agent/Chart.yaml)"
[ -n "$repo" ] && [ -n "$version" ] || { log "cannot read the image name from charts/causeway-agent"; exit 1; }
image="$repo:$version"
node_bin="$(readlink -f node_modules/.bin/node)"
[ -x "$node_bin" ] && "$node_bin" -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' \
  || { log "node_modules/.bin/node (Node >= 22) is missing: run npm ci"; exit 1; }

"$node_bin" scripts/build.ts >&2

# Programs and the libraries they load (the dynamic loader included).
progs=("$node_bin" "$(command -v bash)" "$(command -v env)" "$(command -v readlink)" "$(command -v dirname)")
libs() { ldd "$@" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | sort -u; }

# Production dependencies, cached by the lock file.
lockhash="$(cat package.json package-lock.json .npmrc | sha256sum | cut -c1-16)"
deps="$cache/deps-$lockhash"
if [ ! -d "$deps/node_modules" ]; then
  log "installing production dependencies (npm ci --omit=dev) into $deps"
  stage="$(mktemp -d "$cache.stage.XXXXXX" 2>/dev/null || { mkdir -p "$cache" && mktemp -d "$cache/stage.XXXXXX"; })"
  cp package.json package-lock.json .npmrc "$stage/"
  (cd "$stage" && PATH="$(dirname "$node_bin"):$PATH" npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund >&2)
  rm -rf "$stage/node_modules/node" "$stage/node_modules/.bin/node"
  mkdir -p "$cache" && rm -rf "$deps" && mv "$stage" "$deps"
fi
addons=()
while IFS= read -r f; do addons+=("$f"); done < <(find "$deps/node_modules" -name '*.node' -type f | sort)

# The content hash of everything the image holds.
hash="$(
  {
    cat package.json package-lock.json .npmrc bin/causeway scripts/image/build.sh
    find dist -type f | LC_ALL=C sort | xargs sha256sum
    sha256sum "${progs[@]}" $(libs "${progs[@]}" "${addons[@]}")
  } | sha256sum | cut -c1-16
)"
cached="localhost/causeway:cache-$hash"
if buildah inspect --type image "$cached" >/dev/null 2>&1; then
  buildah tag "$cached" "$image"
  log "inputs unchanged: $image is $cached"
  echo "$image"
  exit 0
fi

log "building $image from scratch"
ctr="$(buildah from scratch)"
trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
fs="$(buildah mount "$ctr")"
mkdir -p "$fs/usr/local/bin" "$fs/usr/bin" "$fs/bin" "$fs/etc" "$fs/app" "$fs/tmp"
chmod 1777 "$fs/tmp"
cp "$node_bin" "$fs/usr/local/bin/node"
cp "$(command -v bash)" "$fs/bin/bash"
for p in env readlink dirname; do cp "$(command -v "$p")" "$fs/usr/bin/$p"; done
for l in $(libs "${progs[@]}" "${addons[@]}"); do mkdir -p "$fs$(dirname "$l")"; cp -L "$l" "$fs$l"; done
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ncauseway:x:10001:10001:causeway:/nonexistent:/usr/sbin/nologin\n' > "$fs/etc/passwd"
printf 'root:x:0:\ncauseway:x:10001:\n' > "$fs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$fs/etc/nsswitch.conf"
cp package.json "$fs/app/"
cp -r bin dist "$fs/app/"
cp -r "$deps/node_modules" "$fs/app/node_modules"
buildah umount "$ctr" >/dev/null
buildah config \
  --user 10001:10001 --workingdir /app \
  --env NODE_ENV=production --env HOME=/tmp --env PATH=/usr/local/bin:/usr/bin:/bin \
  --port 9090 --port 8787 --port 4001 --port 4002 \
  --entrypoint '["/app/bin/causeway"]' --cmd '["--help"]' \
  --label org.opencontainers.image.title=causeway --label "org.opencontainers.image.version=$version" \
  "$ctr"
buildah commit -q --rm "$ctr" "$cached" >/dev/null
trap - EXIT
buildah tag "$cached" "$image"
# earlier cache images (other inputs) are dropped: each is ~300 MB
for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/causeway:cache-' | grep -v ":cache-$hash\$" || true); do buildah rmi "$old" >/dev/null 2>&1 || true; done
log "built $image ($cached)"
echo "$image"
