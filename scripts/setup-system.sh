#!/usr/bin/env bash
# Installs the Debian packages the test suites use, if they are missing: coturn (STUN/TURN),
# iptables + iproute2 (NAT lab), chromium (debug page), openssh-server + socat (benchmark
# baselines), gcc (the WAN emulator's delay line), iperf3 + wireguard-go + wireguard-tools (WAN
# benchmark baselines), buildah + podman + runc (the container image, scripts/image/), dnsmasq-base + bind9-dnsutils
# (the resolver and dig of the UDP share tests), openssl (the NAT lab's TURN-over-TLS certificate), redis-server
# (signaling replicas on Redis; the tests start their own on a free loopback port), iputils-ping
# (the WAN emulator's RTT check). Idempotent;
# needs root and apt-get, otherwise it only reports what is missing (the suites that need a
# missing tool then fail loudly rather than pass silently). Under CI=true a package it cannot
# install fails it.
set -uo pipefail
need=()
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v wireguard-go >/dev/null 2>&1 || need+=(wireguard-go)
command -v wg >/dev/null 2>&1 || need+=(wireguard-tools)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v podman >/dev/null 2>&1 || need+=(podman)
[ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: WARNING: missing ${need[*]} and cannot install (not root or no apt-get)" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
echo "setup-system: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# No package may start its service (sshd, coturn, redis) during the install: the suites start their own.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
fi
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
status=$?
[ -n "$policy" ] && rm -f "$policy"
if [ $status -ne 0 ]; then
  echo "setup-system: WARNING: apt-get install failed ($status)" >&2
  [ "${CI:-}" = true ] && exit 1
fi
# coturn's package enables a system service on some images; the lab starts its own instances.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now coturn redis-server >/dev/null 2>&1 || true; fi
exit 0
