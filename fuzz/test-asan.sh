#!/usr/bin/env bash
# `make test-asan`: the unit tests and the black-box tests against builds with AddressSanitizer and
# LeakSanitizer. Slow (see fuzz/README.md for timings), so it is not part of `make test`.
#
# Every sanitizer report of every process (the test runner, each node the black-box tests start, their
# workers) is written to $ASAN_BUILD_DIR/asan-reports/asan.<pid>; the run fails if any exists, even when
# the process that wrote it was stopped by a test and its exit code went unchecked.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
SCRATCH=${ASAN_BUILD_DIR:-.build-asan}
REPORTS="$PWD/$SCRATCH/asan-reports"
start=$(date +%s)

echo "== test-asan: building (release binary and debug tests, -sanitize=address) in $SCRATCH"
$SWIFT build -c release --sanitize=address --scratch-path "$SCRATCH" --product springcache-uv
$SWIFT build --build-tests --sanitize=address --scratch-path "$SCRATCH"

rm -rf "$REPORTS"
mkdir -p "$REPORTS"
# Why SWIFT_BACKTRACE=enable=no: the Swift runtime's crash handler reads process memory in ways ASan
# reports as errors of its own, which would bury the real report.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="detect_leaks=1:log_path=$REPORTS/asan${ASAN_EXTRA_OPTIONS:+:$ASAN_EXTRA_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0"

status=0
echo "== test-asan: unit tests (ASan; LeakSanitizer off in the XCTest process, see below)"
# Why no leak check in the XCTest process: swift-corelibs-xctest never frees its XCTestCase instances (they
# and their test runs stay referenced until exit), so every fixture a test keeps in a property (servers,
# loops, routers, Foundation Processes) is reported as leaked, rooted at the Swift runtime's weak-reference
# side tables, whose back pointers LeakSanitizer cannot follow. No suppression by allocation stack can tell
# those from real leaks. Leaks are checked in the real binary below, where every process exits through the
# node's own shutdown; memory errors are checked in both.
ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}" \
    $SWIFT test --sanitize=address --scratch-path "$SCRATCH" --disable-swift-testing --skip-build || status=1
echo "== test-asan: black-box tests"
SPRINGCACHE_BIN="$PWD/$SCRATCH/release/springcache-uv" python3 -m pytest -q Tests/integration || status=1

reports=$(find "$REPORTS" -type f | sort)
if [[ -n $reports ]]; then
    echo "== test-asan: sanitizer reports:" >&2
    for r in $reports; do echo "--- $r" >&2; cat "$r" >&2; done
    status=1
fi
echo "== test-asan: $([[ $status == 0 ]] && echo clean || echo FAILED) in $(( $(date +%s) - start )) s"
exit $status
