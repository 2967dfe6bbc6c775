#!/usr/bin/env bash
# Bench diagnostic: counts, with kernel uprobes, where packets go inside node-datachannel's prebuilt
# binary while a command runs (root; tracefs is mounted if needed; probes are removed on exit):
#   ice_recv   libjuice handed a datagram to libdatachannel (IceTransport::RecvCallback)
#   dtls_in    DtlsTransport::incoming: a record offered to the DTLS incoming queue (1024 deep)
#   dtls_enq   DtlsTransport::enqueueRecv: called after every record the queue accepted, so
#              dtls_in - dtls_enq = records dropped because the queue was full (each connection
#              also calls it once or twice when it stops)
#   send       libjuice conn_poll_send calls; send_fail: those that returned an error (EAGAIN:
#              the UDP socket buffer was full and the datagram was dropped)
# Offsets are for @node-datachannel/linux-x64-gnu 0.33.4 (libdatachannel 0.24.5); `nm -C` on the
# binary gives them for another version. Every process mapping that file is counted.
# usage: bench/usrsctp/uprobes.sh COMMAND [ARGS...]
#   e.g. BENCH_MBIT=500 BENCH_SSH=0 BENCH_CONNS= BENCH_RAW_PCS=1 bench/usrsctp/uprobes.sh \
#          scripts/netns-run.sh node bench/engine-wan.ts 40
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$(readlink -f "$root/node_modules/@node-datachannel/linux-x64-gnu/node_datachannel.node")"
# shellcheck source=bench/usrsctp/tracefs.sh
. "$root/bench/usrsctp/tracefs.sh"
cleanup () {
  remove_probes cwdiag
  echo > "$T/trace"
}
trap cleanup EXIT
cleanup
for p in ice_recv:0x1a7ec0 dtls_in:0x23a9f0 dtls_enq:0x239d40 send:0x47bb30; do
  echo "p:cwdiag/${p%%:*} $bin:${p#*:}" >> "$T/uprobe_events"
done
echo "r:cwdiag/send_ret $bin:0x47bb30 ret=\$retval:s32" >> "$T/uprobe_events"
echo 'ret < 0' > "$T/events/cwdiag/send_ret/filter"
echo 1 > "$T/events/cwdiag/enable"
# only the filtered return probe writes to the trace buffer; the others are counted in uprobe_profile
for e in ice_recv dtls_in dtls_enq send; do echo 'common_pid < 0' > "$T/events/cwdiag/$e/filter"; done
echo > "$T/trace"
echo 1 > "$T/tracing_on"
"$@"
echo 0 > "$T/tracing_on"
awk '$2 ~ /^(ice_recv|dtls_in|dtls_enq|send)$/ { printf "%s %s\n", $2, $3 }' "$T/uprobe_profile"
echo "send_fail $(grep -vc '^#' "$T/trace" || true)"
