#!/usr/bin/env bash
# Runs a command inside a fresh, isolated network namespace that has only loopback and a
# veth pair (198.18.0.1/24 on one end, IPv6 off). WebRTC engines ignore loopback interfaces, so
# without this their host candidates would be the machine's own LAN addresses; inside, every
# packet of the test suite stays in a namespace the suite created. The namespace is removed
# on exit. Not root, or no `ip`: runs the command as it is and says so loudly.
set -uo pipefail
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1 || [ "${CAUSEWAY_NO_NETNS:-}" = 1 ]; then
  echo "netns-run: WARNING: not root or no iproute2: running WITHOUT an isolated network namespace" >&2
  exec "$@"
fi
# The WAN emulator (scripts/wan/) gives its namespaces cubic or bbr; a namespace may only pick
# algorithms the host allows, and only the initial namespace can extend that list.
allowed=$(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control 2>/dev/null || true)
for cc in cubic bbr; do
  case " $allowed " in *" $cc "*) ;; *) grep -qw "$cc" /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null && allowed="$allowed $cc" ;; esac
done
[ -n "$allowed" ] && { sysctl -qw net.ipv4.tcp_allowed_congestion_control="$allowed" 2>/dev/null || echo "netns-run: could not allow cubic/bbr for namespaces" >&2; }
ns="cwt$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns" || { echo "netns-run: cannot create a network namespace" >&2; exit 1; }
ip netns exec "$ns" sh -c '
  ip link set lo up &&
  sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 &&
  ip link add cw0 type veth peer name cw1 && ip addr add 198.18.0.1/24 dev cw0 && ip link set cw0 up && ip link set cw1 up
' || { echo "netns-run: cannot set up the namespace" >&2; exit 1; }
ip netns exec "$ns" "$@"
