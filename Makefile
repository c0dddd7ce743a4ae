# thingd — see README.md. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 1

# Debian packages the build and the tests need.
DEB_PACKAGES := softhsm2 opensc swtpm swtpm-tools tpm2-tools mosquitto gcc libc6-dev libssl-dev systemd
# ... and for make cross / test-arm / lint-package: Debian's cross compilers (and their libc), qemu-user, lintian.
DEB_PACKAGES += gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu libc6-dev-armhf-cross libc6-dev-arm64-cross \
	qemu-user lintian
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

BIN := bin
TEST_FLAGS ?= -race -count=1 -timeout 12m
BENCH_FLAGS ?= -run '^$$' -benchmem -count=1

.PHONY: all deps build test vet bench demo clean cross test-arm package lint-package

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
# VERSION is semver; the Debian packages turn 0.1.0-dev+g1234abc into 0.1.0~dev+g1234abc-1.
GIT_REV := $(shell git rev-parse --short=7 HEAD 2>/dev/null)
VERSION ?= 0.1.0-dev$(if $(GIT_REV),+g$(GIT_REV))
LDFLAGS := -X github.com/thingd/thingd/agent.Version=$(VERSION) -X github.com/thingd/thingd/agent.buildTime=$(BUILD_TIME)

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

## test: deps, vet, the ARM binaries under qemu (test-arm), the Debian packages (lint-package), then every test
## with the race detector and every backend.
test: deps vet test-arm lint-package
	$(GO) test $(TEST_FLAGS) ./...

## cross: stripped thingd (cgo for PKCS#11 with Debian's (cross) compilers, PIE) and thingsim (pure Go) for linux/amd64,
## linux/arm64 and linux/arm (GOARM=7) into $(BIN)/linux-GOARCH/; prints the sizes, fails if one is over 12 MB.
CROSS_ARCHS := amd64 arm64 arm
MAX_BINARY_MB := 12
# thingd as Debian builds daemons: PIE, full RELRO, bind-now, fortified and stack-protected C (the cgo part).
CROSS_CGO_CFLAGS := -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong
CROSS_LDFLAGS := -s -w -linkmode=external -extldflags '-Wl,-z,relro,-z,now'
cross:
	@set -e; for a in $(CROSS_ARCHS); do \
	  goarm=; cc=gcc; \
	  case $$a in arm) goarm=7; cc=arm-linux-gnueabihf-gcc;; arm64) cc=aarch64-linux-gnu-gcc;; esac; \
	  echo "cross: linux/$$a$${goarm:+ GOARM=$$goarm} CC=$$cc -> $(BIN)/linux-$$a/"; \
	  mkdir -p $(BIN)/linux-$$a; \
	  GOOS=linux GOARCH=$$a GOARM=$$goarm CGO_ENABLED=1 CC=$$cc CGO_CFLAGS="$(CROSS_CGO_CFLAGS)" \
	    $(GO) build -trimpath -buildmode=pie -ldflags "$(CROSS_LDFLAGS) $(LDFLAGS)" -o $(BIN)/linux-$$a/thingd ./agent/cmd/thingd; \
	  GOOS=linux GOARCH=$$a GOARM=$$goarm CGO_ENABLED=0 \
	    $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/linux-$$a/thingsim ./sim/cmd/thingsim; \
	done
	@echo "== stripped sizes (limit $(MAX_BINARY_MB) MB = $(MAX_BINARY_MB)000000 bytes each)"; over=; \
	for a in $(CROSS_ARCHS); do for p in thingd thingsim; do \
	  f=$(BIN)/linux-$$a/$$p; n=$$(stat -c %s $$f); \
	  awk -v f=$$f -v n=$$n 'BEGIN { printf "%-26s %9d bytes %6.2f MB\n", f, n, n / 1e6 }'; \
	  [ $$n -le $(MAX_BINARY_MB)000000 ] || over="$$over $$f"; \
	done; done; \
	if [ -n "$$over" ]; then echo "cross: over $(MAX_BINARY_MB) MB:$$over" >&2; exit 1; fi

