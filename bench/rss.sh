#!/usr/bin/env bash
# Idle RSS, RSS after N 8-byte-key/8-byte-value entries (default 1,000,000), per-entry overhead, and time
# from start to the first successful answer. Binary: $SPRINGCACHE_BIN or .build/release/springcache-uv.
# The figures are also written to bench/results/<date>-rss.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SPRINGCACHE_BIN="${SPRINGCACHE_BIN:-$here/../.build/release/springcache-uv}"
mkdir -p "$here/results"
python3 "$here/rss.py" "$@" | tee "$here/results/$(date +%F)-rss.txt"
