#!/usr/bin/env bash
# Cluster benchmark: local hits vs remote hits (gRPC to the owner) vs hot-copy hits through one node of a
# 3-node cluster, and a 2-node cluster read through one node against groupcache's; see bench/cluster.py.
# Writes bench/results/<date>-<HHMM>-cluster.md and its charts.
# Binary: $SPRINGCACHE_BIN or .build/release/springcache-uv. Tunables: BENCH_DURATION (10s), BENCH_ROUNDS (2),
# BENCH_CONNS ("64 256"), BENCH_KEYS (1000), BENCH_SCENARIOS, BENCH_SYSTEMS, BENCH_SMOKE, BENCH_SERVER_CPU (1),
# BENCH_WRK_CPU (0), BENCH_OTHERS_CPU (= wrk CPU), BENCH_LARGE_CONNS (64, the 1 MiB scenario remote-1mib).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SPRINGCACHE_BIN="${SPRINGCACHE_BIN:-$here/../.build/release/springcache-uv}"
for tool in wrk taskset python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
exec python3 "$here/cluster.py" "$@"
