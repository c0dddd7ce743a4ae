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

## bench: sign throughput per key store next to the raw module call, key generation time.
bench: deps
	$(GO) test $(BENCH_FLAGS) -bench 'Sign|RawSign' -benchtime 2000x ./keystore/...
	$(GO) test $(BENCH_FLAGS) -bench 'Generate' -benchtime 5x ./keystore/...

clean:
	rm -rf $(BIN)
