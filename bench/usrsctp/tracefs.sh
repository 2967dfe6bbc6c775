# Sourced by the uprobe diagnostics here: mounts tracefs if needed (T is its path) and defines
# `remove_probes GROUP`: tracing off, the group's events disabled and its uprobes removed.
T=/sys/kernel/tracing
[ -f "$T/uprobe_events" ] || mount -t tracefs nodev "$T"
remove_probes () {
  echo 0 > "$T/tracing_on" || true
  [ -e "$T/events/$1/enable" ] && echo 0 > "$T/events/$1/enable"
  sed -n "s/^[pr]:\\($1\\/[a-z_0-9]*\\).*/-:\\1/p" "$T/uprobe_events" | while read -r l; do echo "$l" >> "$T/uprobe_events"; done
}
