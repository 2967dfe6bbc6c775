#!/usr/bin/env bash
# Runs the causeway image with podman as Kubernetes runs it from the charts: the image's own
# user (10001), read-only root filesystem (tmpfs on /tmp, /var/tmp, /run), no capabilities,
# no privilege escalation. Host network by default (the caller's network namespace). Arguments
# go to `podman run` before the image: scripts/image/run.sh [podman options] IMAGE [causeway args].
#
# These machines lack CAP_SYS_RESOURCE, so the OCI runtime may not raise a resource limit:
# podman's defaults (RLIMIT_NOFILE 1048576, RLIMIT_NPROC as high as the host's) fail with
# "setrlimit ...: Operation not permitted", also with --ulimit host (the runtime's own hard
# limits are lower). Limits at or below the runtime's are allowed, so they are given here
# (the open-file limit of this shell, 4096 processes). crun then stops at the hybrid cgroup
# layout ("cgroups in hybrid mode not supported"); runc handles it, so runc is the runtime.
#
# Inside `ip netns exec` (scripts/netns-run.sh), /sys is a fresh sysfs without the cgroup
# hierarchies, and runc refuses to start ("no cgroup mount found in mountinfo"). Then the
# host's hierarchies (as listed by /proc/1/mounts) are mounted again at their usual places;
# `ip netns exec` made the mount namespace private, so the host's mounts are not touched.
set -euo pipefail
if ! grep -q '^[^ ]* /sys/fs/cgroup/[^ ]* cgroup' /proc/self/mounts && grep -q ' /sys/fs/cgroup/' /proc/1/mounts; then
  grep -q ' /sys/fs/cgroup ' /proc/1/mounts && mount -t tmpfs cgroup_root /sys/fs/cgroup
  while read -r _src dir type opts _rest; do
    case "$type" in cgroup|cgroup2) ;; *) continue ;; esac
    mkdir -p "$dir" && mount -t "$type" -o "$opts" "$type" "$dir"
  done < <(grep -E '^[^ ]+ /sys/fs/cgroup/[^ ]+ cgroup2? ' /proc/1/mounts)
fi
nofile="$(ulimit -Hn)"
[ "$nofile" = unlimited ] && nofile=1048576
exec podman run --rm --runtime runc \
  --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096 \
  --read-only --read-only-tmpfs=true --cap-drop all --security-opt no-new-privileges \
  --network host "$@"
