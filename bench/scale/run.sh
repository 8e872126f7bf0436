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
exec python3 "$here/scale.py" "$@"