## test-arm: the ARM binaries under qemu-user: thingd version and key commands (file: and SoftHSM keys), the TPM
## tests against swtpm (pure Go), every p11store test against Debian's ARM SoftHSM, ARM thingd against ARM thingsim
## end to end (agent/deploy/test-arm.sh). Adds the Debian architectures arm64 and armhf for apt-get download.
test-arm: cross
	BIN=$(BIN) VERSION=$(VERSION) GO=$(GO) bash agent/deploy/test-arm.sh

## package: .deb for amd64, arm64 and armhf into $(BIN)/ with nfpm (agent/deploy/package), from the make cross binaries.
PKG_MAINTAINER ?= thingd maintainers <maintainers@thingd.invalid>
package: cross
	rm -f $(BIN)/thingd_*.deb
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	  $(GO) run ./agent/deploy/package -version '$(VERSION)' -bin $(BIN) -out $(BIN) -maintainer '$(PKG_MAINTAINER)'

## lint-package: lintian on the three packages (no errors), then the amd64 package installed with dpkg into a
## throw-away overlay of this machine: files where the unit expects them, user, groups, conffile, remove, purge.
lint-package: package
	BIN=$(BIN) VERSION=$(VERSION) bash agent/deploy/lint-package.sh

## bench: Sign per key store next to the raw module call, Generate, thingd start->CONNACK, idle RSS, rotation p50/p99
## (docs/benchmarks.md). One package at a time (-p 1), each benchmark 3 times; raw output in $(BIN)/bench/.
bench: deps
	@mkdir -p $(BIN)/bench
	@{ echo "date: $$(date -u +%FT%TZ)"; $(GO) version; echo "nproc: $$(nproc)"; grep -m1 '^model name' /proc/cpuinfo; } | tee $(BIN)/bench/machine.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 1s -bench '^Benchmark(Sign|RawSign)$$' ./keystore/... | tee $(BIN)/bench/sign.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 5x -bench '^BenchmarkGenerate$$' ./keystore/... | tee $(BIN)/bench/generate.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 20x -bench '^Benchmark(StartToConnack|IdleRSS|Rotation)$$' ./agent/ | tee $(BIN)/bench/agent.txt
	set -o pipefail; $(GO) test $(BENCH_FLAGS) -p 1 -count 3 -benchtime 1s -bench '^Benchmark(Parser|PollPTY)$$' ./hal/... | tee $(BIN)/bench/hal.txt
	@# go test can say ok although a re-run (-count) sub-benchmark failed
	@! grep -H -- '--- FAIL' $(BIN)/bench/{sign,generate,agent,hal}.txt
	@echo; echo "== summary: mean (min..max) over the 3 runs"
	@cat $(BIN)/bench/{sign,generate,agent,hal}.txt | awk ' \
	  /^pkg:/ { pkg = $$2; sub(/.*\/thingd\//, "", pkg) } \
	  /^Benchmark/ { name = $$1; sub(/-[0-9]+$$/, "", name); sub(/^Benchmark/, "", name); \
	    for (i = 3; i < NF; i += 2) { u = $$(i+1); if (u != "ns/op" && u != "MiB-RSS" && u != "p50-ms" && u != "p99-ms") continue; \
	      k = pkg " " name " " u; if (!(k in n)) order[++len] = k; \
	      n[k]++; s[k] += $$i; if (!(k in lo) || $$i < lo[k]) lo[k] = $$i; if ($$i > hi[k]) hi[k] = $$i } } \
	  END { for (j = 1; j <= len; j++) { k = order[j]; split(k, f, " "); d = (f[3] == "ns/op") ? 1e6 : 1; \
	    printf "%-20s %-40s %10.3f %s (%.3f..%.3f)\n", f[1], f[2], s[k]/n[k]/d, (d > 1 ? "ms" : f[3]), lo[k]/d, hi[k]/d } }'

clean:
	rm -rf $(BIN)
