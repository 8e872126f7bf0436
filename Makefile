# springcache-uv: `make run` starts a node on 127.0.0.1:9999; `make test` runs every test.
# Each target installs the Debian and Python packages it needs if they are missing.
SWIFT      ?= swift
BUILD_DIR  ?= .build
BIN         = $(BUILD_DIR)/release/springcache-uv
ARGS       ?=

.PHONY: all build run test unit integration bench bench-hitcost bench-cluster bench-workers scale deps clean fuzz \
        test-asan check-layers bench-peercost

all: build

deps:
	@scripts/ensure-deps build

build: deps
	$(SWIFT) build -c release --scratch-path $(BUILD_DIR) --product springcache-uv

run: build
	$(BIN) $(ARGS)

# Two XCTest targets: the unit tests (Tests/SpringCacheUVTests: no sockets, no etcd, simulated time) and the
# Swift tests that need a real etcd, sockets or helper processes (Tests/integration/swift); then the black-box
# tests. Unit tests first: they are fast and say the most when they fail.
UNIT_TESTS        = --filter '^SpringCacheUVTests\.'
INTEGRATION_TESTS = --filter '^SpringCacheUVIntegrationTests\.'

test:
	@scripts/ensure-deps test
	$(MAKE) --no-print-directory check-layers
	$(SWIFT) build -c release --scratch-path $(BUILD_DIR) --product springcache-uv
	$(SWIFT) test --scratch-path $(BUILD_DIR) --disable-swift-testing $(UNIT_TESTS)
	$(SWIFT) test --scratch-path $(BUILD_DIR) --disable-swift-testing $(INTEGRATION_TESTS)
	SPRINGCACHE_BIN=$(abspath $(BIN)) python3 -m pytest -q Tests/integration

# The direction of dependencies between source folders (the table in scripts/check-layers), and its self-test.
check-layers:
	python3 -m pytest -q Tests/scripts
	scripts/check-layers

unit: deps
	$(SWIFT) test --scratch-path $(BUILD_DIR) --disable-swift-testing $(UNIT_TESTS)

integration: build
	@scripts/ensure-deps test
	$(SWIFT) test --scratch-path $(BUILD_DIR) --disable-swift-testing $(INTEGRATION_TESTS)
	SPRINGCACHE_BIN=$(abspath $(BIN)) python3 -m pytest -q Tests/integration

bench: build
	@scripts/ensure-deps bench
	bench/groupcache/build.sh
	bench/run.sh

# Allocations and instructions per local hit, counted under valgrind (steady where rps moves with load).
bench-hitcost: build
	@scripts/ensure-deps bench
	bench/hitcost.py

bench-peercost: build
	@scripts/ensure-deps bench
	bench/hitcost.py --remote

bench-cluster: build
	@scripts/ensure-deps bench
	bench/groupcache/build.sh
	bench/cluster.sh

bench-workers: build
	@scripts/ensure-deps bench
	bench/workers.sh

# 32 nodes in network namespaces, 3 etcd members, faults under checked load (docs/scale.md); not in `make test`.
scale: build
	@scripts/ensure-deps test
	bench/scale/run.sh

# libFuzzer + ASan targets over the pure-logic parsers and codecs, FUZZ_SECONDS each (fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

# Unit and black-box tests with AddressSanitizer and LeakSanitizer; slow, so not part of `make test`.
test-asan:
	@scripts/ensure-deps test
	fuzz/test-asan.sh

clean:
	rm -rf $(BUILD_DIR)
