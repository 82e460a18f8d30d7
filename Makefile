# kproxy — see README.md. Every target works on a fresh Debian 12 machine as root.
SHELL := /bin/bash
GO ?= go
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kproxy
export KPROXY_CACHE := $(CACHE)
GOTEST_FLAGS ?=

.PHONY: all build test unit vet deps envtest-assets vm-assets demo bench bench-go fmt clean

all: build

build:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o bin/kproxy ./cmd/kproxy

deps:
	@bash hack/install-deps.sh

# Builds kube-apiserver, etcd and upstream kube-proxy from Go modules into $(CACHE),
# once; later runs reuse them.
envtest-assets: deps
	@bash hack/envtest-assets.sh all >/dev/null

vm-assets: deps
	@bash hack/vm-assets.sh >/dev/null

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The whole suite: unit tests with -race, the real-apiserver (envtest), network
# namespace (real iptables) and VM (real IPVS kernel) tiers. Run as root. -count=1:
# the VM tests run binaries whose inputs go test's cache cannot see.
test: deps envtest-assets vm-assets vet
	@assets=$$(bash hack/envtest-assets.sh envtest); \
	echo "test: envtest binaries: $$($$assets/kube-apiserver --version), etcd $$($$assets/etcd --version | head -1)"; \
	set -o pipefail; KUBEBUILDER_ASSETS=$$assets \
		$(GO) test -race -count=1 -json -timeout 25m $(GOTEST_FLAGS) ./... | $(GO) run ./hack/testreport
	@echo "test: fuzzing model+render for $(FUZZTIME) beyond the seed corpus"
	$(GO) test -run '^$$' -fuzz '^FuzzModelRender$$' -fuzztime $(FUZZTIME) ./test/fuzz/

# How long `make test` fuzzes beyond the committed seed corpus (which every run replays).
FUZZTIME ?= 20s

# Unit tests only: no root, no apiserver, no VM.
unit:
	$(GO) test -short ./...

demo: deps
	@bash hack/demo.sh

# The scale harness (test/scale): kproxy, then upstream kube-proxy, each in a fresh
# network namespace world against one real apiserver grown to BENCH_SIZES Services.
# Writes results.md, results.json and PNG plots to BENCH_OUT (default
# test/scale/results/<date>; results/tmp is git-ignored). Takes ~80 min at the default
# sizes on 2 cores (20 of them growing the apiserver to 30,000 Services); upstream is
# not run above 10,000 Services nor after a 15 min first sync. Root only. More knobs:
# BENCH_FLAGS (bin/scale-bench -h); a quick look: make bench BENCH_SIZES=100 BENCH_FLAGS=-smoke
BENCH_SIZES ?= 1000,5000,10000,30000
BENCH_OUT ?=
BENCH_FLAGS ?=
bench: deps envtest-assets
	$(GO) build -o bin/scale-bench ./test/scale/cmd/bench
	KUBEBUILDER_ASSETS=$$(bash hack/envtest-assets.sh envtest) \
		bin/scale-bench -sizes $(BENCH_SIZES) $(if $(BENCH_OUT),-out $(BENCH_OUT)) $(BENCH_FLAGS)

# Go benchmarks of the pure code paths (render, diff, state building).
bench-go: deps envtest-assets
	KUBEBUILDER_ASSETS=$$(bash hack/envtest-assets.sh envtest) \
		$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./iptables/... ./proxier/...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
