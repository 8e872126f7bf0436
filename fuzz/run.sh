#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/targets/ and runs each for a bounded time (see fuzz/README.md).
#
#   fuzz/run.sh                      build and run every target for FUZZ_SECONDS (default 60) each
#   FUZZ_TARGETS="proto form" ...    only these targets
#   FUZZ_RUNS=10000000 ...           run each for that many executions instead of a time bound
#   FUZZ_BUILD_ONLY=1 ...            build, do not run
#   FUZZ_DIR=.build-fuzz             build directory: binaries, working corpora, crash artifacts
#
# Targets run one after the other (never in parallel); a finding stops the script with the crash input
# in $FUZZ_DIR/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFTC=${SWIFTC:-swiftc}
FUZZ_DIR=${FUZZ_DIR:-.build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_RUNS=${FUZZ_RUNS:-}
S=Sources/SpringCacheUV

# target name -> the library files it needs (none of them imports libuv, curl or nghttp2), max input length
declare -A SOURCES=(
    [http_parser]="$S/HTTP/HTTPParser.swift"
    [form]="$S/HTTP/HTTPParser.swift $S/HTTP/FormDecoder.swift $S/Loop/ByteBuffer.swift"
    [bytebuffer]="$S/Loop/ByteBuffer.swift"
    [proto]="$S/Loop/ByteBuffer.swift $S/Peer/ProtoWire.swift $S/Peer/ProtoMessages.swift"
    [grpc_framing]="$S/Peer/GRPCFraming.swift $S/Peer/GRPCStatus.swift"
    [etcd]="$S/Etcd/JSON.swift $S/Etcd/WatchStreamSplitter.swift $S/Etcd/Base64.swift $S/Loop/ByteBuffer.swift \
$S/Metrics/JSONWriter.swift"
)
declare -A ENTRY=(
    [http_parser]=HTTPParserFuzz [form]=FormFuzz [bytebuffer]=ByteBufferFuzz [proto]=ProtoFuzz
    [grpc_framing]=GRPCFramingFuzz [etcd]=EtcdFuzz
)
declare -A MAXLEN=(
    [http_parser]=2048 [form]=256 [bytebuffer]=512 [proto]=512 [grpc_framing]=512 [etcd]=512
)
ALL="http_parser form bytebuffer proto grpc_framing etcd"
TARGETS=${FUZZ_TARGETS:-$ALL}

# Why these options: the Swift runtime's own crash handler fights ASan and libFuzzer over a trap
# (SWIFT_BACKTRACE); leaks are checked too; allocation stacks are kept short because they dominate the
# cost of every malloc.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=8}

mkdir -p "$FUZZ_DIR"
for t in $TARGETS; do
    missing=0
    for f in ${SOURCES[$t]}; do [[ -f $f ]] || missing=1; done
    if (( missing )); then
        echo "== $t: skipped (its sources are not in this checkout)"
        continue
    fi
    echo "== $t: building"
    # One module from the library files plus the entry point, so the targets reach internal API;
    # lld because gold warns about every ASan symbol.
    # shellcheck disable=SC2086
    "$SWIFTC" -parse-as-library -O -sanitize=fuzzer,address -use-ld=lld -module-name SpringCacheUV \
        ${SOURCES[$t]} fuzz/targets/FuzzSupport.swift "fuzz/targets/${ENTRY[$t]}.swift" -o "$FUZZ_DIR/$t"
done
if [[ -n ${FUZZ_BUILD_ONLY:-} ]]; then exit 0; fi

for t in $TARGETS; do
    [[ -x $FUZZ_DIR/$t ]] || continue
    work="$FUZZ_DIR/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t/"
    mkdir -p "$work" "$artifacts"
    args=(-max_len="${MAXLEN[$t]}" -artifact_prefix="$artifacts" -print_final_stats=1)
    [[ -f fuzz/dict/$t.dict ]] && args+=(-dict="fuzz/dict/$t.dict")
    if [[ -n $FUZZ_RUNS ]]; then
        args+=(-runs="$FUZZ_RUNS")
        echo "== $t: fuzzing for $FUZZ_RUNS runs"
    else
        args+=(-max_total_time="$FUZZ_SECONDS")
        echo "== $t: fuzzing for $FUZZ_SECONDS s"
    fi
    # The working corpus comes first so new inputs go there, never into the committed seeds.
    set +e
    "$FUZZ_DIR/$t" "${args[@]}" "$work" "fuzz/corpus/$t" > "$FUZZ_DIR/$t.log" 2>&1
    status=$?
    set -e
    grep -E "^#[0-9]+ +(INITED|DONE)|^Done|ERROR|FUZZ CHECK|SUMMARY|Test unit|stat::" "$FUZZ_DIR/$t.log" || true
    if (( status != 0 )); then
        echo "== $t: FINDING (exit $status); input in $artifacts, log in $FUZZ_DIR/$t.log" >&2
        exit 1
    fi
done
