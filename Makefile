# thingd — see README.md. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 1

# Debian packages the build and the tests need.
DEB_PACKAGES := softhsm2 opensc swtpm swtpm-tools tpm2-tools mosquitto gcc libc6-dev libssl-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

BIN := bin
TEST_FLAGS ?= -race -count=1 -timeout 12m
BENCH_FLAGS ?= -run '^$$' -benchmem -count=1

.PHONY: all deps build test vet bench demo clean

all: build

## deps: install the Debian packages that are missing (apt-get; sudo only when not root).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi
	@$(GO) mod download

BUILD_TIME := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X github.com/thingd/thingd/agent.buildTime=$(BUILD_TIME)

## build: thingd and thingsim into bin/.
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/thingd ./agent/cmd/thingd
	$(GO) build -trimpath -o $(BIN)/thingsim ./sim/cmd/thingsim

## demo: the whole story against thingsim with a SoftHSM key.
demo: deps build
	BIN=$(abspath $(BIN)) bash docs/demo.sh

## vet: go vet on everything.
vet:
	$(GO) vet ./...

## test: deps, vet, then every test with the race detector and every backend.
test: deps vet
	$(GO) test $(TEST_FLAGS) ./...

## bench: Sign per key store next to the raw module call, Generate, thingd start->CONNACK, idle RSS, rotation p50/p99
## (docs/benchmarks.md). One package at a time (-p 1), each benchmark 3 times; raw output in $(BIN)/bench/.
bench: deps
	@mkdir -p $(BIN)/bench
	@{ echo "date: $$(date -u +%FT%TZ)"; $(GO) version; echo "nproc: $$(nproc)"; grep -m1 '^model name' /proc/cpuinfo; } | tee $(BIN)/bench/machine.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 1s -bench '^Benchmark(Sign|RawSign)$$' ./keystore/... | tee $(BIN)/bench/sign.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 5x -bench '^BenchmarkGenerate$$' ./keystore/... | tee $(BIN)/bench/generate.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 20x -bench '^Benchmark(StartToConnack|IdleRSS|Rotation)$$' ./agent/ | tee $(BIN)/bench/agent.txt
	@# go test can say ok although a re-run (-count) sub-benchmark failed
	@! grep -H -- '--- FAIL' $(BIN)/bench/{sign,generate,agent}.txt
	@echo; echo "== summary: mean (min..max) over the 3 runs"
	@cat $(BIN)/bench/{sign,generate,agent}.txt | awk ' \
	  /^pkg:/ { pkg = $$2; sub(/.*\/thingd\//, "", pkg) } \
	  /^Benchmark/ { name = $$1; sub(/-[0-9]+$$/, "", name); sub(/^Benchmark/, "", name); \
	    for (i = 3; i < NF; i += 2) { u = $$(i+1); if (u != "ns/op" && u != "MiB-RSS" && u != "p50-ms" && u != "p99-ms") continue; \
	      k = pkg " " name " " u; if (!(k in n)) order[++len] = k; \
	      n[k]++; s[k] += $$i; if (!(k in lo) || $$i < lo[k]) lo[k] = $$i; if ($$i > hi[k]) hi[k] = $$i } } \
	  END { for (j = 1; j <= len; j++) { k = order[j]; split(k, f, " "); d = (f[3] == "ns/op") ? 1e6 : 1; \
	    printf "%-20s %-40s %10.3f %s (%.3f..%.3f)\n", f[1], f[2], s[k]/n[k]/d, (d > 1 ? "ms" : f[3]), lo[k]/d, hi[k]/d } }'

clean:
	rm -rf $(BIN)
