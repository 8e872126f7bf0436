#!/usr/bin/env bash
# make scale: 32 nodes in network namespaces, a 3-member etcd cluster, checked load through cold start, a
# rolling restart, kill -9 of 4, a flapping host and etcd faults; see bench/scale/scale.py and docs/scale.md.
# Writes bench/results/<date>-<time>-scale.md; exits 1 on any wrong answer or a node that never converges.
# Binary: $SPRINGCACHE_BIN or .build/release/springcache-uv. Needs root (ip netns), etcd, iproute2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SPRINGCACHE_BIN="${SPRINGCACHE_BIN:-$here/../../.build/release/springcache-uv}"
for tool in etcd ip python3; do
    command -v "$tool" >/dev/null || { echo "scale: $tool is missing" >&2; exit 2; }
done

# The kernel's neighbour (ARP) table is shared by every network namespace: its hard limit gc_thresh3 is 1024
# entries by default, and N hosts that all talk to each other need about N² of them (32 hosts: ~1,100). Past the
# limit the kernel logs "neighbor table overflow" and drops the packets that need a new entry, so TCP
# connections between live nodes stall into retransmission backoff (peers dropped with DEADLINE_EXCEEDED, and
# every other namespace test on the machine breaks too). Raise the limits for the run; put back what was there.
neigh=/proc/sys/net/ipv4/neigh/default
saved=()
for i in 1 2 3; do saved+=("$(cat "$neigh/gc_thresh$i")"); done
restore() {
    for i in 1 2 3; do echo "${saved[$((i - 1))]}" > "$neigh/gc_thresh$i" || true; done
}
trap restore EXIT
want=(4096 16384 32768)
for i in 3 2 1; do  # from the top, so thresh1 <= thresh2 <= thresh3 holds at every step
    if [ "$(cat "$neigh/gc_thresh$i")" -lt "${want[$((i - 1))]}" ]; then
        echo "${want[$((i - 1))]}" > "$neigh/gc_thresh$i"
    fi
done
python3 "$here/scale.py" "$@"
