#!/usr/bin/env bash
# Workers benchmark (make bench-workers): one node vs --workers 2 behind one API port; see bench/workers.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SPRINGCACHE_BIN="${SPRINGCACHE_BIN:-$here/../.build/release/springcache-uv}"
command -v wrk >/dev/null || { echo "bench: wrk is missing" >&2; exit 1; }
exec python3 "$here/workers.py" "$@"
