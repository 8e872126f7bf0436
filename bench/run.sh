#!/usr/bin/env bash
# Local load benchmark (make bench): springcache-uv vs nginx, groupcache and Varnish on the same requests; see
# bench/bench.py. Binary: $SPRINGCACHE_BIN or .build/release/springcache-uv. Tunables: BENCH_DURATION (10s),
# BENCH_ROUNDS (2), BENCH_CONNS ("64 256"), BENCH_LARGE_CONNS ("64"), BENCH_KEYS (10000), BENCH_MANY_KEYS (1000000),
# BENCH_SYSTEMS, BENCH_SCENARIOS, BENCH_SMOKE, BENCH_SERVER_CPU (1), BENCH_WRK_CPU (0).
# Smoke run of everything: BENCH_DURATION=2s BENCH_ROUNDS=1 BENCH_SMOKE=1 bench/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SPRINGCACHE_BIN="${SPRINGCACHE_BIN:-$here/../.build/release/springcache-uv}"
for tool in wrk taskset python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
        { echo "bench: $tool is missing (scripts/ensure-deps bench installs it)" >&2; exit 1; }
done
PATH="$PATH:/usr/sbin" exec python3 "$here/bench.py" "$@"
