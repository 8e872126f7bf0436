#!/usr/bin/env bash
# Builds bench/groupcache (main.go) in GOPATH mode against Debian's golang-github-golang-groupcache-dev, into
# .build/bench/groupcache-bench (or $1). Rebuilds only when main.go is newer than the binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/.build/bench/groupcache-bench}"
command -v go >/dev/null || { echo "bench: go is missing (scripts/ensure-deps bench installs golang-go)" >&2; exit 1; }
[ -d /usr/share/gocode/src/github.com/golang/groupcache ] || {
    echo "bench: groupcache sources are missing" \
        "(scripts/ensure-deps bench installs golang-github-golang-groupcache-dev)" >&2
    exit 1; }
if [ ! -x "$out" ] || [ "$here/main.go" -nt "$out" ]; then
    mkdir -p "$(dirname "$out")" "$repo/.build/bench/go-cache"
    # GOPATH mode: Debian installs Go libraries under /usr/share/gocode, not as modules.
    (cd "$here" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$repo/.build/bench/go-cache" GOFLAGS= \
        go build -o "$out" main.go)
fi
