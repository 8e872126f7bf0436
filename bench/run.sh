#!/usr/bin/env bash
# Local load benchmark (make bench): springcache-uv vs nginx on the same request mix; see bench/bench.py.
# Binary: $SPRINGCACHE_BIN or .build/release/springcache-uv. Tunables: BENCH_DURATION (10s), BENCH_ROUNDS (2),
# BENCH_CONNS ("64 256"), BENCH_KEYS (10000), BENCH_SERVER_CPU (1), BENCH_WRK_CPU (0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SPRINGCACHE_BIN="${SPRINGCACHE_BIN:-$here/../.build/release/springcache-uv}"
for tool in wrk nginx taskset python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "bench: $tool is missing" >&2; exit 1; }
done
PATH="$PATH:/usr/sbin" exec python3 "$here/bench.py" "$@"
