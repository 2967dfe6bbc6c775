#!/usr/bin/env bash
# Bench diagnostic: what holds one usrsctp association's window, read with kernel uprobes inside
# node-datachannel's prebuilt binary while a command runs (root; probes removed on exit).
#   sack   every SACK the sender handles on the express path (sctp_express_handle_sack: no gap
#          blocks), with the association's state before it: the advertised receive window in
#          the SACK (arwnd), bytes in flight, the send buffer's occupancy (total_output_queue_size
#          = in flight + not yet sent: capped by SO_SNDBUF), the path's cwnd and ssthresh
#   ssack  every SACK the receiver sends (sctp_send_sack): its receive window and the bytes
#          waiting in its socket receive buffer
# Struct offsets are for @node-datachannel/linux-x64-gnu 0.33.4 (libdatachannel 0.24.5, usrsctp
# fec583d built without INET6): read from the disassembly of sctp_express_handle_sack and
# sctp_cwnd_update_after_output, and equal to offsetof() from usrsctp's headers compiled with
# -D__Userspace__ -DSCTP_SIMPLE_ALLOCATOR -DSCTP_PROCESS_LEVEL_LOCKS -DINET (no -DINET6).
# Another version needs them re-derived the same way. Each probe is a trap into the kernel, so
# rates measured with them are lower bounds (about a third lower at ~20 MiB/s here).
# Prints a summary per 250 ms of the sender's state (averages over that slice's SACKs); the raw
# trace is kept in $CAUSEWAY_BENCH_WINDOW_TRACE (default /tmp/usrsctp-window.trace).
# usage: bench/usrsctp/window.sh COMMAND [ARGS...]
#   e.g. BENCH_MBIT=500 BENCH_SSH=0 BENCH_CONNS= BENCH_RAW_PCS=1 bench/usrsctp/window.sh \
#          scripts/netns-run.sh node bench/engine-wan.ts 40
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$(readlink -f "$root/node_modules/@node-datachannel/linux-x64-gnu/node_datachannel.node")"
out="${CAUSEWAY_BENCH_WINDOW_TRACE:-/tmp/usrsctp-window.trace}"
# shellcheck source=bench/usrsctp/tracefs.sh
. "$root/bench/usrsctp/tracefs.sh"
cleanup () {
  remove_probes cwwin
}
trap cleanup EXIT
cleanup
addr="$(nm "$bin" | awk '$3 == "sctp_express_handle_sack" { print $1 }')"
[ "$addr" = 000000000029cc80 ] || { echo "window.sh: sctp_express_handle_sack at '$addr': the offsets are for node-datachannel 0.33.4; re-derive them for this binary" >&2; exit 1; }
echo > "$T/trace"
echo 65536 > "$T/buffer_size_kb"
# stcb: asoc.nets.tqh_first 0x330, peers_rwnd 0x5a4, total_output_queue_size 0x5b4,
# total_flight 0x5ec, my_rwnd 0x5a8, size_on_reasm_queue 0x5e0, size_on_all_streams 0x600;
# sctp_nets: mtu 0x100, ssthresh 0x104, flight_size 0x1fc, cwnd 0x200; socket so_rcv.sb_cc 0x13c
N='+0x330(%di)'
echo "p:cwwin/sack $bin:0x29cc80 arwnd=%dx:u32 prwnd=+0x5a4(%di):u32 flight=+0x5ec(%di):u32 outq=+0x5b4(%di):u32 cwnd=+0x200($N):u32 ssth=+0x104($N):u32 mtu=+0x100($N):u32" >> "$T/uprobe_events"
echo "p:cwwin/ssack $bin:0x25ca30 myrwnd=+0x5a8(%di):u32 reasm=+0x5e0(%di):u32 onstreams=+0x600(%di):u32 rcvcc=+0x13c(+0x0(%di)):u32" >> "$T/uprobe_events"
# SACKs with gap blocks (sctp_handle_sack: a TSN is missing at the receiver), where fast
# recovery may cut the window (sctp_cwnd_update_after_fr, called on each), and T3 timeouts that
# cut it (sctp_cwnd_update_after_timeout: only when the timer marked chunks for resending)
echo "p:cwwin/gapsack $bin:0x29dfb0 flight=+0x5ec(%cx):u32 cwnd=+0x200(+0x330(%cx)):u32 ssth=+0x104(+0x330(%cx)):u32" >> "$T/uprobe_events"
echo "p:cwwin/cut_fr $bin:0x2942d0 flight=+0x5ec(%di):u32 cwnd=+0x200($N):u32 ssth=+0x104($N):u32" >> "$T/uprobe_events"
# every T3 expiry (sctp_t3rxt_timer): the path's RTO and smoothed RTT / variance in ms
# (lastsa >> 3 = srtt, lastsv = 4 x rttvar: chunks sent more than lastsa/8 + lastsv ago get
# marked for resending, sctp_mark_all_for_resend)
echo "p:cwwin/t3 $bin:0x273da0 flight=+0x5ec(%si):u32 cwnd=+0x200(%dx):u32 rto=+0x128(%dx):u32 lastsa=+0x118(%dx):s32 lastsv=+0x11c(%dx):s32" >> "$T/uprobe_events"
echo "p:cwwin/cut_t3 $bin:0x293cd0 flight=+0x5ec(%di):u32 cwnd=+0x200(%si):u32 ssth=+0x104(%si):u32" >> "$T/uprobe_events"
echo 1 > "$T/events/cwwin/enable"
echo 1 > "$T/tracing_on"
"$@"
echo 0 > "$T/tracing_on"
cp "$T/trace" "$out"
echo "window.sh: $(grep -c ' sack:' "$out") SACKs handled, $(grep -c ' ssack:' "$out") sent, $(grep -c ' gapsack:' "$out") with gap blocks, fast-recovery check $(grep -c ' cut_fr:' "$out") times, T3 timer expired $(grep -c ' t3:' "$out") times and cut the window $(grep -c ' cut_t3:' "$out") times; trace in $out"
echo "| t s | SACKs | arwnd KB | in flight KB | send buffer used KB | unsent KB | cwnd KB | ssthresh KB |"
echo "|---|---|---|---|---|---|---|---|"
grep ' sack:' "$out" | sed -n 's/.* \([0-9.]*\): sack:.* arwnd=\([0-9]*\) prwnd=[0-9]* flight=\([0-9]*\) outq=\([0-9]*\) cwnd=\([0-9]*\) ssth=\([0-9]*\).*/\1 \2 \3 \4 \5 \6/p' |
  awk '{ b = int($1 * 4); if (NR == 1) b0 = b; k = b - b0; n[k]++; rw[k] += $2; fl[k] += $3; oq[k] += $4; cw[k] += $5; ss[k] = $6; if (k > last) last = k }
       END { for (k = 0; k <= last; k++) if (n[k] > 0) printf "| %.2f | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", k / 4, n[k], rw[k] / n[k] / 1000, fl[k] / n[k] / 1000, oq[k] / n[k] / 1000, (oq[k] - fl[k]) / n[k] / 1000, cw[k] / n[k] / 1000, ss[k] / 1000 }'
